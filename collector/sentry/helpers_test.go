package sentry

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leitstand/leitstand/anonymize"
	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/collector/telemetry"
)

// The samples' DSN: http://0123456789abcdef0123456789abcdef@host/42.
const (
	testKey     = "0123456789abcdef0123456789abcdef"
	testProject = 42
)

// captureSink keeps what reaches it, encoded as the file sink would write
// it; gate, when set, holds every Consume until it is closed.
type captureSink struct {
	mu     sync.Mutex
	events []capturedEvent
	gate   chan struct{}
	fail   error // returned by Consume when set
}

type capturedEvent struct {
	ID      string
	Dataset string
	JSON    string
	Fields  map[string]collector.Field
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
		e := &b.Events[i]
		c := e.Clone()
		ce := capturedEvent{ID: c.ID, Dataset: c.Dataset(), JSON: string(c.AppendJSON(nil)), Fields: map[string]collector.Field{}}
		for _, f := range c.Fields {
			ce.Fields[f.Key] = f
		}
		s.events = append(s.events, ce)
	}
	return nil
}

func (s *captureSink) all() []capturedEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]capturedEvent(nil), s.events...)
}

func (s *captureSink) byDataset(ds string) []capturedEvent {
	var out []capturedEvent
	for _, e := range s.all() {
		if e.Dataset == ds {
			out = append(out, e)
		}
	}
	return out
}

// waitFor polls until cond holds or the time is up.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fixture is a receiver in front of the real pipeline with the real
// anonymizer and a capturing sink.
type fixture struct {
	r    *Receiver
	sink *captureSink
	pipe *pipeline.Pipeline
	reg  *prometheus.Registry
	srv  *httptest.Server
	log  *syncBuffer
	anon *anonymize.Anonymizer

	mu   sync.Mutex
	seen []seenRequest
}

type fixtureOpt struct {
	cfg      func(*Config)
	pipeline pipeline.Config
	sinks    []collector.Sink
	gate     bool
	fwd      bool
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Projects = []Project{{ID: testProject, Service: "shop", Tenant: "school-a", Keys: []Key{{PublicKey: testKey}},
		AllowedOrigins: []string{"https://app.example.org"}}}
	return cfg
}

// syncBuffer is a log destination the test reads while handlers write.
type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.String()
}

func newFixture(t testing.TB, o fixtureOpt) *fixture {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := telemetry.New(reg)
	logBuf := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	anon, err := anonymize.New(anonymize.DefaultConfig(), t.TempDir(), reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	sink := &captureSink{}
	if o.gate {
		sink.gate = make(chan struct{})
	}
	pcfg := o.pipeline
	if pcfg.QueueSize == 0 {
		pcfg = pipeline.Config{QueueSize: 4096, Workers: 2}
	}
	sinks := append([]collector.Sink{sink}, o.sinks...)
	var opts []Option
	var fwd *Forwarder
	if o.fwd {
		fwd, err = NewForwarder(cfg, anon, reg, log)
		if err != nil {
			t.Fatal(err)
		}
		sinks = append(sinks, fwd)
		opts = append(opts, WithForwarder(fwd))
	}
	for _, s := range sinks {
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	p := pipeline.New(pcfg, []collector.Stage{anon}, sinks, m, log)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, err := New(cfg, p, m, reg, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{r: r, sink: sink, pipe: p, reg: reg, log: logBuf, anon: anon}
	inner := r.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		fx.mu.Lock()
		fx.seen = append(fx.seen, seenRequest{
			Path: req.URL.Path, QueryKey: strings.Contains(req.URL.RawQuery, "sentry_key="),
			AuthHeader: req.Header.Get("X-Sentry-Auth") != "", Encoding: req.Header.Get("Content-Encoding"),
			ContentType: req.Header.Get("Content-Type"), Chunked: req.ContentLength < 0,
		})
		fx.mu.Unlock()
		inner.ServeHTTP(w, req)
	}))
	fx.srv = srv
	t.Cleanup(func() {
		srv.Close()
		if sink.gate != nil {
			select {
			case <-sink.gate:
			default:
				close(sink.gate)
			}
		}
		_ = p.Shutdown(context.Background())
		for _, s := range sinks {
			_ = s.Shutdown(context.Background())
		}
	})
	return fx
}

// seenRequest is how a client sent one request.
type seenRequest struct {
	Path                 string
	QueryKey, AuthHeader bool
	Encoding             string
	ContentType          string
	Chunked              bool
}

func (f *fixture) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenRequest(nil), f.seen...)
}

// post sends body to path with header pairs and returns status, the
// decoded JSON answer and the headers.
func (f *fixture) post(t testing.TB, path string, body []byte, header ...string) (int, response, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out response
	if len(data) > 0 {
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("answer is not JSON: %q", data)
		}
	}
	return resp.StatusCode, out, resp.Header
}

func authHeader() []string {
	return []string{"X-Sentry-Auth", "Sentry sentry_version=7, sentry_client=test/1.0, sentry_key=" + testKey}
}

func readSample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/samples/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func containsAny(s string, subs ...string) []string {
	var found []string
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			found = append(found, sub)
		}
	}
	return found
}

// metricValue sums the series of a gauge or counter family.
func metricValue(t testing.TB, f *fixture, name string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return sum
}

// metricValueLabel is the value of the series of a family with label=value.
func metricValueLabel(t testing.TB, f *fixture, name, label, value string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testMetrics() *telemetry.Metrics { return telemetry.New(prometheus.NewRegistry()) }
