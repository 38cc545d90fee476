package collector

import (
	"strings"
	"time"
	"unicode/utf8"
)

// AppendJSON appends the event as one JSON object in ECS's nested form, with
// @timestamp first and the other fields in key order ("log.level" becomes
// {"log":{"level":…}}). It expects a normalized event (see Normalize) and
// does not allocate. The ID is not part of the document: sinks that can use
// it do so out of band (the Elasticsearch _id).
func (e *Event) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"@timestamp":"`...)
	dst = AppendTimestamp(dst, e.Timestamp)
	dst = append(dst, '"')

	// open is the dotted prefix of the objects currently open, always ending
	// in '.', and a prefix of the previous key, so it costs no allocation.
	open := ""
	comma := true
	for i := range e.Fields {
		f := &e.Fields[i]
		for open != "" && !strings.HasPrefix(f.Key, open) {
			dst = append(dst, '}')
			open = parentPrefix(open)
		}
		rest := f.Key[len(open):]
		for {
			dot := strings.IndexByte(rest, '.')
			if dot < 0 {
				break
			}
			if comma {
				dst = append(dst, ',')
			}
			dst = AppendJSONString(dst, rest[:dot])
			dst = append(dst, ':', '{')
			comma = false
			open = f.Key[:len(f.Key)-len(rest)+dot+1]
			rest = rest[dot+1:]
		}
		if comma {
			dst = append(dst, ',')
		}
		dst = AppendJSONString(dst, rest)
		dst = append(dst, ':')
		dst = f.appendValue(dst)
		comma = true
	}
	for open != "" {
		dst = append(dst, '}')
		open = parentPrefix(open)
	}
	return append(dst, '}')
}

// parentPrefix turns "a.b." into "a." and "a." into "".
func parentPrefix(open string) string {
	return open[:strings.LastIndexByte(open[:len(open)-1], '.')+1]
}

func (f *Field) appendValue(dst []byte) []byte {
	if f.Kind == KindString {
		return AppendJSONString(dst, f.Str)
	}
	return append(dst, f.Str...) // numbers, booleans and raw JSON are kept as valid JSON text
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// so whatever a sender put in, the document stays valid JSON.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\uFFFD"...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// AppendTimestamp appends t in UTC as RFC 3339 with nanoseconds
// ("2026-11-22T08:15:00.123456789Z"): fixed width, so files sort and diff
// cleanly, and precise enough to keep the order of container log lines.
func AppendTimestamp(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, time.RFC3339Nano) // outside what four digits hold
	}
	var b [30]byte
	put4(b[0:], year)
	b[4] = '-'
	put2(b[5:], int(month))
	b[7] = '-'
	put2(b[8:], day)
	b[10] = 'T'
	put2(b[11:], hour)
	b[13] = ':'
	put2(b[14:], minute)
	b[16] = ':'
	put2(b[17:], sec)
	b[19] = '.'
	ns := t.Nanosecond()
	for i := 28; i >= 20; i-- {
		b[i] = byte('0' + ns%10)
		ns /= 10
	}
	b[29] = 'Z'
	return append(dst, b[:]...)
}

func put2(b []byte, v int) { b[0], b[1] = byte('0'+v/10), byte('0'+v%10) }

func put4(b []byte, v int) {
	put2(b, v/100)
	put2(b[2:], v%100)
}
