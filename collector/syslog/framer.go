package syslog

import "bytes"

// Frame flags.
const (
	// frameTruncated: the message was longer than the limit and is cut.
	frameTruncated uint8 = 1 << iota
	// frameJunk: bytes skipped to find the next frame after a framing error.
	frameJunk
	// frameIncomplete: the stream ended (or stalled) inside the frame.
	frameIncomplete
)

// frame is one message cut from a stream. data points into the caller's
// buffer.
type frame struct {
	data  []byte
	flags uint8
}

// maxCountDigits bounds an octet count: ten digits is more than any real
// frame and keeps the arithmetic far from overflow.
const maxCountDigits = 10

// framer cuts a TCP or TLS byte stream into syslog frames. It detects the
// framing per frame (RFC 6587): a frame that starts with a digit is octet
// counted ("LEN SP MSG"), one that starts with '<' runs to the next LF.
// Senders mix both on one connection in practice (a relay restarting with
// another template), and per-frame detection is also what lets the framer
// find its way back after garbage.
//
// When the bytes at a frame boundary of an octet-counted stream fit neither
// form (a wrong count left us inside a message, or the sender wrote
// garbage), the framer resynchronises: it skips to the next plausible frame
// start ("LEN SP <" or "\n<") and returns what it skipped as a junk frame,
// so nothing is silently lost and the connection goes on.
//
// Frames longer than the limit are cut to it; the rest is skipped as it
// arrives without ever being buffered, so a 10 MB frame costs no memory.
type framer struct {
	max int // longest message kept

	// discard counts bytes of an over-long octet-counted frame still to skip.
	discard int64
	// discardLine: skipping the rest of an over-long LF-terminated line.
	discardLine bool
	// octet is true once the stream has used octet counting, which makes
	// bytes that start no frame a framing error rather than a line.
	octet bool
	// discarded counts the bytes thrown away, for the metrics.
	discarded int64
	// scanned is how many bytes at the start of the unconsumed input are
	// known to hold no frame end, so a frame arriving in many small reads
	// is not searched again from its start on every read.
	scanned int
}

// takeDiscarded returns the bytes discarded since the last call.
func (f *framer) takeDiscarded() int64 {
	d := f.discarded
	f.discarded = 0
	return d
}

// headerRoom is the most an octet-count header takes ("4294967295 ").
const headerRoom = maxCountDigits + 1

// next looks for the next frame at the start of p. It returns how many
// bytes of p are consumed and, when ok, the frame (pointing into p). With
// n == 0 and !ok it needs more data; the caller must offer p again with more
// bytes appended (p may then be up to max+headerRoom long without holding a
// whole frame only if the frame is over-long, which next handles). At end
// of stream (eof) it returns what is left as a final frame.
func (f *framer) next(p []byte, eof bool) (fr frame, n int, ok bool) {
	fr, n, ok = f.cut(p, eof)
	if n > 0 {
		f.scanned = 0
	}
	return fr, n, ok
}

func (f *framer) cut(p []byte, eof bool) (fr frame, n int, ok bool) {
	if f.discard > 0 {
		d := min(f.discard, int64(len(p)))
		f.discard -= d
		f.discarded += d
		return frame{}, int(d), false
	}
	if f.discardLine {
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			f.discardLine = false
			f.discarded += int64(i + 1)
			return frame{}, i + 1, false
		}
		f.discarded += int64(len(p))
		return frame{}, len(p), false
	}
	// Separators between frames: the trailer LF (or NUL) some senders add
	// after an octet-counted frame, CR of CRLF, stray spaces.
	skip := 0
	for skip < len(p) && isSeparator(p[skip]) {
		skip++
	}
	if skip > 0 {
		return frame{}, skip, false
	}
	if len(p) == 0 {
		return frame{}, 0, false
	}

	c := p[0]
	if c >= '1' && c <= '9' {
		fr, n, ok, decided := f.octetFrame(p, eof)
		if decided {
			return fr, n, ok
		}
		if n < 0 {
			return frame{}, 0, false // need more bytes to decide
		}
		// Digits that are not a count: a line without PRI, or garbage.
	}
	if c == '<' || !f.octet {
		return f.line(p, eof)
	}
	return f.resync(p, eof)
}

func isSeparator(c byte) bool { return c == '\n' || c == '\r' || c == 0 || c == ' ' || c == '\t' }

// octetFrame handles "LEN SP MSG". decided is false when p does not start
// with a count (then n is -1 if more bytes are needed to tell).
func (f *framer) octetFrame(p []byte, eof bool) (fr frame, n int, ok, decided bool) {
	i := 0
	var length int64
	for i < len(p) && i < maxCountDigits+1 && p[i] >= '0' && p[i] <= '9' {
		length = length*10 + int64(p[i]-'0')
		i++
	}
	switch {
	case i == len(p) && !eof && i <= maxCountDigits:
		return frame{}, -1, false, false // only digits so far
	case i == len(p) || i > maxCountDigits || p[i] != ' ':
		return frame{}, 0, false, false
	case i+1 == len(p) && !eof:
		// The byte after the space tells a count ("12 <") from a line
		// that happens to start with digits ("12 apples").
		return frame{}, -1, false, false
	case i+1 == len(p) || p[i+1] != '<':
		return frame{}, 0, false, false
	}
	f.octet = true
	hdr := i + 1
	body := p[hdr:]
	if length > int64(f.max) {
		if len(body) >= f.max {
			f.discard = length - int64(f.max)
			return frame{data: body[:f.max], flags: frameTruncated}, hdr + f.max, true, true
		}
	} else if int64(len(body)) >= length {
		return frame{data: body[:length]}, hdr + int(length), true, true
	}
	if eof {
		fl := frameIncomplete
		if length > int64(f.max) {
			fl |= frameTruncated
		}
		return frame{data: body, flags: fl}, len(p), true, true
	}
	return frame{}, 0, false, true // wait for the rest
}

// line handles an LF-terminated frame.
func (f *framer) line(p []byte, eof bool) (frame, int, bool) {
	if p[0] == '<' {
		f.octet = false
	}
	limit := min(len(p), f.max+1)
	from := min(f.scanned, limit)
	if i := bytes.IndexByte(p[from:limit], '\n'); i >= 0 {
		return frame{data: p[:from+i]}, from + i + 1, true
	}
	f.scanned = limit
	if len(p) > f.max {
		// Over-long: keep the first max bytes, drop the rest of the line.
		if i := bytes.IndexByte(p[f.max:], '\n'); i >= 0 {
			f.discarded += int64(i + 1)
			return frame{data: p[:f.max], flags: frameTruncated}, f.max + i + 1, true
		}
		f.discardLine = true
		f.discarded += int64(len(p) - f.max)
		return frame{data: p[:f.max], flags: frameTruncated}, len(p), true
	}
	if eof {
		// The last line of a stream needs no LF.
		return frame{data: p}, len(p), true
	}
	return frame{}, 0, false
}

// resync skips to the next plausible frame start and returns the skipped
// bytes as a junk frame.
func (f *framer) resync(p []byte, eof bool) (frame, int, bool) {
	// A frame start ("LEN SP <") may straddle the end of what was scanned.
	from := max(1, f.scanned-headerRoom-1)
	j := nextFrameStart(p, from)
	f.scanned = len(p)
	if j > 0 {
		if j > f.max {
			return frame{data: p[:f.max], flags: frameJunk | frameTruncated}, j, true
		}
		return frame{data: p[:j], flags: frameJunk}, j, true
	}
	if eof {
		return frame{data: p[:min(len(p), f.max)], flags: frameJunk}, len(p), true
	}
	if len(p) >= f.max+headerRoom {
		// No frame start in a whole buffer: give up this much, keeping a
		// tail in which a header could begin.
		cut := len(p) - headerRoom
		return frame{data: p[:min(cut, f.max)], flags: frameJunk}, cut, true
	}
	return frame{}, 0, false
}

// nextFrameStart returns the offset of the first plausible frame start at
// or after from (at least 1): a count "LEN SP <" not preceded by a digit, or
// '<' right after an LF. It returns -1 when there is none.
func nextFrameStart(p []byte, from int) int {
	for j := from; j < len(p); j++ {
		c := p[j]
		switch {
		case c == '<' && p[j-1] == '\n':
			return j
		case c >= '1' && c <= '9' && !isDigit(p[j-1]):
			k := j
			for k < len(p) && k-j <= maxCountDigits && isDigit(p[k]) {
				k++
			}
			if k-j <= maxCountDigits && k+1 < len(p) && p[k] == ' ' && p[k+1] == '<' {
				return j
			}
		}
	}
	return -1
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
