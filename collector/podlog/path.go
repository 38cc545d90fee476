package podlog

import (
	"path"
	"strconv"
	"strings"
)

// podDir is what the name of a kubelet pod log directory says:
// "<namespace>_<pod>_<uid>". Namespaces and pod names are DNS names, which
// cannot hold '_', so the split is unambiguous.
type podDir struct {
	Namespace, Pod, UID string
}

func parsePodDir(name string) (podDir, bool) {
	ns, rest, ok := strings.Cut(name, "_")
	if !ok || ns == "" {
		return podDir{}, false
	}
	pod, uid, ok := strings.Cut(rest, "_")
	if !ok || pod == "" || uid == "" || strings.Contains(uid, "_") {
		return podDir{}, false
	}
	return podDir{Namespace: ns, Pod: pod, UID: uid}, true
}

// restartNumber reads the container restart number from a kubelet log
// file name ("3.log"); ok is false for other names.
func restartNumber(base string) (int, bool) {
	num, ok := strings.CutSuffix(base, ".log")
	if !ok || num == "" || len(num) > 9 {
		return 0, false
	}
	n, err := strconv.Atoi(num)
	return n, err == nil && n >= 0
}

// selector matches "<namespace>/<pod>/<container>" against globs; a glob
// with fewer parts matches every value of the missing ones
// ("kube-system" is "kube-system/*/*").
type selector []string

func newSelector(globs []string) selector {
	s := make(selector, 0, len(globs))
	for _, g := range globs {
		switch strings.Count(g, "/") {
		case 0:
			g += "/*/*"
		case 1:
			g += "/*"
		}
		s = append(s, g)
	}
	return s
}

func (s selector) match(ns, pod, container string) bool {
	if len(s) == 0 {
		return false
	}
	name := ns + "/" + pod + "/" + container
	for _, g := range s {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// validSelector checks a glob's syntax and shape.
func validSelector(g string) error {
	if g == "" {
		return errEmptyGlob
	}
	if strings.Count(g, "/") > 2 {
		return errGlobParts
	}
	_, err := path.Match(g, "")
	return err
}

type constError string

func (e constError) Error() string { return string(e) }

const (
	errEmptyGlob = constError("must not be empty")
	errGlobParts = constError(`has more than three parts; use "<namespace>/<pod>/<container>"`)
)

// rotatedOf reports whether name is a rotated file of the live file base:
// the kubelet's "0.log.20261122-081500" and "0.log.20261122-081500.gz",
// logrotate's "0.log.1" and "0.log.2.gz". Files being written by the
// rotator ("….tmp") are not.
func rotatedOf(name, base string) bool {
	return len(name) > len(base)+1 && strings.HasPrefix(name, base) && name[len(base)] == '.' && !strings.HasSuffix(name, ".tmp")
}
