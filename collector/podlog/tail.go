package podlog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/leitstand/leitstand/collector"
)

// family is one live log file ("…/<container>/0.log") with the files it
// was rotated into. One goroutine reads a family's files one after the
// other, oldest first: a rotated file is read to its end before its
// successor, and a position advances only after the pipeline (and so the
// aggregator) acknowledged the batch read up to it.
type family struct {
	r         *Receiver
	key       string // "<pod dir>/<container>/<live file name>"
	dir       string
	base      string
	livePath  string
	pod       podDir
	container string
	static    []collector.Field // in key order
	labelsAt  int               // where in static the pod labels go
	ml        *multiline
	info      *podInfo // labels; nil without the Kubernetes client
	// startAt is the live file as the first scan of a first start found it,
	// when start_at is end: it is read from that size on.
	startAt *fileInfo

	wake   chan struct{}
	rescan atomic.Bool
	done   chan struct{}

	held     map[string][]*heldFile // by content id: every file found with it
	nheld    int
	cur      *reader
	unacked  atomic.Int64 // bytes on disk not yet acknowledged, at the last look
	failures int          // batches in a row that were not acknowledged
	lastRead int          // bytes the last step read
	quiet    int          // polls in a row that found nothing new, up to 3
}

// candidate is a file of the family found by a scan.
type candidate struct {
	fileInfo
	id   string // "" while the file has no complete first line
	live bool
}

func (f *family) notify(scan bool) {
	if scan {
		f.rescan.Store(true)
	}
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *family) labels() []collector.Field {
	if f.info == nil {
		return nil
	}
	if p := f.info.labels.Load(); p != nil {
		return *p
	}
	return nil
}

func (f *family) run(ctx context.Context) {
	defer close(f.done)
	defer f.closeAll()
	if k := f.r.kube; k != nil {
		f.info = k.info(f.pod.UID)
		k.wait(ctx, f.info, f.r.cfg.Kubernetes.Wait)
	}
	var gone, unready bool
	var nextScan, notBefore time.Time
	for ctx.Err() == nil {
		now := time.Now()
		if f.rescan.Swap(false) || !now.Before(nextScan) {
			gone, unready = f.scan(now)
			nextScan = now.Add(f.r.cfg.RescanInterval)
			if unready {
				// A file without a complete first line yet: look again soon.
				nextScan = now.Add(min(f.r.cfg.PollInterval, f.r.cfg.RescanInterval))
			}
		}
		if f.cur == nil {
			f.cur = f.pick()
			if f.cur == nil {
				if gone && f.nheld == 0 {
					f.r.removeFamily(f)
					return
				}
				if f.sleep(ctx, nextScan, time.Time{}) && unready {
					f.rescan.Store(true)
				}
				continue
			}
		}
		res, submitted := f.step(ctx)
		switch res {
		case stepMore:
			continue
		case stepRetry:
			f.sleep(ctx, time.Now().Add(f.backoff(max(1, f.failures))), time.Time{})
			continue
		}
		// Poll the file: at once after a read, backing off to eight times
		// poll_interval while it stays quiet.
		if f.lastRead > 0 {
			f.quiet = 0
		} else if f.quiet < 3 {
			f.quiet++
		}
		until := time.Now().Add(f.r.cfg.PollInterval << f.quiet)
		if f.cur != nil {
			if d := f.cur.nextDeadline(); !d.IsZero() && d.Before(until) {
				until = d
			}
		}
		if nextScan.Before(until) {
			until = nextScan
		}
		if submitted {
			notBefore = time.Now().Add(f.r.cfg.BatchWait)
		}
		f.sleep(ctx, until, notBefore)
	}
}

// sleep waits for a notification or until, whichever comes first, but not
// past ctx and not before notBefore. It reports whether a notification
// came.
func (f *family) sleep(ctx context.Context, until, notBefore time.Time) bool {
	woken := false
	if d := time.Until(until); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
		case <-f.wake:
			woken = true
		case <-t.C:
		}
		t.Stop()
	}
	if d := time.Until(notBefore); d > 0 && ctx.Err() == nil {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	return woken
}

func (f *family) backoff(failures int) time.Duration {
	d := f.r.cfg.RetryMinBackoff << min(failures-1, 16)
	if d > f.r.cfg.RetryMaxBackoff || d <= 0 {
		d = f.r.cfg.RetryMaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

// heldFile is an open file of the family whose content is not read to its
// end yet. Holding it open keeps its content readable when the kubelet
// deletes it (too many rotated files, or the pod is gone) before the agent
// got to it: the files are the buffer, and an open file stays one. One
// content may be held in several files: a live file and its copytruncate
// copy (the live one is read while it lasts, the copy after the
// truncation), a rotated file and its compressed copy.
type heldFile struct {
	id   string
	info fileInfo // as opened (the compressed file's for .gz)
	src  source
	file *os.File
}

// maxHeld bounds the files a family holds open; the kubelet keeps five.
const maxHeld = 16

// scan lists the family's files, names each by its content, records every
// file not seen before and holds open the unfinished ones. gone: the
// container directory is no more. unready: a file has no complete first
// line yet.
func (f *family) scan(now time.Time) (gone, unready bool) {
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return true, false
		}
		f.r.log.Warn("podlog: listing a container log directory failed", "dir", f.dir, "err", err)
		return false, false
	}
	var cands []candidate
	var targetDir, targetBase string
	add := func(dir, name string, live bool) {
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			return
		}
		c := candidate{fileInfo: statInfo(p, fi), live: live}
		src, _, err := openSource(p, c.gz)
		if err != nil {
			return
		}
		id, ok, err := fileID(f.key, src)
		src.Close()
		if err != nil {
			f.r.log.Warn("podlog: reading the start of a log file failed", "path", p, "err", err)
			return
		}
		if !ok {
			unready = true
			return
		}
		c.id = id
		cands = append(cands, c)
	}
	for _, e := range entries {
		name := e.Name()
		if name != f.base && !rotatedOf(name, f.base) {
			continue
		}
		if name == f.base && e.Type()&fs.ModeSymlink != 0 {
			// Docker's json-file under Kubernetes: the live file is a link
			// into the engine's directory, where the engine rotates it.
			if t, err := filepath.EvalSymlinks(filepath.Join(f.dir, name)); err == nil {
				targetDir, targetBase = filepath.Dir(t), filepath.Base(t)
			}
		}
		add(f.dir, name, name == f.base)
	}
	if targetDir != "" {
		if more, err := os.ReadDir(targetDir); err == nil {
			for _, e := range more {
				if rotatedOf(e.Name(), targetBase) {
					add(targetDir, e.Name(), false)
				}
			}
		}
	}
	f.record(cands, now)
	f.hold(cands)
	return false, unready
}

// record updates the records of the files found and creates those of new
// ones. A new live file is read from its beginning (or, on a first start
// with start_at end, from its end); a new rotated file only if it was
// written after the positions were last saved, that is, while the agent
// was away. Older rotated files were read before, or predate the agent.
func (f *family) record(cands []candidate, now time.Time) {
	st := f.r.state
	for i := range cands {
		c := &cands[i]
		rec := st.get(c.id)
		if rec != nil {
			st.update(rec, func(r *record) {
				r.Seen, r.Path = now, c.path
				if !c.gz {
					r.Dev, r.Ino = c.dev, c.ino
				}
			})
			continue
		}
		rec = &record{ID: c.id, Family: f.key, Path: c.path, Dev: c.dev, Ino: c.ino, Seen: now}
		switch {
		case c.live && f.startAt != nil && sameFile(*f.startAt, c.fileInfo):
			if cur, err := endCursor(c.path, f.startAt.size); err == nil {
				rec.setCursor(cur)
			}
		case c.live:
		case c.mtime.After(f.r.cutoff):
		default:
			rec.Finished = true
			f.r.log.Debug("podlog: not reading a rotated file from before the agent's time", "path", c.path)
		}
		if c.gz {
			rec.Dev, rec.Ino = 0, 0
		}
		st.add(rec)
	}
	// Held files keep their records alive while they are read, even when
	// no longer on disk.
	for id := range f.held {
		if rec := st.get(id); rec != nil {
			st.update(rec, func(r *record) { r.Seen = now })
		}
	}
}

// hold opens every file of an unfinished content not held yet.
func (f *family) hold(cands []candidate) {
	for i := range cands {
		c := &cands[i]
		if f.nheld >= maxHeld || f.holds(c) {
			continue
		}
		if rec := f.r.state.get(c.id); rec == nil || rec.Finished {
			continue
		}
		src, file, err := openSource(c.path, c.gz)
		if err != nil {
			continue
		}
		id, ok, err := fileID(f.key, src)
		if err != nil || !ok || id != c.id {
			src.Close() // replaced since it was named; the next scan sees it anew
			f.rescan.Store(true)
			continue
		}
		info := c.fileInfo
		if fi, err := file.Stat(); err == nil {
			info = statInfo(c.path, fi) // the inode actually opened
			info.gz = c.gz
		}
		f.held[c.id] = append(f.held[c.id], &heldFile{id: c.id, info: info, src: src, file: file})
		f.nheld++
		f.r.m.filesOpen.Inc()
	}
	// Let go of contents whose records were finished or forgotten.
	for id, hs := range f.held {
		if rec := f.r.state.get(id); (rec == nil || rec.Finished) && (f.cur == nil || f.cur.id != id) {
			for _, h := range hs {
				f.release(h)
			}
		}
	}
}

// holds reports whether the file of c is held already.
func (f *family) holds(c *candidate) bool {
	for _, h := range f.held[c.id] {
		if h.info.gz == c.gz && sameFile(h.info, c.fileInfo) {
			return true
		}
	}
	return false
}

// pick chooses what to read next: rotated contents before the live one
// (which never ends), the least recently written first; and of a content
// held in several files, the live one, else an uncompressed one.
func (f *family) pick() *reader {
	var live fileInfo
	if fi, err := os.Stat(f.livePath); err == nil {
		live = statInfo(f.livePath, fi)
	}
	rank := func(h *heldFile) int {
		switch {
		case h.info.gz:
			return 2
		case sameFile(h.info, live):
			return 0
		}
		return 1
	}
	var chosen *heldFile
	var chosenTime time.Time
	chosenLive := false
	for id, hs := range f.held {
		var best *heldFile
		for _, h := range hs {
			// A file truncated and written again holds other content now.
			if !h.info.gz {
				if got, ok, err := fileID(f.key, h.src); err != nil || !ok || got != id {
					f.release(h)
					f.rescan.Store(true)
					continue
				}
			}
			if best == nil || rank(h) < rank(best) {
				best = h
			}
		}
		if best == nil {
			continue
		}
		t := best.info.mtime
		if fi, err := best.file.Stat(); err == nil {
			t = fi.ModTime()
		}
		isLive := rank(best) == 0
		if chosen == nil || (chosenLive && !isLive) ||
			(chosenLive == isLive && (t.Before(chosenTime) || t.Equal(chosenTime) && id < chosen.id)) {
			chosen, chosenTime, chosenLive = best, t, isLive
		}
	}
	if chosen == nil {
		return nil
	}
	rec := f.r.state.get(chosen.id)
	if rec == nil || rec.Finished {
		for _, h := range f.held[chosen.id] {
			f.release(h)
		}
		return nil
	}
	var first [1]byte
	if _, err := chosen.src.ReadAt(first[:], 0); err != nil && !errors.Is(err, io.EOF) {
		f.release(chosen)
		return nil
	}
	f.r.log.Debug("podlog: reading", "path", chosen.info.path, "offset", rec.Offset)
	return &reader{f: f, held: chosen, src: chosen.src, file: chosen.file, info: chosen.info, rec: rec, id: chosen.id,
		format: detectFormat(first[0]), cur: rec.cursor(), finishing: chosen.info.gz}
}

// release closes one held file.
func (f *family) release(h *heldFile) {
	hs := f.held[h.id]
	for i, x := range hs {
		if x == h {
			hs = append(hs[:i:i], hs[i+1:]...)
			h.src.Close()
			f.nheld--
			f.r.m.filesOpen.Dec()
			break
		}
	}
	if len(hs) == 0 {
		delete(f.held, h.id)
	} else {
		f.held[h.id] = hs
	}
}

// releaseAll closes every file held for a content.
func (f *family) releaseAll(id string) {
	for _, h := range append([]*heldFile(nil), f.held[id]...) {
		f.release(h)
	}
}

func (f *family) closeAll() {
	for id := range f.held {
		f.releaseAll(id)
	}
	f.cur = nil
}

// stepResult says what the family does after a step.
type stepResult int

const (
	stepMore  stepResult = iota // read on at once
	stepIdle                    // the end of the file: wait for more
	stepRetry                   // something failed: wait, then read again
)

// step reads one batch from the current file and hands it to the
// pipeline.
func (f *family) step(ctx context.Context) (res stepResult, submitted bool) {
	r, rd := f.r, f.cur
	if !r.acquire(ctx) {
		return stepIdle, false
	}
	defer r.release()
	b := collector.NewBatch("podlog")
	defer b.Release()
	buf := r.getBuf()
	now := time.Now()
	final := rd.finishing
	rd.batchBytes = 0
	eof, n, err := rd.fill(b, *buf, final, now)
	r.putBuf(buf)
	f.lastRead = n
	r.m.bytes.Add(float64(n))
	r.c.BytesReceived(n)
	r.m.lines.Add(float64(rd.lines))
	r.m.truncated.Add(float64(rd.truncated))
	rd.lines, rd.truncated = 0, 0
	if err != nil {
		f.unreadable(err)
		return stepRetry, false
	}
	if eof {
		rd.flushDue(b, now, final)
	}
	if !rd.info.gz && (b.Len() > 0 || eof) && f.replaced(rd) {
		return stepMore, false
	}
	if b.Len() > 0 {
		count := b.Len()
		r.c.Received(count)
		if err := r.next.Submit(ctx, b, r.policy); err != nil {
			f.failures++
			r.m.retries.Inc()
			r.c.Refused("not_acknowledged", count)
			if f.failures == 1 || f.failures%10 == 0 {
				r.log.Warn("podlog: batch not acknowledged; reading it again after a pause",
					"path", rd.info.path, "offset", rd.rec.Offset, "events", count, "failures", f.failures, "err", err)
			}
			rd.reset()
			return stepRetry, false
		}
		r.c.Accepted(count)
		if f.failures > 0 {
			r.log.Info("podlog: batches acknowledged again", "path", rd.info.path, "failures", f.failures)
			f.failures = 0
		}
		c := rd.ackCursor()
		r.state.update(rd.rec, func(rec *record) { rec.setCursor(c) })
		r.acked()
		submitted = true
	}
	if !eof {
		return stepMore, submitted
	}
	if final && !rd.pending() {
		f.finish(rd)
		return stepMore, submitted
	}
	if f.atEOF(rd, now) {
		return stepMore, submitted
	}
	return stepIdle, submitted
}

// replaced reports whether the file now holds other content than the one
// being read (copytruncate: the file was truncated and written again), and
// if so, lets the reader go. The record stays unfinished: the rest of the
// old content may turn up in the copy.
func (f *family) replaced(rd *reader) bool {
	id, ok, err := fileID(f.key, rd.src)
	if err == nil && ok && id == rd.id {
		return false
	}
	f.r.m.rotations.WithLabelValues("truncate").Inc()
	f.r.log.Info("podlog: file truncated in place (copytruncate); reading its new content from the start",
		"path", rd.info.path, "acknowledged_offset", rd.rec.Offset)
	f.drop()
	f.rescan.Store(true)
	return true
}

// atEOF decides what the end of the current file means: more lines later
// (it is still the live file), or the file's end (rotated away or deleted
// and no longer written). again: read once more right away.
func (f *family) atEOF(rd *reader, now time.Time) (again bool) {
	fi, err := rd.file.Stat()
	if err != nil {
		return false
	}
	f.unacked.Store(max(0, fi.Size()-rd.rec.Offset))
	if rd.info.gz {
		rd.finishing = true
		return true
	}
	live, err := os.Stat(f.livePath)
	if err == nil && sameFile(statInfo(f.livePath, live), rd.info) {
		rd.switchSeen = false
		return false
	}
	f.rescan.Store(true) // hold the new live file, if there is one
	kind := "rename"
	if st := statInfo(rd.info.path, fi); st.nlink == 0 {
		kind = "delete"
	}
	switch {
	case err == nil && live.Size() > 0 && rd.switchSeen:
		// The new file had lines before this read found the old one's end:
		// the writer had moved on, so the old file is complete.
	case err == nil && live.Size() > 0:
		rd.switchSeen = true
		return true
	case now.Sub(fi.ModTime()) < f.r.cfg.RotateWait:
		return false
	}
	rd.finishing = true
	f.r.m.rotations.WithLabelValues(kind).Inc()
	f.r.log.Debug("podlog: file rotated or deleted; reading it to its end", "path", rd.info.path, "kind", kind)
	return true
}

func sameFile(a, b fileInfo) bool { return a.dev == b.dev && a.ino == b.ino }

// finish records that the current file was read to its end.
func (f *family) finish(rd *reader) {
	c := rd.cur
	f.r.state.update(rd.rec, func(rec *record) {
		rec.setCursor(c)
		rec.Finished = true
	})
	f.r.acked()
	f.unacked.Store(0)
	f.r.log.Debug("podlog: file read to its end", "path", rd.info.path, "offset", c.off)
	f.releaseAll(rd.id)
	f.cur = nil
}

// unreadable handles a read error: a damaged compressed file is given up
// (its record finished, counted), anything else is tried again later.
func (f *family) unreadable(err error) {
	rd := f.cur
	if rd.info.gz {
		f.r.log.Error("podlog: compressed log file is damaged; the rest of it is lost", "path", rd.info.path, "offset", rd.cur.off, "err", err)
		f.r.m.rotations.WithLabelValues("damaged").Inc()
		f.r.state.update(rd.rec, func(rec *record) { rec.Finished = true })
		f.releaseAll(rd.id)
	} else {
		f.r.log.Warn("podlog: reading a log file failed; trying again", "path", rd.info.path, "err", err)
	}
	f.drop()
	f.rescan.Store(true)
}

// drop lets the current file go: it is closed and forgotten by the
// family (a later scan holds it again if it still has something to read).
func (f *family) drop() {
	if f.cur != nil {
		f.release(f.cur.held)
		f.cur = nil
	}
}

// endCursor is the cursor at the start of the last line of a file of size
// bytes: where start_at end begins.
func endCursor(path string, size int64) (cursor, error) {
	f, err := os.Open(path)
	if err != nil {
		return cursor{}, err
	}
	defer f.Close()
	// The line start: after the last newline before size.
	off := int64(0)
	buf := make([]byte, 64<<10)
	for end := size; end > 0 && off == 0; {
		start := max(0, end-int64(len(buf)))
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return cursor{}, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			off = start + int64(i) + 1
		}
		end = start
		if size-end >= 1<<winShift {
			break // one line over a whole window: start from the beginning
		}
	}
	return countedCursor(f, off)
}

// countedCursor builds the cursor at off (a line start) by counting the
// lines that start in off's window before it.
func countedCursor(f io.ReaderAt, off int64) (cursor, error) {
	win := off >> winShift
	ws := win << winShift
	c := cursor{off: off, win: win}
	if off == ws {
		return c, nil
	}
	from := ws
	if ws == 0 {
		c.cnt = 1 // the line at offset 0 starts without a newline before it
	} else {
		from = ws - 1 // a newline just before the window starts a line in it
	}
	data := make([]byte, off-from)
	if _, err := f.ReadAt(data, from); err != nil && !errors.Is(err, io.EOF) {
		return cursor{}, err
	}
	// newlines at positions p with p+1 in [ws, off): data[:len-1] covers them
	c.cnt += int32(bytes.Count(data[:len(data)-1], []byte{'\n'}))
	return c, nil
}
