// Package file is the file sink, the embedded default: events as NDJSON, one
// file per dataset, rotated by size and age, rotated files compressed with
// gzip, old files removed by total size and count.
//
// A batch is accepted once its lines are written to the operating system
// (and, with fsync "always", synced to disk): a crash of leitstand loses
// nothing it acknowledged, a crash of the machine loses at most one fsync
// interval. A failed write is cut off again, so a file never holds half a line.
package file

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/internal/config"
	"github.com/prometheus/client_golang/prometheus"
)

// Fsync policies.
const (
	FsyncAlways   = "always"
	FsyncInterval = "interval"
	FsyncNever    = "never"
)

// Config of the file sink.
type Config struct {
	// Enabled turns the sink on. Default true.
	Enabled bool `yaml:"enabled"`
	// Dir holds the files. Default: events/ under the data directory.
	Dir string `yaml:"dir"`
	// MaxFileBytes rotates a dataset's file before it grows past this size.
	// Default 128MiB.
	MaxFileBytes config.ByteSize `yaml:"max_file_bytes"`
	// MaxFileAge rotates a file this long after it was opened, even if idle.
	// Default 1h.
	MaxFileAge time.Duration `yaml:"max_file_age"`
	// Compress gzips rotated files. Default true.
	Compress bool `yaml:"compress"`
	// RetentionBytes removes the oldest rotated files while all rotated
	// files together are larger. Default 10GiB.
	RetentionBytes config.ByteSize `yaml:"retention_bytes"`
	// RetentionFiles removes the oldest rotated files while there are more.
	// Default 1000.
	RetentionFiles int `yaml:"retention_files"`
	// Fsync is always (before each batch is acknowledged), interval (every
	// FsyncInterval) or never (left to the operating system). Default interval.
	Fsync string `yaml:"fsync"`
	// FsyncInterval is the interval of the interval policy. Default 1s.
	FsyncInterval time.Duration `yaml:"fsync_interval"`
}

// DefaultConfig returns the file sink's defaults; Dir is left for the
// caller, which knows the data directory.
func DefaultConfig() Config {
	return Config{
		Enabled:        true,
		MaxFileBytes:   128 << 20,
		MaxFileAge:     time.Hour,
		Compress:       true,
		RetentionBytes: 10 << 30,
		RetentionFiles: 1000,
		Fsync:          FsyncInterval,
		FsyncInterval:  time.Second,
	}
}

// Validate checks the settings.
func (c *Config) Validate() error {
	var errs config.Errors
	if !c.Enabled {
		return nil
	}
	if c.Dir == "" {
		errs.Addf("dir", "must be set")
	}
	if c.MaxFileBytes < 4096 {
		errs.Addf("max_file_bytes", "must be at least 4KiB, got %s", c.MaxFileBytes)
	}
	if c.MaxFileAge < time.Second {
		errs.Addf("max_file_age", "must be at least 1s, got %s", c.MaxFileAge)
	}
	if c.RetentionBytes < c.MaxFileBytes {
		errs.Addf("retention_bytes", "must be at least max_file_bytes (%s), got %s", c.MaxFileBytes, c.RetentionBytes)
	}
	if c.RetentionFiles < 1 {
		errs.Addf("retention_files", "must be at least 1, got %d", c.RetentionFiles)
	}
	switch c.Fsync {
	case FsyncAlways, FsyncNever:
	case FsyncInterval:
		if c.FsyncInterval < time.Millisecond {
			errs.Addf("fsync_interval", "must be at least 1ms, got %s", c.FsyncInterval)
		}
	default:
		errs.Addf("fsync", "must be %q, %q or %q, got %q", FsyncAlways, FsyncInterval, FsyncNever, c.Fsync)
	}
	return errs.Err()
}

// Sink writes NDJSON files.
type Sink struct {
	cfg Config
	log *slog.Logger
	m   metrics

	mu      sync.RWMutex
	writers map[string]*writer // by dataset
	byBase  map[string]*writer // by file name: datasets that map to one name share its writer
	closed  bool

	scratch sync.Pool // *scratch, per Consume call

	compressWake chan struct{}
	stop         chan struct{}
	done         sync.WaitGroup
	startOnce    sync.Once
	stopOnce     sync.Once
}

type metrics struct {
	bytes       prometheus.Counter
	rotations   prometheus.Counter
	compressed  prometheus.Counter
	removed     prometheus.Counter
	writeErrors prometheus.Counter
}

// New creates the sink; Start creates the directory and its background work.
func New(cfg Config, reg prometheus.Registerer, log *slog.Logger) *Sink {
	c := func(name, help string) prometheus.Counter {
		x := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "leitstand", Subsystem: "file_sink", Name: name, Help: help})
		reg.MustRegister(x)
		return x
	}
	return &Sink{
		cfg: cfg, log: log,
		writers: map[string]*writer{},
		byBase:  map[string]*writer{},
		m: metrics{
			bytes:       c("bytes_written_total", "Bytes written to event files."),
			rotations:   c("rotations_total", "Event files rotated."),
			compressed:  c("files_compressed_total", "Rotated files compressed."),
			removed:     c("files_removed_total", "Rotated files removed by retention."),
			writeErrors: c("write_errors_total", "Failed writes, syncs or rotations."),
		},
		scratch:      sync.Pool{New: func() any { return new(scratch) }},
		compressWake: make(chan struct{}, 1),
		stop:         make(chan struct{}),
	}
}

// Name implements collector.Sink.
func (s *Sink) Name() string { return "file" }

// Start creates the directory, and compresses and prunes what an earlier
// run left behind.
func (s *Sink) Start(context.Context) error {
	if err := os.MkdirAll(s.cfg.Dir, 0o750); err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	s.startOnce.Do(func() {
		s.done.Add(2)
		go s.housekeeping()
		go s.compressor()
		s.wakeCompressor()
	})
	return nil
}

// Shutdown syncs and closes every file. Compression still running stops
// after the current file; the rest is done at the next start.
func (s *Sink) Shutdown(context.Context) error {
	var errs []error
	s.stopOnce.Do(func() {
		close(s.stop)
		s.done.Wait()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.closed = true
		for _, w := range s.byBase {
			errs = append(errs, w.close())
		}
	})
	return errors.Join(errs...)
}

// Ready reports whether the sink can write.
func (s *Sink) Ready() error {
	if _, err := os.Stat(s.cfg.Dir); err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	return nil
}

// scratch holds one Consume call's encoded lines per dataset.
type scratch struct {
	parts []part
}

type part struct {
	w   *writer
	buf []byte
}

// Consume encodes the batch and appends each dataset's lines to its file
// with one write.
func (s *Sink) Consume(_ context.Context, b *collector.Batch) error {
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	sc.parts = sc.parts[:0]
	cur := -1
	for i := range b.Events {
		e := &b.Events[i]
		ds := e.Dataset()
		if cur < 0 || sc.parts[cur].w.dataset != ds {
			w, err := s.writer(ds)
			if err != nil {
				return err
			}
			cur = sc.find(w)
		}
		p := &sc.parts[cur]
		p.buf = append(e.AppendJSON(p.buf), '\n')
	}
	var errs []error
	for i := range sc.parts {
		p := &sc.parts[i]
		n, err := p.w.write(p.buf, s)
		s.m.bytes.Add(float64(n))
		if err != nil {
			s.m.writeErrors.Inc()
			errs = append(errs, err)
		}
		p.w = nil
	}
	return errors.Join(errs...)
}

// find returns the index of w's part, adding one (and reusing an old buffer)
// if needed.
func (sc *scratch) find(w *writer) int {
	for i := range sc.parts {
		if sc.parts[i].w == w {
			return i
		}
	}
	if len(sc.parts) < cap(sc.parts) {
		sc.parts = sc.parts[:len(sc.parts)+1]
		p := &sc.parts[len(sc.parts)-1]
		p.w, p.buf = w, p.buf[:0]
	} else {
		sc.parts = append(sc.parts, part{w: w, buf: make([]byte, 0, 64<<10)})
	}
	return len(sc.parts) - 1
}

func (s *Sink) writer(dataset string) (*writer, error) {
	s.mu.RLock()
	w, ok := s.writers[dataset]
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return nil, collector.ErrClosed
	}
	if ok {
		return w, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, collector.ErrClosed
	}
	if w, ok := s.writers[dataset]; ok {
		return w, nil
	}
	ds := strings.Clone(dataset) // the key outlives the batch it came from
	base := fileBase(ds)
	// Two writers on one path would rename the file from under each other
	// at rotation, and keep writing into a file already rotated away.
	w, ok = s.byBase[base]
	if !ok {
		w = &writer{dataset: ds, base: base, dir: s.cfg.Dir}
		s.byBase[base] = w
	}
	s.writers[ds] = w
	return w, nil
}

// fileBase turns a dataset into a safe file name: datasets come from
// senders, and a "../x" must not leave the directory.
func fileBase(dataset string) string {
	b := []byte(dataset)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
			continue
		}
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' && i > 0) {
			b[i] = '_'
		}
	}
	if len(b) > 100 {
		b = b[:100]
	}
	return string(b)
}

// housekeeping syncs dirty files on the fsync interval and rotates files that
// have reached their age, idle or not.
func (s *Sink) housekeeping() {
	defer s.done.Done()
	period := min(s.cfg.MaxFileAge/4, time.Minute)
	if s.cfg.Fsync == FsyncInterval {
		period = min(period, s.cfg.FsyncInterval)
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.mu.RLock()
			ws := make([]*writer, 0, len(s.byBase))
			for _, w := range s.byBase {
				ws = append(ws, w)
			}
			s.mu.RUnlock()
			for _, w := range ws {
				if err := w.tick(now, s); err != nil {
					s.m.writeErrors.Inc()
					s.log.Error("file sink housekeeping failed", "dataset", w.dataset, "err", err)
				}
			}
		}
	}
}

func (s *Sink) wakeCompressor() {
	select {
	case s.compressWake <- struct{}{}:
	default: // already due to run, and it rescans the directory
	}
}

// compressor compresses rotated files and applies retention. It works from
// the directory listing, not from a queue, so files rotated before a crash
// are picked up the same way as new ones.
func (s *Sink) compressor() {
	defer s.done.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-s.compressWake:
		}
		if err := s.compressAndPrune(); err != nil {
			s.m.writeErrors.Inc()
			s.log.Error("file sink: compressing or pruning rotated files failed", "dir", s.cfg.Dir, "err", err)
		}
	}
}

func (s *Sink) compressAndPrune() error {
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".gz.tmp"):
			// A compression that a crash interrupted: the original is still
			// there and is compressed again. The listing is sorted, so that
			// may already have happened and replaced this file.
			if err := os.Remove(filepath.Join(s.cfg.Dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		case s.cfg.Compress && isRotated(name) && strings.HasSuffix(name, ".ndjson"):
			select {
			case <-s.stop:
				return errors.Join(errs...)
			default:
			}
			if err := compressFile(filepath.Join(s.cfg.Dir, name)); err != nil {
				errs = append(errs, err)
				continue
			}
			s.m.compressed.Inc()
		}
	}
	errs = append(errs, s.prune())
	return errors.Join(errs...)
}

// prune removes the oldest rotated files beyond the retention limits.
func (s *Sink) prune() error {
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return err
	}
	type rotated struct {
		name  string
		stamp string
		size  int64
	}
	var files []rotated
	var total int64
	for _, e := range entries {
		if !isRotated(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		files = append(files, rotated{e.Name(), rotationStamp(e.Name()), info.Size()})
		total += info.Size()
	}
	sort.Slice(files, func(i, j int) bool { return files[i].stamp < files[j].stamp })
	var errs []error
	for len(files) > 0 && (total > int64(s.cfg.RetentionBytes) || len(files) > s.cfg.RetentionFiles) {
		f := files[0]
		files = files[1:]
		if err := os.Remove(filepath.Join(s.cfg.Dir, f.name)); err != nil {
			errs = append(errs, err)
			continue
		}
		total -= f.size
		s.m.removed.Inc()
		s.log.Info("file sink: removed rotated file by retention", "file", f.name, "bytes", f.size)
	}
	return errors.Join(errs...)
}

// Rotated files are named <dataset>-<UTC time>.ndjson[.gz], the time in a
// fixed-width form so names sort in rotation order.
const stampLayout = "20060102T150405.000000000Z"

func rotatedName(base string, t time.Time) string {
	return base + "-" + t.UTC().Format(stampLayout) + ".ndjson"
}

func isRotated(name string) bool { return rotationStamp(name) != "" }

func rotationStamp(name string) string {
	name = strings.TrimSuffix(name, ".gz")
	if !strings.HasSuffix(name, ".ndjson") {
		return ""
	}
	name = strings.TrimSuffix(name, ".ndjson")
	if len(name) < len(stampLayout)+2 || name[len(name)-len(stampLayout)-1] != '-' {
		return ""
	}
	stamp := name[len(name)-len(stampLayout):]
	if _, err := time.Parse(stampLayout, stamp); err != nil {
		return ""
	}
	return stamp
}

// compressFile gzips path to path.gz through a temporary file, so a crash
// never leaves a truncated .gz that looks complete.
func compressFile(path string) error {
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := path + ".gz.tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(out)
	_, err = io.Copy(zw, in)
	err = errors.Join(err, zw.Close())
	if err == nil {
		err = out.Sync()
	}
	err = errors.Join(err, out.Close())
	if err == nil {
		err = os.Rename(tmp, path+".gz")
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compress %s: %w", filepath.Base(path), err)
	}
	return os.Remove(path)
}

var (
	_ collector.Sink             = (*Sink)(nil)
	_ collector.ReadinessChecker = (*Sink)(nil)
)
