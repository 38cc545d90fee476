package syslog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/collector/sink/file"
	"github.com/leitstand/leitstand/collector/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// harness runs a receiver in front of the real pipeline and the real file
// sink, as the daemon does, and reads back what arrived in the files.
type harness struct {
	t    testing.TB
	r    *Receiver
	p    *pipeline.Pipeline
	sink *file.Sink
	dir  string
	reg  *prometheus.Registry
	log  *lockedWriter
}

// testConfig listens on loopback port 0 with the given protocols.
func testConfig(protocols ...string) Config {
	cfg := DefaultConfig()
	cfg.Listeners = nil
	for _, p := range protocols {
		var l Listener
		l.SetDefaults()
		l.Protocol, l.Address = p, "127.0.0.1:0"
		cfg.Listeners = append(cfg.Listeners, l)
	}
	return cfg
}

func startHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), reg: prometheus.NewRegistry(), log: &lockedWriter{w: &bytes.Buffer{}}}
	log := slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := telemetry.New(h.reg)
	fcfg := file.DefaultConfig()
	fcfg.Dir = h.dir
	fcfg.Fsync = file.FsyncNever
	fcfg.Compress = false
	fcfg.MaxFileBytes = 1 << 40
	fcfg.RetentionBytes = 1 << 40
	h.sink = file.New(fcfg, h.reg, log)
	if err := h.sink.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.p = pipeline.New(pipeline.Config{QueueSize: 65536, Workers: 2}, nil, []collector.Sink{h.sink}, m, log)
	if err := h.p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, err := New(cfg, h.p, m, h.reg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.r = r
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.r.Shutdown(ctx); err != nil {
		h.t.Errorf("receiver shutdown: %v", err)
	}
	if err := h.p.Shutdown(ctx); err != nil {
		h.t.Errorf("pipeline shutdown: %v", err)
	}
	if err := h.sink.Shutdown(ctx); err != nil {
		h.t.Errorf("sink shutdown: %v", err)
	}
	if h.t.Failed() {
		h.t.Logf("receiver log (tail):\n%s", tail(h.log.String(), 40))
	}
}

// addr returns listener i's address.
func (h *harness) addr(i int) net.Addr { return h.r.Addrs()[i] }

func (h *harness) port(i int) string {
	_, port, _ := net.SplitHostPort(h.addr(i).String())
	return port
}

// events returns every event in the syslog files so far.
func (h *harness) events() []map[string]any {
	h.t.Helper()
	var out []map[string]any
	h.eachLine(func(line []byte) {
		var ev map[string]any
		if err := json.Unmarshal(line, &ev); err != nil {
			h.t.Fatalf("invalid JSON in the event file: %v\n%s", err, line)
		}
		out = append(out, ev)
	})
	return out
}

func (h *harness) eachLine(fn func([]byte)) {
	files, _ := filepath.Glob(filepath.Join(h.dir, "syslog*.ndjson"))
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			h.t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			fn(sc.Bytes())
		}
		f.Close()
	}
}

// count counts the event lines without decoding them.
func (h *harness) count() int {
	files, _ := filepath.Glob(filepath.Join(h.dir, "syslog*.ndjson"))
	n := 0
	buf := make([]byte, 1<<20)
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			h.t.Fatal(err)
		}
		for {
			k, err := f.Read(buf)
			n += bytes.Count(buf[:k], []byte{'\n'})
			if err == io.EOF {
				break
			}
			if err != nil {
				h.t.Fatal(err)
			}
		}
		f.Close()
	}
	return n
}

// waitCount waits until at least n events are in the files.
func (h *harness) waitCount(n int, timeout time.Duration) int {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	got := 0
	for time.Now().Before(deadline) {
		if got = h.count(); got >= n {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
	return got
}

// waitEvents waits for n events and returns all events.
func (h *harness) waitEvents(n int, timeout time.Duration) []map[string]any {
	h.t.Helper()
	if got := h.waitCount(n, timeout); got < n {
		h.t.Fatalf("%d events arrived within %s, want %d", got, timeout, n)
	}
	return h.events()
}

// waitFor waits for an event whose message contains marker.
func (h *harness) waitFor(marker string, timeout time.Duration) map[string]any {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, ev := range h.events() {
			if m, _ := ev["message"].(string); strings.Contains(m, marker) {
				return ev
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("no event with %q within %s", marker, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric returns the value of a counter or gauge with the given labels
// (name=value pairs), summed over series that match.
func (h *harness) metric(name string, labels ...string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if labelValue(m, labels[i]) != labels[i+1] {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// waitMetric waits until a metric reaches at least want.
func (h *harness) waitMetric(want float64, timeout time.Duration, name string, labels ...string) float64 {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v := h.metric(name, labels...)
		if v >= want || time.Now().After(deadline) {
			return v
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// field returns a dotted field of a nested event ("log.syslog.facility.code").
func field(ev map[string]any, path string) any {
	var cur any = ev
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur, ok = m[part]
		if !ok {
			return nil
		}
	}
	return cur
}

// expect checks fields of an event; numbers compare as float64 from JSON.
func expect(t testing.TB, ev map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		got := field(ev, k)
		if n, ok := v.(int); ok {
			v = float64(n)
		}
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(v)
		if string(gj) != string(wj) {
			t.Errorf("%s = %s, want %s (event %s)", k, gj, wj, mustJSON(ev))
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func hasTag(ev map[string]any, tag string) bool {
	tags, _ := ev["tags"].([]any)
	for _, t := range tags {
		if t == tag {
			return true
		}
	}
	return false
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.String()
}
