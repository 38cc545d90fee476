package podlog

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dirWatcher reports entries created, moved or removed in watched
// directories, through inotify. It asks for exactly those events and not
// for writes: a container writes each line with a write of its own, so at
// 10,000 lines per second file-modification events alone would be 10,000
// wake-ups a second. New lines are found by polling the file being read
// (poll_interval, backing off while it is quiet); notifications make new
// pods, new containers and rotations visible at once.
//
// fsnotify was the first choice, but its v1.10 API cannot leave out
// IN_MODIFY (WithOps is unexported), and reading those events cost the
// agent about a tenth of its CPU at 10,000 lines per second.
type dirWatcher struct {
	f      *os.File // the inotify descriptor, non-blocking, so Close ends Read
	events chan dirEvent

	mu     sync.Mutex
	dirs   map[int32]string
	closed bool
	stop   chan struct{} // closed by close, so a blocked send gives up
	done   chan struct{}
}

// dirEvent is one change. overflow: the kernel's queue ran over and events
// were lost; list everything again.
type dirEvent struct {
	dir, name string
	created   bool // created or moved in; otherwise removed or moved away
	self      bool // the watched directory itself went away
	overflow  bool
}

const watchMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

func newDirWatcher() (*dirWatcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &dirWatcher{
		f:      os.NewFile(uintptr(fd), "inotify"),
		events: make(chan dirEvent, 256),
		dirs:   map[int32]string{},
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go w.read()
	return w, nil
}

// add watches dir.
func (w *dirWatcher) add(dir string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return os.ErrClosed
	}
	sc, err := w.f.SyscallConn()
	if err != nil {
		return err
	}
	var wd int
	var werr error
	if err := sc.Control(func(fd uintptr) { wd, werr = unix.InotifyAddWatch(int(fd), dir, watchMask) }); err != nil {
		return err
	}
	if werr != nil {
		return &os.PathError{Op: "inotify_add_watch", Path: dir, Err: werr}
	}
	w.dirs[int32(wd)] = dir
	return nil
}

// close stops the watcher and waits for its goroutine.
func (w *dirWatcher) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	w.mu.Unlock()
	close(w.stop)
	w.f.Close()
	<-w.done
}

func (w *dirWatcher) read() {
	defer close(w.done)
	defer close(w.events)
	var buf [16 << 10]byte
	for {
		n, err := w.f.Read(buf[:])
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			w.mu.Lock()
			closed := w.closed
			w.mu.Unlock()
			if closed {
				return
			}
			if !w.send(dirEvent{overflow: true}) {
				return
			}
			continue
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(raw.Len)]
			off += unix.SizeofInotifyEvent + int(raw.Len)
			name := string(trimNUL(nameBytes))
			if raw.Mask&unix.IN_Q_OVERFLOW != 0 {
				if !w.send(dirEvent{overflow: true}) {
					return
				}
				continue
			}
			w.mu.Lock()
			dir, ok := w.dirs[raw.Wd]
			if raw.Mask&unix.IN_IGNORED != 0 {
				delete(w.dirs, raw.Wd) // the directory is gone, or its watch removed
			}
			w.mu.Unlock()
			if !ok || raw.Mask&unix.IN_IGNORED != 0 {
				continue
			}
			ev := dirEvent{dir: dir, name: name}
			switch {
			case raw.Mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0:
				ev.self = true
			case raw.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
				ev.created = true
			}
			if !w.send(ev) {
				return
			}
		}
	}
}

func (w *dirWatcher) send(ev dirEvent) bool {
	select {
	case w.events <- ev:
		return true
	case <-w.stop:
		return false
	}
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}
