package httpin

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/leitstand/leitstand/collector"
)

// Limits on one line, so a hostile document cannot make the decoder recurse
// or allocate without bound.
const (
	maxDepth  = 32
	maxFields = 1000
)

// lineDecoder turns one NDJSON line into an Event without building a
// generic tree: nested objects become dotted keys as they are read, strings
// without escapes point into the line itself (which the batch keeps alive),
// and everything else goes into the batch's arena. That is what keeps
// decoding at a fraction of a microsecond per event.
type lineDecoder struct {
	arena   *collector.Arena
	data    []byte
	pos     int
	ev      *collector.Event
	ts      bool   // @timestamp seen
	scratch []byte // strings checked but not kept
}

// decodeError is a line's problem, with the byte offset it was found at.
type decodeError struct {
	pos int
	msg string
}

func (e *decodeError) Error() string {
	if e.pos < 0 {
		return e.msg
	}
	return fmt.Sprintf("%s (at byte %d)", e.msg, e.pos+1)
}

func (d *lineDecoder) errorf(format string, args ...any) error {
	return &decodeError{pos: d.pos, msg: fmt.Sprintf(format, args...)}
}

// decode reads line into e. The event's strings may point into line.
func (d *lineDecoder) decode(line []byte, e *collector.Event) error {
	d.data, d.pos, d.ev, d.ts = line, 0, e, false
	d.skipSpace()
	if !d.consume('{') {
		return d.errorf("a line must be a JSON object")
	}
	if err := d.object("", 1); err != nil {
		return err
	}
	d.skipSpace()
	if d.pos != len(d.data) {
		return d.errorf("unexpected text after the JSON object")
	}
	return d.check()
}

// check applies the event-level rules once the line is read.
func (d *lineDecoder) check() error {
	msg := -1
	for i := range d.ev.Fields {
		f := &d.ev.Fields[i]
		switch f.Key {
		case collector.FieldMessage:
			msg = i
		case collector.FieldDataset:
			if f.Kind != collector.KindString || !validDataset(f.Str) {
				return &decodeError{pos: -1, msg: `"event.dataset" must be a string of lowercase letters, digits, '_', '-' and '.' (at most 100)`}
			}
		}
	}
	if msg < 0 {
		return &decodeError{pos: -1, msg: `missing "message"`}
	}
	if d.ev.Fields[msg].Kind != collector.KindString {
		return &decodeError{pos: -1, msg: `"message" must be a string`}
	}
	return nil
}

func validDataset(s string) bool {
	if s == "" || len(s) > 100 || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func (d *lineDecoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\r', '\n':
			d.pos++
		default:
			return
		}
	}
}

func (d *lineDecoder) consume(c byte) bool {
	if d.pos < len(d.data) && d.data[d.pos] == c {
		d.pos++
		return true
	}
	return false
}

// object reads members up to the closing brace; the opening one is read.
func (d *lineDecoder) object(prefix string, depth int) error {
	if depth > maxDepth {
		return d.errorf("objects nested deeper than %d levels", maxDepth)
	}
	d.skipSpace()
	if d.consume('}') {
		return nil
	}
	for {
		d.skipSpace()
		if !d.consume('"') {
			return d.errorf("expected a quoted object key")
		}
		key, err := d.str()
		if err != nil {
			return err
		}
		if !utf8.ValidString(key) {
			// Repaired now, not when encoding: two keys that differ only
			// in their invalid bytes ("\xff0" and "\ud8000") must become
			// one field, or the event would encode a duplicate key.
			key = d.view(bytes.ToValidUTF8([]byte(key), []byte("\uFFFD")))
		}
		if err := checkKey(key); err != nil {
			return d.errorf("%s", err)
		}
		if prefix != "" {
			key = d.arena.Concat(prefix, ".", key)
		}
		d.skipSpace()
		if !d.consume(':') {
			return d.errorf("expected ':' after object key")
		}
		d.skipSpace()
		if err := d.member(key, depth); err != nil {
			return err
		}
		d.skipSpace()
		if d.consume(',') {
			continue
		}
		if d.consume('}') {
			return nil
		}
		return d.errorf("expected ',' or '}' in object")
	}
}

// checkKey refuses keys that would make an empty path segment.
func checkKey(k string) error {
	if k == "" {
		return errors.New("empty object key")
	}
	if k[0] == '.' || k[len(k)-1] == '.' || bytes.Contains(unsafe.Slice(unsafe.StringData(k), len(k)), []byte("..")) {
		return fmt.Errorf("object key %q has an empty path segment", k)
	}
	return nil
}

// member reads the value of key.
func (d *lineDecoder) member(key string, depth int) error {
	if d.pos >= len(d.data) {
		return d.errorf("unexpected end of line, expected a value")
	}
	if key == "@timestamp" {
		return d.timestamp()
	}
	start := d.pos
	var kind collector.Kind
	var val string
	switch c := d.data[d.pos]; {
	case c == '"':
		d.pos++
		s, err := d.str()
		if err != nil {
			return err
		}
		kind, val = collector.KindString, s
	case c == '{':
		d.pos++
		return d.object(key, depth+1)
	case c == '[':
		if err := d.skipValue(depth); err != nil {
			return err
		}
		raw := d.data[start:d.pos]
		if !utf8.Valid(raw) {
			raw = bytes.ToValidUTF8(raw, []byte("\uFFFD"))
		}
		kind, val = collector.KindRaw, d.view(raw)
	case c == 't' || c == 'f':
		if err := d.literal(); err != nil {
			return err
		}
		kind, val = collector.KindBool, d.view(d.data[start:d.pos])
	case c == 'n':
		// null: ECS treats a null field as absent.
		return d.literal()
	case c == '-' || c >= '0' && c <= '9':
		if err := d.number(); err != nil {
			return err
		}
		kind, val = collector.KindNumber, d.view(d.data[start:d.pos])
	default:
		return d.errorf("invalid value")
	}
	if len(d.ev.Fields) >= maxFields {
		return d.errorf("more than %d fields", maxFields)
	}
	d.ev.Add(key, kind, val)
	return nil
}

// view returns p as a string without copying; p points into the line, which
// lives as long as the batch.
func (d *lineDecoder) view(p []byte) string {
	if len(p) == 0 {
		return ""
	}
	return unsafe.String(&p[0], len(p))
}

func (d *lineDecoder) timestamp() error {
	if d.data[d.pos] == '"' {
		d.pos++
		s, err := d.str()
		if err != nil {
			return err
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return &decodeError{pos: -1, msg: fmt.Sprintf(`"@timestamp" %q is not an RFC 3339 time`, s)}
		}
		d.ev.Timestamp, d.ts = t, true
		return nil
	}
	// Epoch milliseconds, as Elasticsearch's date type also takes.
	start := d.pos
	if err := d.number(); err != nil {
		return err
	}
	ms, err := strconv.ParseInt(d.view(d.data[start:d.pos]), 10, 64)
	if err != nil {
		return &decodeError{pos: -1, msg: `"@timestamp" must be an RFC 3339 string or whole epoch milliseconds`}
	}
	if ms < minEpochMilli || ms > maxEpochMilli {
		return &decodeError{pos: -1, msg: fmt.Sprintf(`"@timestamp" %d is outside the years 0000 to 9999 (epoch milliseconds)`, ms)}
	}
	d.ev.Timestamp, d.ts = time.UnixMilli(ms), true
	return nil
}

// The epoch milliseconds an RFC 3339 time (four-digit years) can hold:
// anything else would be stored as a time no reader, Elasticsearch
// included, could parse back (found by FuzzDecodeLine).
var (
	minEpochMilli = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	maxEpochMilli = time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC).UnixMilli()
)

// str reads a string body after its opening quote. Without escapes the
// result points into the line; with them it is unescaped into the arena.
func (d *lineDecoder) str() (string, error) {
	start := d.pos
	for i := d.pos; i < len(d.data); i++ {
		switch c := d.data[i]; {
		case c == '"':
			d.pos = i + 1
			return d.view(d.data[start:i]), nil
		case c == '\\':
			d.pos = i
			return d.unescape(start)
		case c < 0x20:
			d.pos = i
			return "", d.errorf("control character in string")
		}
	}
	d.pos = len(d.data)
	return "", d.errorf("unterminated string")
}

// unescape finishes a string whose body starts at start and whose first
// escape is at d.pos, into the arena.
func (d *lineDecoder) unescape(start int) (string, error) {
	buf := d.arena.Builder(d.pos - start + 32)
	buf = append(buf, d.data[start:d.pos]...)
	buf, n, err := collector.AppendUnescapedJSONString(buf, d.data[d.pos:])
	d.pos += n
	if err != nil {
		return "", d.stringError(err)
	}
	return d.arena.Commit(buf), nil
}

// stringError places an error of collector.AppendUnescapedJSONString at
// d.pos, where it stopped.
func (d *lineDecoder) stringError(err error) error {
	switch err {
	case nil:
		return nil
	case collector.ErrJSONEscape:
		return d.errorf("invalid escape \\%c", d.data[d.pos+1])
	}
	return d.errorf("%s", err)
}

// number checks a JSON number literal.
func (d *lineDecoder) number() error {
	p := d.pos
	digits := func() int {
		n := 0
		for p < len(d.data) && d.data[p] >= '0' && d.data[p] <= '9' {
			p++
			n++
		}
		return n
	}
	if p < len(d.data) && d.data[p] == '-' {
		p++
	}
	first := p
	if n := digits(); n == 0 || n > 1 && d.data[first] == '0' {
		return d.errorf("invalid number")
	}
	if p < len(d.data) && d.data[p] == '.' {
		p++
		if digits() == 0 {
			return d.errorf("invalid number")
		}
	}
	if p < len(d.data) && (d.data[p] == 'e' || d.data[p] == 'E') {
		p++
		if p < len(d.data) && (d.data[p] == '+' || d.data[p] == '-') {
			p++
		}
		if digits() == 0 {
			return d.errorf("invalid number")
		}
	}
	d.pos = p
	return nil
}

func (d *lineDecoder) literal() error {
	for _, lit := range []string{"true", "false", "null"} {
		if bytes.HasPrefix(d.data[d.pos:], []byte(lit)) {
			d.pos += len(lit)
			return nil
		}
	}
	return d.errorf("invalid literal")
}

// skipValue checks and skips any JSON value (for arrays kept as raw text).
func (d *lineDecoder) skipValue(depth int) error {
	if depth > maxDepth {
		return d.errorf("values nested deeper than %d levels", maxDepth)
	}
	d.skipSpace()
	if d.pos >= len(d.data) {
		return d.errorf("unexpected end of line, expected a value")
	}
	switch c := d.data[d.pos]; {
	case c == '"':
		d.pos++
		return d.skipString()
	case c == '{' || c == '[':
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		d.pos++
		d.skipSpace()
		if d.consume(end) {
			return nil
		}
		for {
			d.skipSpace()
			if c == '{' {
				if !d.consume('"') {
					return d.errorf("expected a quoted object key")
				}
				if err := d.skipString(); err != nil {
					return err
				}
				d.skipSpace()
				if !d.consume(':') {
					return d.errorf("expected ':' after object key")
				}
			}
			if err := d.skipValue(depth + 1); err != nil {
				return err
			}
			d.skipSpace()
			if d.consume(',') {
				continue
			}
			if d.consume(end) {
				return nil
			}
			return d.errorf("expected ',' or '%c'", end)
		}
	case c == 't' || c == 'f' || c == 'n':
		return d.literal()
	case c == '-' || c >= '0' && c <= '9':
		return d.number()
	}
	return d.errorf("invalid value")
}

// skipString checks a string body after its opening quote. It is
// unescaped into scratch and thrown away, so that a string is accepted by
// the same rules everywhere in a line.
func (d *lineDecoder) skipString() error {
	var n int
	var err error
	d.scratch, n, err = collector.AppendUnescapedJSONString(d.scratch[:0], d.data[d.pos:])
	d.pos += n
	return d.stringError(err)
}
