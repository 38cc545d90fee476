package podlog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/leitstand/leitstand/collector/telemetry"
)

func TestMain(m *testing.M) {
	if runAgentMain() {
		return
	}
	goleak.VerifyTestMain(m)
}

func TestTailsCRIWithMetadata(t *testing.T) {
	cfg := testConfig(t)
	h := newHarness(t, cfg)
	dir := containerDir(t, h.root, "shop", "web-1", "app")
	log0 := filepath.Join(dir, "0.log")
	appendFile(t, log0, criLine("stdout", "F", "first"), criLine("stderr", "F", "second"))
	h.waitCount(2)
	appendFile(t, log0, criLine("stdout", "F", "third"))
	h.waitCount(3)

	evs := h.sink.events()
	want := map[string]string{
		"event.dataset":                      Dataset,
		"kubernetes.namespace":               "shop",
		"kubernetes.pod.name":                "web-1",
		"kubernetes.container.name":          "app",
		"kubernetes.container.restart_count": "0",
		"host.name":                          "node-1",
		"kubernetes.node.name":               "node-1",
		"log.file.path":                      log0,
		"leitstand.receiver":                 "podlog",
	}
	msgs := map[string]string{}
	for _, e := range evs {
		for k, v := range want {
			if got := field(e, k); got != v {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
		if !strings.HasPrefix(field(e, "kubernetes.pod.uid"), "0000") {
			t.Errorf("kubernetes.pod.uid = %q", field(e, "kubernetes.pod.uid"))
		}
		if e.Timestamp.Year() != 2026 {
			t.Errorf("@timestamp %v not from the line", e.Timestamp)
		}
		msgs[e.Message()] = field(e, "log.iostream")
	}
	if msgs["first"] != "stdout" || msgs["second"] != "stderr" || msgs["third"] != "stdout" {
		t.Errorf("messages and streams: %v", msgs)
	}
	// ids: "<file id>.0:<line>"
	for _, e := range evs {
		key, n, ok := splitTestID(e.ID)
		if !ok || !strings.HasSuffix(key, ".0") || n < 1 || n > 3 {
			t.Errorf("id %q", e.ID)
		}
	}
}

func splitTestID(id string) (string, int, bool) {
	i := strings.LastIndexByte(id, ':')
	if i < 0 {
		return "", 0, false
	}
	var n int
	if _, err := fmt.Sscanf(id[i+1:], "%d", &n); err != nil {
		return "", 0, false
	}
	return id[:i], n, true
}

func TestLifecycle(t *testing.T) {
	cfg := testConfig(t)
	m := telemetry.New(prometheus.NewRegistry())
	// Shutdown without Start, twice.
	r, err := New(cfg, nil, m, prometheus.NewRegistry(), quietLog())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := r.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Start(context.Background()); err == nil {
		t.Fatal("Start after Shutdown worked")
	}
	// Start, Shutdown, Shutdown; a second receiver on the same state.
	for i := 0; i < 2; i++ {
		r, err := New(cfg, nil, m, prometheus.NewRegistry(), quietLog())
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := r.Start(context.Background()); err == nil {
			t.Fatal("second Start worked")
		}
		for j := 0; j < 2; j++ {
			if err := r.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, positionsFile)); err != nil {
		t.Fatalf("no positions written at shutdown: %v", err)
	}
}

func TestPartialLinesAndTruncation(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxLineBytes = 1000
	h := newHarness(t, cfg)
	dir := containerDir(t, h.root, "ns", "pod", "c")
	log0 := filepath.Join(dir, "0.log")
	long := strings.Repeat("x", 700)
	appendFile(t, log0,
		criLine("stdout", "P", "hello "),
		criLine("stderr", "F", "interleaved"),
		criLine("stdout", "P", "partial "),
		criLine("stdout", "F", "world"),
		criLine("stdout", "P", long),
		criLine("stdout", "P", long),
		criLine("stdout", "F", long),
		criLine("stdout", "F", strings.Repeat("y", 1500)),
		criLine("stdout", "F", "ä"+strings.Repeat("€", 400)), // 1202 bytes: cut between characters
		criLine("stdout", "F", "after"),
	)
	h.waitCount(6)
	got := map[string]string{}
	for _, e := range h.sink.events() {
		got[e.Message()] = field(e, "log.flags")
	}
	if _, ok := got["hello partial world"]; !ok {
		t.Errorf("partial lines not joined: %v", keys(got))
	}
	if f, ok := got["interleaved"]; !ok || f != "" {
		t.Errorf("interleaved stderr line: %v %q", ok, f)
	}
	if f, ok := got[strings.Repeat("x", 1000)]; !ok || f != `["truncated"]` {
		t.Errorf("joined over-long line not truncated to 1000 bytes and flagged: %q", f)
	}
	if f, ok := got[strings.Repeat("y", 1000)]; !ok || f != `["truncated"]` {
		t.Errorf("over-long line not truncated and flagged: %q", f)
	}
	if f, ok := got["ä"+strings.Repeat("€", 332)]; !ok || f != `["truncated"]` {
		t.Errorf("over-long UTF-8 line not cut at a character boundary: %q", f)
	}
	if _, ok := got["after"]; !ok {
		t.Error("line after the long ones lost")
	}
	if n := testutilCounter(t, h, "truncated"); n != 3 {
		t.Errorf("truncated_lines_total = %v, want 3", n)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		if len(k) > 40 {
			k = k[:40] + "…"
		}
		out = append(out, k)
	}
	return out
}

func testutilCounter(t *testing.T, h *harness, name string) float64 {
	t.Helper()
	switch name {
	case "truncated":
		return readCounter(h.r.m.truncated)
	case "retries":
		return readCounter(h.r.m.retries)
	}
	t.Fatalf("no counter %s", name)
	return 0
}

func TestPartialWaitFlushesAnUnfinishedLine(t *testing.T) {
	cfg := testConfig(t)
	h := newHarness(t, cfg)
	dir := containerDir(t, h.root, "ns", "pod", "c")
	appendFile(t, filepath.Join(dir, "0.log"), criLine("stdout", "P", "never "), criLine("stdout", "P", "finished"))
	h.waitCount(1)
	e := h.sink.events()[0]
	if e.Message() != "never finished" || field(e, "log.flags") != `["partial"]` {
		t.Errorf("got %q flags %q", e.Message(), field(e, "log.flags"))
	}
}

func TestDockerJSONFile(t *testing.T) {
	cfg := testConfig(t)
	h := newHarness(t, cfg)
	dir := containerDir(t, h.root, "ns", "pod", "c")
	appendFile(t, filepath.Join(dir, "0.log"),
		`{"log":"one\n","stream":"stdout","time":"2026-11-22T08:15:00.000000001Z"}`+"\n",
		`{"log":"two ","stream":"stderr","time":"2026-11-22T08:15:00.000000002Z"}`+"\n",
		`{"log":"halves\n","stream":"stderr","time":"2026-11-22T08:15:00.000000003Z"}`+"\n",
	)
	h.waitCount(2)
	got := map[string]string{}
	for _, e := range h.sink.events() {
		got[e.Message()] = field(e, "log.iostream")
	}
	if got["one"] != "stdout" || got["two halves"] != "stderr" || len(got) != 2 {
		t.Errorf("got %v", got)
	}
}

func TestResumesAfterRestartWithTheSameIDs(t *testing.T) {
	cfg := testConfig(t)
	h := newHarness(t, cfg)
	dir := containerDir(t, h.root, "ns", "pod", "c")
	log0 := filepath.Join(dir, "0.log")
	for i := 0; i < 100; i++ {
		appendFile(t, log0, criLine("stdout", "F", fmt.Sprintf("line %03d", i)))
	}
	h.waitCount(100)
	h.stop()
	first := h.sink.totalCount()
	for i := 100; i < 150; i++ {
		appendFile(t, log0, criLine("stdout", "F", fmt.Sprintf("line %03d", i)))
	}
	h.start()
	h.waitCount(150)
	time.Sleep(100 * time.Millisecond)
	if h.sink.totalCount() != first+50 {
		t.Errorf("after a clean restart %d events were sent again", h.sink.totalCount()-first-50)
	}
	// A crash: positions since the last checkpoint are lost, lines are sent
	// again, under the same ids.
	h.crash()
	if err := os.Remove(filepath.Join(h.state, positionsFile)); err != nil {
		t.Fatal(err)
	}
	before := h.sink.count()
	h.start()
	h.waitFor("all lines sent again", 10*time.Second, func() bool { return h.sink.totalCount() >= first+50+150 })
	if h.sink.count() != before {
		t.Errorf("replay created new ids: %d distinct, want %d", h.sink.count(), before)
	}
}

func TestRetriesUntilAcknowledged(t *testing.T) {
	cfg := testConfig(t)
	h := newHarness(t, cfg)
	h.sink.failNext.Store(3)
	dir := containerDir(t, h.root, "ns", "pod", "c")
	for i := 0; i < 20; i++ {
		appendFile(t, filepath.Join(dir, "0.log"), criLine("stdout", "F", fmt.Sprintf("l%d", i)))
	}
	h.waitCount(20)
	if n := testutilCounter(t, h, "retries"); n < 3 {
		t.Errorf("batch_retries_total = %v, want >= 3", n)
	}
}
