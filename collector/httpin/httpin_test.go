package httpin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/collector/telemetry"
	"github.com/leitstand/leitstand/internal/config"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// captureSink keeps the encoded events it is given; gate, when set, holds
// every Consume until it is closed.
type captureSink struct {
	mu    sync.Mutex
	lines []string
	ids   []string
	gate  chan struct{}
	fail  error
}

func (s *captureSink) Name() string                   { return "capture" }
func (s *captureSink) Start(context.Context) error    { return nil }
func (s *captureSink) Shutdown(context.Context) error { return nil }
func (s *captureSink) Consume(_ context.Context, b *collector.Batch) error {
	if s.gate != nil {
		<-s.gate
	}
	if s.fail != nil {
		return s.fail
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range b.Events {
		s.lines = append(s.lines, string(b.Events[i].AppendJSON(nil)))
		s.ids = append(s.ids, b.Events[i].ID)
	}
	return nil
}

type fixture struct {
	h    *Handler
	sink *captureSink
	reg  *prometheus.Registry
	m    *telemetry.Metrics
}

func newFixture(t *testing.T, cfg Config, pcfg pipeline.Config, sink *captureSink) *fixture {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := telemetry.New(reg)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := pipeline.New(pcfg, nil, []collector.Sink{sink}, m, log)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if sink.gate != nil {
			select {
			case <-sink.gate:
			default:
				close(sink.gate)
			}
		}
		p.Shutdown(context.Background())
	})
	h, err := New(cfg, p, m, log)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{h: h, sink: sink, reg: reg, m: m}
}

func (f *fixture) post(body []byte, header ...string) (int, Response, http.Header) {
	req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	var resp Response
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		panic("response is not JSON: " + rec.Body.String())
	}
	return rec.Code, resp, rec.Header()
}

func smallPipeline() pipeline.Config { return pipeline.Config{QueueSize: 1024, Workers: 2} }

func TestBadLinesDoNotCostGoodLines(t *testing.T) {
	f := newFixture(t, DefaultConfig(), smallPipeline(), &captureSink{})
	body := strings.Join([]string{
		`{"message":"first","log":{"level":"info"}}`,
		`{"message":"no closing brace"`,
		``,
		`{"log.level":"warn"}`,
		`{"message":"second","@timestamp":"2026-11-22T08:00:00+01:00","event.dataset":"app"}`,
		`{"message":"bad time","@timestamp":"yesterday"}`,
		`{"message":"bad dataset","event":{"dataset":"../etc"}}`,
		`["not","an","object"]`,
		`{"message":42}`,
		`{"message":"trailing"} x`,
	}, "\n")
	code, resp, _ := f.post([]byte(body))
	if code != http.StatusOK || resp.Accepted != 2 || resp.RejectedCount != 7 {
		t.Fatalf("status %d, accepted %d, rejected %d; want 200, 2, 7: %+v", code, resp.Accepted, resp.RejectedCount, resp)
	}
	wantLines := []int{2, 4, 6, 7, 8, 9, 10}
	for i, r := range resp.Rejected {
		if r.Line != wantLines[i] || r.Reason == "" {
			t.Errorf("reject %d: line %d reason %q, want line %d with a reason", i, r.Line, r.Reason, wantLines[i])
		}
	}
	if !strings.Contains(resp.Rejected[1].Reason, `missing "message"`) || !strings.Contains(resp.Rejected[2].Reason, "RFC 3339") {
		t.Errorf("reasons do not say what was wrong: %+v", resp.Rejected)
	}
	if len(f.sink.lines) != 2 {
		t.Fatalf("sink got %d events, want 2", len(f.sink.lines))
	}
	if !strings.HasPrefix(f.sink.lines[1], `{"@timestamp":"2026-11-22T07:00:00.000000000Z","event":{"dataset":"app"`) {
		t.Errorf("second event: %s", f.sink.lines[1])
	}
	if got := refused(t, f.reg, "invalid"); got != 7 {
		t.Errorf("refused{reason=invalid} = %v, want 7", got)
	}
}

func TestStatusCodes(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxBodyBytes = 4096
	f := newFixture(t, cfg, smallPipeline(), &captureSink{})
	line := []byte(`{"message":"ok"}` + "\n")

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat(line, 10))
	zw.Close()
	var zs bytes.Buffer
	zsw, _ := zstd.NewWriter(&zs)
	zsw.Write(bytes.Repeat(line, 3))
	zsw.Close()
	var bomb bytes.Buffer
	zw = gzip.NewWriter(&bomb)
	zw.Write(bytes.Repeat([]byte(" "), 1<<20)) // 1 MiB of spaces, a few KiB compressed
	zw.Close()

	cases := []struct {
		name     string
		body     []byte
		header   []string
		code     int
		accepted int
		errText  string
	}{
		{"gzip", gz.Bytes(), []string{"Content-Encoding", "gzip"}, 200, 10, ""},
		{"zstd", zs.Bytes(), []string{"Content-Encoding", "zstd"}, 200, 3, ""},
		{"truncated gzip", gz.Bytes()[:gz.Len()/2], []string{"Content-Encoding", "gzip"}, 400, 0, "not valid gzip"},
		{"not gzip at all", line, []string{"Content-Encoding", "gzip"}, 400, 0, "not valid gzip"},
		{"brotli", line, []string{"Content-Encoding", "br"}, 415, 0, `"br" is not supported`},
		{"too large", bytes.Repeat(line, 300), nil, 413, 0, "over the limit of 4KiB"},
		{"decompression bomb", bomb.Bytes(), []string{"Content-Encoding", "gzip"}, 413, 0, "over the limit"},
		{"empty", nil, nil, 400, 0, "empty body"},
		{"only bad lines", []byte("{}\n{}\n"), nil, 400, 0, "no line was accepted"},
		{"bad idempotency key", line, []string{"Idempotency-Key", "has space"}, 400, 0, "Idempotency-Key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, resp, _ := f.post(c.body, c.header...)
			if code != c.code || resp.Accepted != c.accepted || !strings.Contains(resp.Error, c.errText) {
				t.Fatalf("got %d accepted %d error %q; want %d accepted %d error containing %q", code, resp.Accepted, resp.Error, c.code, c.accepted, c.errText)
			}
		})
	}
	// The daemon keeps serving after all that.
	if code, resp, _ := f.post(line); code != 200 || resp.Accepted != 1 {
		t.Fatalf("after bad requests: %d %+v", code, resp)
	}
	req := httptest.NewRequest(http.MethodGet, Path, nil)
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "POST" {
		t.Fatalf("GET: %d Allow=%q", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestBearerTokens(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Auth.Tokens = []config.Secret{"a-long-enough-token-1"}
	f := newFixture(t, cfg, smallPipeline(), &captureSink{})
	line := []byte(`{"message":"ok"}`)
	for _, c := range []struct {
		auth string
		code int
	}{
		{"", 401},
		{"Bearer wrong-token-of-some-length", 401},
		{"Basic a-long-enough-token-1", 401},
		{"Bearer a-long-enough-token-1x", 401},
		{"Bearer a-long-enough-token-1", 200},
		{"bearer a-long-enough-token-1", 200},
	} {
		code, resp, h := f.post(line, "Authorization", c.auth)
		if code != c.code {
			t.Errorf("Authorization %q: %d %+v, want %d", c.auth, code, resp, c.code)
		}
		if code == 401 && h.Get("WWW-Authenticate") == "" {
			t.Errorf("401 without WWW-Authenticate")
		}
	}
	if len(f.sink.lines) != 2 {
		t.Fatalf("%d events stored, want only the 2 authorized ones", len(f.sink.lines))
	}
}

func TestIdempotencyKeyGivesStableIDs(t *testing.T) {
	f := newFixture(t, DefaultConfig(), smallPipeline(), &captureSink{})
	body := []byte("{\"message\":\"a\"}\n\n{\"message\":\"b\"}\n")
	f.post(body, "Idempotency-Key", "node-1/batch-77")
	f.post(body, "Idempotency-Key", "node-1/batch-77")
	want := []string{"node-1/batch-77:1", "node-1/batch-77:3", "node-1/batch-77:1", "node-1/batch-77:3"}
	if strings.Join(f.sink.ids, ",") != strings.Join(want, ",") {
		t.Fatalf("ids %v, want %v", f.sink.ids, want)
	}
}

func TestFullQueueAnswers429(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Queue = pipeline.Policy{WhenFull: pipeline.Block, BlockTimeout: 50 * time.Millisecond}
	sink := &captureSink{gate: make(chan struct{})}
	f := newFixture(t, cfg, pipeline.Config{QueueSize: 2, Workers: 1}, sink)
	two := []byte("{\"message\":\"1\"}\n{\"message\":\"2\"}\n")
	first := make(chan int)
	go func() { code, _, _ := f.post(two); first <- code }()
	// Wait until the first request holds the whole queue.
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(f.m.QueueDepth.WithLabelValues("pipeline")) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("first request never reached the queue")
		}
		time.Sleep(time.Millisecond)
	}
	code, resp, h := f.post(two)
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" || resp.Error == "" {
		t.Fatalf("full queue: %d Retry-After=%q %+v", code, h.Get("Retry-After"), resp)
	}
	close(sink.gate)
	if code := <-first; code != 200 {
		t.Fatalf("first request: %d", code)
	}
	if got := refused(t, f.reg, "queue_full"); got != 2 {
		t.Fatalf("refused{reason=queue_full} = %v, want 2", got)
	}
}

func TestSinkFailureAnswers503(t *testing.T) {
	f := newFixture(t, DefaultConfig(), smallPipeline(), &captureSink{fail: errors.New("disk full")})
	code, resp, h := f.post([]byte(`{"message":"x"}`))
	if code != http.StatusServiceUnavailable || !strings.Contains(resp.Error, "disk full") || h.Get("Retry-After") == "" {
		t.Fatalf("%d %+v", code, resp)
	}
}

// TestFullSpoolAnswers429WithItsReason: when the spool behind the
// pipeline is at its cap the sender learns that it is the spool (a wait of
// minutes, not milliseconds) and the refusal is counted as spool_full.
func TestFullSpoolAnswers429WithItsReason(t *testing.T) {
	full := fmt.Errorf("spool at its cap (max_bytes 2MiB): %w", collector.ErrSpoolFull)
	f := newFixture(t, DefaultConfig(), smallPipeline(), &captureSink{fail: full})
	code, resp, h := f.post([]byte("{\"message\":\"1\"}\n{\"message\":\"2\"}\n"))
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" || !strings.Contains(resp.Error, "spool is full") {
		t.Fatalf("full spool: %d Retry-After=%q %+v", code, h.Get("Retry-After"), resp)
	}
	if got := refused(t, f.reg, "spool_full"); got != 2 {
		t.Fatalf("refused{reason=spool_full} = %v, want 2", got)
	}
}

// refused reads leitstand_events_refused_total{component="ingest",reason}.
func refused(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "leitstand_events_refused_total" {
			continue
		}
		for _, m := range mf.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["component"] == "ingest" && labels["reason"] == reason {
				return m.Counter.GetValue()
			}
		}
	}
	return 0
}

func TestInflightBodiesAreBounded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxBodyBytes, cfg.MaxInflightBytes = 4096, 4096
	cfg.Queue = pipeline.Policy{WhenFull: pipeline.DropNewest}
	f := newFixture(t, cfg, smallPipeline(), &captureSink{})
	// A body without Content-Length reserves max_body_bytes; this one
	// stalls until the test lets it finish.
	pr, pw := io.Pipe()
	first := make(chan int)
	go func() {
		req := httptest.NewRequest(http.MethodPost, Path, pr)
		req.ContentLength = -1
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		first <- rec.Code
	}()
	pw.Write([]byte(`{"message":"slow"`))
	deadline := time.Now().Add(5 * time.Second)
	for f.h.inflight.TryAcquire(1) {
		f.h.inflight.Release(1)
		if time.Now().After(deadline) {
			t.Fatal("the stalled request never reserved its body")
		}
		time.Sleep(time.Millisecond)
	}
	code, resp, h := f.post([]byte(`{"message":"fast"}`))
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Fatalf("second request while the first holds all in-flight room: %d %+v", code, resp)
	}
	pw.Write([]byte("}\n"))
	pw.Close()
	if code := <-first; code != 200 {
		t.Fatalf("stalled request: %d", code)
	}
	if code, _, _ := f.post([]byte(`{"message":"after"}`)); code != 200 {
		t.Fatalf("after the first finished: %d", code)
	}
}
