package podlog

import (
	"bytes"
	"errors"
	"io"
	"os"
	"regexp"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/leitstand/leitstand/collector"
)

// winShift sets the id windows: an event's id counts lines within the
// 1MiB window of the file its first line starts in.
const winShift = 20

// cursor is a position at the start of a line, with what the ids of the
// lines from there on need.
//
// An event's id is "<file id>.<w>:<n>": the n-th line that starts in the
// w-th MiB of the file. It depends on the file's content only, never on how
// reads or batches were cut, so a line read again after a failure or a
// restart gets the id it had before, and the forward sink can have the
// aggregator derive exactly this id (Idempotency-Key "<file id>.<w>", line
// n). Counting lines rather than bytes keeps the empty lines that place an
// event in a request few.
type cursor struct {
	off int64 // offset of a line start
	win int64 // window of the last line started before off
	cnt int32 // lines started in win before off
}

// take returns the id position of the line starting at c.off and counts it.
func (c *cursor) take() (win int64, n int32) {
	w := c.off >> winShift
	if w != c.win {
		c.win, c.cnt = w, 0
	}
	c.cnt++
	return w, c.cnt
}

// multiline is a compiled MultilineRule.
type multiline struct {
	sel      selector
	re       *regexp.Regexp
	maxLines int
	maxBytes int
	maxWait  time.Duration
}

// reader reads one file of a family: it splits lines, decodes them, joins
// parts and multi-line events, and turns them into events.
type reader struct {
	f      *family
	held   *heldFile
	src    source
	file   *os.File
	info   fileInfo
	rec    *record
	id     string
	format format

	cur     cursor // the next line to read
	streams [numStreams]streamState
	long    longLine
	scratch []byte // json-file text, unescaped

	// finishing: the file gets no more writes (rotated away, deleted, or
	// compressed); read it to its end, send what waits, and close it.
	finishing  bool
	switchSeen bool // a new live file with content was seen after the last read

	batchBytes int
	lines      int // lines read, for the metrics
	truncated  int
}

// streamState is what waits in one stream (stdout, stderr) for more lines.
type streamState struct {
	line  part // a line being joined from the runtime's parts
	event part // a multi-line event waiting for its continuation
}

// part is a line or event under construction. Its text is a copy, since
// the read buffer is reused.
type part struct {
	active    bool
	at        cursor // before its first line: where to read again from
	win       int64
	n         int32
	ts        time.Time // of its first line: the event's time
	last      time.Time // of its last line: whether the next one is late
	buf       []byte
	lines     int
	parts     int
	truncated bool
	partial   bool
	deadline  time.Time
}

func (p *part) start(at cursor, win int64, n int32, ts time.Time) {
	p.active, p.at, p.win, p.n, p.ts, p.last = true, at, win, n, ts, ts
	p.buf, p.lines, p.parts, p.truncated, p.partial = p.buf[:0], 0, 0, false, false
	p.deadline = time.Time{}
}

// extend notes a line stamped ts joining the part: the latest stamp
// counts (a line without one, or stamped earlier, does not move it back),
// and the deadline only moves later.
func (p *part) extend(ts, now time.Time, wait time.Duration) {
	if ts.After(p.last) {
		p.last = ts
	}
	if d := due(ts, now, wait); d.After(p.deadline) {
		p.deadline = d
	}
}

// maxKeptPart is the buffer capacity a finished part may keep.
const maxKeptPart = 64 << 10

func (p *part) clear() {
	p.active = false
	if cap(p.buf) > maxKeptPart {
		p.buf = nil
	}
}

// longLine is a line longer than the read buffer: its head is kept, the
// rest skipped up to the newline.
type longLine struct {
	active bool
	at     cursor
	win    int64
	n      int32
	head   []byte
	scan   int64 // where the search for the newline continues
}

// reset forgets everything read after the acknowledged position, so the
// next read starts there again.
func (r *reader) reset() {
	r.cur = r.rec.cursor()
	for i := range r.streams {
		r.streams[i].line.clear()
		r.streams[i].event.clear()
	}
	r.long = longLine{head: r.long.head[:0]}
	r.switchSeen = false
}

// ackCursor is where reading must start again if everything emitted so far
// is acknowledged: the first line of anything still waiting.
func (r *reader) ackCursor() cursor {
	c := r.cur
	take := func(p cursor) {
		if p.off < c.off {
			c = p
		}
	}
	for i := range r.streams {
		if s := &r.streams[i]; s.line.active {
			take(s.line.at)
		}
		if s := &r.streams[i]; s.event.active {
			take(s.event.at)
		}
	}
	if r.long.active {
		take(r.long.at)
	}
	return c
}

// pending reports whether anything waits for more lines.
func (r *reader) pending() bool {
	for i := range r.streams {
		if r.streams[i].line.active || r.streams[i].event.active {
			return true
		}
	}
	return r.long.active
}

// nextDeadline is when the earliest waiting line or event is due (zero if
// nothing waits).
func (r *reader) nextDeadline() time.Time {
	var d time.Time
	for i := range r.streams {
		for _, p := range []*part{&r.streams[i].line, &r.streams[i].event} {
			if p.active && (d.IsZero() || p.deadline.Before(d)) {
				d = p.deadline
			}
		}
	}
	return d
}

func (r *reader) isFull(b *collector.Batch) bool {
	return b.Len() >= r.f.r.cfg.MaxBatchEvents || r.batchBytes >= int(r.f.r.cfg.MaxBatchBytes)
}

// fill reads lines into b until b is full or the file's end is reached
// (eof). With final, a last line without its newline counts as complete.
func (r *reader) fill(b *collector.Batch, buf []byte, final bool, now time.Time) (eof bool, read int, err error) {
	for !r.isFull(b) {
		at := r.cur.off
		if r.long.active {
			at = r.long.scan
		}
		n, err := r.src.ReadAt(buf, at)
		if err != nil && !errors.Is(err, io.EOF) {
			return false, read, err
		}
		short := n < len(buf)
		data := buf[:n]
		if r.long.active {
			i := bytes.IndexByte(data, '\n')
			switch {
			case i >= 0:
				read += i + 1
				r.endLong(b, r.long.scan+int64(i)+1, now)
			case short && final:
				read += n
				r.endLong(b, r.long.scan+int64(n), now)
				return true, read, nil
			case short:
				read += n
				r.long.scan += int64(n)
				return true, read, nil
			default:
				read += n
				r.long.scan += int64(n)
			}
			continue
		}
		if n == 0 {
			return true, read, nil
		}
		p := 0
		for p < n && !r.isFull(b) {
			i := bytes.IndexByte(data[p:], '\n')
			if i < 0 {
				break
			}
			r.line(b, data[p:p+i], now, false)
			r.cur.off += int64(i + 1)
			p += i + 1
		}
		read += p
		if r.isFull(b) {
			return false, read, nil
		}
		if short {
			if rest := n - p; rest > 0 && final {
				r.line(b, data[p:n], now, false)
				r.cur.off += int64(rest)
				read += rest
			}
			return true, read, nil
		}
		if p == 0 {
			// One line fills the whole buffer: keep its head, skip the rest.
			head := min(n, int(r.f.r.cfg.MaxLineBytes)+256)
			r.long.at = r.cur
			r.long.win, r.long.n = r.cur.take()
			r.long.head = append(r.long.head[:0], data[:head]...)
			r.long.scan = r.cur.off + int64(n)
			r.long.active = true
			read += n
		}
	}
	return false, read, nil
}

// endLong completes a long line ending at end.
func (r *reader) endLong(b *collector.Batch, end int64, now time.Time) {
	l := &r.long
	l.active = false
	r.cur.off = end
	r.lineAt(b, l.head, l.at, l.win, l.n, now, true)
	if cap(l.head) > maxKeptPart {
		l.head = nil
	}
}

// line handles the line starting at r.cur.off.
func (r *reader) line(b *collector.Batch, raw []byte, now time.Time, truncated bool) {
	at := r.cur
	win, n := r.cur.take()
	r.lineAt(b, raw, at, win, n, now, truncated)
}

func (r *reader) lineAt(b *collector.Batch, raw []byte, at cursor, win int64, n int32, now time.Time, truncated bool) {
	r.lines++
	var pl physLine
	if r.format == formatDocker {
		r.scratch = parseDocker(raw, &pl, r.scratch[:0])
	} else {
		parseCRI(raw, &pl)
	}
	if truncated {
		// The head of a line longer than the read buffer: what decoded of it
		// is all there is.
		pl.partial = false
	}
	maxLine := int(r.f.r.cfg.MaxLineBytes)
	st := &r.streams[pl.stream]
	if lp := &st.line; lp.active && late(lp.last, pl.ts, r.f.r.cfg.PartialWait) {
		r.flushLine(b, pl.stream, now)
	}
	if st.line.active || pl.partial {
		lp := &st.line
		if !lp.active {
			lp.start(at, win, n, pl.ts)
		}
		lp.parts++
		if room := maxLine - len(lp.buf); len(pl.text) > room {
			lp.buf = append(lp.buf, cutUTF8(pl.text, room)...)
			lp.truncated = true
		} else {
			lp.buf = append(lp.buf, pl.text...)
		}
		lp.truncated = lp.truncated || truncated
		lp.extend(pl.ts, now, r.f.r.cfg.PartialWait)
		if pl.partial {
			return
		}
		r.logical(b, pl.stream, lp.at, lp.win, lp.n, lp.ts, lp.buf, lp.truncated, false, now)
		lp.clear()
		return
	}
	text := pl.text
	if len(text) > maxLine {
		text = cutUTF8(text, maxLine)
		truncated = true
	}
	r.logical(b, pl.stream, at, win, n, pl.ts, text, truncated, false, now)
}

// Whether a line joins the part before it (the runtime's parts of one
// line, or a multi-line event) is decided by the runtime's timestamps,
// never by when the agent happened to read: a line stamped more than the
// wait after the part's last line is late and starts anew. Read live or
// read again after a restart, a file is split the same way, so the events
// get the same ids and the aggregator stores each once.
func late(last, ts time.Time, wait time.Duration) bool {
	return !last.IsZero() && !ts.IsZero() && ts.Sub(last) > wait
}

// settle is how long past its wait a part still waits at the file's end
// for lines the runtime stamped in time but had not written yet. Sent
// earlier, such a line would be split off while running and joined when
// the file is read again after a restart.
const settle = 250 * time.Millisecond

// due is when something last extended at ts (read at now) is sent if no
// more lines came: lines read long after they were written (a backlog) do
// not wait again.
func due(ts, now time.Time, wait time.Duration) time.Time {
	if !ts.IsZero() && ts.Before(now) {
		return ts.Add(wait + settle)
	}
	return now.Add(wait + settle)
}

// cutUTF8 cuts p to at most n bytes without splitting a character.
func cutUTF8(p []byte, n int) []byte {
	if len(p) <= n {
		return p
	}
	if n <= 0 {
		return p[:0]
	}
	for i := n; i > n-utf8.UTFMax && i > 0; i-- {
		if utf8.RuneStart(p[i]) {
			return p[:i]
		}
	}
	return p[:n]
}

// logical handles a complete line: emitted at once, or joined into a
// multi-line event.
func (r *reader) logical(b *collector.Batch, stream int, at cursor, win int64, n int32, ts time.Time, text []byte, truncated, partial bool, now time.Time) {
	if truncated {
		r.truncated++
	}
	ml := r.f.ml
	if ml == nil {
		r.emit(b, stream, at.off, win, n, ts, text, flagBits(truncated, false, partial))
		return
	}
	ev := &r.streams[stream].event
	start := ml.re.Match(text)
	if ev.active {
		if !start && ev.lines < ml.maxLines && len(ev.buf)+1+len(text) <= ml.maxBytes && !late(ev.last, ts, ml.maxWait) {
			ev.buf = append(ev.buf, '\n')
			ev.buf = append(ev.buf, text...)
			ev.lines++
			ev.truncated = ev.truncated || truncated
			ev.partial = ev.partial || partial
			ev.extend(ts, now, ml.maxWait)
			return
		}
		r.flushEvent(b, stream)
	}
	ev.start(at, win, n, ts)
	ev.buf = append(ev.buf, text...)
	ev.lines = 1
	ev.truncated, ev.partial = truncated, partial
	ev.extend(ts, now, ml.maxWait)
}

// flushLine sends the parts of a line that never got its last part.
func (r *reader) flushLine(b *collector.Batch, stream int, now time.Time) {
	lp := &r.streams[stream].line
	r.logical(b, stream, lp.at, lp.win, lp.n, lp.ts, lp.buf, lp.truncated, true, now)
	lp.clear()
}

func (r *reader) flushEvent(b *collector.Batch, stream int) {
	ev := &r.streams[stream].event
	r.emit(b, stream, ev.at.off, ev.win, ev.n, ev.ts, ev.buf, flagBits(ev.truncated, ev.lines > 1, ev.partial))
	ev.clear()
}

// flushDue sends what has waited long enough, or everything with final.
func (r *reader) flushDue(b *collector.Batch, now time.Time, final bool) {
	for s := range r.streams {
		st := &r.streams[s]
		if lp := &st.line; lp.active && (final || !now.Before(lp.deadline)) {
			r.flushLine(b, s, now)
		}
		if ev := &st.event; ev.active && (final || !now.Before(ev.deadline)) {
			// A line still being joined from its parts joins the event if
			// its first part is not late for it: the event waits for it,
			// as it would when the file is read again.
			if lp := &st.line; !final && lp.active && !late(ev.last, lp.ts, r.f.ml.maxWait) {
				ev.deadline = lp.deadline
				continue
			}
			r.flushEvent(b, s)
		}
	}
}

// log.flags values, by bit: truncated 1, multiline 2, partial 4.
var flagValues = func() (v [8]string) {
	for i := 1; i < 8; i++ {
		var parts []string
		if i&2 != 0 {
			parts = append(parts, `"multiline"`)
		}
		if i&4 != 0 {
			parts = append(parts, `"partial"`)
		}
		if i&1 != 0 {
			parts = append(parts, `"truncated"`)
		}
		s := "["
		for k, p := range parts {
			if k > 0 {
				s += ","
			}
			s += p
		}
		v[i] = s + "]"
	}
	return v
}()

func flagBits(truncated, multiline, partial bool) int {
	f := 0
	if truncated {
		f |= 1
	}
	if multiline {
		f |= 2
	}
	if partial {
		f |= 4
	}
	return f
}

// emit appends one event to the batch.
func (r *reader) emit(b *collector.Batch, stream int, off, win int64, n int32, ts time.Time, text []byte, flags int) {
	e := b.Next()
	if ts.IsZero() {
		ts = b.Received
	}
	e.Timestamp = ts
	id := b.Arena.Builder(len(r.id) + 24)
	id = append(id, r.id...)
	id = append(id, '.')
	id = strconv.AppendInt(id, win, 10)
	id = append(id, ':')
	id = strconv.AppendInt(id, int64(n), 10)
	e.ID = b.Arena.Commit(id)
	// Fields go in in key order, so the pipeline's sort finds them sorted.
	e.Fields = append(e.Fields, r.f.static[:r.f.labelsAt]...)
	if labels := r.f.labels(); labels != nil {
		e.Fields = append(e.Fields, labels...)
	}
	e.Fields = append(e.Fields, r.f.static[r.f.labelsAt:]...)
	if flags != 0 {
		e.Add("log.flags", collector.KindRaw, flagValues[flags])
	}
	e.Add("log.iostream", collector.KindString, streamNames[stream])
	var num [20]byte
	e.Add("log.offset", collector.KindNumber, b.Arena.String(strconv.AppendInt(num[:0], off, 10)))
	e.Add(collector.FieldMessage, collector.KindString, b.Arena.String(text))
	r.batchBytes += len(text)
}
