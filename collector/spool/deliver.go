package spool

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/leitstand/leitstand/collector"
)

// position is where a delivery loop reads next: a segment (by its first
// sequence number) and a byte offset in it.
type position struct {
	seg uint64
	off int64
}

// deliverer moves records from the spool to one sink, in order, retrying a
// failed batch until it is accepted.
type deliverer struct {
	s    *Spool
	sink collector.Sink
	name string

	mu       sync.Mutex
	pos      position  // next record to deliver
	nextSeq  uint64    // its sequence number
	inFlight time.Time // append time of the oldest record being delivered; zero when caught up
	dirty    bool      // pos moved since the cursor was saved

	ctx    context.Context // cancelled when a shutdown's deadline passes
	cancel context.CancelFunc

	file    *os.File // the segment being read
	fileSeg uint64
}

func (d *deliverer) cursorPath() string {
	return filepath.Join(d.s.cfg.Dir, "cursors", cursorFileName(d.name))
}

// cursorFileName keeps sink names from escaping the cursor directory.
func cursorFileName(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, name)
}

// loadCursor reads the saved position; a sink without one starts at the
// oldest record, and one whose segment is gone (dropped) at the oldest left.
// Called with s.mu held, before the loops start.
func (d *deliverer) loadCursor() error {
	d.ctx, d.cancel = context.WithCancel(context.Background())
	oldest := d.s.nextSeq
	if len(d.s.segs) > 0 {
		oldest = d.s.segs[0].first
	}
	d.pos, d.nextSeq = position{seg: oldest}, oldest
	b, err := os.ReadFile(d.cursorPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var p position
	var seq uint64
	if _, err := fmt.Sscanf(string(b), "%d %d %d", &p.seg, &p.off, &seq); err != nil {
		d.s.log.Error("spool: unreadable cursor; delivering from the oldest record", "sink", d.name, "err", err)
		return nil
	}
	for _, seg := range d.s.segs {
		if seg.first == p.seg && p.off <= seg.size {
			d.pos, d.nextSeq = p, seq
			return nil
		}
	}
	if p.seg >= oldest {
		// The cursor is past every segment on disk: everything was delivered.
		d.pos, d.nextSeq = position{seg: d.s.nextSeq}, d.s.nextSeq
	}
	return nil
}

func (d *deliverer) saveCursor() error {
	d.mu.Lock()
	if !d.dirty {
		d.mu.Unlock()
		return nil
	}
	p, seq := d.pos, d.nextSeq
	d.dirty = false
	d.mu.Unlock()
	if err := writeFileAtomic(d.cursorPath(), fmt.Appendf(nil, "%d %d %d\n", p.seg, p.off, seq)); err != nil {
		d.mu.Lock()
		d.dirty = true
		d.mu.Unlock()
		return err
	}
	return nil
}

// cancelAfter abandons a delivery in flight once ctx ends.
func (d *deliverer) cancelAfter(ctx context.Context) {
	go func() {
		select {
		case <-ctx.Done():
			d.cancel()
		case <-d.ctx.Done():
		}
	}()
}

func (d *deliverer) closeFile() {
	if d.file != nil {
		d.file.Close()
		d.file = nil
	}
}

func (d *deliverer) run() {
	defer d.s.loops.Done()
	defer d.cancel()
	for {
		b, next, err := d.read()
		if err != nil {
			return // stopping
		}
		ok := d.deliver(b)
		n := b.Len()
		b.Release()
		if !ok {
			return // stopping; the batch is delivered again after the restart
		}
		d.mu.Lock()
		d.pos, d.nextSeq, d.dirty = next.pos, next.seq, true
		d.inFlight = time.Time{}
		d.mu.Unlock()
		d.s.m.delivered.WithLabelValues(d.name).Add(float64(n))
		d.s.collect()
	}
}

// deliver hands b to the sink until it accepts it, backing off with jitter
// between attempts. It returns false when the spool is stopping.
func (d *deliverer) deliver(b *collector.Batch) bool {
	wait := d.s.cfg.RetryInitial
	for attempt := 1; ; attempt++ {
		err := d.sink.Consume(d.ctx, b)
		if err == nil {
			if attempt > 1 {
				d.s.log.Info("spool: sink accepts again", "sink", d.name, "attempts", attempt)
			}
			return true
		}
		d.s.m.deliveryFailures.WithLabelValues(d.name).Inc()
		d.s.log.Warn("spool: sink refused a batch; retrying", "sink", d.name, "events", b.Len(), "attempt", attempt, "retry_in", wait.String(), "err", err)
		jitter := time.Duration(rand.Int64N(int64(wait)/2 + 1))
		select {
		case <-d.s.stop:
			return false
		case <-time.After(wait/2 + jitter):
		}
		wait = min(2*wait, d.s.cfg.RetryMax)
	}
}

// readEnd is where a read stopped: the position and sequence number after
// the last record in the batch.
type readEnd struct {
	pos position
	seq uint64
}

// read collects up to ReadBatchEvents events from whole records, waiting
// for new records when it has caught up. It fails only when stopping.
func (d *deliverer) read() (*collector.Batch, readEnd, error) {
	d.mu.Lock()
	end := readEnd{pos: d.pos, seq: d.nextSeq}
	d.mu.Unlock()
	b := collector.NewBatch("spool")
	for {
		seg, size, sealed, next, added, ok := d.s.segmentAt(end.pos.seg)
		if !ok {
			// Our segment was dropped (drop_oldest): go on at the oldest one.
			end.pos = position{seg: next}
			end.seq = next
			continue
		}
		if end.pos.off >= size {
			if b.Len() > 0 {
				return b, end, nil
			}
			if sealed {
				end.pos = position{seg: next}
				continue
			}
			select {
			case <-added:
				continue
			case <-d.s.stop:
				b.Release()
				return nil, end, collector.ErrClosed
			}
		}
		payload, buf, err := d.readRecord(seg, end.pos.off, size)
		if err != nil {
			d.s.m.corruptRecords.Inc()
			d.s.log.Error("spool: unreadable record; skipping the rest of its segment", "segment", segmentName(seg), "offset", end.pos.off, "err", err)
			if sealed {
				end.pos = position{seg: next}
			} else {
				end.pos.off = size
			}
			continue
		}
		seq, appended := payloadMeta(payload)
		if b.Len() == 0 {
			d.mu.Lock()
			d.inFlight = appended
			d.mu.Unlock()
		}
		b.Keep(buf)
		if err := decodeEvents(payload, b); err != nil {
			d.s.m.corruptRecords.Inc()
			d.s.log.Error("spool: a record's events do not decode; skipping it", "segment", segmentName(seg), "offset", end.pos.off)
		}
		end.pos.off += int64(headerSize + len(payload))
		end.seq = seq + 1
		if b.Len() >= d.s.cfg.ReadBatchEvents {
			return b, end, nil
		}
	}
}

// readRecord reads the record at off into a pooled buffer.
func (d *deliverer) readRecord(seg uint64, off, size int64) ([]byte, *[]byte, error) {
	if d.file == nil || d.fileSeg != seg {
		d.closeFile()
		f, err := os.Open(filepath.Join(d.s.cfg.Dir, segmentName(seg)))
		if err != nil {
			return nil, nil, err
		}
		d.file, d.fileSeg = f, seg
	}
	var hdr [headerSize]byte
	if _, err := d.file.ReadAt(hdr[:], off); err != nil {
		return nil, nil, err
	}
	n, crc, ok := recordHeader(hdr[:])
	if !ok || off+int64(headerSize+n) > size {
		return nil, nil, errCorrupt
	}
	buf := collector.GetBuffer()
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	payload := (*buf)[:n]
	if _, err := d.file.ReadAt(payload, off+headerSize); err != nil {
		collector.PutBuffer(buf)
		return nil, nil, err
	}
	if crc32.Checksum(payload, castagnoli) != crc {
		collector.PutBuffer(buf)
		return nil, nil, errCorrupt
	}
	*buf = payload
	return payload, buf, nil
}

// segmentAt tells a reader about the segment starting at first: its valid
// size, whether it is sealed, the first sequence number after it, and a
// channel closed when more is appended. ok is false if it no longer exists;
// next is then the oldest segment's first sequence number.
func (s *Spool) segmentAt(first uint64) (seg uint64, size int64, sealed bool, next uint64, added <-chan struct{}, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, sg := range s.segs {
		if sg.first == first {
			next = s.nextSeq
			if i+1 < len(s.segs) {
				next = s.segs[i+1].first
			}
			return sg.first, sg.size, sg.sealed, next, s.added, true
		}
		if sg.first > first {
			// Between segments (an empty one was replaced): continue here.
			return 0, 0, false, sg.first, s.added, false
		}
	}
	if len(s.segs) > 0 && first < s.segs[0].first {
		return 0, 0, false, s.segs[0].first, s.added, false
	}
	// Past the newest segment cannot happen while running: the active
	// segment is named by the sequence number the next record gets.
	return 0, 0, false, s.segs[len(s.segs)-1].first, s.added, false
}
