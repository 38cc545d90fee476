// Package spool is the durable disk queue between the pipeline and the sinks
// that talk to peers (Elasticsearch, the aggregator): the pipeline appends
// anonymized batches, and one delivery loop per sink reads them back, hands
// them to its sink with retries and remembers how far it got.
//
// Segments are append-only files of length- and CRC32C-framed records. An
// append is acknowledged once the record is written and (with fsync on)
// synced; concurrent appends share one fsync (group commit). Each sink has
// its own cursor, so a slow or unreachable sink delays nobody else, and a
// segment is deleted once every cursor has passed it. At start-up a torn
// tail is cut off and counted, and every cursor resumes where it was saved.
// A record delivered again after a crash carries the same event ids, so
// sinks that deduplicate store it once.
package spool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/leitstand/leitstand/collector"
	"github.com/prometheus/client_golang/prometheus"
)

// segment is one file of records, named by the sequence number of its first
// record, so names sort in write order and tell how many records a sealed
// segment holds.
type segment struct {
	first  uint64
	path   string
	size   int64 // valid bytes; readers never read past it
	sealed bool
}

// Spool is the disk queue. As a collector.Sink it takes batches from the
// pipeline; it delivers them to the sinks given to New.
type Spool struct {
	cfg Config
	log *slog.Logger
	m   *metrics
	id  string // this spool's identity, part of position-based event ids

	mu        sync.Mutex
	segs      []*segment // in order; the last one is being written
	active    *os.File
	nextSeq   uint64
	total     int64
	pending   *syncGen
	pendBytes int64
	freed     chan struct{} // closed when segments are deleted, for blocked appends
	added     chan struct{} // closed when records are appended, for delivery loops
	closed    bool
	started   bool

	// full is set while appends are refused at the cap; fullMu guards the
	// figures of the current full period (see noteFull).
	full             atomic.Bool
	fullMu           sync.Mutex
	fullSince        time.Time
	refusedWhileFull int

	fileMu sync.RWMutex // held for reading while syncing, for writing while closing a file

	deliverers []*deliverer
	syncWake   chan struct{}
	stop       chan struct{}
	loops      sync.WaitGroup
	stopOnce   sync.Once
	encodeBuf  []byte // guarded by mu
}

// syncGen is one group commit: every append written before it starts waits
// on done and then reads err.
type syncGen struct {
	done chan struct{}
	err  error
}

// New creates a spool that delivers to sinks; Start recovers and opens it.
// The sinks' own lifecycles stay with the caller: start them before the
// spool and stop them after it.
func New(cfg Config, sinks []collector.Sink, reg prometheus.Registerer, log *slog.Logger) *Spool {
	s := &Spool{
		cfg:      cfg,
		log:      log,
		freed:    make(chan struct{}),
		added:    make(chan struct{}),
		syncWake: make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	for _, sink := range sinks {
		s.deliverers = append(s.deliverers, &deliverer{s: s, sink: sink, name: sink.Name()})
	}
	s.m = newMetrics(reg, s)
	for _, d := range s.deliverers {
		// Each sink's series exist from the start at 0, so rate() and
		// increase() see the first failure.
		s.m.delivered.WithLabelValues(d.name)
		s.m.deliveryFailures.WithLabelValues(d.name)
	}
	return s
}

// Name implements collector.Sink.
func (s *Spool) Name() string { return "spool" }

// Start recovers the spool on disk: it reads the spool's identity, cuts a
// torn tail off the last segment, loads the cursors and starts a new
// segment, the sync loop and one delivery loop per sink.
func (s *Spool) Start(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.closed {
		return errors.New("spool: already started")
	}
	if err := os.MkdirAll(filepath.Join(s.cfg.Dir, "cursors"), 0o750); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	id, err := loadOrCreateID(filepath.Join(s.cfg.Dir, "id"))
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.id = id
	if err := s.recover(); err != nil {
		return fmt.Errorf("spool: recovery of %s: %w", s.cfg.Dir, err)
	}
	for _, d := range s.deliverers {
		if err := d.loadCursor(); err != nil {
			return fmt.Errorf("spool: cursor of %s: %w", d.name, err)
		}
	}
	s.collectLocked()
	if err := s.openSegmentLocked(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.started = true
	s.loops.Add(2 + len(s.deliverers))
	go s.syncLoop()
	go s.cursorLoop()
	for _, d := range s.deliverers {
		go d.run()
	}
	s.log.Info("spool opened", "dir", s.cfg.Dir, "segments", len(s.segs), "bytes", s.total, "next_seq", s.nextSeq)
	return nil
}

// recover scans the segments on disk. Only the last one can hold a torn
// record (earlier ones were synced when sealed); it is cut at the first
// record that is incomplete or fails its checksum.
func (s *Spool) recover() error {
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		first, ok := segmentSeq(e.Name())
		if !ok {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		s.segs = append(s.segs, &segment{first: first, path: filepath.Join(s.cfg.Dir, e.Name()), size: info.Size(), sealed: true})
	}
	sort.Slice(s.segs, func(i, j int) bool { return s.segs[i].first < s.segs[j].first })
	s.nextSeq = 1
	if len(s.segs) == 0 {
		return nil
	}
	last := s.segs[len(s.segs)-1]
	valid, next, err := scanSegment(last.path, last.first)
	if err != nil {
		return err
	}
	if torn := last.size - valid; torn > 0 {
		s.m.tornBytes.Add(float64(torn))
		s.log.Warn("spool: cut a torn tail off the last segment", "segment", filepath.Base(last.path), "bytes", torn)
		if err := os.Truncate(last.path, valid); err != nil {
			return err
		}
		last.size = valid
	}
	s.nextSeq = next
	for _, seg := range s.segs {
		s.total += seg.size
	}
	return nil
}

// scanSegment returns how many leading bytes of the file are whole, valid
// records and the sequence number after the last of them.
func scanSegment(path string, first uint64) (valid int64, next uint64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	next = first
	var hdr [headerSize]byte
	var payload []byte
	for {
		if _, err := io.ReadFull(f, hdr[:]); err != nil {
			return valid, next, nil // end of file or a torn header
		}
		n, crc, ok := recordHeader(hdr[:])
		if !ok {
			return valid, next, nil
		}
		if cap(payload) < n {
			payload = make([]byte, n)
		}
		payload = payload[:n]
		if _, err := io.ReadFull(f, payload); err != nil || crc32.Checksum(payload, castagnoli) != crc {
			return valid, next, nil
		}
		seq, _ := payloadMeta(payload)
		if seq < next {
			return valid, next, nil // not ours: a stale record after a reused name
		}
		valid += int64(headerSize + n)
		next = seq + 1
	}
}

func segmentName(first uint64) string { return fmt.Sprintf("%020d.seg", first) }

func segmentSeq(name string) (uint64, bool) {
	num, ok := strings.CutSuffix(name, ".seg")
	if !ok || len(num) != 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(num, 10, 64)
	return n, err == nil
}

// openSegmentLocked starts the segment the next record goes to. An empty
// segment of the same name left by an earlier run is reused.
func (s *Spool) openSegmentLocked() error {
	path := filepath.Join(s.cfg.Dir, segmentName(s.nextSeq))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if n := len(s.segs); n > 0 && s.segs[n-1].path == path {
		s.segs[n-1].sealed = false
	} else {
		s.segs = append(s.segs, &segment{first: s.nextSeq, path: path, size: info.Size()})
		s.total += info.Size()
	}
	s.active = f
	if err := syncDir(s.cfg.Dir); err != nil {
		return err
	}
	return nil
}

// sealLocked syncs and closes the active segment, then opens the next.
func (s *Spool) sealLocked() error {
	s.fileMu.Lock()
	err := s.active.Sync()
	err = errors.Join(err, s.active.Close())
	s.fileMu.Unlock()
	s.segs[len(s.segs)-1].sealed = true
	if err != nil {
		return err
	}
	return s.openSegmentLocked()
}

// Consume appends the batch and returns once it is written (and synced, with
// fsync on). It implements collector.Sink for the pipeline.
func (s *Spool) Consume(ctx context.Context, b *collector.Batch) error {
	gen, err := s.append(ctx, b)
	if full := errors.Is(err, collector.ErrSpoolFull); full || err == nil && s.full.Load() {
		s.noteFull(full, b.Len())
	}
	if err != nil || gen == nil {
		return err
	}
	<-gen.done
	return gen.err
}

// noteFull logs when the spool starts refusing (when_full block or
// refuse) and when it accepts again, once each rather than once per
// refused batch, so an operator sees why senders get 429s and for how
// long.
func (s *Spool) noteFull(full bool, events int) {
	s.fullMu.Lock()
	switch {
	case full && !s.full.Load():
		s.full.Store(true)
		s.fullSince, s.refusedWhileFull = time.Now(), events
		s.fullMu.Unlock()
		s.log.Warn("spool full: refusing new events until the sinks behind it catch up; senders get 429 (raise spool.max_bytes, or see why the sinks are behind)",
			"max_bytes", s.cfg.MaxBytes, "when_full", s.cfg.WhenFull)
		return
	case full:
		s.refusedWhileFull += events
		s.fullMu.Unlock()
		return
	case s.full.Load():
		s.full.Store(false)
		since, refused := s.fullSince, s.refusedWhileFull
		s.fullMu.Unlock()
		s.log.Info("spool has room again; accepting events", "full_for", time.Since(since).Round(time.Millisecond).String(), "events_refused", refused)
		return
	}
	s.fullMu.Unlock()
}

func (s *Spool) append(ctx context.Context, b *collector.Batch) (*syncGen, error) {
	if b.Len() == 0 {
		return nil, nil
	}
	var deadline <-chan time.Time
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.closed || !s.started {
			return nil, collector.ErrClosed
		}
		// Encoding happens under the lock so that sequence numbers follow
		// the order of records in the files.
		s.encodeBuf = appendRecord(s.encodeBuf[:0], s.id, s.nextSeq, time.Now(), b)
		n := int64(len(s.encodeBuf))
		if n > int64(s.cfg.MaxBytes)/2 {
			return nil, fmt.Errorf("spool: a batch of %d bytes is larger than half the spool (max_bytes %s)", n, s.cfg.MaxBytes)
		}
		if s.total+n <= int64(s.cfg.MaxBytes) {
			break
		}
		switch s.cfg.WhenFull {
		case DropOldest:
			if err := s.dropOldestLocked(); err != nil {
				return nil, err
			}
			continue
		case Refuse:
			s.m.refused.Add(float64(b.Len()))
			return nil, fmt.Errorf("spool at its cap (max_bytes %s): %w", s.cfg.MaxBytes, collector.ErrSpoolFull)
		}
		if deadline == nil {
			t := time.NewTimer(s.cfg.BlockTimeout)
			defer t.Stop()
			deadline = t.C
		}
		freed := s.freed
		s.mu.Unlock()
		select {
		case <-freed:
			s.mu.Lock()
			continue
		case <-deadline:
		case <-ctx.Done():
		}
		s.mu.Lock()
		s.m.refused.Add(float64(b.Len()))
		return nil, fmt.Errorf("spool at its cap (max_bytes %s) and no room was freed within %s: %w", s.cfg.MaxBytes, s.cfg.BlockTimeout, collector.ErrSpoolFull)
	}

	seg := s.segs[len(s.segs)-1]
	if _, err := s.active.Write(s.encodeBuf); err != nil {
		// Cut off whatever part was written, so the segment stays readable.
		_ = s.active.Truncate(seg.size)
		s.m.writeErrors.Inc()
		return nil, fmt.Errorf("spool: writing %s: %w", filepath.Base(seg.path), err)
	}
	n := int64(len(s.encodeBuf))
	seg.size += n
	s.total += n
	s.nextSeq++
	s.m.appendedRecords.Inc()
	s.m.appendedBytes.Add(float64(n))
	close(s.added)
	s.added = make(chan struct{})

	var gen *syncGen
	if s.cfg.Fsync {
		if s.pending == nil {
			s.pending = &syncGen{done: make(chan struct{})}
		}
		gen = s.pending
		s.pendBytes += n
		select {
		case s.syncWake <- struct{}{}:
		default:
		}
	}
	if seg.size >= int64(s.cfg.SegmentBytes) {
		if err := s.sealLocked(); err != nil {
			s.m.writeErrors.Inc()
			s.log.Error("spool: sealing a segment failed", "segment", filepath.Base(seg.path), "err", err)
			return nil, fmt.Errorf("spool: sealing %s: %w", filepath.Base(seg.path), err)
		}
	}
	return gen, nil
}

// dropOldestLocked deletes the oldest segment, undelivered records and all,
// to make room (policy drop_oldest), and moves cursors that were in it.
func (s *Spool) dropOldestLocked() error {
	if len(s.segs) < 2 {
		if err := s.sealLocked(); err != nil {
			return err
		}
		if len(s.segs) < 2 {
			return errors.New("spool: nothing to drop")
		}
	}
	old, next := s.segs[0], s.segs[1]
	lost := uint64(0)
	for _, d := range s.deliverers {
		d.mu.Lock()
		if d.pos.seg <= old.first {
			if d.nextSeq < next.first {
				lost = max(lost, next.first-max(d.nextSeq, old.first))
			}
			d.pos = position{seg: next.first}
			d.nextSeq = next.first
			d.dirty = true
		}
		d.mu.Unlock()
	}
	s.m.droppedRecords.Add(float64(lost))
	s.log.Warn("spool full: dropped the oldest segment (when_full: drop_oldest)", "segment", filepath.Base(old.path), "records", lost)
	return s.removeFirstLocked()
}

func (s *Spool) removeFirstLocked() error {
	old := s.segs[0]
	if err := os.Remove(old.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s.segs = s.segs[1:]
	s.total -= old.size
	close(s.freed)
	s.freed = make(chan struct{})
	return nil
}

// collectLocked deletes sealed segments that every cursor has passed.
func (s *Spool) collectLocked() {
	for len(s.segs) > 1 && s.segs[0].sealed {
		next := s.segs[1].first
		for _, d := range s.deliverers {
			d.mu.Lock()
			behind := d.pos.seg < next
			d.mu.Unlock()
			if behind {
				return
			}
		}
		if err := s.removeFirstLocked(); err != nil {
			s.log.Error("spool: removing a delivered segment failed", "segment", filepath.Base(s.segs[0].path), "err", err)
			return
		}
	}
}

func (s *Spool) collect() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.collectLocked()
}

// syncLoop runs the group commits: it waits for a first append, lets more
// arrive for SyncInterval (or until SyncBytes are pending), and syncs once
// for all of them.
func (s *Spool) syncLoop() {
	defer s.loops.Done()
	for {
		select {
		case <-s.stop:
			s.syncPending()
			return
		case <-s.syncWake:
		}
		if s.cfg.SyncInterval > 0 {
			t := time.NewTimer(s.cfg.SyncInterval)
		window:
			for {
				select {
				case <-t.C:
					break window
				case <-s.stop:
					t.Stop()
					break window
				case <-s.syncWake:
					s.mu.Lock()
					full := s.pendBytes >= int64(s.cfg.SyncBytes)
					s.mu.Unlock()
					if full {
						t.Stop()
						break window
					}
				}
			}
		}
		s.syncPending()
	}
}

func (s *Spool) syncPending() {
	s.mu.Lock()
	gen, f := s.pending, s.active
	s.pending, s.pendBytes = nil, 0
	s.mu.Unlock()
	if gen == nil {
		return
	}
	start := time.Now()
	s.fileMu.RLock()
	err := f.Sync()
	s.fileMu.RUnlock()
	if errors.Is(err, os.ErrClosed) {
		err = nil // sealed meanwhile, and sealing synced it
	}
	s.m.fsyncDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		s.m.writeErrors.Inc()
		s.log.Error("spool: fsync failed; the appends waiting for it are refused", "err", err)
		err = fmt.Errorf("spool: fsync: %w", err)
	}
	gen.err = err
	close(gen.done)
}

// cursorLoop saves moved cursors every CursorSyncInterval.
func (s *Spool) cursorLoop() {
	defer s.loops.Done()
	t := time.NewTicker(s.cfg.CursorSyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.saveCursors()
		}
	}
}

func (s *Spool) saveCursors() {
	for _, d := range s.deliverers {
		if err := d.saveCursor(); err != nil {
			s.m.writeErrors.Inc()
			s.log.Error("spool: saving a cursor failed; a restart will deliver more again", "sink", d.name, "err", err)
		}
	}
}

// Shutdown stops taking batches, stops the delivery loops (a batch in
// flight is abandoned when ctx ends and delivered again at the next start),
// saves the cursors and syncs and closes the segment.
func (s *Spool) Shutdown(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		s.mu.Lock()
		started := s.started
		s.closed = true
		s.mu.Unlock()
		if !started {
			return
		}
		close(s.stop)
		for _, d := range s.deliverers {
			d.cancelAfter(ctx)
		}
		s.loops.Wait()
		s.saveCursors()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.fileMu.Lock()
		err = errors.Join(s.active.Sync(), s.active.Close())
		s.fileMu.Unlock()
		for _, d := range s.deliverers {
			d.closeFile()
		}
	})
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// Ready reports whether the spool takes batches.
func (s *Spool) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started || s.closed {
		return collector.ErrClosed
	}
	return nil
}

// loadOrCreateID returns the spool's identity, made once at creation. It
// keeps position-based event ids unique even if a spool directory is
// deleted and started afresh.
func loadOrCreateID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if id := strings.TrimSpace(string(b)); len(id) == 16 {
			return id, nil
		}
		return "", fmt.Errorf("%s does not hold a spool id", path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	var raw [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(raw[:])
	return id, writeFileAtomic(path, []byte(id+"\n"))
}

// writeFileAtomic writes through a synced temporary file and a rename, so
// a crash leaves the old content or the new, never a mix.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	err = errors.Join(err, f.Sync(), f.Close())
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

func unsafeString(p []byte) string { return unsafe.String(&p[0], len(p)) }

var (
	_ collector.Sink             = (*Spool)(nil)
	_ collector.ReadinessChecker = (*Spool)(nil)
)
