package sentry

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/pipeline"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// sentry-go's clients keep a worker per transport until the process ends
		goleak.IgnoreTopFunction("github.com/getsentry/sentry-go.(*HTTPTransport).worker"),
		goleak.IgnoreAnyFunction("github.com/getsentry/sentry-go/internal/telemetry.(*Processor).run"),
		goleak.IgnoreAnyFunction("github.com/getsentry/sentry-go/internal/telemetry.(*Scheduler).run"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
	)
}

// envelope joins a header and items into an envelope body.
func envelope(header string, items ...string) []byte {
	return []byte(header + "\n" + strings.Join(items, "\n") + "\n")
}

const (
	minimalEvent = `{"event_id":"0123456789abcdef0123456789abcdef","message":"hello","level":"warning","timestamp":1795315725.5}`
	envPath      = "/api/42/envelope/"
)

func eventEnvelope(event string) []byte {
	return envelope(`{}`, `{"type":"event"}`, event)
}

func TestAuthForms(t *testing.T) {
	f := newFixture(t, fixtureOpt{})
	dsnHeader := `{"dsn":"http://` + testKey + `@127.0.0.1/42"}`
	cases := []struct {
		name   string
		path   string
		header string
		body   []byte
		hdrs   []string
		status int
		reason string
	}{
		{name: "X-Sentry-Auth", path: envPath, body: eventEnvelope(minimalEvent), hdrs: authHeader(), status: 200},
		{name: "X-Sentry-Auth without prefix", path: envPath, body: eventEnvelope(minimalEvent), hdrs: []string{"X-Sentry-Auth", "sentry_key=" + testKey + ",sentry_version=7"}, status: 200},
		{name: "Authorization: Sentry", path: envPath, body: eventEnvelope(minimalEvent), hdrs: []string{"Authorization", "Sentry sentry_key=" + testKey}, status: 200},
		{name: "query", path: envPath + "?sentry_version=7&sentry_key=" + testKey, body: eventEnvelope(minimalEvent), status: 200},
		{name: "dsn in the envelope", path: envPath, body: envelope(dsnHeader, `{"type":"event"}`, minimalEvent), status: 200},
		{name: "all four agree", path: envPath + "?sentry_key=" + testKey, body: envelope(dsnHeader, `{"type":"event"}`, minimalEvent),
			hdrs: append(authHeader(), "Authorization", "Sentry sentry_key="+testKey), status: 200},
		{name: "a proxy's bearer token is not ours", path: envPath + "?sentry_key=" + testKey, body: eventEnvelope(minimalEvent), hdrs: []string{"Authorization", "Bearer x"}, status: 200},
		{name: "without trailing slash", path: "/api/42/envelope", body: eventEnvelope(minimalEvent), hdrs: authHeader(), status: 200},

		{name: "none", path: envPath, body: eventEnvelope(minimalEvent), status: 401, reason: "missing authentication"},
		{name: "unknown key", path: envPath, body: eventEnvelope(minimalEvent), hdrs: []string{"X-Sentry-Auth", "Sentry sentry_key=nope"}, status: 401, reason: "unknown public key"},
		{name: "unknown key in the dsn", path: envPath, body: envelope(`{"dsn":"http://nope@127.0.0.1/42"}`, `{"type":"event"}`, minimalEvent), status: 401, reason: "unknown public key"},
		{name: "header and query disagree", path: envPath + "?sentry_key=other", body: eventEnvelope(minimalEvent), hdrs: authHeader(), status: 401, reason: "different public keys"},
		{name: "header and dsn disagree", path: envPath, body: envelope(`{"dsn":"http://other@127.0.0.1/42"}`, `{"type":"event"}`, minimalEvent), hdrs: authHeader(), status: 401, reason: "different public keys"},
		{name: "Authorization and X-Sentry-Auth disagree", path: envPath, body: eventEnvelope(minimalEvent), hdrs: append(authHeader(), "Authorization", "Sentry sentry_key=other"), status: 401, reason: "different public keys"},
		{name: "malformed header", path: envPath, body: eventEnvelope(minimalEvent), hdrs: []string{"X-Sentry-Auth", "Sentry sentry_version=7"}, status: 401, reason: "malformed"},
		{name: "dsn names another project", path: envPath, body: envelope(`{"dsn":"http://`+testKey+`@127.0.0.1/43"}`, `{"type":"event"}`, minimalEvent), status: 403, reason: "another project"},
		{name: "invalid dsn", path: envPath, body: envelope(`{"dsn":"not a dsn"}`, `{"type":"event"}`, minimalEvent), status: 401, reason: "dsn is not valid"},
		{name: "unknown project", path: "/api/43/envelope/", body: eventEnvelope(minimalEvent), hdrs: authHeader(), status: 403, reason: "unknown project"},
		{name: "project id not a number", path: "/api/abc/envelope/", body: eventEnvelope(minimalEvent), hdrs: authHeader(), status: 400, reason: "must be a number"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(f.sink.all())
			code, resp, h := f.post(t, c.path, c.body, c.hdrs...)
			if code != c.status {
				t.Fatalf("status %d (%s), want %d", code, h.Get("X-Sentry-Error"), c.status)
			}
			if c.status == 200 {
				if resp.ID != "0123456789abcdef0123456789abcdef" {
					t.Errorf("answer id %q", resp.ID)
				}
				return
			}
			if !strings.Contains(h.Get("X-Sentry-Error"), c.reason) || resp.Detail != h.Get("X-Sentry-Error") {
				t.Errorf("X-Sentry-Error %q, detail %q; want %q", h.Get("X-Sentry-Error"), resp.Detail, c.reason)
			}
			if n := len(f.sink.all()); n != before {
				t.Errorf("%d events landed from a refused request", n-before)
			}
		})
	}
	if strings.Contains(f.log.String(), testKey) {
		t.Errorf("the log names a key:\n%s", f.log)
	}
}

func compress(t testing.TB, encoding string, p []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	switch encoding {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "deflate":
		w = zlib.NewWriter(&buf)
	case "deflate-raw":
		w, _ = flate.NewWriter(&buf, flate.DefaultCompression)
	case "br":
		w = brotli.NewWriter(&buf)
	case "zstd":
		w, _ = zstd.NewWriter(&buf)
	default:
		t.Fatalf("no encoder for %s", encoding)
	}
	if _, err := w.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBodies(t *testing.T) {
	f := newFixture(t, fixtureOpt{})
	body := readSample(t, "go-req-001.envelope")
	for _, enc := range []string{"gzip", "deflate", "deflate-raw", "br", "zstd"} {
		t.Run(enc, func(t *testing.T) {
			header := enc
			if enc == "deflate-raw" {
				header = "deflate" // what some clients send for raw deflate
			}
			code, resp, h := f.post(t, envPath, compress(t, enc, body), append(authHeader(), "Content-Encoding", header)...)
			if code != 200 || resp.ID != "c77fe52cf803414fb5cd17a22b31144f" {
				t.Fatalf("%d %+v %s", code, resp, h.Get("X-Sentry-Error"))
			}
		})
	}
	t.Run("chunked without Content-Type", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+envPath+"?sentry_key="+testKey, io.MultiReader(bytes.NewReader(body[:100]), bytes.NewReader(body[100:])))
		req.Header.Del("Content-Type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, resp.Header.Get("X-Sentry-Error"))
		}
		seen := f.requests()
		if last := seen[len(seen)-1]; !last.Chunked || last.ContentType != "" {
			t.Fatalf("the test did not send what it meant to: %+v", last)
		}
	})
	t.Run("unsupported encoding", func(t *testing.T) {
		code, _, h := f.post(t, envPath, body, append(authHeader(), "Content-Encoding", "compress")...)
		if code != http.StatusUnsupportedMediaType || !strings.Contains(h.Get("X-Sentry-Error"), "not supported") {
			t.Fatalf("%d %s", code, h.Get("X-Sentry-Error"))
		}
	})
	t.Run("corrupt gzip", func(t *testing.T) {
		bad := compress(t, "gzip", body)
		bad = bad[:len(bad)/2]
		code, _, h := f.post(t, envPath, bad, append(authHeader(), "Content-Encoding", "gzip")...)
		if code != 400 || !strings.Contains(h.Get("X-Sentry-Error"), "not valid gzip") {
			t.Fatalf("%d %s", code, h.Get("X-Sentry-Error"))
		}
	})
	if n := len(f.sink.byDataset(dsError)); n != 6 {
		t.Errorf("%d error events landed, want 6", n)
	}
}

func TestLimits(t *testing.T) {
	f := newFixture(t, fixtureOpt{cfg: func(c *Config) {
		c.MaxBodyBytes = 64 << 10
		c.MaxDecompressedBytes = 1 << 20
		c.MaxEventBytes = 16 << 10
		c.MaxItems = 100
		c.MaxInflightBytes = 1 << 20
	}})
	// Zeros compress about a thousandfold: each bomb fits the body limit
	// and unpacks to many times the decompressed limit.
	bomb := compress(t, "gzip", make([]byte, 64<<20))
	zbomb := compress(t, "zstd", make([]byte, 64<<20))
	brbomb := compress(t, "br", make([]byte, 64<<20))
	big := bytes.Repeat([]byte("x"), 40<<10)
	cases := []struct {
		name     string
		body     []byte
		encoding string
		status   int
		reason   string
	}{
		{"over max_body_bytes", envelope(`{}`, `{"type":"attachment","length":81920}`, string(bytes.Repeat([]byte("a"), 80<<10))), "", 413, "over the limit"},
		{"gzip bomb", bomb[:min(len(bomb), 60<<10)], "gzip", 413, "decompressed body is over the limit"},
		{"zstd bomb", zbomb, "zstd", 413, "decompressed body is over the limit"},
		{"br bomb", brbomb, "br", 413, "decompressed body is over the limit"},
		{"event over max_event_bytes", eventEnvelope(`{"message":"` + string(big) + `"}`), "gzip", 413, "max_event_bytes"},
		{"too many items", envelope(`{}`, strings.Repeat(`{"type":"attachment","length":1}`+"\nx\n", 101)), "", 413, "more than 100 items"},
		{"too many log records", envelope(`{}`, `{"type":"log"}`, `{"items":[`+strings.TrimSuffix(strings.Repeat(`{"body":"x"},`, 101), ",")+`]}`), "", 413, "max_items"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := c.body
			hdrs := authHeader()
			if c.encoding != "" {
				hdrs = append(hdrs, "Content-Encoding", c.encoding)
				if c.encoding == "gzip" && c.name != "gzip bomb" {
					body = compress(t, "gzip", body)
				}
			}
			code, _, h := f.post(t, envPath, body, hdrs...)
			if code != c.status || !strings.Contains(h.Get("X-Sentry-Error"), c.reason) {
				t.Fatalf("%d %q; want %d %q", code, h.Get("X-Sentry-Error"), c.status, c.reason)
			}
		})
	}
	if n := len(f.sink.all()); n != 0 {
		t.Errorf("%d events landed", n)
	}
	// and it still serves
	if code, _, h := f.post(t, envPath, eventEnvelope(minimalEvent), authHeader()...); code != 200 {
		t.Fatalf("after the refusals: %d %s", code, h.Get("X-Sentry-Error"))
	}
}

func TestBadInput(t *testing.T) {
	f := newFixture(t, fixtureOpt{})
	good := readSample(t, "go-req-001.envelope")
	deep := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	deepObj := strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000)
	var many strings.Builder
	many.WriteString("{}\n")
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&many, "{\"type\":\"event\"}\n%s\n", minimalEvent)
	}
	cases := []struct {
		name   string
		body   []byte
		status int
		reason string
	}{
		{"empty body", nil, 400, "envelope header"},
		{"header not JSON", envelope(`{"event_id":`, `{"type":"event"}`, minimalEvent), 400, "envelope header"},
		{"header not an object", envelope(`[1,2]`, `{"type":"event"}`, minimalEvent), 400, "envelope header"},
		{"item header not JSON", envelope(`{}`, `{"type":event}`, minimalEvent), 400, "item 1 header"},
		{"item header without type", envelope(`{}`, `{"length":2}`, `{}`), 400, `"type" is missing`},
		{"negative length", envelope(`{}`, `{"type":"event","length":-1}`, minimalEvent), 400, "whole number"},
		{"length too long", envelope(`{}`, `{"type":"event","length":5000}`, minimalEvent), 400, "declares a length of 5000"},
		{"length too short", envelope(`{}`, `{"type":"event","length":20}`, minimalEvent), 400, "is its length right"},
		{"truncated body", good[:1500], 400, "item 1"},
		{"truncated event without length", envelope(`{}`, `{"type":"event"}`, minimalEvent[:40]), 400, "unterminated string"},
		{"10,000 items", []byte(many.String()), 413, "more than 1000"},
		{"invalid UTF-8", eventEnvelope("{\"message\":\"caf\xe9\"}"), 400, "not valid UTF-8"},
		{"nesting 10,000 deep (arrays)", eventEnvelope(`{"extra":{"x":` + deep + `}}`), 400, "nested deeper than 64"},
		{"nesting 10,000 deep (objects)", eventEnvelope(`{"contexts":` + deepObj + `}`), 400, "nested deeper than 64"},
		{"event not an object", eventEnvelope(`[]`), 400, "must be a JSON object"},
		{"trailing garbage", eventEnvelope(minimalEvent + ` x`), 400, "unexpected text"},
		{"bad event_id", eventEnvelope(`{"event_id":"xyz"}`), 400, "event_id"},
		{"bad escape", eventEnvelope(`{"message":"\q"}`), 400, "invalid escape"},
		{"control character", eventEnvelope("{\"message\":\"a\x01b\"}"), 400, "control character"},
		{"bad number", eventEnvelope(`{"timestamp":01}`), 400, "invalid number"},
		{"bad log container", envelope(`{}`, `{"type":"log"}`, `{"items":[{"body":}]}`), 400, "item 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, resp, h := f.post(t, envPath, c.body, authHeader()...)
			if code != c.status || !strings.Contains(h.Get("X-Sentry-Error"), c.reason) || resp.Detail == "" {
				t.Fatalf("%d %q; want %d %q", code, h.Get("X-Sentry-Error"), c.status, c.reason)
			}
			// the receiver keeps serving
			if code, _, h := f.post(t, envPath, good, authHeader()...); code != 200 {
				t.Fatalf("a good envelope after it: %d %s", code, h.Get("X-Sentry-Error"))
			}
		})
	}
	for _, e := range f.sink.all() {
		if e.ID != "c77fe52cf803414fb5cd17a22b31144f" {
			t.Errorf("an event of a refused envelope landed: %s", e.JSON)
		}
	}
}

func TestStore(t *testing.T) {
	f := newFixture(t, fixtureOpt{})
	event := `{"event_id":"fedcba9876543210fedcba9876543210","exception":{"values":[{"type":"KeyError","value":"'card'"}]},"platform":"python"}`
	legacy := func() []byte {
		var buf bytes.Buffer
		zw := zlib.NewWriter(&buf)
		zw.Write([]byte(event))
		zw.Close()
		return []byte(base64.StdEncoding.EncodeToString(buf.Bytes()))
	}()
	for name, c := range map[string]struct {
		body []byte
		hdrs []string
	}{
		"plain":              {[]byte(event), authHeader()},
		"gzip":               {compress(t, "gzip", []byte(event)), append(authHeader(), "Content-Encoding", "gzip")},
		"legacy base64+zlib": {legacy, authHeader()},
		"query key":          {[]byte(event), nil},
	} {
		t.Run(name, func(t *testing.T) {
			path := "/api/42/store/"
			if c.hdrs == nil {
				path += "?sentry_key=" + testKey
			}
			code, resp, h := f.post(t, path, c.body, c.hdrs...)
			if code != 200 || resp.ID != "fedcba9876543210fedcba9876543210" {
				t.Fatalf("%d %+v %s", code, resp, h.Get("X-Sentry-Error"))
			}
		})
	}
	if code, _, _ := f.post(t, "/api/42/store/", []byte(event)); code != 401 {
		t.Errorf("store without a key: %d", code)
	}
	if code, _, _ := f.post(t, "/api/42/store/", []byte("!!!"), authHeader()...); code != 400 {
		t.Errorf("store with garbage: %d", code)
	}
	errs := f.sink.byDataset(dsError)
	if len(errs) != 4 || str(errs[0], "error.type") != "KeyError" || str(errs[0], "message") != "KeyError: 'card'" {
		t.Fatalf("%+v", errs)
	}
}

func TestCORS(t *testing.T) {
	f := newFixture(t, fixtureOpt{})
	preflight := func(path, origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, f.srv.URL+path, nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := preflight(envPath+"?sentry_key="+testKey, "https://app.example.org")
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.org" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") || !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "content-type") {
		t.Errorf("allowed preflight: %d %v", resp.StatusCode, resp.Header)
	}
	for _, c := range []struct{ path, origin string }{
		{envPath, "https://evil.example.com"}, {envPath, ""}, {"/api/43/envelope/", "https://app.example.org"}, {"/api/42/store/", "https://evil.example.com"},
	} {
		if resp := preflight(c.path, c.origin); resp.StatusCode != 403 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight %s from %q: %d %v", c.path, c.origin, resp.StatusCode, resp.Header)
		}
	}
	code, _, h := f.post(t, envPath+"?sentry_key="+testKey, eventEnvelope(minimalEvent), "Origin", "https://app.example.org", "Content-Type", "text/plain;charset=UTF-8")
	if code != 200 || h.Get("Access-Control-Allow-Origin") != "https://app.example.org" || !strings.Contains(h.Get("Access-Control-Expose-Headers"), "x-sentry-rate-limits") {
		t.Errorf("POST from an allowed origin: %d %v", code, h)
	}
	code, _, h = f.post(t, envPath+"?sentry_key="+testKey, eventEnvelope(minimalEvent), "Origin", "https://evil.example.com")
	if code != 403 || h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("POST from another origin: %d %v", code, h)
	}

	any := newFixture(t, fixtureOpt{cfg: func(c *Config) { c.Projects[0].AllowedOrigins = []string{"*"} }})
	code, _, h = any.post(t, envPath+"?sentry_key="+testKey, eventEnvelope(minimalEvent), "Origin", "https://anywhere.example")
	if code != 200 || h.Get("Access-Control-Allow-Origin") != "https://anywhere.example" {
		t.Errorf("with \"*\": %d %v", code, h)
	}
}

func TestRateLimits(t *testing.T) {
	f := newFixture(t, fixtureOpt{cfg: func(c *Config) {
		c.Projects[0].Keys[0].RateLimits = map[string]RateLimit{"error": {PerSecond: 0.01, Burst: 1}, "log_item": {PerSecond: 0.5, Burst: 2}}
	}})
	withLogs := envelope(`{"event_id":"0123456789abcdef0123456789abcdef"}`, `{"type":"event"}`, minimalEvent,
		`{"type":"attachment","length":3}`, `abc`, `{"type":"check_in"}`, `{"check_in_id":"0123456789abcdef0123456789abcdef","monitor_slug":"m","status":"ok"}`)
	if code, _, h := f.post(t, envPath, withLogs, authHeader()...); code != 200 || h.Get("X-Sentry-Rate-Limits") != "" {
		t.Fatalf("first: %d %v", code, h)
	}
	// The error is over its limit now: dropped with its attachment, the
	// check-in still goes in, and the SDK learns of the limit.
	code, _, h := f.post(t, envPath, withLogs, authHeader()...)
	if code != 200 || !strings.HasSuffix(h.Get("X-Sentry-Rate-Limits"), ":error;attachment:key:rate_limited") {
		t.Fatalf("partly limited: %d %q", code, h.Get("X-Sentry-Rate-Limits"))
	}
	// All of it limited: 429.
	code, _, h = f.post(t, envPath, eventEnvelope(minimalEvent), authHeader()...)
	if code != 429 || h.Get("Retry-After") == "" || !strings.Contains(h.Get("X-Sentry-Rate-Limits"), ":error:key:") {
		t.Fatalf("limited: %d %v", code, h)
	}
	if secs := h.Get("Retry-After"); secs != "100" && secs != "99" {
		t.Errorf("Retry-After %s, want about 100 (one token at 0.01/s)", secs)
	}
	// log_item counts records: a container of three is over a burst of two.
	logs := envelope(`{}`, `{"type":"log","item_count":3}`, `{"items":[{"body":"a"},{"body":"b"},{"body":"c"}]}`)
	if code, _, h := f.post(t, envPath, logs, authHeader()...); code != 429 || !strings.Contains(h.Get("X-Sentry-Rate-Limits"), ":log_item:") {
		t.Fatalf("logs: %d %v", code, h)
	}
	if n, m := len(f.sink.byDataset(dsMessage)), len(f.sink.byDataset(dsCheckIn)); n != 1 || m != 2 {
		t.Errorf("%d messages and %d check-ins landed, want 1 and 2", n, m)
	}
	if v := testutil.ToFloat64(f.r.m.items.WithLabelValues("attachment", outRateLimited)); v != 1 {
		t.Errorf("%v attachments rate limited", v)
	}
}

// TestSpoolFullIsNamed: a full spool behind the pipeline is a 429 whose
// rate-limit reason says spool_full, counted as such.
func TestSpoolFullIsNamed(t *testing.T) {
	f := newFixture(t, fixtureOpt{})
	f.sink.fail = fmt.Errorf("spool at its cap (max_bytes 2MiB): %w", collector.ErrSpoolFull)
	code, body, h := f.post(t, envPath, eventEnvelope(minimalEvent), authHeader()...)
	if code != 429 || h.Get("Retry-After") == "" || !strings.HasSuffix(h.Get("X-Sentry-Rate-Limits"), "::organization:spool_full") || !strings.Contains(body.Detail, "spool is full") {
		t.Fatalf("spool full: %d %s %v", code, body, h)
	}
	if v := metricValue(t, f, "leitstand_events_refused_total"); v != 1 {
		t.Errorf("refused events %v, want 1", v)
	}
}

func TestPipelineFullAndClosed(t *testing.T) {
	f := newFixture(t, fixtureOpt{gate: true, pipeline: pipeline.Config{QueueSize: 1, Workers: 1}, cfg: func(c *Config) {
		c.Queue = pipeline.Policy{WhenFull: pipeline.Block, BlockTimeout: 50 * time.Millisecond}
	}})
	done := make(chan int, 1)
	go func() {
		code, _, _ := f.post(t, envPath, eventEnvelope(minimalEvent), authHeader()...)
		done <- code
	}()
	waitFor(t, 5*time.Second, "the first batch to be in the sink", func() bool {
		return metricValue(t, f, "leitstand_queue_depth_events") >= 1
	})
	code, _, h := f.post(t, envPath, eventEnvelope(minimalEvent), authHeader()...)
	if code != 429 || h.Get("Retry-After") != "1" || h.Get("X-Sentry-Rate-Limits") != "1::organization:queue_full" {
		t.Fatalf("full: %d %v", code, h)
	}
	close(f.sink.gate)
	if code := <-done; code != 200 {
		t.Fatalf("first: %d", code)
	}
	if err := f.r.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, _, h := f.post(t, envPath, eventEnvelope(minimalEvent), authHeader()...); code != 503 || h.Get("Retry-After") == "" {
		t.Fatalf("shutting down: %d %v", code, h)
	}
	if err := f.r.Shutdown(context.Background()); err != nil {
		t.Fatal("second Shutdown:", err)
	}
}

func TestSessionsAndClientReports(t *testing.T) {
	f := newFixture(t, fixtureOpt{})
	for _, name := range []string{"node-req-002.envelope", "node-req-005.envelope"} {
		if code, _, h := f.post(t, envPath+"?sentry_key="+testKey, readSample(t, name)); code != 200 {
			t.Fatalf("%s: %d %s", name, code, h.Get("X-Sentry-Error"))
		}
	}
	session := envelope(`{}`, `{"type":"session"}`, `{"sid":"x","did":"jane","init":true,"status":"crashed","errors":1}`)
	if code, _, _ := f.post(t, envPath, session, authHeader()...); code != 200 {
		t.Fatal(code)
	}
	if v := testutil.ToFloat64(f.r.m.sessions.WithLabelValues("42", "errored")); v != 1 {
		t.Errorf("errored sessions %v", v)
	}
	if v := testutil.ToFloat64(f.r.m.sessions.WithLabelValues("42", "crashed")); v != 1 {
		t.Errorf("crashed sessions %v", v)
	}
	if v := testutil.ToFloat64(f.r.m.discarded.WithLabelValues("42", "span", "no_parent_span")); v != 1 {
		t.Errorf("discarded %v", v)
	}
	if n := len(f.sink.all()); n != 0 {
		t.Errorf("sessions and client reports became %d events", n)
	}
}

func TestDevKey(t *testing.T) {
	for _, loopback := range []bool{true, false} {
		t.Run(fmt.Sprint("loopback=", loopback), func(t *testing.T) {
			f := newFixture(t, fixtureOpt{cfg: func(c *Config) {
				*c = DefaultConfig()
				c.Loopback = loopback
			}})
			code, _, _ := f.post(t, "/api/1/envelope/?sentry_key=dev", eventEnvelope(minimalEvent))
			dsn := f.r.DevDSN("127.0.0.1:8080")
			if loopback && (code != 200 || dsn != "http://dev@127.0.0.1:8080/1") {
				t.Errorf("loopback: %d %q", code, dsn)
			}
			if !loopback && (code != 401 || dsn != "" || !strings.Contains(f.log.String(), "disabled")) {
				t.Errorf("not loopback: %d %q %s", code, dsn, f.log)
			}
		})
	}
}

func TestReceiverLifecycle(t *testing.T) {
	for _, steps := range [][]string{{"shutdown"}, {"shutdown", "shutdown"}, {"start", "shutdown", "start"}} {
		f := newFixture(t, fixtureOpt{})
		for _, s := range steps {
			var err error
			if s == "start" {
				err = f.r.Start(context.Background())
			} else {
				err = f.r.Shutdown(context.Background())
			}
			if err != nil {
				t.Fatalf("%v: %s: %v", steps, s, err)
			}
		}
		code, _, _ := f.post(t, envPath, eventEnvelope(minimalEvent), authHeader()...)
		if want := map[bool]int{true: 200, false: 503}[steps[len(steps)-1] == "start"]; code != want {
			t.Errorf("%v: %d, want %d", steps, code, want)
		}
	}
}

// TestInflight: bodies hold in-flight room as they grow, so many small
// compressed requests fit where one large one would not, and a body that
// cannot get room is answered 429, not read on.
func TestInflight(t *testing.T) {
	f := newFixture(t, fixtureOpt{gate: true, cfg: func(c *Config) {
		c.MaxBodyBytes = 1 << 20
		c.MaxDecompressedBytes = 4 << 20
		c.MaxInflightBytes = 4 << 20
		c.Queue = pipeline.Policy{WhenFull: pipeline.Block, BlockTimeout: 50 * time.Millisecond}
	}})
	small := compress(t, "gzip", eventEnvelope(minimalEvent))
	// Twenty compressed requests wait in the gated sink at once: each
	// holds 64 KiB, not 4 MiB.
	codes := make(chan int, 20)
	for i := 0; i < 20; i++ {
		go func() {
			code, _, _ := f.post(t, envPath, small, append(authHeader(), "Content-Encoding", "gzip")...)
			codes <- code
		}()
	}
	waitFor(t, 10*time.Second, "twenty requests in the pipeline", func() bool {
		return metricValue(t, f, "leitstand_queue_depth_events") == 20
	})
	// A large body now finds no room to grow into.
	big := compress(t, "gzip", eventEnvelope(`{"extra":{"pad":"`+strings.Repeat("x", 3<<20)+`"}}`))
	code, _, h := f.post(t, envPath, big, append(authHeader(), "Content-Encoding", "gzip")...)
	if code != 429 || !strings.Contains(h.Get("X-Sentry-Error"), "in flight") {
		t.Errorf("large body: %d %s", code, h.Get("X-Sentry-Error"))
	}
	close(f.sink.gate)
	for i := 0; i < 20; i++ {
		if code := <-codes; code != 200 {
			t.Errorf("small request: %d", code)
		}
	}
	// With the room back, the large body is read (and refused for its size).
	code, _, h = f.post(t, envPath, big, append(authHeader(), "Content-Encoding", "gzip")...)
	if code != 413 || !strings.Contains(h.Get("X-Sentry-Error"), "max_event_bytes") {
		t.Errorf("large body later: %d %s", code, h.Get("X-Sentry-Error"))
	}
}
