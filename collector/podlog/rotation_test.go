package podlog

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/leitstand/leitstand/collector"
)

// lineWriter writes numbered CRI lines to a container's log as a runtime
// would: through one open file, which rotation can rename away.
type lineWriter struct {
	t    *testing.T
	dir  string
	base string
	f    *os.File
	next int
	tag  string
}

func newLineWriter(t *testing.T, dir, tag string) *lineWriter {
	w := &lineWriter{t: t, dir: dir, base: "0.log", tag: tag}
	w.reopen()
	return w
}

func (w *lineWriter) path() string { return filepath.Join(w.dir, w.base) }

func (w *lineWriter) reopen() {
	if w.f != nil {
		w.f.Close()
	}
	f, err := os.OpenFile(w.path(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		w.t.Fatal(err)
	}
	w.f = f
}

func (w *lineWriter) write(n int) {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(criLine("stdout", "F", fmt.Sprintf("%s line %06d", w.tag, w.next)))
		w.next++
	}
	if _, err := w.f.WriteString(b.String()); err != nil {
		w.t.Fatal(err)
	}
}

// rotate renames the live file away and creates a new one, as the kubelet
// does; the writer keeps writing to the old file until reopen.
func (w *lineWriter) rotate(stamp string) string {
	rotated := w.path() + "." + stamp
	if err := os.Rename(w.path(), rotated); err != nil {
		w.t.Fatal(err)
	}
	return rotated
}

// gzipFile compresses path to path.gz the kubelet's way (a .tmp file,
// renamed) and removes path.
func gzipFile(t *testing.T, path string) {
	t.Helper()
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	tmp := path + ".gz.tmp"
	out, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(out)
	if _, err := io.Copy(zw, in); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path+".gz"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// checkExactlyOnce checks that the sink holds each of the writer's lines
// under exactly one id.
func checkExactlyOnce(t *testing.T, c *capture, tag string, n int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]string{}
	for id, e := range c.byID {
		msg := e.Message()
		if !strings.HasPrefix(msg, tag+" ") {
			continue
		}
		if other, dup := seen[msg]; dup {
			t.Errorf("%q stored under two ids: %s and %s", msg, other, id)
		}
		seen[msg] = id
	}
	var missing []string
	for i := 0; i < n; i++ {
		if msg := fmt.Sprintf("%s line %06d", tag, i); seen[msg] == "" {
			missing = append(missing, msg)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Errorf("%d of %d lines missing, e.g. %v", len(missing), n, missing[:min(5, len(missing))])
	}
	if len(seen) != n {
		t.Errorf("%d distinct lines, want %d", len(seen), n)
	}
}

func (h *harness) waitLines(tag string, n int) {
	h.t.Helper()
	h.waitFor(fmt.Sprintf("%d lines of %s", n, tag), 15*time.Second, func() bool {
		h.sink.mu.Lock()
		defer h.sink.mu.Unlock()
		k := 0
		for _, e := range h.sink.byID {
			if strings.HasPrefix(e.Message(), tag+" ") {
				k++
			}
		}
		return k >= n
	})
}

func TestRenameAndCreateRotation(t *testing.T) {
	cfg := testConfig(t)
	h := newHarness(t, cfg)
	w := newLineWriter(t, containerDir(t, h.root, "ns", "pod", "c"), "rot")
	w.write(500)
	h.waitLines("rot", 100)
	first := w.rotate("20261122-080000")
	w.write(50) // still to the old file: the runtime has not reopened yet
	w.reopen()
	w.write(500)
	second := w.rotate("20261122-080100")
	gzipFile(t, first) // the kubelet compresses all but the newest rotated file
	w.reopen()
	w.write(500)
	h.waitLines("rot", 1550)
	checkExactlyOnce(t, h.sink, "rot", 1550)
	// The first file may have been compressed (and its plain copy deleted)
	// before the receiver finished it: that counts as a deletion.
	h.waitFor("two rotations counted", 5*time.Second, func() bool {
		return readCounter(h.r.m.rotations.WithLabelValues("rename"))+readCounter(h.r.m.rotations.WithLabelValues("delete")) == 2
	})
	_ = second
}

func TestRotationWhileStopped(t *testing.T) {
	cfg := testConfig(t)
	h := newHarness(t, cfg)
	w := newLineWriter(t, containerDir(t, h.root, "ns", "pod", "c"), "away")
	w.write(300)
	h.waitLines("away", 300)
	h.crash() // the last positions may be lost as well
	w.write(200)
	first := w.rotate("20261122-080000")
	w.reopen()
	w.write(300)
	w.rotate("20261122-080100")
	gzipFile(t, first)
	w.reopen()
	w.write(100)
	time.Sleep(20 * time.Millisecond) // the rotated files are older than the restart
	h.start()
	h.waitLines("away", 900)
	checkExactlyOnce(t, h.sink, "away", 900)
}

func TestCopyTruncate(t *testing.T) {
	cfg := testConfig(t)
	h := newHarness(t, cfg)
	dir := containerDir(t, h.root, "ns", "pod", "c")
	w := newLineWriter(t, dir, "ct")
	w.write(400)
	h.waitLines("ct", 10)
	copyTruncate(t, w, "1")
	w.write(300)
	h.waitLines("ct", 700)
	h.waitFor("the truncation counted", 5*time.Second, func() bool {
		return readCounter(h.r.m.rotations.WithLabelValues("truncate")) == 1
	})
	// And once while the receiver is down: the rest of the old content is
	// only in the copy.
	h.stop()
	w.write(200)
	copyTruncate(t, w, "2")
	w.write(100)
	h.start()
	h.waitLines("ct", 1000)
	checkExactlyOnce(t, h.sink, "ct", 1000)
}

// copyTruncate copies the live file to <live>.<suffix> and truncates it,
// as logrotate's copytruncate does (here with the writer paused).
func copyTruncate(t *testing.T, w *lineWriter, suffix string) {
	t.Helper()
	data, err := os.ReadFile(w.path())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.path()+"."+suffix, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w.f.Truncate(0); err != nil {
		t.Fatal(err)
	}
}

func TestReusedInodeIsANewFile(t *testing.T) {
	cfg := testConfig(t)
	h := newHarness(t, cfg)
	dir := containerDir(t, h.root, "ns", "pod", "c")
	w := newLineWriter(t, dir, "old")
	w.write(100)
	h.waitLines("old", 100)
	h.stop()
	// Same inode, other content, longer than the old position.
	if err := w.f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	w2 := &lineWriter{t: t, dir: dir, base: "0.log", f: w.f, tag: "new"}
	w2.write(300)
	h.start()
	h.waitLines("new", 300)
	checkExactlyOnce(t, h.sink, "new", 300)
}

// gate is a sink that holds every batch until opened.
type gate struct {
	*capture
	mu   sync.Mutex
	open chan struct{}
}

func (g *gate) Consume(ctx context.Context, b *collector.Batch) error {
	g.mu.Lock()
	ch := g.open
	g.mu.Unlock()
	<-ch
	return g.capture.Consume(ctx, b)
}

func TestDeletedWhileReadIsDrained(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxBatchEvents = 50
	h := &harness{t: t, root: cfg.Roots[0], state: cfg.StateDir, cfg: cfg, sink: newCapture()}
	g := &gate{capture: h.sink, open: make(chan struct{})}
	h.startWith(g)
	t.Cleanup(h.stop)
	dir := containerDir(t, h.root, "ns", "gone", "c")
	w := newLineWriter(t, dir, "del")
	w.write(2000)
	w.f.Close()
	// The receiver has the file open and waits for the first batch.
	h.waitFor("the file open", 5*time.Second, func() bool { return readGauge(h.r.m.filesOpen) == 1 })
	if err := os.RemoveAll(filepath.Dir(dir)); err != nil {
		t.Fatal(err)
	}
	close(g.open)
	h.waitLines("del", 2000)
	checkExactlyOnce(t, h.sink, "del", 2000)
	h.waitFor("the family forgotten", 5*time.Second, func() bool {
		h.r.mu.Lock()
		defer h.r.mu.Unlock()
		return len(h.r.families) == 0 && h.r.state.len() == 0
	})
	if n := readCounter(h.r.m.rotations.WithLabelValues("delete")); n != 1 {
		t.Errorf("rotations_total{kind=delete} = %v, want 1", n)
	}
}

// TestNotificationsFindNewPodsAndRotations turns the periodic rescan off:
// new pods, new containers and rotations must be found through the
// directory notifications alone.
func TestNotificationsFindNewPodsAndRotations(t *testing.T) {
	cfg := testConfig(t)
	cfg.RescanInterval = time.Hour
	h := newHarness(t, cfg)
	if h.r.watcher == nil {
		t.Fatal("no directory watcher")
	}
	// A pod that appears after the start, directory by directory.
	w := newLineWriter(t, containerDir(t, h.root, "late", "pod", "c"), "note")
	w.write(10)
	h.waitLines("note", 10)
	w.rotate("20261122-090000")
	w.reopen()
	w.write(10)
	h.waitLines("note", 20)
	// A restarted container: 1.log beside 0.log.
	appendFile(t, filepath.Join(w.dir, "1.log"), criLine("stdout", "F", "note restarted"))
	h.waitFor("the restarted container's line", 5*time.Second, func() bool {
		for _, m := range h.sink.messages() {
			if m == "note restarted" {
				return true
			}
		}
		return false
	})
}

// TestDockerSymlinkRotation: with Docker's json-file driver the kubelet's
// 0.log is a link to <engine dir>/<id>-json.log, which the engine rotates
// to <id>-json.log.1 beside it.
func TestDockerSymlinkRotation(t *testing.T) {
	cfg := testConfig(t)
	h := newHarness(t, cfg)
	engine := filepath.Join(t.TempDir(), "containers", "abc123")
	if err := os.MkdirAll(engine, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(engine, "abc123-json.log")
	dir := containerDir(t, h.root, "ns", "docker", "c")
	line := func(i int) string {
		return fmt.Sprintf(`{"log":"dock line %06d\n","stream":"stdout","time":"%s"}`+"\n", i,
			time.Date(2026, 11, 22, 8, 0, 0, i, time.UTC).Format(time.RFC3339Nano))
	}
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "0.log")); err != nil {
		t.Fatal(err)
	}
	n := 0
	write := func(k int) {
		for i := 0; i < k; i++ {
			if _, err := f.WriteString(line(n)); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	write(200)
	h.waitLines("dock", 50)
	if err := os.Rename(target, target+".1"); err != nil {
		t.Fatal(err)
	}
	write(20) // the engine writes on to the renamed file until it reopens
	f.Close()
	if f, err = os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	write(200)
	h.waitLines("dock", 420)
	checkExactlyOnce(t, h.sink, "dock", 420)
}
