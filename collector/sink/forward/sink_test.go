package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/httpin"
	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/collector/telemetry"
	"github.com/leitstand/leitstand/internal/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// store is the aggregator's sink: it keeps events by id, as Elasticsearch
// keeps documents by _id.
type store struct {
	mu    sync.Mutex
	byID  map[string]string // id → message
	total int
}

func (s *store) Name() string                   { return "store" }
func (s *store) Start(context.Context) error    { return nil }
func (s *store) Shutdown(context.Context) error { return nil }
func (s *store) Consume(_ context.Context, b *collector.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range b.Events {
		s.byID[strings.Clone(b.Events[i].ID)] = strings.Clone(b.Events[i].Message())
		s.total++
	}
	return nil
}

func (s *store) snapshot() (map[string]string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.byID))
	for k, v := range s.byID {
		out[k] = v
	}
	return out, s.total
}

// aggregator is a real intake (collector/httpin) in front of a real
// pipeline, behind an httptest server.
type aggregator struct {
	srv   *httptest.Server
	pipe  *pipeline.Pipeline
	store *store
	// before, when set, answers instead of the intake (fault injection);
	// returning false passes the request on.
	before atomic.Pointer[func(w http.ResponseWriter, r *http.Request) bool]
}

func newAggregator(t *testing.T, ingest httpin.Config) *aggregator {
	t.Helper()
	a := &aggregator{store: &store{byID: map[string]string{}}}
	m := telemetry.New(prometheus.NewRegistry())
	a.pipe = pipeline.New(pipeline.DefaultConfig(), nil, []collector.Sink{a.store}, m, quiet())
	if err := a.pipe.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h, err := httpin.New(ingest, a.pipe, m, quiet())
	if err != nil {
		t.Fatal(err)
	}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := a.before.Load(); f != nil && (*f)(w, r) {
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		a.srv.Close()
		_ = a.pipe.Shutdown(context.Background())
	})
	return a
}

func (a *aggregator) url() string { return a.srv.URL + httpin.Path }

func (a *aggregator) intercept(f func(w http.ResponseWriter, r *http.Request) bool) {
	a.before.Store(&f)
}

func newSink(t *testing.T, cfg Config) (*Sink, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := New(cfg, telemetry.New(reg), reg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return s, reg
}

func testConfig(urls ...string) Config {
	cfg := DefaultConfig()
	cfg.URLs = urls
	cfg.MinBackoff = 5 * time.Millisecond
	cfg.MaxBackoff = 50 * time.Millisecond
	cfg.RequestTimeout = 2 * time.Second
	cfg.BatchTimeout = 5 * time.Second
	return cfg
}

// batch builds a batch of events with the given ids ("" for none).
func batch(ids ...string) *collector.Batch {
	b := collector.NewBatch("test")
	for _, id := range ids {
		e := b.Next()
		e.Timestamp = time.Now()
		e.ID = id
		msg := "event " + id
		if id == "" {
			msg = fmt.Sprintf("plain %d", b.Len())
		}
		e.AddString(collector.FieldMessage, msg)
		e.AddString(collector.FieldDataset, "kubernetes.container")
		e.Normalize()
	}
	return b
}

func TestIDsSurviveTheHop(t *testing.T) {
	for _, comp := range []string{CompressZstd, CompressGzip, CompressNone} {
		t.Run(comp, func(t *testing.T) {
			agg := newAggregator(t, httpin.DefaultConfig())
			cfg := testConfig(agg.url())
			cfg.Compression = comp
			s, _ := newSink(t, cfg)
			// Two files' windows, out of order and interleaved, with gaps.
			ids := []string{"f1.0:7", "f2.3:1", "f1.0:2", "f1.0:100000", "f2.3:2", "f1.1:1"}
			b := batch(ids...)
			defer b.Release()
			if err := s.Consume(context.Background(), b); err != nil {
				t.Fatal(err)
			}
			got, total := agg.store.snapshot()
			if total != len(ids) {
				t.Errorf("%d events stored, want %d", total, len(ids))
			}
			for _, id := range ids {
				if got[id] != "event "+id {
					t.Errorf("id %s: stored %q", id, got[id])
				}
			}
		})
	}
}

func TestPlainEventsGetTheSameIDsWhenRetried(t *testing.T) {
	agg := newAggregator(t, httpin.DefaultConfig())
	s, _ := newSink(t, testConfig(agg.url()))
	// The same batch twice, as when the first answer was lost.
	b := batch("", "", "not-an-id", "x:0", "y:abc")
	defer b.Release()
	for i := 0; i < 2; i++ {
		if err := s.Consume(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	got, total := agg.store.snapshot()
	if total != 10 || len(got) != 5 {
		t.Errorf("sent twice: %d events under %d ids, want 10 under 5", total, len(got))
	}
	for id := range got {
		if !strings.HasPrefix(id, "b") {
			t.Errorf("id %q not derived from the body", id)
		}
	}
}

func TestFailOverAndRetryAfter(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL + httpin.Path
	down.Close() // connection refused
	agg := newAggregator(t, httpin.DefaultConfig())
	var refusals atomic.Int32
	agg.intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if refusals.Add(1) <= 2 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, `{"error":"the pipeline is full; retry later"}`, http.StatusTooManyRequests)
			return true
		}
		return false
	})
	s, reg := newSink(t, testConfig(downURL, agg.url()))
	b := batch("k.0:1", "k.0:2")
	defer b.Release()
	if err := s.Consume(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if got, _ := agg.store.snapshot(); len(got) != 2 {
		t.Fatalf("stored %v", got)
	}
	if n := counter(t, reg, "leitstand_forward_retries_total", nil); n < 3 {
		t.Errorf("retries_total = %v, want at least 3", n)
	}
	if n := counter(t, reg, "leitstand_forward_requests_total", map[string]string{"url": downURL, "code": "error"}); n < 1 {
		t.Errorf("requests_total{code=error} for the dead aggregator = %v", n)
	}
	// The healthy one is preferred from now on.
	before := counter(t, reg, "leitstand_forward_requests_total", map[string]string{"url": downURL, "code": "error"})
	b2 := batch("k.0:3")
	defer b2.Release()
	if err := s.Consume(context.Background(), b2); err != nil {
		t.Fatal(err)
	}
	if after := counter(t, reg, "leitstand_forward_requests_total", map[string]string{"url": downURL, "code": "error"}); after != before {
		t.Error("the dead aggregator was tried again although the other answers")
	}
	if err := s.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
}

func TestBatchTimeoutReturnsAnError(t *testing.T) {
	agg := newAggregator(t, httpin.DefaultConfig())
	agg.intercept(func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Retry-After", "1")
		http.Error(w, `{"error":"leitstand is shutting down"}`, http.StatusServiceUnavailable)
		return true
	})
	cfg := testConfig(agg.url())
	cfg.BatchTimeout = 300 * time.Millisecond
	cfg.RequestTimeout = 100 * time.Millisecond
	s, _ := newSink(t, cfg)
	b := batch("k.0:1")
	defer b.Release()
	start := time.Now()
	err := s.Consume(context.Background(), b)
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Consume = %v, want the 503 reported", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Consume took %s with a 300ms batch_timeout", d)
	}
	if s.Ready() == nil {
		t.Error("Ready with every aggregator failing")
	}
}

func TestTooLargeIsSplit(t *testing.T) {
	ingest := httpin.DefaultConfig()
	ingest.MaxBodyBytes = 4096
	ingest.MaxInflightBytes = 1 << 20
	agg := newAggregator(t, ingest)
	cfg := testConfig(agg.url())
	cfg.Compression = CompressNone
	s, reg := newSink(t, cfg)
	var ids []string
	for i := 1; i <= 200; i++ {
		ids = append(ids, fmt.Sprintf("big.0:%d", i))
	}
	b := batch(ids...)
	defer b.Release()
	if err := s.Consume(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	got, _ := agg.store.snapshot()
	for _, id := range ids {
		if got[id] != "event "+id {
			t.Fatalf("id %s: %q", id, got[id])
		}
	}
	if n := counter(t, reg, "leitstand_forward_splits_total", nil); n < 1 {
		t.Errorf("splits_total = %v", n)
	}
}

func TestMaxRequestBytesSplitsBeforeTheAggregatorRefuses(t *testing.T) {
	agg := newAggregator(t, httpin.DefaultConfig())
	cfg := testConfig(agg.url())
	cfg.MaxRequestBytes = 64 << 10
	s, reg := newSink(t, cfg)
	b := collector.NewBatch("test")
	defer b.Release()
	for i := 1; i <= 200; i++ {
		e := b.Next()
		e.ID = fmt.Sprintf("w.0:%d", i)
		e.AddString(collector.FieldMessage, strings.Repeat("m", 1000))
	}
	if err := s.Consume(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if got, _ := agg.store.snapshot(); len(got) != 200 {
		t.Errorf("stored %d events", len(got))
	}
	if n := counter(t, reg, "leitstand_forward_requests_total", map[string]string{"code": "200"}); n < 3 {
		t.Errorf("%v requests for 200KB with max_request_bytes 64KiB", n)
	}
	if n := counter(t, reg, "leitstand_forward_splits_total", nil); n != 0 {
		t.Errorf("the aggregator had to refuse: splits_total = %v", n)
	}
}

func TestInvalidLinesAreDroppedAndCounted(t *testing.T) {
	agg := newAggregator(t, httpin.DefaultConfig())
	s, reg := newSink(t, testConfig(agg.url()))
	b := collector.NewBatch("test")
	defer b.Release()
	e := b.Next() // no message: the intake refuses the line
	e.ID = "k.0:1"
	e.AddString("log.level", "info")
	e2 := b.Next()
	e2.ID = "k.0:2"
	e2.AddString(collector.FieldMessage, "fine")
	if err := s.Consume(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if got, _ := agg.store.snapshot(); len(got) != 1 || got["k.0:2"] != "fine" {
		t.Errorf("stored %v", got)
	}
	if n := counter(t, reg, "leitstand_events_dropped_total", map[string]string{"component": "forward", "reason": "rejected"}); n != 1 {
		t.Errorf("events_dropped_total{reason=rejected} = %v", n)
	}
}

func TestBearerTokenFromAFileIsReadAgainAfter401(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("aggregator-token-0001\naggregator-token-0002\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ingest := httpin.DefaultConfig()
	ingest.Auth.TokensFile = tokens
	agg := newAggregator(t, ingest)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("stale-token-xxxxxxxx\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(agg.url())
	cfg.TokenFile = tokenFile
	s, _ := newSink(t, cfg)
	// The secret is rotated after start.
	if err := os.WriteFile(tokenFile, []byte("aggregator-token-0002\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := batch("k.0:1")
	defer b.Release()
	if err := s.Consume(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if got, _ := agg.store.snapshot(); len(got) != 1 {
		t.Errorf("stored %v", got)
	}
}

func TestLifecycle(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := New(DefaultConfig(), telemetry.New(reg), reg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	b := batch("k.0:1")
	defer b.Release()
	if err := s.Consume(context.Background(), b); !errors.Is(err, collector.ErrClosed) {
		t.Errorf("Consume after Shutdown = %v", err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Error("Start after Shutdown worked")
	}
	reg2 := prometheus.NewRegistry()
	s2, err := New(DefaultConfig(), telemetry.New(reg2), reg2, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s2.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestSplitID(t *testing.T) {
	for id, want := range map[string]string{
		"abc.0:1": "abc.0/1", "k:1048576": "k/1048576", "a:b:3": "a:b/3",
		"k:0": "", "k:01": "", "k:1048577": "", ":5": "", "k:": "", "k": "", "": "", "k x:1": "", "k:1a": "",
		strings.Repeat("k", 128) + ":1": strings.Repeat("k", 128) + "/1", strings.Repeat("k", 129) + ":1": "",
	} {
		key, n, ok := SplitID(id)
		got := ""
		if ok {
			got = fmt.Sprintf("%s/%d", key, n)
		}
		if got != want {
			t.Errorf("SplitID(%q) = %q, want %q", id, got, want)
		}
	}
}

func TestBadConfigs(t *testing.T) {
	cases := map[string][]string{
		"bad_urls.yaml":     {"urls[0]: must start with http://", "urls[1]: has no host", "urls[2]: must not carry credentials"},
		"bad_token.yaml":    {"token_file: set either", "token: is shorter", "token_file: open /nonexistent"},
		"bad_limits.yaml":   {"compression", "request_timeout", "batch_timeout", "max_backoff", "max_request_bytes"},
		"bad_tls.yaml":      {"tls.ca_file", "tls: cert_file and key_file go together"},
		"bad_unknown.yaml":  {`urlz: unknown key "urlz"`},
		"bad_no_urls.yaml":  {"urls: must name at least one"},
		"good_forward.yaml": nil,
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			src, err := config.LoadFile(filepath.Join("testdata", name), &cfg)
			if err == nil {
				err = src.Annotate(cfg.Validate())
			}
			if want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matches(m, labels) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func matches(m *dto.Metric, labels map[string]string) bool {
	for k, v := range labels {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k && lp.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
