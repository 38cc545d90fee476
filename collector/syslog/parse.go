package syslog

import (
	"bytes"
	"errors"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/leitstand/leitstand/collector"
	gosyslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/ciscoios"
	"github.com/leodido/go-syslog/v4/rfc3164"
	"github.com/leodido/go-syslog/v4/rfc5424"
)

// message is one parsed syslog message. Its strings point into the frame
// (fast path), into go-syslog's result (heap strings) or into the batch's
// arena (structured data as JSON).
type message struct {
	pri     int // 0-191; -1 when the message has none
	version int // RFC 5424 VERSION; 0 for RFC 3164
	ts      time.Time
	hasTS   bool
	host    string
	app     string
	procid  string
	msgid   string
	sd      string // structured data as a JSON object, "" when absent
	msg     string
	hasMsg  bool
	err     error // set when the frame did not parse; the fields may hold what best effort recovered
}

// parser turns frames into messages. It is not safe for concurrent use:
// every connection and datagram reader has its own. The go-syslog machines
// are made on first use, so the thousands of connections that only ever
// send RFC 5424 do not carry them.
type parser struct {
	loc  *time.Location
	year int // 0: from the clock
	// noFast sends every frame through go-syslog (a benchmark's baseline).
	noFast bool

	m5424, m5424BE         gosyslog.Machine
	m3164, mCisco, m3164BE gosyslog.Machine

	scratch []byte // unescaped SD values, rewritten RFC 3164 headers
}

func newParser(c RFC3164Config) *parser {
	loc, err := c.location()
	if err != nil {
		loc = time.Local // Validate has already refused it
	}
	return &parser{loc: loc, year: c.Year}
}

// errNotSyslog stands in for go-syslog's nil error when a machine returns
// neither a message nor an error.
var errNotSyslog = errors.New("not a syslog message: expecting <PRI> followed by an RFC 5424 or RFC 3164 header")

// parse parses frame into m. now is the time of receipt, for RFC 3164 years.
func (p *parser) parse(frame []byte, arena *collector.Arena, now time.Time, m *message) {
	*m = message{pri: -1}
	if !p.noFast && parse5424(frame, arena, &p.scratch, m) {
		return
	}
	*m = message{pri: -1}
	p.slow(frame, arena, now, m)
}

// looks5424 tells an RFC 5424 header ("<PRI>VERSION SP") from the rest, as
// go-syslog's auto-detection does: one to three digits and a space after
// the PRI.
func looks5424(b []byte) bool {
	i := 1
	for i < len(b) && i < 5 && isDigit(b[i]) {
		i++
	}
	if i >= len(b) || b[i] != '>' || i == 1 {
		return false
	}
	i++
	j := i
	for j < len(b) && isDigit(b[j]) {
		j++
	}
	return j > i && j-i <= 3 && b[i] != '0' && j < len(b) && b[j] == ' '
}

// slow runs go-syslog: the strict parser for the format the header
// suggests, then the other one, and when both fail the suggested format in
// best-effort mode, which recovers what it can of a broken message (the
// error reported is the strict parser's: it says what is wrong).
func (p *parser) slow(frame []byte, arena *collector.Arena, now time.Time, m *message) {
	primary, secondary := p.parse3164, p.parse5424Strict
	be := p.rfc3164BE
	if len(frame) > 0 && frame[0] == '<' && looks5424(frame) {
		primary, secondary = secondary, primary
		be = p.rfc5424BE
	}
	msg, err := primary(frame)
	if msg != nil {
		p.fill(msg, arena, now, m)
		fixTagWithoutColon(frame, m)
		m.err = err
		return
	}
	if err == nil {
		err = errNotSyslog
	}
	if msg, err2 := secondary(frame); msg != nil {
		p.fill(msg, arena, now, m)
		fixTagWithoutColon(frame, m)
		m.err = err2
		return
	}
	if msg, _ := be().Parse(frame); msg != nil {
		p.fill(msg, arena, now, m)
	}
	m.err = err
}

// fixTagWithoutColon repairs go-syslog's reading of an RFC 3164 TAG with a
// PID but no colon ("app[42] text", which rsyslog's forward formats send
// for messages that arrived as RFC 5424): go-syslog starts the message
// inside the brackets ("42] text").
func fixTagWithoutColon(frame []byte, m *message) {
	if m.version != 0 || m.procid == "" || len(m.msg) <= len(m.procid) ||
		m.msg[:len(m.procid)] != m.procid || m.msg[len(m.procid)] != ']' {
		return
	}
	tag := "[" + m.procid + "] "
	if !bytes.Contains(frame, []byte(tag)) || bytes.Contains(frame, []byte("["+m.procid+"]:")) {
		return
	}
	m.msg = strings.TrimPrefix(m.msg[len(m.procid)+1:], " ")
	m.hasMsg = m.msg != ""
}

func (p *parser) parse5424Strict(frame []byte) (gosyslog.Message, error) {
	return p.rfc5424().Parse(frame)
}

// parse3164 tries the RFC 3164 forms real senders use: the RFC itself
// (with RFC 3339 stamps, zero-padded days and fractions of a second, as
// rsyslog and syslog-ng forward them) and the Cisco IOS extensions
// (message counter, sequence number, origin host name, "*" for an
// unsynchronised clock, a colon after the time).
func (p *parser) parse3164(frame []byte) (gosyslog.Message, error) {
	if p.m3164 == nil {
		p.m3164 = rfc3164.NewMachine(rfc3164.WithRFC3339(), rfc3164.WithLenientDay(), rfc3164.WithSecondFractions())
		p.mCisco = rfc3164.NewMachine(rfc3164.WithCiscoIOSComponents(ciscoios.All), rfc3164.WithLenientDay())
	}
	msg, err := p.m3164.Parse(frame)
	if msg != nil {
		return msg, err
	}
	// go-syslog takes RFC 3339 stamps in RFC 3164 only without fractions
	// of a second, yet that is exactly what rsyslog's forward format sends
	// ("<13>2026-11-22T08:15:00.123456+01:00 host tag: msg"): parse the
	// stamp here and let go-syslog read the rest.
	if ts, start, end, ok := rfc3339After(frame); ok {
		p.scratch = append(append(append(p.scratch[:0], frame[:start]...), "1970-01-01T00:00:00Z"...), frame[end:]...)
		if msg, err2 := p.m3164.Parse(p.scratch); msg != nil {
			if sm, ok := msg.(*rfc3164.SyslogMessage); ok {
				sm.Timestamp = &ts
			}
			return msg, err2
		}
	}
	if msg, err2 := p.mCisco.Parse(frame); msg != nil {
		return msg, err2
	}
	return nil, err
}

// rfc3339After finds an RFC 3339 timestamp with fractions right after the
// PRI and returns it with its position.
func rfc3339After(frame []byte) (time.Time, int, int, bool) {
	i := 1
	for i < len(frame) && i < 5 && isDigit(frame[i]) {
		i++
	}
	if i >= len(frame) || frame[i] != '>' {
		return time.Time{}, 0, 0, false
	}
	start := i + 1
	end := start
	for end < len(frame) && frame[end] != ' ' {
		end++
	}
	ts, ok := parseRFC3339(frame[start:end], 9)
	return ts, start, end, ok
}

func (p *parser) rfc5424() gosyslog.Machine {
	if p.m5424 == nil {
		p.m5424 = rfc5424.NewMachine()
	}
	return p.m5424
}

func (p *parser) rfc5424BE() gosyslog.Machine {
	if p.m5424BE == nil {
		p.m5424BE = rfc5424.NewMachine(rfc5424.WithBestEffort())
	}
	return p.m5424BE
}

func (p *parser) rfc3164BE() gosyslog.Machine {
	if p.m3164BE == nil {
		p.m3164BE = rfc3164.NewMachine(rfc3164.WithBestEffort(), rfc3164.WithRFC3339(), rfc3164.WithLenientDay(), rfc3164.WithSecondFractions())
	}
	return p.m3164BE
}

// fill copies a go-syslog result into m.
func (p *parser) fill(msg gosyslog.Message, arena *collector.Arena, now time.Time, m *message) {
	var base *gosyslog.Base
	switch v := msg.(type) {
	case *rfc5424.SyslogMessage:
		base = &v.Base
		m.version = int(v.Version)
		if v.StructuredData != nil {
			m.sd = sdJSON(*v.StructuredData, arena)
		}
	case *rfc3164.SyslogMessage:
		base = &v.Base
	default:
		return
	}
	if base.Priority != nil {
		m.pri = int(*base.Priority)
	}
	if base.Timestamp != nil {
		m.ts, m.hasTS = *base.Timestamp, true
		if m.version == 0 && m.ts.Year() == 0 {
			m.ts = p.complete3164(m.ts, now)
		}
	}
	str := func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	}
	m.host, m.app, m.procid, m.msgid = str(base.Hostname), str(base.Appname), str(base.ProcID), str(base.MsgID)
	if base.Message != nil {
		m.msg, m.hasMsg = *base.Message, true
	}
}

// complete3164 gives an RFC 3164 stamp (year 0, no zone) its year and zone.
func (p *parser) complete3164(t time.Time, now time.Time) time.Time {
	mo, d := t.Month(), t.Day()
	h, mi, s := t.Clock()
	ns := t.Nanosecond()
	if p.year != 0 {
		return time.Date(p.year, mo, d, h, mi, s, ns, p.loc)
	}
	// The year that puts the stamp nearest to now: around New Year a
	// December stamp received in January is last year's, a January stamp
	// from a clock slightly ahead in December next year's.
	y := now.In(p.loc).Year()
	var best time.Time
	var bestDist time.Duration = -1
	for _, cand := range [...]int{y, y - 1, y + 1} {
		c := time.Date(cand, mo, d, h, mi, s, ns, p.loc)
		if c.Day() != d {
			continue // 29 February of a year without one
		}
		dist := c.Sub(now)
		if dist < 0 {
			dist = -dist
		}
		if bestDist < 0 || dist < bestDist {
			best, bestDist = c, dist
		}
	}
	if bestDist < 0 {
		return time.Date(y, mo, d, h, mi, s, ns, p.loc)
	}
	return best
}

// sdJSON renders go-syslog's structured data as a JSON object, keys sorted
// so that equal data gives equal text.
func sdJSON(sd map[string]map[string]string, arena *collector.Arena) string {
	ids := make([]string, 0, len(sd))
	size := 2
	for id, params := range sd {
		ids = append(ids, id)
		size += len(id) + 8
		for k, v := range params {
			size += len(k) + len(v) + 8
		}
	}
	sort.Strings(ids)
	dst := arena.Builder(size)
	dst = append(dst, '{')
	for i, id := range ids {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = collector.AppendJSONString(dst, id)
		dst = append(dst, ':', '{')
		params := sd[id]
		names := make([]string, 0, len(params))
		for k := range params {
			names = append(names, k)
		}
		sort.Strings(names)
		for j, k := range names {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = collector.AppendJSONString(dst, k)
			dst = append(dst, ':')
			dst = collector.AppendJSONString(dst, params[k])
		}
		dst = append(dst, '}')
	}
	dst = append(dst, '}')
	return arena.Commit(dst)
}

// parse5424 is the hot path: a strict, allocation-free RFC 5424 parser. It
// accepts exactly what go-syslog's strict RFC 5424 machine accepts and
// yields the same fields (FuzzParse5424 holds it to that), except that it
// declines more than 16 SD elements, or parameters in one, which then go
// to go-syslog. Strings point into frame.
func parse5424(b []byte, arena *collector.Arena, scratch *[]byte, m *message) bool {
	// PRI: "<" (0 | 1-191 without leading zero) ">"
	if len(b) < 4 || b[0] != '<' {
		return false
	}
	i := 1
	pri := 0
	for i < len(b) && i < 5 && isDigit(b[i]) {
		pri = pri*10 + int(b[i]-'0')
		i++
	}
	if i == 1 || i >= len(b) || b[i] != '>' || pri > 191 || (b[1] == '0' && i > 2) {
		return false
	}
	m.pri = pri
	i++
	// VERSION SP
	v := 0
	j := i
	for j < len(b) && j-i < 4 && isDigit(b[j]) {
		v = v*10 + int(b[j]-'0')
		j++
	}
	if j == i || j-i > 3 || b[i] == '0' || j >= len(b) || b[j] != ' ' {
		return false
	}
	m.version = v
	i = j + 1
	// TIMESTAMP SP
	j = fieldEnd(b, i)
	if j < 0 {
		return false
	}
	if j-i == 1 && b[i] == '-' {
		// nil value: no timestamp
	} else {
		ts, ok := parseRFC3339(b[i:j], 6)
		if !ok {
			return false
		}
		m.ts, m.hasTS = ts, true
	}
	i = j + 1
	// HOSTNAME, APP-NAME, PROCID, MSGID, each printable US-ASCII of a
	// bounded length, "-" for none.
	for k, limit := range [4]int{255, 48, 128, 32} {
		j = fieldEnd(b, i)
		if j < 0 || j == i || j-i > limit {
			return false
		}
		for _, c := range b[i:j] {
			if c < 0x21 || c > 0x7e {
				return false
			}
		}
		s := ""
		if !(j-i == 1 && b[i] == '-') {
			s = unsafe.String(&b[i], j-i)
		}
		switch k {
		case 0:
			m.host = s
		case 1:
			m.app = s
		case 2:
			m.procid = s
		case 3:
			m.msgid = s
		}
		i = j + 1
	}
	if i >= len(b) {
		return false
	}
	// STRUCTURED-DATA
	if b[i] == '-' {
		i++
	} else if b[i] == '[' {
		n, ok := parseSD(b[i:], arena, scratch, m)
		if !ok {
			return false
		}
		i += n
	} else {
		return false
	}
	// [SP MSG]
	if i == len(b) {
		return true
	}
	if b[i] != ' ' {
		return false
	}
	if i+1 < len(b) {
		m.msg, m.hasMsg = unsafe.String(&b[i+1], len(b)-i-1), true
	}
	return true
}

// fieldEnd returns the index of the space ending the header field at i, or
// -1 when there is none.
func fieldEnd(b []byte, i int) int {
	for j := i; j < len(b); j++ {
		if b[j] == ' ' {
			return j
		}
	}
	return -1
}

// maxSDElements bounds elements per message and parameters per element on
// the fast path, which keeps its duplicate checks (quadratic) cheap and its
// bookkeeping on the stack; messages with more go to go-syslog.
const maxSDElements = 16

// sdParam is one parsed SD-PARAM: spans of the frame.
type sdParam struct {
	name, value []byte
	escaped     bool
}

// parseSD parses one or more SD-ELEMENTs at the start of b into a JSON
// object in the arena and returns the bytes consumed. A repeated parameter
// name keeps its last value, as go-syslog does; a repeated SD-ID is an
// error there, so it is declined here.
func parseSD(b []byte, arena *collector.Arena, scratch *[]byte, m *message) (int, bool) {
	dst := arena.Builder(len(b) + 16)
	dst = append(dst, '{')
	var ids [maxSDElements][]byte
	nids := 0
	i := 0
	for i < len(b) && b[i] == '[' {
		i++
		start := i
		for i < len(b) && isSDName(b[i]) {
			i++
		}
		if i == start || i-start > 32 || i >= len(b) || nids == maxSDElements {
			return 0, false
		}
		id := b[start:i]
		for _, prev := range ids[:nids] {
			if string(prev) == string(id) {
				return 0, false
			}
		}
		ids[nids] = id
		nids++

		var params [maxSDElements]sdParam
		np := 0
		for i < len(b) && b[i] == ' ' {
			i++
			start := i
			for i < len(b) && isSDName(b[i]) {
				i++
			}
			if i == start || i-start > 32 || i+1 >= len(b) || b[i] != '=' || b[i+1] != '"' || np == maxSDElements {
				return 0, false
			}
			p := &params[np]
			np++
			p.name = b[start:i]
			i += 2
			// PARAM-VALUE: UTF-8 up to an unescaped '"'; '"', '\' and ']'
			// must be escaped with '\', and nothing else may be.
			vstart := i
			p.escaped = false
			ascii := true
			for i < len(b) && b[i] != '"' {
				switch c := b[i]; {
				case c == '\\':
					if i+1 >= len(b) || (b[i+1] != '"' && b[i+1] != '\\' && b[i+1] != ']') {
						return 0, false
					}
					p.escaped = true
					i += 2
					continue
				case c == ']':
					return 0, false
				case c >= utf8.RuneSelf:
					ascii = false
				}
				i++
			}
			if i >= len(b) {
				return 0, false
			}
			p.value = b[vstart:i]
			i++ // closing quote
			if !ascii && !utf8.Valid(p.value) {
				return 0, false
			}
		}
		if i >= len(b) || b[i] != ']' {
			return 0, false
		}
		i++

		if nids > 1 {
			dst = append(dst, ',')
		}
		dst = collector.AppendJSONString(dst, unsafeString(id))
		dst = append(dst, ':', '{')
		first := true
	params:
		for k := 0; k < np; k++ {
			p := &params[k]
			for _, later := range params[k+1 : np] {
				if string(later.name) == string(p.name) {
					continue params // the last value wins
				}
			}
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = collector.AppendJSONString(dst, unsafeString(p.name))
			dst = append(dst, ':')
			val := p.value
			if p.escaped {
				u := (*scratch)[:0]
				for k := 0; k < len(val); k++ {
					if val[k] == '\\' {
						k++
					}
					u = append(u, val[k])
				}
				*scratch = u
				val = u
			}
			dst = collector.AppendJSONString(dst, unsafeString(val))
		}
		dst = append(dst, '}')
	}
	dst = append(dst, '}')
	m.sd = arena.Commit(dst)
	return i, true
}

func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// isSDName: printable US-ASCII except '=', SP, ']' and '"'.
func isSDName(c byte) bool {
	return c > 0x20 && c < 0x7f && c != '=' && c != ']' && c != '"'
}

// parseRFC3339 parses "YYYY-MM-DDTHH:MM:SS[.F](Z|+HH:MM|-HH:MM)" with at
// most maxFrac fraction digits (RFC 5424 allows six), checking the date as
// time.Parse does, without allocating.
func parseRFC3339(b []byte, maxFrac int) (time.Time, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	num := func(s []byte) (int, bool) {
		n := 0
		for _, c := range s {
			if !isDigit(c) {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(b[0:4])
	month, ok2 := num(b[5:7])
	day, ok3 := num(b[8:10])
	hour, ok4 := num(b[11:13])
	minute, ok5 := num(b[14:16])
	sec, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	i := 19
	ns := 0
	if b[i] == '.' {
		i++
		start := i
		for i < len(b) && isDigit(b[i]) {
			i++
		}
		digits := i - start
		if digits == 0 || digits > maxFrac {
			return time.Time{}, false
		}
		f, _ := num(b[start:i])
		for d := digits; d < 9; d++ {
			f *= 10
		}
		ns = f
	}
	if i >= len(b) {
		return time.Time{}, false
	}
	offset := 0
	switch b[i] {
	case 'Z':
		if i+1 != len(b) {
			return time.Time{}, false
		}
	case '+', '-':
		if len(b)-i != 6 || b[i+3] != ':' {
			return time.Time{}, false
		}
		oh, ok1 := num(b[i+1 : i+3])
		om, ok2 := num(b[i+4 : i+6])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return time.Time{}, false
		}
		offset = (oh*60 + om) * 60
		if b[i] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, ns, time.UTC)
	if offset != 0 {
		t = t.Add(-time.Duration(offset) * time.Second)
	}
	return t, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
