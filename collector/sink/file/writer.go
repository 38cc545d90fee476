package file

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/leitstand/leitstand/collector"
)

// writer owns one active file: a dataset's, or that of several datasets
// whose names map to the same file name.
type writer struct {
	dataset string
	base    string
	dir     string

	mu     sync.Mutex
	f      *os.File
	size   int64
	opened time.Time
	dirty  bool      // written since the last sync
	last   time.Time // last write, to close files of datasets gone quiet
	closed bool      // by Shutdown: a Consume that got the writer before must not reopen the file
}

func (w *writer) path() string { return filepath.Join(w.dir, w.base+".ndjson") }

// write appends p, rotating first when p would overflow the file or the file
// is too old. It returns how many bytes stayed in the file.
func (w *writer) write(p []byte, s *Sink) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, collector.ErrClosed
	}
	if w.f == nil {
		if err := w.open(); err != nil {
			return 0, err
		}
	}
	now := time.Now()
	if w.size > 0 && (w.size+int64(len(p)) > int64(s.cfg.MaxFileBytes) || now.Sub(w.opened) >= s.cfg.MaxFileAge) {
		if err := w.rotate(now, s); err != nil {
			return 0, err
		}
	}
	n, err := w.f.Write(p)
	if err != nil {
		// Cut off a partial write so the file keeps whole lines only; the
		// sender is told and sends the batch again.
		if n > 0 {
			if terr := w.f.Truncate(w.size); terr != nil {
				err = errors.Join(err, fmt.Errorf("cutting off the partial write: %w", terr))
			}
		}
		return 0, fmt.Errorf("file sink: write %s: %w", w.path(), err)
	}
	w.size += int64(n)
	w.dirty, w.last = true, now
	if s.cfg.Fsync == FsyncAlways {
		if err := w.f.Sync(); err != nil {
			return n, fmt.Errorf("file sink: sync %s: %w", w.path(), err)
		}
		w.dirty = false
	}
	return n, nil
}

// open opens the active file for appending; one left by an earlier run is
// continued.
func (w *writer) open() error {
	f, err := os.OpenFile(w.path(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("file sink: %w", err)
	}
	w.f, w.size, w.opened = f, info.Size(), time.Now()
	if info.Size() == 0 {
		// A new file: make its directory entry durable too.
		return syncDir(w.dir)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	if err := errors.Join(d.Sync(), d.Close()); err != nil {
		return fmt.Errorf("file sink: sync %s: %w", dir, err)
	}
	return nil
}

// rotate syncs and renames the active file and starts a new one. The caller
// holds w.mu.
func (w *writer) rotate(now time.Time, s *Sink) error {
	if err := w.closeFile(); err != nil {
		return err
	}
	name := rotatedName(w.base, now)
	for {
		// Two rotations within one clock tick must not overwrite each other,
		// nor may a new file take the name of one compressed meanwhile.
		if !exists(filepath.Join(w.dir, name)) && !exists(filepath.Join(w.dir, name+".gz")) {
			break
		}
		now = now.Add(time.Nanosecond)
		name = rotatedName(w.base, now)
	}
	if err := os.Rename(w.path(), filepath.Join(w.dir, name)); err != nil {
		return fmt.Errorf("file sink: rotate %s: %w", w.path(), err)
	}
	s.m.rotations.Inc()
	s.wakeCompressor()
	return w.open() // a new, empty file: open syncs the directory, rename included

}

// tick runs the interval fsync and age rotation.
func (w *writer) tick(now time.Time, s *Sink) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	if w.size > 0 && now.Sub(w.opened) >= s.cfg.MaxFileAge {
		return w.rotate(now, s)
	}
	if w.dirty && s.cfg.Fsync == FsyncInterval {
		if err := w.f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", w.path(), err)
		}
		w.dirty = false
	}
	if now.Sub(w.last) >= idleClose {
		// Datasets come and go; their descriptors should not stay open.
		// The file stays the active one and is reopened on the next write.
		return w.closeFile()
	}
	return nil
}

// idleClose is how long a dataset's file stays open without writes.
const idleClose = 5 * time.Minute

func (w *writer) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	return w.closeFile()
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, os.ErrNotExist)
}

func (w *writer) closeFile() error {
	if w.f == nil {
		return nil
	}
	var err error
	if w.dirty && w.size > 0 {
		err = w.f.Sync()
	}
	err = errors.Join(err, w.f.Close())
	w.f, w.dirty = nil, false
	if err != nil {
		return fmt.Errorf("file sink: close %s: %w", w.path(), err)
	}
	return nil
}
