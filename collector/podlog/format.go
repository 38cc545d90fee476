package podlog

import (
	"bytes"
	"time"

	"github.com/leitstand/leitstand/collector"
)

// format is a log file's line format, detected from its first byte.
type format uint8

const (
	// formatCRI: "<RFC3339Nano> <stdout|stderr> <P|F>[:tags] <text>", what
	// containerd and CRI-O write.
	formatCRI format = iota
	// formatDocker: Docker's json-file driver,
	// {"log":"text\n","stream":"stdout","time":"…"}.
	formatDocker
)

func detectFormat(first byte) format {
	if first == '{' {
		return formatDocker
	}
	return formatCRI
}

// Streams.
const (
	streamStdout = 0
	streamStderr = 1
	numStreams   = 2
)

var streamNames = [numStreams]string{"stdout", "stderr"}

// physLine is one line of a log file, decoded.
type physLine struct {
	ts      time.Time
	stream  int
	partial bool // CRI "P", or a Docker entry without its final newline: the line continues in the next entry
	text    []byte
	raw     bool // not in the file's format: text is the whole line, ts is zero
}

// parseCRI decodes one CRI line (without its newline).
func parseCRI(line []byte, pl *physLine) {
	*pl = physLine{}
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		pl.raw, pl.text = true, line
		return
	}
	ts, ok := parseTime(line[:sp])
	if !ok {
		pl.raw, pl.text = true, line
		return
	}
	rest := line[sp+1:]
	switch {
	case bytes.HasPrefix(rest, []byte("stdout ")):
		pl.stream, rest = streamStdout, rest[7:]
	case bytes.HasPrefix(rest, []byte("stderr ")):
		pl.stream, rest = streamStderr, rest[7:]
	default:
		pl.raw, pl.text = true, line
		return
	}
	// The tag field: "P" or "F", possibly followed by ":"-separated tags.
	tagEnd := bytes.IndexByte(rest, ' ')
	tag := rest
	if tagEnd >= 0 {
		tag, rest = rest[:tagEnd], rest[tagEnd+1:]
	} else {
		rest = nil // "… stdout F" with nothing after it: an empty line
	}
	if len(tag) == 0 || (tag[0] != 'P' && tag[0] != 'F') || (len(tag) > 1 && tag[1] != ':') {
		pl.raw, pl.text = true, line
		return
	}
	pl.ts, pl.partial, pl.text = ts, tag[0] == 'P', rest
}

// parseDocker decodes one json-file line (without its newline). The log
// text is unescaped into scratch, which is returned grown.
func parseDocker(line []byte, pl *physLine, scratch []byte) []byte {
	*pl = physLine{}
	d := jsonScan{data: line}
	var logText []byte
	haveLog := false
	if !d.consume('{') {
		pl.raw, pl.text = true, line
		return scratch
	}
	for {
		d.space()
		if d.consume('}') {
			break
		}
		if !d.consume('"') {
			pl.raw, pl.text = true, line
			return scratch
		}
		key, ok := d.rawString()
		if !ok {
			pl.raw, pl.text = true, line
			return scratch
		}
		d.space()
		if !d.consume(':') {
			pl.raw, pl.text = true, line
			return scratch
		}
		d.space()
		switch string(key) {
		case "log":
			if !d.consume('"') {
				pl.raw, pl.text = true, line
				return scratch
			}
			start := len(scratch)
			scratch, ok = d.unescape(scratch)
			if !ok {
				pl.raw, pl.text = true, line
				return scratch[:start]
			}
			logText, haveLog = scratch[start:], true
		case "stream":
			if !d.consume('"') {
				pl.raw, pl.text = true, line
				return scratch
			}
			s, ok := d.rawString()
			if !ok {
				pl.raw, pl.text = true, line
				return scratch
			}
			if string(s) == "stderr" {
				pl.stream = streamStderr
			}
		case "time":
			if !d.consume('"') {
				pl.raw, pl.text = true, line
				return scratch
			}
			s, ok := d.rawString()
			if !ok {
				pl.raw, pl.text = true, line
				return scratch
			}
			pl.ts, _ = parseTime(s)
		default:
			if !d.skipValue(0) {
				pl.raw, pl.text = true, line
				return scratch
			}
		}
		d.space()
		if d.consume(',') {
			continue
		}
		if d.consume('}') {
			break
		}
		pl.raw, pl.text = true, line
		return scratch
	}
	if !haveLog {
		pl.raw, pl.text = true, line
		return scratch
	}
	if n := len(logText); n > 0 && logText[n-1] == '\n' {
		logText = logText[:n-1]
	} else {
		pl.partial = true // json-file splits long lines into entries without the newline
	}
	pl.text = logText
	return scratch
}

// jsonScan is the little JSON reading a json-file line needs.
type jsonScan struct {
	data []byte
	pos  int
}

func (d *jsonScan) space() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\r', '\n':
			d.pos++
		default:
			return
		}
	}
}

func (d *jsonScan) consume(c byte) bool {
	if d.pos < len(d.data) && d.data[d.pos] == c {
		d.pos++
		return true
	}
	return false
}

// rawString returns a string body without unescaping (keys, stream, time
// need none), after its opening quote.
func (d *jsonScan) rawString() ([]byte, bool) {
	start := d.pos
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case '"':
			d.pos++
			return d.data[start : d.pos-1], true
		case '\\':
			d.pos += 2
			continue
		}
		d.pos++
	}
	return nil, false
}

// unescape appends a string body, unescaped, to dst. It is strict JSON,
// as json-file writes it: a raw control character or a bad escape makes
// the line not json-file, and it is kept whole as raw text.
func (d *jsonScan) unescape(dst []byte) ([]byte, bool) {
	dst, n, err := collector.AppendUnescapedJSONString(dst, d.data[d.pos:])
	d.pos += n
	return dst, err == nil
}

// skipValue skips a JSON value of any kind (json-file's "attrs").
func (d *jsonScan) skipValue(depth int) bool {
	if depth > 16 || d.pos >= len(d.data) {
		return false
	}
	switch c := d.data[d.pos]; c {
	case '"':
		d.pos++
		_, ok := d.rawString()
		return ok
	case '{', '[':
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		d.pos++
		for {
			d.space()
			if d.consume(end) {
				return true
			}
			if c == '{' {
				if !d.consume('"') {
					return false
				}
				if _, ok := d.rawString(); !ok {
					return false
				}
				d.space()
				if !d.consume(':') {
					return false
				}
				d.space()
			}
			if !d.skipValue(depth + 1) {
				return false
			}
			d.space()
			if !d.consume(',') && (d.pos >= len(d.data) || d.data[d.pos] != end) {
				return false
			}
		}
	default:
		for d.pos < len(d.data) {
			switch d.data[d.pos] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return true
			}
			d.pos++
		}
		return true
	}
}

// parseTime reads an RFC 3339 timestamp with optional fraction and a Z or
// ±hh:mm zone, as containerd, CRI-O and Docker write them, without the
// allocations of time.Parse.
func parseTime(b []byte) (time.Time, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || (b[10] != 'T' && b[10] != 't') || b[13] != ':' || b[16] != ':' {
		return slowParseTime(b)
	}
	num := func(p []byte) (int, bool) {
		n := 0
		for _, c := range p {
			if c < '0' || c > '9' {
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
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 60 {
		return slowParseTime(b)
	}
	i := 19
	ns := 0
	if i < len(b) && b[i] == '.' {
		i++
		digits := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if digits < 9 {
				ns = ns*10 + int(b[i]-'0')
				digits++
			}
			i++
		}
		if digits == 0 {
			return slowParseTime(b)
		}
		for ; digits < 9; digits++ {
			ns *= 10
		}
	}
	if i >= len(b) {
		return slowParseTime(b)
	}
	offset := 0
	switch b[i] {
	case 'Z', 'z':
		i++
	case '+', '-':
		if len(b)-i != 6 || b[i+3] != ':' {
			return slowParseTime(b)
		}
		h, ok1 := num(b[i+1 : i+3])
		m, ok2 := num(b[i+4 : i+6])
		if !ok1 || !ok2 {
			return slowParseTime(b)
		}
		offset = h*3600 + m*60
		if b[i] == '-' {
			offset = -offset
		}
		i += 6
	default:
		return slowParseTime(b)
	}
	if i != len(b) {
		return slowParseTime(b)
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, ns, time.UTC)
	if t.Day() != day {
		return slowParseTime(b) // 30 February and the like
	}
	return t.Add(-time.Duration(offset) * time.Second), true
}

func slowParseTime(b []byte) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, string(b))
	return t, err == nil
}
