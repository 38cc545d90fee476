//go:build !linux

package podlog

import "errors"

// dirWatcher needs inotify; elsewhere the receiver polls (rescan_interval).
type dirWatcher struct {
	events chan dirEvent
}

type dirEvent struct {
	dir, name string
	created   bool
	self      bool
	overflow  bool
}

func newDirWatcher() (*dirWatcher, error) {
	return nil, errors.New("directory notifications need Linux inotify")
}

func (w *dirWatcher) add(string) error { return errors.New("no inotify") }
func (w *dirWatcher) close()           {}
