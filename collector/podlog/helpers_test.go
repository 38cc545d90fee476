package podlog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/collector/telemetry"
)

// capture is a sink that keeps what it is given, by event id.
type capture struct {
	mu       sync.Mutex
	byID     map[string]collector.Event
	total    int
	failNext atomic.Int32 // fail this many Consume calls
}

func newCapture() *capture { return &capture{byID: map[string]collector.Event{}} }

func (c *capture) Name() string                   { return "capture" }
func (c *capture) Start(context.Context) error    { return nil }
func (c *capture) Shutdown(context.Context) error { return nil }

func (c *capture) Consume(_ context.Context, b *collector.Batch) error {
	if c.failNext.Load() > 0 {
		c.failNext.Add(-1)
		return fmt.Errorf("capture: told to fail")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range b.Events {
		e := b.Events[i].Clone()
		c.byID[e.ID] = e
		c.total++
	}
	return nil
}

func (c *capture) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byID)
}

func (c *capture) totalCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// messages returns the distinct events' messages, sorted.
func (c *capture) messages() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.byID {
		out = append(out, e.Message())
	}
	sort.Strings(out)
	return out
}

// events returns the distinct events in offset order per file path.
func (c *capture) events() []collector.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []collector.Event
	for _, e := range c.byID {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		pi, _ := out[i].Get("log.file.path")
		pj, _ := out[j].Get("log.file.path")
		if pi != pj {
			return pi < pj
		}
		return out[i].ID < out[j].ID
	})
	return out
}

func field(e collector.Event, k string) string {
	v, _ := e.Get(k)
	return v
}

// harness runs a receiver in front of a real pipeline and a capture sink.
type harness struct {
	t     *testing.T
	root  string
	state string
	cfg   Config
	sink  *capture
	pipe  *pipeline.Pipeline
	r     *Receiver
}

func testConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.Enabled = true
	cfg.Roots = []string{filepath.Join(t.TempDir(), "pods")}
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.NodeName = "node-1"
	cfg.PollInterval = 20 * time.Millisecond
	cfg.RescanInterval = 200 * time.Millisecond
	cfg.BatchWait = 0
	cfg.RotateWait = 300 * time.Millisecond
	cfg.PartialWait = 300 * time.Millisecond
	cfg.CheckpointInterval = 20 * time.Millisecond
	cfg.RetryMinBackoff = 10 * time.Millisecond
	cfg.RetryMaxBackoff = 100 * time.Millisecond
	if err := os.MkdirAll(cfg.Roots[0], 0o755); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func quietLog() *slog.Logger {
	if os.Getenv("PODLOG_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, root: cfg.Roots[0], state: cfg.StateDir, cfg: cfg, sink: newCapture()}
	h.start()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) start() {
	h.t.Helper()
	h.startWith(h.sink)
}

func (h *harness) startWith(sink collector.Sink) {
	h.t.Helper()
	reg := prometheus.NewRegistry()
	m := telemetry.New(reg)
	pc := pipeline.DefaultConfig()
	pc.Workers = 2
	h.pipe = pipeline.New(pc, nil, []collector.Sink{sink}, m, quietLog())
	if err := h.pipe.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	r, err := New(h.cfg, h.pipe, m, reg, quietLog())
	if err != nil {
		h.t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.r = r
}

// stop shuts the receiver and the pipeline down cleanly.
func (h *harness) stop() {
	if h.r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.r.Shutdown(ctx); err != nil {
		h.t.Errorf("receiver shutdown: %v", err)
	}
	if err := h.pipe.Shutdown(ctx); err != nil {
		h.t.Errorf("pipeline shutdown: %v", err)
	}
	h.r = nil
}

// crash stops the receiver as a kill would: positions acknowledged since
// the last checkpoint are not written.
func (h *harness) crash() {
	h.r.abandon()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = h.pipe.Shutdown(ctx)
	h.r.wait()
	h.r = nil
}

func (h *harness) waitFor(what string, timeout time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) waitCount(n int) {
	h.t.Helper()
	h.waitFor(fmt.Sprintf("%d events", n), 10*time.Second, func() bool { return h.sink.count() >= n })
}

// containerDir makes <root>/<ns>_<pod>_<uid>/<container>.
func containerDir(t *testing.T, root, ns, pod, container string) string {
	t.Helper()
	uid := fmt.Sprintf("%08x-0000-4000-8000-000000000001", len(ns)*1000+len(pod))
	dir := filepath.Join(root, ns+"_"+pod+"_"+uid, container)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

var testClock atomic.Int64

// criLine builds one CRI line with a unique, increasing timestamp.
func criLine(stream, tag, text string) string {
	return criLineAt(time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC).Add(time.Duration(testClock.Add(1))*time.Microsecond), stream, tag, text)
}

// criLineAt is a CRI line the runtime stamped at ts.
func criLineAt(ts time.Time, stream, tag, text string) string {
	return ts.Format(time.RFC3339Nano) + " " + stream + " " + tag + " " + text + "\n"
}

func appendFile(t *testing.T, path string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(strings.Join(lines, "")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readCounter(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// runAgentMain is replaced by the re-exec agent in kill_test.go.
var runAgentMain = func() bool { return false }

func readGauge(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return -1
	}
	return m.GetGauge().GetValue()
}
