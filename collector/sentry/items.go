package sentry

import (
	"errors"
	"strconv"
	"time"

	"github.com/leitstand/leitstand/collector"
)

// finishTransaction completes a transaction event (Events[mark]) and adds
// one sentry.span event per child span.
func (n *normalizer) finishTransaction(mark int, st *eventState) error {
	e := &n.b.Events[mark]
	start, hasStart := st.start, st.hasStart
	if !hasStart {
		start, hasStart = st.ts, st.hasTS
	}
	n.timestamp(e, start, hasStart)
	level := st.level
	if level == "" {
		level = "info"
	}
	e.Add(collector.FieldLevel, collector.KindString, level)
	if st.transaction != "" {
		e.Add(fTxName, collector.KindString, st.transaction)
	}
	e.Add(collector.FieldMessage, collector.KindString, st.transaction)
	if st.spanID != "" {
		e.Add(fTxID, collector.KindString, st.spanID)
	}
	if st.op != "" {
		e.Add(fTxType, collector.KindString, st.op)
	}
	n.status(e, st.status)
	if st.hasStart && st.hasTS {
		n.duration(e, st.ts.Sub(st.start), fTxDurationUS)
	}
	n.common(e, dsTransaction, st.release, st.environment)
	if st.spans1 <= st.spans0 {
		return nil
	}
	payload := n.s.data
	s := &n.s
	s.reset(payload[st.spans0:st.spans1], &n.b.Arena)
	c := spanCtx{txName: st.transaction, txID: st.spanID, traceID: st.traceID, release: st.release,
		environment: st.environment, sdkName: st.sdkName, sdkVersion: st.sdkVersion}
	spans := 0
	s.array()
	first := true
	for s.element(&first) {
		if err := n.span(&c); err != nil {
			n.truncate(mark)
			return err
		}
		spans++
	}
	if s.err != nil {
		n.truncate(mark)
		return s.err
	}
	n.b.Events[mark].Add(fTxSpanCount, collector.KindNumber, n.itoa(int64(spans)))
	return nil
}

func (n *normalizer) status(e *collector.Event, status string) {
	if status != "" {
		e.Add(fStatus, collector.KindString, status)
	}
	e.Add(fOutcome, collector.KindString, outcome(status))
}

// duration adds event.duration (nanoseconds, as ECS has it) and the same
// in microseconds under usKey (as Elastic APM has it).
func (n *normalizer) duration(e *collector.Event, d time.Duration, usKey string) {
	if d < 0 {
		return
	}
	e.Add(fDuration, collector.KindNumber, n.itoa(int64(d)))
	e.Add(usKey, collector.KindNumber, n.itoa(d.Microseconds()))
}

// spanCtx is what spans inherit from their transaction or envelope.
type spanCtx struct {
	txName, txID, traceID, release, environment, sdkName, sdkVersion string
}

// attrState collects the sentry.* attributes of logs and spans that map
// to fields of their own.
type attrState struct {
	release, environment, op, statusMessage, host, segment, segmentID, sdkName, sdkVersion, parentID string
	// log: the attributes are a log record's, whose server.address names
	// the host (a span's names the peer it served).
	log bool
}

// span reads one span, of a transaction (v1: description, timestamp, data)
// or of a span item (v2: name, end_timestamp, attributes), into a
// sentry.span event.
func (n *normalizer) span(c *spanCtx) error {
	s := &n.s
	if !s.object() {
		return nil
	}
	e, err := n.next()
	if err != nil {
		return err
	}
	var spanID, traceID, parentID, op, name, status string
	var start, end time.Time
	var hasStart, hasEnd bool
	var a attrState
	first := true
	for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
		switch string(k) {
		case "span_id":
			spanID, _ = s.str()
		case "trace_id":
			traceID, _ = s.str()
		case "parent_span_id":
			parentID, _ = s.str()
		case "op":
			op, _ = s.str()
		case "description", "name":
			name, _ = s.str()
		case "start_timestamp":
			start, hasStart = n.time()
		case "timestamp", "end_timestamp":
			end, hasEnd = n.time()
		case "status":
			status, _ = s.str()
		case "tags":
			n.tags(e)
		case "data":
			if s.peek() == '{' {
				if raw := s.raw(); len(raw) > 2 {
					e.Add(fSpanData, collector.KindRaw, raw)
				}
			} else {
				s.skip()
			}
		case "attributes":
			n.attributes(e, &a)
		default:
			s.skip()
		}
	}
	if s.err != nil {
		return s.err
	}
	if traceID == "" {
		traceID = c.traceID
	}
	if traceID == "" {
		traceID = n.env.traceID
	}
	if op == "" {
		op = a.op
	}
	if spanID != "" {
		e.Add(fSpanID, collector.KindString, spanID)
	}
	if traceID != "" {
		e.Add(fTraceID, collector.KindString, traceID)
	}
	if traceID != "" && spanID != "" {
		e.ID = n.b.Arena.Concat(traceID, "-", spanID)
	}
	if parentID != "" {
		e.Add(fParentID, collector.KindString, parentID)
	}
	if name != "" {
		e.Add(fSpanName, collector.KindString, name)
	}
	e.Add(collector.FieldMessage, collector.KindString, name)
	if op != "" {
		e.Add(fSpanType, collector.KindString, op)
	}
	txName, txID := c.txName, c.txID
	if txName == "" {
		txName = a.segment
	}
	if txID == "" {
		txID = a.segmentID
	}
	if txName != "" {
		e.Add(fTxName, collector.KindString, txName)
	}
	if txID != "" {
		e.Add(fTxID, collector.KindString, txID)
	}
	if status == "error" && a.statusMessage != "" {
		status = a.statusMessage
	}
	n.status(e, status)
	if hasStart && hasEnd {
		n.duration(e, end.Sub(start), fSpanDurationUS)
	}
	if a.host != "" {
		e.Add(collector.FieldHostName, collector.KindString, a.host)
	}
	e.Add(collector.FieldLevel, collector.KindString, "info")
	n.timestamp(e, start, hasStart)
	release, environment := a.release, a.environment
	if release == "" {
		release = c.release
	}
	if environment == "" {
		environment = c.environment
	}
	n.common(e, dsSpan, release, environment)
	sdkName, sdkVersion := a.sdkName, a.sdkVersion
	if sdkName == "" {
		sdkName, sdkVersion = c.sdkName, c.sdkVersion
	}
	n.sdk(e, sdkName, sdkVersion)
	return nil
}

// spanItem normalises a span item: a v2 container {"items": [...]} or, in
// the older form, one span.
func (n *normalizer) spanItem(payload []byte) error {
	if err := n.open(payload, "a span item"); err != nil {
		return err
	}
	s := &n.s
	mark := len(n.b.Events)
	// Look for "items" first; a span of the older form has none.
	probe := *s
	probe.object()
	container := false
	first := true
	for k, ok := probe.member(&first); ok; k, ok = probe.member(&first) {
		if string(k) == "items" {
			container = true
		}
		probe.skip()
	}
	if probe.err != nil {
		return probe.err
	}
	var c spanCtx
	if !container {
		if err := n.span(&c); err != nil {
			n.truncate(mark)
			return err
		}
		s.end()
	} else {
		s.object()
		if err := n.elements("items", func() error { return n.span(&c) }); err != nil {
			n.truncate(mark)
			return err
		}
		s.end()
	}
	if s.err != nil {
		n.truncate(mark)
		return s.err
	}
	return nil
}

// logItem normalises a log container: one sentry.log event per record.
func (n *normalizer) logItem(payload []byte) error {
	if err := n.open(payload, "a log item"); err != nil {
		return err
	}
	s := &n.s
	mark := len(n.b.Events)
	s.object()
	if err := n.elements("items", n.logRecord); err != nil {
		n.truncate(mark)
		return err
	}
	s.end()
	if s.err != nil {
		n.truncate(mark)
		return s.err
	}
	return nil
}

func (n *normalizer) logRecord() error {
	s := &n.s
	if !s.object() {
		return nil
	}
	e, err := n.next()
	if err != nil {
		return err
	}
	var ts time.Time
	var hasTS bool
	var traceID, spanID, level, body, severity string
	a := attrState{log: true}
	first := true
	for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
		switch string(k) {
		case "timestamp":
			ts, hasTS = n.time()
		case "trace_id":
			traceID, _ = s.str()
		case "span_id":
			spanID, _ = s.str()
		case "level":
			level, _ = s.str()
		case "severity_number":
			severity, _ = s.number()
		case "body":
			body, _ = s.str()
		case "attributes":
			n.attributes(e, &a)
		default:
			s.skip()
		}
	}
	if s.err != nil {
		return s.err
	}
	n.timestamp(e, ts, hasTS)
	if level == "" {
		level = "info"
	}
	e.Add(collector.FieldLevel, collector.KindString, level)
	e.Add(collector.FieldMessage, collector.KindString, body)
	if severity != "" {
		e.Add(fSeverity, collector.KindNumber, severity)
	}
	if traceID == "" {
		traceID = n.env.traceID
	}
	if traceID != "" {
		e.Add(fTraceID, collector.KindString, traceID)
	}
	if spanID == "" {
		spanID = a.parentID
	}
	if spanID != "" {
		e.Add(fSpanID, collector.KindString, spanID)
	}
	if a.host != "" {
		e.Add(collector.FieldHostName, collector.KindString, a.host)
	}
	if n.env.eventID != "" {
		var buf [24]byte
		e.ID = n.b.Arena.Concat(n.env.eventID, ":", string(strconv.AppendInt(buf[:0], int64(n.count), 10)))
	}
	n.common(e, dsLog, a.release, a.environment)
	n.sdk(e, a.sdkName, a.sdkVersion)
	return nil
}

// attributes reads {"name": {"value": v, "type": t}} (bare values too).
// Names with an ECS or event field of their own become that field; the
// rest are kept as one raw object, sentry.attributes.
func (n *normalizer) attributes(e *collector.Event, a *attrState) {
	s := &n.s
	if !s.object() {
		return
	}
	out := n.attrs[:0]
	first := true
	for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
		key := s.stableKey(k)
		var val, raw string
		isStr := false
		readValue := func() {
			if s.peek() == '"' {
				val, _ = s.str()
				isStr = true
			} else {
				raw = s.raw()
			}
		}
		if s.peek() == '{' {
			s.object()
			f := true
			for k, ok := s.member(&f); ok; k, ok = s.member(&f) {
				if string(k) == "value" {
					readValue()
				} else {
					s.skip()
				}
			}
		} else {
			readValue()
		}
		if s.err != nil {
			return
		}
		if isStr {
			if n.attribute(e, a, key, val) {
				continue
			}
		} else if key == "http.response.status_code" && raw != "" && raw[0] >= '0' && raw[0] <= '9' {
			e.Add(fStatusCode, collector.KindNumber, raw)
			continue
		} else if key == "sentry.sdk.integrations" || raw == "" || raw == "null" {
			continue
		}
		if len(out) == 0 {
			out = append(out, '{')
		} else {
			out = append(out, ',')
		}
		out = collector.AppendJSONString(out, key)
		out = append(out, ':')
		if isStr {
			out = collector.AppendJSONString(out, val)
		} else {
			out = append(out, raw...)
		}
	}
	if len(out) > 0 {
		out = append(out, '}')
		e.Add(fAttributes, collector.KindRaw, n.b.Arena.String(out))
	}
	n.attrs = out
}

// attribute maps a string attribute to a field of its own and reports
// whether it did.
func (n *normalizer) attribute(e *collector.Event, a *attrState, key, val string) bool {
	switch key {
	case "sentry.environment":
		a.environment = val
	case "sentry.release":
		a.release = val
	case "sentry.sdk.name":
		a.sdkName = val
	case "sentry.sdk.version":
		a.sdkVersion = val
	case "sentry.op":
		a.op = val
	case "sentry.status.message":
		a.statusMessage = val
	case "sentry.server.address":
		a.host = val
	case "server.address":
		if !a.log {
			return false
		}
		a.host = val
	case "sentry.segment.name":
		a.segment = val
	case "sentry.segment.id":
		a.segmentID = val
	case "sentry.trace.parent_span_id":
		a.parentID = val
	case "url.full", "url.path", "url.query", "url.scheme", "http.request.method", "user_agent.original":
		if val != "" {
			e.Add(key, collector.KindString, val)
		}
	case "user.id":
		e.Add(fUserID, collector.KindString, val)
	case "user.email":
		e.Add(fUserEmail, collector.KindString, val)
	case "user.name", "user.username":
		e.Add(fUserName, collector.KindString, val)
	case "user.ip_address":
		if val != "" && val != "{{auto}}" {
			e.Add(fSourceIP, collector.KindString, val)
		}
	default:
		return false
	}
	return true
}

// checkIn normalises a check-in into a sentry.check_in event.
func (n *normalizer) checkIn(payload []byte) error {
	if err := n.open(payload, "a check-in"); err != nil {
		return err
	}
	s := &n.s
	mark := len(n.b.Events)
	e, err := n.next()
	if err != nil {
		return err
	}
	var id, slug, status, release, environment, duration string
	var st eventState
	s.object()
	first := true
	for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
		switch string(k) {
		case "check_in_id":
			id, _ = s.str()
		case "monitor_slug":
			slug, _ = s.str()
		case "status":
			status, _ = s.str()
		case "duration":
			duration, _ = s.number()
		case "release":
			release, _ = s.str()
		case "environment":
			environment, _ = s.str()
		case "contexts":
			n.contexts(&st)
		default:
			s.skip()
		}
	}
	s.end()
	if s.err != nil {
		n.truncate(mark)
		return s.err
	}
	n.timestamp(e, time.Time{}, false)
	if id != "" {
		e.Add(fCheckInID, collector.KindString, id)
		var norm [32]byte
		if normalizeID(&norm, id) {
			// in_progress and the final status share the id: keep both
			e.ID = n.b.Arena.Concat(string(norm[:]), "-", status)
		}
	}
	if slug != "" {
		e.Add(fMonitorSlug, collector.KindString, slug)
	}
	if status != "" {
		e.Add(fCheckInStat, collector.KindString, status)
	}
	level, out := "info", "unknown"
	switch status {
	case "ok":
		out = "success"
	case "error", "timeout", "missed":
		level, out = "error", "failure"
	}
	e.Add(collector.FieldLevel, collector.KindString, level)
	e.Add(fOutcome, collector.KindString, out)
	e.Add(collector.FieldMessage, collector.KindString, n.b.Arena.Concat("check-in ", slug, " ", status))
	if duration != "" {
		if secs, err := strconv.ParseFloat(duration, 64); err == nil && secs >= 0 && secs < 1e9 {
			e.Add(fDuration, collector.KindNumber, n.itoa(int64(secs*1e9)))
		}
	}
	traceID := st.traceID
	if traceID == "" {
		traceID = n.env.traceID
	}
	if traceID != "" {
		e.Add(fTraceID, collector.KindString, traceID)
	}
	n.common(e, dsCheckIn, release, environment)
	n.sdk(e, "", "")
	return nil
}

// Session statuses counted in leitstand_sentry_sessions_total.
var sessionStatuses = [...]string{"ok", "exited", "errored", "crashed", "abnormal"}

const numSessionStatus = len(sessionStatuses)

// session counts a single session update by its status.
func (n *normalizer) session(payload []byte) error {
	if err := n.open(payload, "a session"); err != nil {
		return err
	}
	s := &n.s
	s.object()
	status := "ok"
	errs := ""
	first := true
	for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
		switch string(k) {
		case "status":
			status, _ = s.str()
		case "errors":
			errs, _ = s.number()
		default:
			s.skip()
		}
	}
	s.end()
	if s.err != nil {
		return s.err
	}
	if status == "ok" && errs != "" && errs != "0" {
		status = "errored"
	}
	for i, st := range sessionStatuses {
		if st == status {
			n.sessions[i]++
		}
	}
	return nil
}

// sessionAggregates counts {"aggregates": [{"exited": n, "errored": n, …}]}.
func (n *normalizer) sessionAggregates(payload []byte) error {
	if err := n.open(payload, "sessions"); err != nil {
		return err
	}
	s := &n.s
	s.object()
	_ = n.elements("aggregates", func() error {
		if !s.object() {
			return nil
		}
		g := true
		for k, ok := s.member(&g); ok; k, ok = s.member(&g) {
			idx := -1
			for i, st := range sessionStatuses {
				if string(k) == st {
					idx = i
				}
			}
			v, ok := s.number()
			if idx < 0 || !ok {
				continue
			}
			if c, err := strconv.Atoi(v); err == nil && c > 0 && c < 1e9 {
				n.sessions[idx] += c
			}
		}
		return nil
	})
	s.end()
	return errOrNil(s.err)
}

// clientReport collects what the SDK says it discarded.
func (n *normalizer) clientReport(payload []byte) error {
	if err := n.open(payload, "a client report"); err != nil {
		return err
	}
	s := &n.s
	s.object()
	first := true
	for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
		var implied string
		switch string(k) {
		case "discarded_events":
		case "rate_limited_events":
			implied = "ratelimit_backoff"
		case "filtered_events":
			implied = "event_processor"
		case "filtered_sampling_events":
			implied = "sample_rate"
		default:
			s.skip()
			continue
		}
		if !s.array() {
			continue
		}
		f := true
		for s.element(&f) {
			if !s.object() {
				continue
			}
			d := discard{reason: implied}
			g := true
			for k, ok := s.member(&g); ok; k, ok = s.member(&g) {
				switch string(k) {
				case "reason":
					d.reason, _ = s.str()
				case "category":
					d.category, _ = s.str()
				case "quantity":
					if v, ok := s.number(); ok {
						d.quantity, _ = strconv.Atoi(v)
					}
				default:
					s.skip()
				}
			}
			if d.quantity > 0 && d.quantity < 1e9 && len(n.discarded) < 100 {
				n.discarded = append(n.discarded, d)
			}
		}
	}
	s.end()
	return errOrNil(s.err)
}

// open starts reading an item's payload, which must be a JSON object; what
// names the item in the error ("a span item").
func (n *normalizer) open(payload []byte, what string) error {
	if err := checkJSON(payload); err != nil {
		return err
	}
	n.s.reset(payload, &n.b.Arena)
	if n.s.peek() != '{' {
		return errors.New(what + " must be a JSON object")
	}
	return nil
}

// elements calls each for every element of the array member name of the
// object just opened, and skips the other members (and name if it is not
// an array). It stops at the first error of each.
func (n *normalizer) elements(name string, each func() error) error {
	s := &n.s
	first := true
	for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
		if string(k) != name {
			s.skip()
			continue
		}
		if !s.array() {
			continue
		}
		f := true
		for s.element(&f) {
			if err := each(); err != nil {
				return err
			}
		}
	}
	return nil
}

// errOrNil keeps a nil *syntaxError from becoming a non-nil error.
func errOrNil(err *syntaxError) error {
	if err == nil {
		return nil
	}
	return err
}
