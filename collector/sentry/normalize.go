package sentry

import (
	"crypto/sha256"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/leitstand/leitstand/collector"
)

// ECS (and leitstand) field names the receiver writes. See the package
// documentation for the whole mapping.
const (
	fEventID        = "event.id"
	fDuration       = "event.duration"
	fOutcome        = "event.outcome"
	fErrType        = "error.type"
	fErrMessage     = "error.message"
	fErrStack       = "error.stack_trace"
	fErrGroup       = "error.grouping_key"
	fLogger         = "log.logger"
	fServiceVersion = "service.version"
	fServiceEnv     = "service.environment"
	fTraceID        = "trace.id"
	fSpanID         = "span.id"
	fParentID       = "parent.id"
	fSpanName       = "span.name"
	fSpanType       = "span.type"
	fSpanDurationUS = "span.duration.us"
	fTxName         = "transaction.name"
	fTxID           = "transaction.id"
	fTxType         = "transaction.type"
	fTxDurationUS   = "transaction.duration.us"
	fTxSpanCount    = "transaction.span_count"
	fUserID         = "user.id"
	fUserEmail      = "user.email"
	fUserName       = "user.name"
	fUserFullName   = "user.full_name"
	fUserSegment    = "user.segment"
	fUserGeo        = "user.geo"
	fUserData       = "user.data"
	fSourceIP       = "source.ip"
	fURLFull        = "url.full"
	fURLQuery       = "url.query"
	fMethod         = "http.request.method"
	fReqHeaders     = "http.request.headers"
	fReqCookies     = "http.request.cookies"
	fReqBody        = "http.request.body.content"
	fReqData        = "http.request.body.data"
	fReqEnv         = "http.request.env"
	fReferrer       = "http.request.referrer"
	fStatusCode     = "http.response.status_code"
	fUserAgent      = "user_agent.original"

	fProject     = "sentry.project"
	fPlatform    = "sentry.platform"
	fSDKName     = "sentry.sdk.name"
	fSDKVersion  = "sentry.sdk.version"
	fDist        = "sentry.dist"
	fStatus      = "sentry.status"
	fException   = "sentry.exception"
	fBreadcrumbs = "sentry.breadcrumbs"
	fContexts    = "sentry.contexts"
	fExtra       = "sentry.extra"
	fFingerprint = "sentry.fingerprint"
	fMeasure     = "sentry.measurements"
	fSpanData    = "sentry.span.data"
	fAttributes  = "sentry.attributes"
	fSeverity    = "sentry.severity_number"
	fMonitorSlug = "sentry.monitor.slug"
	fCheckInID   = "sentry.check_in.id"
	fCheckInStat = "sentry.check_in.status"
)

// Datasets.
const (
	dsError       = "sentry.error"
	dsMessage     = "sentry.message"
	dsLog         = "sentry.log"
	dsTransaction = "sentry.transaction"
	dsSpan        = "sentry.span"
	dsCheckIn     = "sentry.check_in"
)

// Limits inside one event, so a hostile payload cannot make an event of
// unbounded width.
const (
	maxLabels     = 200
	maxLabelKey   = 200
	maxExceptions = 32
	maxFrames     = 1000
	maxStackBytes = 64 << 10
	maxShownFrame = 200 // frames of one exception shown in error.stack_trace
)

// errTooManyItems ends normalisation when an envelope holds more events than
// max_items.
var errTooManyItems = errors.New("too many items")

// project is a configured project, resolved for the hot path.
type project struct {
	id        uint64
	idStr     string
	service   string
	tenant    string
	origins   map[string]bool
	anyOrigin bool
}

// exc is one exception value; frames are n.frames[f0:f1].
type exc struct {
	typ, value string
	synthetic  bool
	f0, f1     int
}

// frame is what error.stack_trace and the grouping key need of a frame.
type frame struct {
	function, module, filename, absPath, lineno, colno string
	inApp                                              bool
}

// eventState collects the members whose fields depend on each other, until
// the whole event is read.
type eventState struct {
	eventID, level, platform, logger, release, environment, dist  string
	serverName, transaction, typ, sdkName, sdkVersion             string
	message, template                                             string
	ts, start                                                     time.Time
	hasTS, hasStart                                               bool
	exception, breadcrumbs, contexts, extra, fingerprint, measure string
	traceID, spanID, parentID, op, status, httpStatus             string
	spans0, spans1                                                int // offsets of the spans array, 0 when absent
}

// normalizer turns the items of one request into events of one batch. It
// is reused (pooled) and is not safe for concurrent use.
type normalizer struct {
	s        scanner
	b        *collector.Batch
	p        *project
	env      *envelopeHeader
	maxItems int
	count    int // events and items so far, against maxItems

	items   []item
	dropped []bool
	frames  []frame
	excs    []exc
	scratch []byte
	attrs   []byte
	idBuf   [32]byte

	// firstID is the first event id, for the response.
	firstID string
	// sessions counts session updates by status; discarded the client
	// reports' discarded events.
	sessions  [numSessionStatus]int
	discarded []discard
}

// discard is one entry of a client report.
type discard struct {
	category, reason string
	quantity         int
}

func (n *normalizer) reset(b *collector.Batch, p *project, env *envelopeHeader, maxItems int) {
	n.b, n.p, n.env, n.maxItems, n.count = b, p, env, maxItems, 0
	n.firstID = ""
	n.sessions = [numSessionStatus]int{}
	n.discarded = n.discarded[:0]
}

// next adds an event to the batch, counting it against max_items.
func (n *normalizer) next() (*collector.Event, error) {
	n.count++
	if n.count > n.maxItems {
		return nil, errTooManyItems
	}
	return n.b.Next(), nil
}

// truncate removes the events added since len(b.Events) was mark, after
// an item failed.
func (n *normalizer) truncate(mark int) {
	for len(n.b.Events) > mark {
		n.b.Drop()
	}
}

// checkJSON runs the checks every JSON payload needs before scanning.
func checkJSON(p []byte) error {
	if !utf8.Valid(p) {
		return errors.New("the payload is not valid UTF-8")
	}
	return nil
}

// common adds the fields every event of the project has.
func (n *normalizer) common(e *collector.Event, dataset, release, environment string) {
	e.Add(collector.FieldDataset, collector.KindString, dataset)
	e.Add(collector.FieldReceiver, collector.KindString, "sentry")
	e.Add(fProject, collector.KindString, n.p.idStr)
	e.Add(collector.FieldService, collector.KindString, n.p.service)
	if n.p.tenant != "" {
		e.Add(collector.FieldTenant, collector.KindString, n.p.tenant)
	}
	if release == "" {
		release = n.env.release
	}
	if release != "" {
		e.Add(fServiceVersion, collector.KindString, release)
	}
	if environment == "" {
		environment = n.env.environment
	}
	if environment != "" {
		e.Add(fServiceEnv, collector.KindString, environment)
	}
}

func (n *normalizer) sdk(e *collector.Event, name, version string) {
	if name == "" {
		name, version = n.env.sdkName, n.env.sdkVer
	}
	if name != "" {
		e.Add(fSDKName, collector.KindString, name)
	}
	if version != "" {
		e.Add(fSDKVersion, collector.KindString, version)
	}
}

// timestamp sets e.Timestamp, falling back to the time of receipt for a
// missing time and for one more than an hour ahead (a client clock that is
// wrong would put the event where no one looks).
func (n *normalizer) timestamp(e *collector.Event, t time.Time, ok bool) {
	if !ok || t.After(n.b.Received.Add(time.Hour)) {
		t = n.b.Received
	}
	e.Timestamp = t
}

// eventID returns the item's id in normal form, or the envelope's, or a new
// one; an id that is present but malformed is an error.
func (n *normalizer) eventID(id string) (string, error) {
	if id == "" {
		id = n.env.eventID
	}
	switch {
	case id == "":
		newEventID(&n.idBuf)
		return n.b.Arena.String(n.idBuf[:]), nil
	case isLowerHex32(id):
		return id, nil
	case normalizeID(&n.idBuf, id):
		return n.b.Arena.String(n.idBuf[:]), nil
	}
	return "", errors.New(`"event_id" must be 32 hex digits or a UUID`)
}

// time reads a timestamp member, a string or a number.
func (n *normalizer) time() (time.Time, bool) {
	s := &n.s
	switch c := s.peek(); {
	case c == '"':
		v, _ := s.str()
		return parseTime(v, false)
	case c == '-' || c >= '0' && c <= '9':
		v, _ := s.number()
		return parseTime(v, true)
	}
	s.skip()
	return time.Time{}, false
}

// event normalises an event or transaction item (or a /store/ body).
func (n *normalizer) event(payload []byte, transaction bool) error {
	if err := n.open(payload, "an event"); err != nil {
		return err
	}
	s := &n.s
	mark := len(n.b.Events)
	e, err := n.next()
	if err != nil {
		return err
	}
	n.frames, n.excs = n.frames[:0], n.excs[:0]
	var st eventState
	s.object()
	first := true
	for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
		switch string(k) {
		case "event_id":
			st.eventID, _ = s.str()
		case "timestamp":
			st.ts, st.hasTS = n.time()
		case "start_timestamp":
			st.start, st.hasStart = n.time()
		case "level":
			st.level, _ = s.str()
		case "platform":
			st.platform, _ = s.str()
		case "logger":
			st.logger, _ = s.str()
		case "release":
			st.release, _ = s.str()
		case "environment":
			st.environment, _ = s.str()
		case "dist":
			st.dist, _ = s.str()
		case "server_name":
			st.serverName, _ = s.str()
		case "transaction":
			st.transaction, _ = s.str()
		case "type":
			st.typ, _ = s.str()
		case "message":
			n.message(&st)
		case "logentry":
			n.logentry(&st)
		case "exception":
			n.exception(&st)
		case "breadcrumbs":
			st.breadcrumbs = n.valuesArray()
		case "contexts":
			n.contexts(&st)
		case "extra":
			if s.peek() == '{' {
				st.extra = s.raw()
			} else {
				s.skip()
			}
		case "tags":
			n.tags(e)
		case "user":
			n.user(e)
		case "request":
			n.request(e)
		case "fingerprint":
			if s.peek() == '[' {
				st.fingerprint = s.raw()
			} else {
				s.skip()
			}
		case "spans":
			if s.peek() == '[' {
				st.spans0 = s.pos
				s.skip()
				st.spans1 = s.pos
			} else {
				s.skip()
			}
		case "measurements":
			if s.peek() == '{' {
				st.measure = s.raw()
			} else {
				s.skip()
			}
		case "sdk":
			st.sdkName, st.sdkVersion = n.sdkInfo()
		default:
			s.skip()
		}
	}
	s.end()
	if s.err != nil {
		n.truncate(mark)
		return s.err
	}
	id, err := n.eventID(st.eventID)
	if err != nil {
		n.truncate(mark)
		return err
	}
	e.ID = id
	if n.firstID == "" {
		n.firstID = id
	}
	e.Add(fEventID, collector.KindString, id)
	n.sdk(e, st.sdkName, st.sdkVersion)
	if st.platform != "" {
		e.Add(fPlatform, collector.KindString, st.platform)
	}
	if st.serverName != "" {
		e.Add(collector.FieldHostName, collector.KindString, st.serverName)
	}
	if st.dist != "" {
		e.Add(fDist, collector.KindString, st.dist)
	}
	if st.logger != "" {
		e.Add(fLogger, collector.KindString, st.logger)
	}
	if st.traceID != "" {
		e.Add(fTraceID, collector.KindString, st.traceID)
	}
	if st.spanID != "" {
		e.Add(fSpanID, collector.KindString, st.spanID)
	}
	if st.parentID != "" {
		e.Add(fParentID, collector.KindString, st.parentID)
	}
	if st.httpStatus != "" {
		e.Add(fStatusCode, collector.KindNumber, st.httpStatus)
	}
	if len(st.contexts) > 2 {
		e.Add(fContexts, collector.KindRaw, st.contexts)
	}
	if len(st.breadcrumbs) > 2 {
		e.Add(fBreadcrumbs, collector.KindRaw, st.breadcrumbs)
	}
	if len(st.extra) > 2 {
		e.Add(fExtra, collector.KindRaw, st.extra)
	}
	if len(st.fingerprint) > 2 {
		e.Add(fFingerprint, collector.KindRaw, st.fingerprint)
	}
	if len(st.measure) > 2 {
		e.Add(fMeasure, collector.KindRaw, st.measure)
	}
	if transaction || st.typ == "transaction" {
		return n.finishTransaction(mark, &st)
	}
	n.timestamp(e, st.ts, st.hasTS)
	level := st.level
	if level == "" {
		level = "error"
	}
	e.Add(collector.FieldLevel, collector.KindString, level)
	if st.transaction != "" {
		e.Add(fTxName, collector.KindString, st.transaction)
	}
	if len(st.exception) > 2 {
		e.Add(fException, collector.KindRaw, st.exception)
	}
	main := n.mainException()
	dataset := dsMessage
	if main != nil {
		dataset = dsError
		if main.typ != "" {
			e.Add(fErrType, collector.KindString, main.typ)
		}
		if main.value != "" {
			e.Add(fErrMessage, collector.KindString, main.value)
		}
		if trace := n.stackTrace(st.platform); trace != "" {
			e.Add(fErrStack, collector.KindString, trace)
		}
		e.Add(collector.FieldMessage, collector.KindString, n.title(main, st.message))
	} else {
		msg := st.message
		if msg == "" && len(n.excs) > 0 {
			msg = n.excs[len(n.excs)-1].value
		}
		e.Add(collector.FieldMessage, collector.KindString, msg)
	}
	if key := n.groupingKey(main, &st); key != "" {
		e.Add(fErrGroup, collector.KindString, key)
	}
	n.common(e, dataset, st.release, st.environment)
	return nil
}

// mainException is the exception an error event is about: the last of the
// chain (Sentry lists causes first). A synthetic one (captureMessage with
// a stack) makes no error.
func (n *normalizer) mainException() *exc {
	for i := len(n.excs) - 1; i >= 0; i-- {
		ex := &n.excs[i]
		if ex.synthetic {
			continue
		}
		if ex.typ != "" || ex.value != "" {
			return ex
		}
	}
	return nil
}

// title is the message of an error event: "Type: value", as Sentry shows it.
func (n *normalizer) title(ex *exc, message string) string {
	switch {
	case ex.typ != "" && ex.value != "":
		return n.b.Arena.Concat(ex.typ, ": ", ex.value)
	case ex.typ != "":
		return ex.typ
	case ex.value != "":
		return ex.value
	}
	return message
}

// message reads "message": a string, or an object like logentry.
func (n *normalizer) message(st *eventState) {
	if n.s.peek() == '"' {
		m, _ := n.s.str()
		if st.message == "" {
			st.message = m
		}
		return
	}
	n.logentry(st)
}

// logentry reads {"formatted":…, "message":…, "params":…}.
func (n *normalizer) logentry(st *eventState) {
	s := &n.s
	if !s.object() {
		return
	}
	var formatted, template string
	first := true
	for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
		switch string(k) {
		case "formatted":
			formatted, _ = s.str()
		case "message":
			template, _ = s.str()
		default:
			s.skip()
		}
	}
	if formatted == "" {
		formatted = template
	}
	if formatted != "" {
		st.message = formatted
	}
	if template != "" {
		st.template = template
	}
}

// sdkInfo reads {"name":…, "version":…} and skips the integration lists.
func (n *normalizer) sdkInfo() (name, version string) {
	s := &n.s
	if !s.object() {
		return "", ""
	}
	first := true
	for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
		switch string(k) {
		case "name":
			name, _ = s.str()
		case "version":
			version, _ = s.str()
		default:
			s.skip()
		}
	}
	return name, version
}

// valuesArray reads a list that SDKs send bare or as {"values": [...]}
// (breadcrumbs) and returns the array's text.
func (n *normalizer) valuesArray() string {
	s := &n.s
	switch s.peek() {
	case '[':
		return s.raw()
	case '{':
		s.object()
		var out string
		first := true
		for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
			if string(k) == "values" && s.peek() == '[' {
				out = s.raw()
			} else {
				s.skip()
			}
		}
		return out
	}
	s.skip()
	return ""
}

// exception reads {"values": [...]} or the bare list sentry-go sends.
func (n *normalizer) exception(st *eventState) {
	s := &n.s
	switch s.peek() {
	case '[':
		st.exception = n.exceptionValues()
	case '{':
		s.object()
		first := true
		for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
			if string(k) == "values" {
				st.exception = n.exceptionValues()
			} else {
				s.skip()
			}
		}
	default:
		s.skip()
	}
}

func (n *normalizer) exceptionValues() string {
	s := &n.s
	start, spaces := s.mark()
	if !s.array() {
		return ""
	}
	first := true
	for s.element(&first) {
		if !s.object() {
			continue
		}
		ex := exc{f0: len(n.frames)}
		f := true
		for k, ok := s.member(&f); ok; k, ok = s.member(&f) {
			switch string(k) {
			case "type":
				ex.typ, _ = s.str()
			case "value":
				ex.value, _ = s.str()
			case "mechanism":
				if s.object() {
					g := true
					for k, ok := s.member(&g); ok; k, ok = s.member(&g) {
						if string(k) == "synthetic" {
							ex.synthetic, _ = s.boolean()
						} else {
							s.skip()
						}
					}
				}
			case "stacktrace":
				n.stacktrace()
			default:
				s.skip()
			}
		}
		ex.f1 = len(n.frames)
		if len(n.excs) < maxExceptions {
			n.excs = append(n.excs, ex)
		}
	}
	return s.since(start, spaces)
}

func (n *normalizer) stacktrace() {
	s := &n.s
	if !s.object() {
		return
	}
	first := true
	for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
		if string(k) != "frames" || !s.array() {
			if string(k) != "frames" {
				s.skip()
			}
			continue
		}
		f := true
		for s.element(&f) {
			if !s.object() {
				continue
			}
			var fr frame
			g := true
			for k, ok := s.member(&g); ok; k, ok = s.member(&g) {
				switch string(k) {
				case "function":
					fr.function, _ = s.str()
				case "module":
					fr.module, _ = s.str()
				case "filename":
					fr.filename, _ = s.str()
				case "abs_path":
					fr.absPath, _ = s.str()
				case "lineno":
					fr.lineno, _ = s.number()
				case "colno":
					fr.colno, _ = s.number()
				case "in_app":
					fr.inApp, _ = s.boolean()
				default:
					s.skip()
				}
			}
			if len(n.frames) < maxFrames {
				n.frames = append(n.frames, fr)
			}
		}
	}
}

// stackTrace formats the exceptions as text, the newest first and each
// with its innermost frame first, the way Java and JavaScript print them:
//
//	ValueError: failed to charge card
//	    at __main__.charge (/srv/shop/probe.py:24)
//	    at __main__.<module> (/srv/shop/probe.py:28)
//	Caused by: KeyError: 'card'
func (n *normalizer) stackTrace(platform string) string {
	js := platform == "javascript" || platform == "node"
	out := n.scratch[:0]
	for i := len(n.excs) - 1; i >= 0; i-- {
		ex := &n.excs[i]
		if ex.synthetic {
			continue
		}
		if len(out) > 0 {
			out = append(out, "\nCaused by: "...)
		}
		switch {
		case ex.typ != "" && ex.value != "":
			out = append(append(append(out, ex.typ...), ": "...), ex.value...)
		case ex.typ != "":
			out = append(out, ex.typ...)
		default:
			out = append(out, ex.value...)
		}
		shown := 0
		for j := ex.f1 - 1; j >= ex.f0; j-- {
			if shown == maxShownFrame || len(out) > maxStackBytes {
				out = append(out, "\n    ..."...)
				break
			}
			shown++
			fr := &n.frames[j]
			out = append(out, "\n    at "...)
			if fr.module != "" && !js {
				out = append(append(out, fr.module...), '.')
			}
			if fr.function != "" {
				out = append(out, fr.function...)
			} else {
				out = append(out, '?')
			}
			loc := fr.absPath
			if loc == "" {
				loc = fr.filename
			}
			if loc != "" || fr.lineno != "" {
				out = append(append(out, " ("...), loc...)
				if fr.lineno != "" {
					out = append(append(out, ':'), fr.lineno...)
					if fr.colno != "" {
						out = append(append(out, ':'), fr.colno...)
					}
				}
				out = append(out, ')')
			}
		}
	}
	n.scratch = out
	return n.b.Arena.String(out)
}

// groupingKey is what tells one kind of error from another, as Sentry's
// issues do: the SDK's fingerprint when it sent one ("{{ default }}" in it
// stands for the default key), otherwise the exception types with the
// module and function of their in-app frames (all frames when none is in
// app), otherwise the message template. It is 32 hex digits of a SHA-256.
func (n *normalizer) groupingKey(main *exc, st *eventState) string {
	out := n.scratch[:0]
	custom := false
	if st.fingerprint != "" {
		s := &n.s
		s.reset(unsafe.Slice(unsafe.StringData(st.fingerprint), len(st.fingerprint)), &n.b.Arena)
		s.array()
		out = append(out, "fingerprint"...)
		first := true
		for s.element(&first) {
			v, ok := s.str()
			if !ok {
				continue
			}
			out = append(out, 0)
			if v == "{{ default }}" || v == "{{default}}" {
				out = n.defaultGrouping(out, main, st)
			} else {
				out = append(out, v...)
				custom = true
			}
		}
		if s.err != nil {
			return ""
		}
	}
	if !custom {
		// no fingerprint, or only "{{ default }}": the default key
		out = n.defaultGrouping(out[:0], main, st)
		if len(out) == 0 {
			return ""
		}
	}
	n.scratch = out
	sum := sha256.Sum256(out)
	var hexd [32]byte
	const digits = "0123456789abcdef"
	for i, v := range sum[:16] {
		hexd[2*i], hexd[2*i+1] = digits[v>>4], digits[v&0xf]
	}
	return n.b.Arena.String(hexd[:])
}

func (n *normalizer) defaultGrouping(out []byte, main *exc, st *eventState) []byte {
	if main == nil {
		m := st.template
		if m == "" {
			m = st.message
		}
		if m == "" {
			return out
		}
		return parameterize(append(out, "message\x00"...), m)
	}
	inApp := false
	for i := range n.frames {
		if n.frames[i].inApp {
			inApp = true
			break
		}
	}
	out = append(out, "exception"...)
	for i := range n.excs {
		ex := &n.excs[i]
		if ex.synthetic {
			continue
		}
		out = append(append(out, 0), ex.typ...)
		frames := 0
		for j := ex.f0; j < ex.f1; j++ {
			fr := &n.frames[j]
			if inApp && !fr.inApp {
				continue
			}
			frames++
			module := fr.module
			if module == "" {
				module = fr.filename
			}
			out = append(append(append(append(out, 0), module...), '|'), fr.function...)
		}
		if frames == 0 && ex.typ == "" {
			// no type and no stack: the value is all there is
			out = parameterize(append(out, 0), ex.value)
		}
	}
	return out
}

// parameterize appends a message for grouping with every word that holds
// a digit or an '@' replaced by '*', as Sentry parameterizes messages: ids,
// numbers, addresses and e-mails vary between occurrences of one kind of
// message, and the key, an unkeyed hash, must not be a hash of personal
// data that a dictionary could confirm.
func parameterize(out []byte, m string) []byte {
	for i := 0; i < len(m); {
		j := i
		for j < len(m) && !isWordBreak(m[j]) {
			j++
		}
		if j == i {
			out = append(out, m[i])
			i++
			continue
		}
		word := m[i:j]
		vary := false
		for k := 0; k < len(word); k++ {
			if c := word[k]; c >= '0' && c <= '9' || c == '@' {
				vary = true
				break
			}
		}
		if vary {
			out = append(out, '*')
		} else {
			out = append(out, word...)
		}
		i = j
	}
	return out
}

// isWordBreak: the characters that end a word for parameterize; '.', ':',
// '-', '@' and '%' stay inside words so that addresses and ids are whole.
func isWordBreak(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', ',', ';', '(', ')', '[', ']', '{', '}', '"', '\'', '<', '>', '=', '/', '&', '?':
		return true
	}
	return false
}

// contexts keeps the contexts raw and picks the trace ids and the
// response status from them.
func (n *normalizer) contexts(st *eventState) {
	s := &n.s
	start, spaces := s.mark()
	if !s.object() {
		return
	}
	first := true
	for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
		switch string(k) {
		case "trace":
			if !s.object() {
				continue
			}
			f := true
			for k, ok := s.member(&f); ok; k, ok = s.member(&f) {
				switch string(k) {
				case "trace_id":
					st.traceID, _ = s.str()
				case "span_id":
					st.spanID, _ = s.str()
				case "parent_span_id":
					st.parentID, _ = s.str()
				case "op":
					st.op, _ = s.str()
				case "status":
					st.status, _ = s.str()
				default:
					s.skip()
				}
			}
		case "response":
			if !s.object() {
				continue
			}
			f := true
			for k, ok := s.member(&f); ok; k, ok = s.member(&f) {
				if string(k) == "status_code" {
					st.httpStatus, _ = s.number()
				} else {
					s.skip()
				}
			}
		default:
			s.skip()
		}
	}
	st.contexts = s.since(start, spaces)
}

// tags become labels.*, from {"k":"v"} or [["k","v"]].
func (n *normalizer) tags(e *collector.Event) {
	s := &n.s
	labels := 0
	switch s.peek() {
	case '{':
		s.object()
		first := true
		for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
			key := s.stableKey(k)
			if v, ok := s.str(); ok && labels < maxLabels {
				if n.label(e, key, v) {
					labels++
				}
			}
		}
	case '[':
		s.array()
		first := true
		for s.element(&first) {
			if k, v, ok := n.pair(); ok && labels < maxLabels {
				if n.label(e, k, v) {
					labels++
				}
			}
		}
	default:
		s.skip()
	}
}

// label adds labels.<key>; ECS label names have no dots, so dots (and
// control characters) become '_'.
func (n *normalizer) label(e *collector.Event, key, value string) bool {
	if key == "" || len(key) > maxLabelKey {
		return false
	}
	a := &n.b.Arena
	buf := append(a.Builder(len("labels.")+len(key)), "labels."...)
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == '.' || c < 0x20 {
			c = '_'
		}
		buf = append(buf, c)
	}
	e.Add(a.Commit(buf), collector.KindString, value)
	return true
}

// pair reads a two-element list such as ["key", "value"].
func (n *normalizer) pair() (string, string, bool) {
	s := &n.s
	if !s.array() {
		return "", "", false
	}
	var k, v string
	var kok, vok bool
	i := 0
	first := true
	for s.element(&first) {
		switch i {
		case 0:
			k, kok = s.str()
		case 1:
			v, vok = s.str()
		default:
			s.skip()
		}
		i++
	}
	return k, v, kok && vok && s.err == nil
}

// user maps Sentry's user to ECS user.* and source.ip; the anonymizer's
// built-in rules hash all of user.* (pseudonyms) and the ip detector
// truncates source.ip.
func (n *normalizer) user(e *collector.Event) {
	s := &n.s
	if !s.object() {
		return
	}
	first := true
	for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
		var key string
		switch string(k) {
		case "id":
			key = fUserID
		case "email":
			key = fUserEmail
		case "username":
			key = fUserName
		case "name":
			key = fUserFullName
		case "segment":
			key = fUserSegment
		case "ip_address":
			if v, ok := s.str(); ok && v != "" && v != "{{auto}}" {
				e.Add(fSourceIP, collector.KindString, v)
			}
			continue
		case "geo", "data":
			if s.peek() == '{' {
				key := fUserGeo
				if string(k) == "data" {
					key = fUserData
				}
				if raw := s.raw(); len(raw) > 2 {
					e.Add(key, collector.KindRaw, raw)
				}
			} else {
				s.skip()
			}
			continue
		default:
			s.skip()
			continue
		}
		if v, ok := s.str(); ok && v != "" {
			e.Add(key, collector.KindString, v)
		}
	}
}

// request maps the HTTP request of an event.
func (n *normalizer) request(e *collector.Event) {
	s := &n.s
	if !s.object() {
		return
	}
	var url, query string
	first := true
	for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
		switch string(k) {
		case "url":
			url, _ = s.str()
		case "method":
			if v, ok := s.str(); ok && v != "" {
				e.Add(fMethod, collector.KindString, v)
			}
		case "query_string":
			query = n.queryString()
		case "data":
			n.stringOrRaw(e, fReqBody, fReqData)
		case "cookies":
			// A string, as in the Cookie header, whatever form the SDK
			// used, so that the field has one type in an index.
			if c := n.cookies(); c != "" {
				e.Add(fReqCookies, collector.KindString, c)
			}
		case "headers":
			n.headers(e)
		case "env":
			if s.peek() == '{' {
				if raw := s.raw(); len(raw) > 2 {
					e.Add(fReqEnv, collector.KindRaw, raw)
				}
			} else {
				s.skip()
			}
		default:
			s.skip()
		}
	}
	if len(query) > 0 && query[0] == '?' {
		query = query[1:]
	}
	if query != "" {
		e.Add(fURLQuery, collector.KindString, query)
	}
	if url != "" {
		if query != "" && !containsByte(url, '?') {
			url = n.b.Arena.Concat(url, "?", query)
		}
		e.Add(fURLFull, collector.KindString, url)
	}
}

func containsByte(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}

// stringOrRaw adds a string value under skey and an object or array under
// rkey.
func (n *normalizer) stringOrRaw(e *collector.Event, skey, rkey string) {
	s := &n.s
	switch s.peek() {
	case '"':
		if v, _ := s.str(); v != "" {
			e.Add(skey, collector.KindString, v)
		}
	case '{', '[':
		if raw := s.raw(); len(raw) > 2 {
			e.Add(rkey, collector.KindRaw, raw)
		}
	default:
		s.skip()
	}
}

// cookies reads cookies as text ("a=1; b=2"), from text, pairs or an
// object.
func (n *normalizer) cookies() string { return n.pairsText("; ") }

// queryString reads a query as text, or as pairs or an object, which it
// joins into text.
func (n *normalizer) queryString() string { return n.pairsText("&") }

// pairsText reads text as it is, or pairs ([["k","v"], …]) or an object of
// strings, which it joins as k=v with sep between.
func (n *normalizer) pairsText(sep string) string {
	s := &n.s
	switch s.peek() {
	case '"':
		v, _ := s.str()
		return v
	case '[', '{':
	default:
		s.skip()
		return ""
	}
	out := n.scratch[:0]
	add := func(k, v string) {
		if len(out) > 0 {
			out = append(out, sep...)
		}
		out = append(append(append(out, k...), '='), v...)
	}
	if s.peek() == '[' {
		s.array()
		first := true
		for s.element(&first) {
			if k, v, ok := n.pair(); ok {
				add(k, v)
			}
		}
	} else {
		s.object()
		first := true
		for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
			key := s.stableKey(k)
			if v, ok := s.str(); ok {
				add(key, v)
			}
		}
	}
	n.scratch = out
	return n.b.Arena.String(out)
}

// headers keeps the request headers raw and picks User-Agent and Referer.
func (n *normalizer) headers(e *collector.Event) {
	s := &n.s
	start, spaces := s.mark()
	var ua, ref string
	pick := func(k, v string) {
		switch {
		case equalFold(k, "user-agent"):
			ua = v
		case equalFold(k, "referer"):
			ref = v
		}
	}
	switch s.peek() {
	case '{':
		s.object()
		first := true
		for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
			key := s.stableKey(k)
			if v, ok := s.str(); ok {
				pick(key, v)
			}
		}
	case '[':
		s.array()
		first := true
		for s.element(&first) {
			if k, v, ok := n.pair(); ok {
				pick(k, v)
			}
		}
	default:
		s.skip()
		return
	}
	if raw := s.since(start, spaces); len(raw) > 2 {
		e.Add(fReqHeaders, collector.KindRaw, raw)
	}
	if ua != "" {
		e.Add(fUserAgent, collector.KindString, ua)
	}
	if ref != "" {
		e.Add(fReferrer, collector.KindString, ref)
	}
}

// equalFold compares ASCII case-insensitively; lower must be lower case.
func equalFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// appendInt appends v to the arena as text.
func (n *normalizer) itoa(v int64) string {
	var buf [20]byte
	return n.b.Arena.String(strconv.AppendInt(buf[:0], v, 10))
}

// outcome maps a Sentry span status to event.outcome.
func outcome(status string) string {
	switch status {
	case "ok":
		return "success"
	case "", "unknown", "unset", "in_progress":
		return "unknown"
	}
	return "failure"
}
