package sentry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/leitstand/leitstand/internal/config"
)

// upstream is a loopback capture server standing in for Sentry: it keeps
// every envelope, decompressed, and answers with the statuses it is told,
// in order, then 200.
type upstream struct {
	mu        sync.Mutex
	srv       *httptest.Server
	envelopes []capturedEnvelope
	statuses  []int
	auth      []string
	paths     []string
}

type capturedEnvelope struct {
	raw    string
	header map[string]any
	items  []capturedItem
}

type capturedItem struct {
	header  map[string]any
	payload []byte
}

func newUpstream(t *testing.T, statuses ...int) *upstream {
	u := &upstream{statuses: statuses}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		defer u.mu.Unlock()
		if len(u.statuses) > 0 {
			status := u.statuses[0]
			u.statuses = u.statuses[1:]
			if status == 429 {
				w.Header().Set("Retry-After", "0")
			}
			w.WriteHeader(status)
			return
		}
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			t.Errorf("upstream got a body that is not gzip: %v", err)
			return
		}
		raw, _ := io.ReadAll(zr)
		env, err := parseCaptured(raw)
		if err != nil {
			t.Errorf("upstream got an envelope it cannot parse: %v\n%s", err, raw)
		}
		u.envelopes = append(u.envelopes, env)
		u.auth = append(u.auth, r.Header.Get("X-Sentry-Auth"))
		u.paths = append(u.paths, r.URL.Path)
		w.Write([]byte(`{}`))
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// parseCaptured reads an envelope the way Relay does, independently of
// the receiver's parser: a JSON header line, then items with a length.
func parseCaptured(raw []byte) (capturedEnvelope, error) {
	env := capturedEnvelope{raw: string(raw)}
	line, rest, _ := bytes.Cut(raw, []byte("\n"))
	if err := json.Unmarshal(line, &env.header); err != nil {
		return env, fmt.Errorf("header: %v", err)
	}
	for len(bytes.TrimSpace(rest)) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		var it capturedItem
		if err := json.Unmarshal(line, &it.header); err != nil {
			return env, fmt.Errorf("item header: %v", err)
		}
		if l, ok := it.header["length"].(float64); ok {
			if int(l) > len(rest) {
				return env, fmt.Errorf("length %v > %d", l, len(rest))
			}
			it.payload, rest = rest[:int(l)], rest[int(l):]
			rest = bytes.TrimPrefix(rest, []byte("\n"))
		} else {
			it.payload, rest, _ = bytes.Cut(rest, []byte("\n"))
		}
		if ct, _ := it.header["type"].(string); ct != "attachment" && !json.Valid(it.payload) {
			return env, fmt.Errorf("item %v: payload is not JSON: %s", it.header, it.payload)
		}
		env.items = append(env.items, it)
	}
	return env, nil
}

func (u *upstream) all() []capturedEnvelope {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]capturedEnvelope(nil), u.envelopes...)
}

func (u *upstream) dsn(key string, project int) string {
	p, _ := url.Parse(u.srv.URL)
	return fmt.Sprintf("http://%s@%s/%d", key, p.Host, project)
}

// items returns the forwarded items of a type.
func (u *upstream) items(typ string) []capturedItem {
	var out []capturedItem
	for _, e := range u.all() {
		for _, it := range e.items {
			if it.header["type"] == typ {
				out = append(out, it)
			}
		}
	}
	return out
}

// wireEvent is Sentry's event format, as Relay documents it (exception and
// breadcrumbs in their {"values": [...]} form).
type wireEvent struct {
	EventID        string    `json:"event_id"`
	Type           string    `json:"type"`
	Level          string    `json:"level"`
	Platform       string    `json:"platform"`
	Release        string    `json:"release"`
	Environment    string    `json:"environment"`
	Transaction    string    `json:"transaction"`
	Timestamp      time.Time `json:"timestamp"`
	StartTimestamp time.Time `json:"start_timestamp"`
	Exception      struct {
		Values []struct {
			Type, Value string
			Stacktrace  struct {
				Frames []map[string]any `json:"frames"`
			} `json:"stacktrace"`
		} `json:"values"`
	} `json:"exception"`
	Breadcrumbs struct {
		Values []map[string]any `json:"values"`
	} `json:"breadcrumbs"`
	Contexts map[string]map[string]any `json:"contexts"`
	Tags     map[string]string         `json:"tags"`
	User     map[string]string         `json:"user"`
	Request  map[string]any            `json:"request"`
	Spans    []struct {
		Op             string    `json:"op"`
		Description    string    `json:"description"`
		StartTimestamp time.Time `json:"start_timestamp"`
		Timestamp      time.Time `json:"timestamp"`
	} `json:"spans"`
}

func TestForward(t *testing.T) {
	up := newUpstream(t, 503, 429) // the first two tries fail: retries
	f := newFixture(t, fixtureOpt{fwd: true, cfg: func(c *Config) {
		c.Forward.Enabled = true
		c.Forward.DSN = "" // set per project below
		c.Forward.RetryBackoff = 10 * time.Millisecond
		c.Projects[0].ForwardDSN = config.Secret(up.dsn("upstreamkey", 7))
	}})
	samples := []string{"go-req-001.envelope", "go-req-002.envelope", "go-req-003.envelope", "go-req-004.envelope",
		"node-req-002.envelope", "node-req-003.envelope", "node-req-005.envelope", "python-req-001.envelope"}
	for _, s := range samples {
		path, hdrs := envPath, authHeader()
		if strings.HasPrefix(s, "node") {
			path, hdrs = envPath+"?sentry_key="+testKey, nil
		}
		if code, _, h := f.post(t, path, readSample(t, s), hdrs...); code != 200 {
			t.Fatalf("%s: %d %s", s, code, h.Get("X-Sentry-Error"))
		}
	}
	// error+attachment, transaction, log, check-in, client report, spans,
	// sessions, error+attachment
	waitFor(t, 10*time.Second, "8 envelopes upstream", func() bool {
		if len(up.all()) >= 8 {
			return true
		}
		t.Logf("so far %d: sent %v, queued %v, dropped %v", len(up.all()), metricValueLabel(t, f, "leitstand_sentry_forward_envelopes_total", "outcome", "sent"),
			metricValueLabel(t, f, "leitstand_sentry_forward_envelopes_total", "outcome", "queued"), metricValue(t, f, "leitstand_sentry_forward_items_dropped_total"))
		time.Sleep(time.Second)
		return false
	})

	for i, e := range up.all() {
		if left := containsAny(e.raw, personal...); len(left) > 0 {
			t.Errorf("personal data forwarded: %q\n%s", left, e.raw)
		}
		if !strings.Contains(up.auth[i], "sentry_key=upstreamkey") || up.paths[i] != "/api/7/envelope/" {
			t.Errorf("sent with %q to %s", up.auth[i], up.paths[i])
		}
	}
	events := up.items("event")
	if len(events) != 2 {
		t.Fatalf("%d events forwarded, want 2", len(events))
	}
	for _, it := range events {
		var ev wireEvent
		if err := json.Unmarshal(it.payload, &ev); err != nil {
			t.Fatalf("not a Sentry event: %v\n%s", err, it.payload)
		}
		if len(ev.Exception.Values) != 1 || !strings.HasPrefix(ev.Exception.Values[0].Value, "failed to charge card [card] for email:") ||
			len(ev.Exception.Values[0].Stacktrace.Frames) == 0 {
			t.Errorf("exception: %+v", ev.Exception)
		}
		if !strings.HasPrefix(ev.User["email"], "email:") || !strings.HasPrefix(ev.User["id"], "user:") || ev.Release != "probe@1.0.0" ||
			ev.Environment != "research" || (ev.Platform == "go" && ev.Request["method"] != "POST") || len(ev.Breadcrumbs.Values) == 0 ||
			!strings.HasPrefix(ev.Tags["customer_email"], "email:") || ev.Contexts["trace"]["trace_id"] == nil || ev.Level != "error" ||
			!isLowerHex32(ev.EventID) || ev.Timestamp.IsZero() {
			t.Errorf("event: %s", it.payload)
		}
	}
	atts := up.items("attachment")
	if len(atts) != 2 || !strings.HasPrefix(string(atts[0].payload), "contact email:") || atts[0].header["filename"] != "note.txt" {
		t.Errorf("attachments: %+v", atts)
	}
	for _, e := range up.all() {
		if len(e.items) == 2 && e.items[1].header["type"] == "attachment" && e.header["event_id"] == nil {
			t.Errorf("an attachment without its event id: %s", e.raw)
		}
	}
	txs := up.items("transaction")
	if len(txs) != 1 {
		t.Fatalf("%d transactions", len(txs))
	}
	var tx wireEvent
	if err := json.Unmarshal(txs[0].payload, &tx); err != nil {
		t.Fatal(err)
	}
	if tx.Type != "transaction" || tx.Transaction != "POST /checkout" || len(tx.Spans) != 1 || tx.Spans[0].Op != "db.query" ||
		tx.StartTimestamp.IsZero() || !tx.Timestamp.After(tx.StartTimestamp) || !strings.Contains(tx.Spans[0].Description, "email:") ||
		!tx.Spans[0].Timestamp.After(tx.Spans[0].StartTimestamp) {
		t.Errorf("transaction: %s", txs[0].payload)
	}
	logs := up.items("log")
	if len(logs) != 1 || !strings.Contains(string(logs[0].payload), `"body":"user logged in from 198.51.100.0"`) ||
		!strings.Contains(string(logs[0].payload), `"sentry.environment":{"value":"research","type":"string"}`) {
		t.Errorf("logs: %+v", logs)
	}
	spans := up.items("span")
	if len(spans) != 1 || !strings.Contains(string(spans[0].payload), `"name":"POST"`) || !strings.Contains(string(spans[0].payload), `"status":"error"`) {
		t.Errorf("spans: %+v", spans)
	}
	if ci := up.items("check_in"); len(ci) != 1 || !strings.Contains(string(ci[0].payload), `"monitor_slug":"nightly-job"`) {
		t.Errorf("check-ins: %+v", ci)
	}
	if s := up.items("sessions"); len(s) != 1 || !strings.Contains(string(s[0].payload), `"errored":1`) {
		t.Errorf("sessions: %+v", s)
	}
	if s := up.items("client_report"); len(s) != 1 || !strings.Contains(string(s[0].payload), `no_parent_span`) {
		t.Errorf("client reports: %+v", s)
	}
	fwdMetric := func(outcome string) float64 {
		return metricValueLabel(t, f, "leitstand_sentry_forward_envelopes_total", "outcome", outcome)
	}
	// The upstream can have an envelope before the forwarder counted it
	// (a CI run under -race read "sent" one short): wait for the count.
	for deadline := time.Now().Add(5 * time.Second); fwdMetric("sent") != 8 || fwdMetric("retried") != 2; {
		if time.Now().After(deadline) {
			t.Errorf("sent %v, retried %v, want 8 and 2", fwdMetric("sent"), fwdMetric("retried"))
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestForwardGivesUpAndDrops(t *testing.T) {
	always := make([]int, 100)
	for i := range always {
		always[i] = 503
	}
	up := newUpstream(t, always...)
	f := newFixture(t, fixtureOpt{fwd: true, cfg: func(c *Config) {
		c.Forward.Enabled = true
		c.Forward.DSN = config.Secret(up.dsn("k", 7))
		c.Forward.RetryBackoff = time.Millisecond
		c.Forward.MaxRetries = 2
	}})
	if code, _, _ := f.post(t, envPath, eventEnvelope(minimalEvent), authHeader()...); code != 200 {
		t.Fatal(code)
	}
	waitFor(t, 5*time.Second, "the forwarder to give up", func() bool {
		return metricValueLabel(t, f, "leitstand_sentry_forward_envelopes_total", "outcome", "dropped_retries") == 1
	})
	if !strings.Contains(f.log.String(), "giving up") || strings.Contains(f.log.String(), "sentry_key") {
		t.Errorf("log: %s", f.log)
	}

	rejecting := newUpstream(t, 400)
	g := newFixture(t, fixtureOpt{fwd: true, cfg: func(c *Config) {
		c.Forward.Enabled = true
		c.Forward.DSN = config.Secret(rejecting.dsn("k", 7))
	}})
	if code, _, _ := g.post(t, envPath, eventEnvelope(minimalEvent), authHeader()...); code != 200 {
		t.Fatal(code)
	}
	waitFor(t, 5*time.Second, "the forwarder to drop a refused envelope", func() bool {
		return metricValueLabel(t, g, "leitstand_sentry_forward_envelopes_total", "outcome", "dropped_rejected") == 1
	})
}

func TestForwardQueueFullAndBinary(t *testing.T) {
	up := newUpstream(t)
	cfg := testConfig()
	cfg.Forward.Enabled = true
	cfg.Forward.DSN = config.Secret(up.dsn("k", 7))
	cfg.Forward.QueueEnvelopes = 1
	f, err := NewForwarder(cfg, nil, nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	// Not started: nothing takes from the queue.
	for i := 0; i < 3; i++ {
		f.enqueue("42", "", [][2][]byte{{[]byte(`{"type":"event"}`), []byte(`{}`)}})
	}
	if v := testutil.ToFloat64(f.m.envelopes.WithLabelValues("dropped_queue_full")); v != 2 {
		t.Errorf("dropped %v, want 2", v)
	}
	// Without a scrubber, nothing the pipeline did not scrub goes out.
	if _, ok := f.scrubItem(&item{hdr: itemHeader{typ: "attachment"}, payload: []byte("jane@example.com")}); ok {
		t.Error("an attachment was forwarded without a scrubber")
	}
	if err := f.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := f.Shutdown(context.Background()); err != nil {
		t.Fatal("second Shutdown:", err)
	}

	g := newFixture(t, fixtureOpt{fwd: true, cfg: func(c *Config) {
		c.Forward.Enabled = true
		c.Forward.DSN = config.Secret(up.dsn("k", 7))
	}})
	minidump := envelope(`{"event_id":"0123456789abcdef0123456789abcdef"}`, `{"type":"event"}`, minimalEvent,
		`{"type":"attachment","length":4,"attachment_type":"event.minidump","content_type":"application/octet-stream"}`, "MDMP")
	if code, _, _ := g.post(t, envPath, minidump, authHeader()...); code != 200 {
		t.Fatal(code)
	}
	waitFor(t, 5*time.Second, "the event upstream", func() bool { return len(up.items("event")) == 1 })
	if n := len(up.items("attachment")); n != 0 {
		t.Errorf("a binary attachment was forwarded")
	}
	if v := metricValueLabel(t, g, "leitstand_sentry_forward_items_dropped_total", "reason", "binary"); v != 1 {
		t.Errorf("binary drops %v", v)
	}
}

func TestForwardLifecycle(t *testing.T) {
	cfg := testConfig()
	cfg.Forward.Enabled = true
	cfg.Forward.DSN = "http://k@127.0.0.1:1/7"
	for _, steps := range [][]string{{"shutdown"}, {"start", "shutdown", "shutdown"}, {"start", "shutdown", "start"}} {
		f, err := NewForwarder(cfg, nil, nil, testLogger())
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range steps {
			var err error
			if s == "start" {
				err = f.Start(context.Background())
			} else {
				err = f.Shutdown(context.Background())
			}
			if (err != nil) != (i == 2 && s == "start") {
				t.Errorf("%v: step %d (%s): %v", steps, i, s, err)
			}
		}
	}
}
