package syslog

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/leitstand/leitstand/collector"
)

// Dataset is event.dataset of every syslog event.
const Dataset = "syslog"

// Tags marking events that did not arrive as clean messages.
const (
	TagParseFailure = "syslog_parse_failure"    // kept with the raw text as message
	TagTruncated    = "syslog_truncated"        // cut at max_message_bytes
	TagIncomplete   = "syslog_incomplete_frame" // the connection ended or stalled inside the frame
	TagFramingError = "syslog_framing_error"    // bytes skipped to find the next frame
	TagInvalidUTF8  = "syslog_invalid_utf8"     // stored with U+FFFD in place of the bad bytes
)

const (
	tagBitParse = 1 << iota
	tagBitTruncated
	tagBitIncomplete
	tagBitFraming
	tagBitUTF8
	tagCombinations
)

// tagsJSON holds the tags array for every combination of tag bits, so
// marking an event costs no allocation.
var tagsJSON = func() [tagCombinations]string {
	names := []string{TagParseFailure, TagTruncated, TagIncomplete, TagFramingError, TagInvalidUTF8}
	var out [tagCombinations]string
	for bits := 1; bits < tagCombinations; bits++ {
		var b strings.Builder
		b.WriteByte('[')
		for i, n := range names {
			if bits&(1<<i) != 0 {
				if b.Len() > 1 {
					b.WriteByte(',')
				}
				b.WriteString(strconv.Quote(n))
			}
		}
		b.WriteByte(']')
		out[bits] = b.String()
	}
	return out
}()

// numbers holds "0".."999": priorities, facility and severity codes and
// versions without formatting per event.
var numbers = func() [1000]string {
	var n [1000]string
	for i := range n {
		n[i] = strconv.Itoa(i)
	}
	return n
}()

// facilityNames are the keywords rsyslog and syslog-ng use
// (%syslogfacility-text%), which operators search for.
var facilityNames = [24]string{
	"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
	"uucp", "cron", "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
	"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
}

// severityNames follow ECS's example for log.syslog.severity.name ("Error");
// severityLevels are the syslog keywords for log.level.
var (
	severityNames  = [8]string{"Emergency", "Alert", "Critical", "Error", "Warning", "Notice", "Informational", "Debug"}
	severityLevels = [8]string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}
)

// counts are what one reader saw since its last batch; they go to the
// metrics once per batch, not once per event.
type counts struct {
	events         int
	bytes          int
	parseFailures  int
	resyncs        int
	truncated      int
	incomplete     int
	invalidUTF8    int
	discardedBytes int64
}

// decoder turns frames into events of a batch. One per connection or
// datagram reader.
type decoder struct {
	p         *parser
	transport string // network.transport: tcp, udp; "" for unix
	msg       message
	n         counts
}

// add parses one frame into a new event of b. src is the sender's address
// (source.ip), "" when unknown.
func (d *decoder) add(b *collector.Batch, fr frame, src string) {
	raw := trimFrame(fr.data)
	if len(raw) == 0 && fr.flags == 0 {
		return // an empty line or datagram carries nothing
	}
	d.n.events++
	tags := 0
	if fr.flags&frameTruncated != 0 {
		tags |= tagBitTruncated
		d.n.truncated++
	}
	if fr.flags&frameIncomplete != 0 {
		tags |= tagBitIncomplete
		d.n.incomplete++
	}
	if !utf8.Valid(raw) {
		tags |= tagBitUTF8
		d.n.invalidUTF8++
	}
	e := b.Next()
	m := &d.msg
	if fr.flags&frameJunk != 0 {
		tags |= tagBitFraming
		d.n.resyncs++
		*m = message{pri: -1, err: errFraming}
	} else {
		d.p.parse(raw, &b.Arena, b.Received, m)
		if m.err != nil {
			tags |= tagBitParse
			d.n.parseFailures++
		}
	}

	e.Timestamp = b.Received
	if m.hasTS {
		e.Timestamp = m.ts
	}
	// Fields are collected in key order (which makes the pipeline's sort a
	// single pass) on the stack and copied into the event at once, rather
	// than appended one by one.
	var fs [maxFields]collector.Field
	n := 0
	put := func(key string, kind collector.Kind, value string) {
		fs[n] = collector.Field{Key: key, Kind: kind, Str: value}
		n++
	}
	if m.err != nil {
		put("error.message", collector.KindString, m.err.Error())
	}
	put("event.created", collector.KindString, b.Ingested())
	put(collector.FieldDataset, collector.KindString, Dataset)
	if m.host != "" {
		put("host.hostname", collector.KindString, m.host)
	}
	put(collector.FieldReceiver, collector.KindString, "syslog")
	if m.pri >= 0 {
		fac, sev := m.pri>>3, m.pri&7
		put(collector.FieldLevel, collector.KindString, severityLevels[sev])
		put("log.syslog.facility.code", collector.KindNumber, numbers[fac])
		put("log.syslog.facility.name", collector.KindString, facilityNames[fac])
		if m.msgid != "" {
			put("log.syslog.msgid", collector.KindString, m.msgid)
		}
		put("log.syslog.priority", collector.KindNumber, numbers[m.pri])
		if m.procid != "" && !isPID(m.procid) {
			put("log.syslog.procid", collector.KindString, m.procid)
		}
		put("log.syslog.severity.code", collector.KindNumber, numbers[sev])
		put("log.syslog.severity.name", collector.KindString, severityNames[sev])
	} else if m.msgid != "" {
		put("log.syslog.msgid", collector.KindString, m.msgid)
	}
	if m.sd != "" {
		put("log.syslog.structured_data", collector.KindRaw, m.sd)
	}
	if m.version > 0 && m.version < len(numbers) {
		put("log.syslog.version", collector.KindString, numbers[m.version])
	}
	switch {
	case m.err != nil:
		// A frame that did not parse keeps its raw text: nothing the
		// sender wrote is lost, and the tag says why it has no fields.
		put(collector.FieldMessage, collector.KindString, unsafeString(raw))
	case m.hasMsg:
		put(collector.FieldMessage, collector.KindString, strings.TrimPrefix(m.msg, "\uFEFF")) // RFC 5424 MSG-UTF8 starts with a BOM
	}
	if d.transport != "" {
		put("network.transport", collector.KindString, d.transport)
	}
	if m.app != "" {
		put("process.name", collector.KindString, m.app)
	}
	if m.procid != "" && isPID(m.procid) {
		put("process.pid", collector.KindNumber, m.procid)
	}
	if src != "" {
		put("source.ip", collector.KindString, src)
	}
	if tags != 0 {
		put("tags", collector.KindRaw, tagsJSON[tags])
	}
	if cap(e.Fields) < n+fieldsAddedLater {
		// Room for what the pipeline adds (event.ingested, the anonymizer's
		// counts), so the slice is not copied again while it is queued.
		e.Fields = make([]collector.Field, 0, n+fieldsAddedLater)
	}
	e.Fields = append(e.Fields[:0], fs[:n]...)
}

// fieldsAddedLater is how many fields stages usually add to a syslog event.
const fieldsAddedLater = 2

// maxFields is the most fields add sets.
const maxFields = 24

var errFraming = frameError("framing error: bytes that start no syslog frame were skipped up to the next frame")

type frameError string

func (e frameError) Error() string { return string(e) }

// trimFrame drops the trailing LF, CR and NUL that senders add as
// terminators inside a frame.
func trimFrame(b []byte) []byte {
	for len(b) > 0 {
		switch b[len(b)-1] {
		case '\n', '\r', 0:
			b = b[:len(b)-1]
			continue
		}
		break
	}
	return b
}

// isPID tells whether a PROCID is a number process.pid (an ECS long) can
// hold as JSON: digits without a leading zero.
func isPID(s string) bool {
	if len(s) == 0 || len(s) > 18 || (s[0] == '0' && len(s) > 1) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}
