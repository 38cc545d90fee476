package sentry

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/pipeline"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// keepSubmitter keeps copies of the events it is handed, normalised as the
// pipeline would (without the anonymizer: these tests are about mapping).
type keepSubmitter struct{ events []collector.Event }

func (k *keepSubmitter) Submit(_ context.Context, b *collector.Batch, _ pipeline.Policy) error {
	for i := range b.Events {
		c := b.Events[i].Clone()
		c.Normalize()
		k.events = append(k.events, c)
	}
	return nil
}

// received is the fixed time of receipt of normalise.
var received = time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)

// normalise runs an envelope through the receiver and returns its events
// (nil and the reason when it is refused).
func normalise(t *testing.T, body []byte) ([]collector.Event, string) {
	t.Helper()
	keep := &keepSubmitter{}
	r, err := New(testConfig(), keep, testMetrics(), nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	b := collector.NewBatch("sentry")
	defer b.Release()
	b.Received = received
	w := &discardWriter{h: http.Header{}}
	rq := &request{endpoint: "envelope", p: r.projects[testProject], key: testKey, ki: r.keys[testKey]}
	r.envelope(w, rq, body, b, &normalizer{})
	if w.status != http.StatusOK {
		return nil, w.h.Get("X-Sentry-Error")
	}
	return keep.events, ""
}

func one(t *testing.T, event string) collector.Event {
	t.Helper()
	// with a length, so that events may span lines (and raw values be
	// compacted)
	evs, reason := normalise(t, envelope(`{}`, fmt.Sprintf(`{"type":"event","length":%d}`, len(event)), event))
	if len(evs) != 1 {
		t.Fatalf("%d events (%s) from %s", len(evs), reason, event)
	}
	return evs[0]
}

func get(e collector.Event, key string) string {
	v, _ := e.Get(key)
	return v
}

func TestGoldenSamples(t *testing.T) {
	files, _ := filepath.Glob("testdata/samples/*.envelope")
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			evs, reason := normalise(t, readSample(t, name))
			if reason != "" {
				t.Fatal(reason)
			}
			var out bytes.Buffer
			for _, e := range evs {
				out.WriteString(e.ID)
				out.WriteByte(' ')
				out.Write(e.AppendJSON(nil))
				out.WriteByte('\n')
			}
			golden := filepath.Join("testdata/golden", strings.TrimSuffix(name, ".envelope")+".ndjson")
			if *update {
				if err := os.MkdirAll("testdata/golden", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("the mapping of %s changed; if that is meant, run go test ./collector/sentry/ -run TestGoldenSamples -update\n got %s\nwant %s", name, out.Bytes(), want)
			}
		})
	}
}

func TestGroupingKey(t *testing.T) {
	key := func(event string) string { return get(one(t, event), "error.grouping_key") }
	exc := func(typ, value, frames string) string {
		return `{"exception":{"values":[{"type":"` + typ + `","value":"` + value + `","stacktrace":{"frames":[` + frames + `]}}]}}`
	}
	const (
		appA    = `{"module":"shop","function":"charge","in_app":true}`
		appB    = `{"module":"shop","function":"refund","in_app":true}`
		libX    = `{"module":"net/http","function":"serve","in_app":false}`
		libY    = `{"module":"net/http","function":"handle","in_app":false}`
		message = `{"message":"%s"}`
	)
	base := key(exc("ValueError", "card 4111 declined", libX+","+appA))
	for name, c := range map[string]struct {
		event string
		same  bool
	}{
		"another value":                {exc("ValueError", "card 5500 declined for jane@example.com", libX+","+appA), true},
		"other library frames":         {exc("ValueError", "x", libY+","+appA), true},
		"another in-app function":      {exc("ValueError", "x", libX+","+appB), false},
		"another type":                 {exc("KeyError", "x", libX+","+appA), false},
		"an SDK fingerprint":           {`{"fingerprint":["{{ default }}"],` + exc("ValueError", "y", libX+","+appA)[1:], true},
		"a fingerprint with more":      {`{"fingerprint":["{{ default }}","tenant-a"],` + exc("ValueError", "y", libX+","+appA)[1:], false},
		"no in-app frames: all frames": {exc("ValueError", "x", libX), false},
		"a chained cause":              {`{"exception":{"values":[{"type":"KeyError","value":"a"},` + exc("ValueError", "x", libX+","+appA)[len(`{"exception":{"values":[`):], false},
	} {
		if got := key(c.event); (got == base) != c.same {
			t.Errorf("%s: key %s, base %s, want same=%v", name, got, base, c.same)
		}
	}
	fp1 := key(`{"fingerprint":["payment-declined"],` + exc("ValueError", "x", appA)[1:])
	fp2 := key(`{"fingerprint":["payment-declined"],` + exc("KeyError", "y", appB)[1:])
	if fp1 != fp2 || fp1 == base || len(fp1) != 32 {
		t.Errorf("fingerprints: %s %s", fp1, fp2)
	}
	// Messages group by their template, with what varies left out.
	m1 := key(`{"message":"user 123 failed to log in from 203.0.113.7 as jane@example.com"}`)
	m2 := key(`{"message":"user 456 failed to log in from 198.51.100.2 as bob@example.org"}`)
	m3 := key(`{"message":"user 456 logged out"}`)
	if m1 != m2 || m1 == m3 {
		t.Errorf("messages: %s %s %s", m1, m2, m3)
	}
	if lt := key(`{"logentry":{"message":"user %s failed","formatted":"user jane failed"}}`); lt != key(`{"logentry":{"message":"user %s failed","formatted":"user bob failed"}}`) {
		t.Error("a logentry groups by its template")
	}
}

func TestEventFormats(t *testing.T) {
	// sentry-go sends exception as a list, others as {"values": [...]};
	// breadcrumbs likewise; tags, headers and query strings as objects or
	// as lists of pairs.
	a := one(t, `{"exception":[{"type":"E","value":"v","stacktrace":{"frames":[{"function":"f","module":"m","filename":"f.go","lineno":3,"in_app":true}]}}],
		"breadcrumbs":{"values":[{"message":"b"}]},"tags":[["a.b","1"],["n",2],["bad"]],
		"request":{"url":"http://x/p","query_string":[["q","1"],["r","2"]],"headers":[["User-Agent","ua"],["Referer","http://ref"]],"cookies":{"c":"v"},"data":{"k":"v"}},
		"user":{"id":42,"ip_address":"{{auto}}","geo":{"city":"Berlin"}},
		"event_id":"01234567-89AB-CDEF-0123-456789ABCDEF","timestamp":"2026-11-22T04:00:00.5+02:00","platform":"python"}`)
	want := map[string]string{
		"error.type": "E", "error.message": "v", "message": "E: v", "log.level": "error", "event.dataset": "sentry.error",
		"error.stack_trace": "E: v\n    at m.f (f.go:3)", "sentry.exception": `[{"type":"E","value":"v","stacktrace":{"frames":[{"function":"f","module":"m","filename":"f.go","lineno":3,"in_app":true}]}}]`,
		"sentry.breadcrumbs": `[{"message":"b"}]`, "labels.a_b": "1", "labels.n": "2",
		"url.full": "http://x/p?q=1&r=2", "url.query": "q=1&r=2", "user_agent.original": "ua", "http.request.referrer": "http://ref",
		"http.request.headers": `[["User-Agent","ua"],["Referer","http://ref"]]`, "http.request.cookies": "c=v", "http.request.body.data": `{"k":"v"}`,
		"user.id": "42", "user.geo": `{"city":"Berlin"}`, "event.id": "0123456789abcdef0123456789abcdef",
	}
	for k, v := range want {
		if got := get(a, k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if a.ID != "0123456789abcdef0123456789abcdef" || !a.Timestamp.Equal(time.Date(2026, 11, 22, 2, 0, 0, 5e8, time.UTC)) {
		t.Errorf("id %q, time %v", a.ID, a.Timestamp)
	}
	if _, ok := a.Get("source.ip"); ok {
		t.Error(`"{{auto}}" is no address`)
	}

	// Chained exceptions: the newest first, its causes after.
	c := one(t, `{"exception":{"values":[{"type":"KeyError","value":"'card'"},{"type":"ValueError","value":"bad","stacktrace":{"frames":[{"function":"outer"},{"function":"inner","abs_path":"/a.py","lineno":9}]}}]},"platform":"python"}`)
	if st := get(c, "error.stack_trace"); st != "ValueError: bad\n    at inner (/a.py:9)\n    at outer\nCaused by: KeyError: 'card'" || get(c, "error.type") != "ValueError" {
		t.Errorf("chained: %q", st)
	}

	// JavaScript frames: no module prefix, columns.
	j := one(t, `{"platform":"node","exception":{"values":[{"type":"Error","value":"x","stacktrace":{"frames":[{"function":"Server.?","module":"probe","filename":"/srv/p.js","lineno":27,"colno":5}]}}]}}`)
	if st := get(j, "error.stack_trace"); st != "Error: x\n    at Server.? (/srv/p.js:27:5)" {
		t.Errorf("node: %q", st)
	}

	// Messages: a string, an object, a logentry; synthetic exceptions
	// (captureMessage with a stack) make no error.
	for event, msg := range map[string]string{
		`{"message":"plain"}`: "plain",
		`{"message":{"formatted":"formatted 1","message":"formatted %d"}}`:                                                 "formatted 1",
		`{"logentry":{"message":"template %s","params":["x"]}}`:                                                            "template %s",
		`{"message":"m","exception":{"values":[{"value":"m","mechanism":{"synthetic":true},"stacktrace":{"frames":[]}}]}}`: "m",
	} {
		e := one(t, event)
		if get(e, "message") != msg || get(e, "event.dataset") != dsMessage || get(e, "log.level") != "error" {
			t.Errorf("%s: message %q, dataset %q", event, get(e, "message"), get(e, "event.dataset"))
		}
		if _, ok := e.Get("error.type"); ok {
			t.Errorf("%s: a message with error.type", event)
		}
	}

	// No id: one is made. A clock far ahead: the time of receipt.
	n := one(t, `{"message":"x","timestamp":4102444800}`)
	if !isLowerHex32(n.ID) || !n.Timestamp.Equal(received) {
		t.Errorf("id %q, time %v", n.ID, n.Timestamp)
	}
	// Epoch seconds keep their microseconds.
	m := one(t, `{"message":"x","timestamp":1795315725.123456}`)
	if m.Timestamp.UnixMicro() != 1795315725123456 {
		t.Errorf("time %v", m.Timestamp)
	}
}

func TestTransactionsAndSpans(t *testing.T) {
	evs, _ := normalise(t, readSample(t, "go-req-002.envelope"))
	if len(evs) != 2 {
		t.Fatalf("%d events", len(evs))
	}
	tx, span := evs[0], evs[1]
	for k, v := range map[string]string{
		"event.dataset": dsTransaction, "transaction.name": "POST /checkout", "transaction.id": "0d6d40a5846cc180",
		"trace.id": "5cf8a135e5e2a4a34a54b51d6c4e2e8c", "event.duration": "5971793", "transaction.duration.us": "5971",
		"transaction.span_count": "1", "message": "POST /checkout", "log.level": "info",
	} {
		if got := get(tx, k); got != v {
			t.Errorf("transaction %s = %q, want %q", k, got, v)
		}
	}
	for k, v := range map[string]string{
		"event.dataset": dsSpan, "span.id": "d15704ad938751bc", "parent.id": "0d6d40a5846cc180", "span.type": "db.query",
		"transaction.id": "0d6d40a5846cc180", "transaction.name": "POST /checkout", "event.duration": "5963459", "span.duration.us": "5963",
		"service.version": "probe@1.0.0", "service.environment": "research",
	} {
		if got := get(span, k); got != v {
			t.Errorf("span %s = %q, want %q", k, got, v)
		}
	}
	if span.ID != "5cf8a135e5e2a4a34a54b51d6c4e2e8c-d15704ad938751bc" {
		t.Errorf("span id %q", span.ID)
	}

	// v2 span items (what @sentry/node sends)
	evs, _ = normalise(t, readSample(t, "node-req-003.envelope"))
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	for k, v := range map[string]string{
		"span.name": "POST", "span.type": "http.server", "sentry.status": "internal_error", "event.outcome": "failure",
		"http.response.status_code": "500", "url.full": "http://127.0.0.1:18943/checkout?token=[Filtered]&email=jane.doe%40example.com",
		"user.email": "jane.doe@example.com", "source.ip": "203.0.113.42", "event.duration": "65969500", "transaction.name": "POST",
	} {
		if got := get(evs[0], k); got != v {
			t.Errorf("v2 span %s = %q, want %q", k, got, v)
		}
	}
	if attrs := get(evs[0], "sentry.attributes"); !strings.Contains(attrs, `"http.request.header.cookie":["sessionid=[Filtered]"`) || strings.Contains(attrs, "sentry.sdk.integrations") {
		t.Errorf("attributes: %s", attrs)
	}
}

func TestLogsAndCheckIns(t *testing.T) {
	evs, reason := normalise(t, envelope(`{"event_id":"0123456789abcdef0123456789abcdef","trace":{"trace_id":"fedcba9876543210fedcba9876543210","release":"r1","environment":"prod"}}`,
		`{"type":"log","item_count":3}`, `{"items":[{"timestamp":1795315725.5,"level":"warn","body":"one","severity_number":13},{"body":"two","attributes":{"sentry.release":{"value":"r2","type":"string"},"n":{"value":3,"type":"integer"}}},{"body":"three","trace_id":"0123456789abcdef0123456789abcdef"}]}`,
		`{"type":"check_in"}`, `{"check_in_id":"0123456789abcdef0123456789abcdef","monitor_slug":"nightly","status":"in_progress"}`,
		`{"type":"check_in"}`, `{"check_in_id":"0123456789abcdef0123456789abcdef","monitor_slug":"nightly","status":"error","duration":1.5}`))
	if len(evs) != 5 {
		t.Fatalf("%d events (%s)", len(evs), reason)
	}
	if get(evs[0], "message") != "one" || get(evs[0], "log.level") != "warn" || get(evs[0], "sentry.severity_number") != "13" ||
		get(evs[0], "trace.id") != "fedcba9876543210fedcba9876543210" || get(evs[0], "service.version") != "r1" {
		t.Errorf("log one: %s", evs[0].AppendJSON(nil))
	}
	if get(evs[1], "service.version") != "r2" || get(evs[1], "sentry.attributes") != `{"n":3}` || get(evs[1], "log.level") != "info" || !evs[1].Timestamp.Equal(received) {
		t.Errorf("log two: %s", evs[1].AppendJSON(nil))
	}
	if get(evs[2], "trace.id") != "0123456789abcdef0123456789abcdef" || evs[0].ID == evs[1].ID {
		t.Errorf("log three: %s", evs[2].AppendJSON(nil))
	}
	if get(evs[3], "event.outcome") != "unknown" || get(evs[4], "event.outcome") != "failure" || get(evs[4], "log.level") != "error" ||
		get(evs[4], "event.duration") != "1500000000" || evs[3].ID == evs[4].ID || get(evs[4], "message") != "check-in nightly error" {
		t.Errorf("check-ins: %s\n%s", evs[3].AppendJSON(nil), evs[4].AppendJSON(nil))
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]time.Time{
		"2026-11-22T02:48:21.367517833Z": time.Date(2026, 11, 22, 2, 48, 21, 367517833, time.UTC),
		"2026-11-22T02:48:21":            time.Date(2026, 11, 22, 2, 48, 21, 0, time.UTC),
		"2026-11-22T02:48:21.5-01:30":    time.Date(2026, 11, 22, 4, 18, 21, 5e8, time.UTC),
		"2026-11-22 02:48:21.1":          time.Date(2026, 11, 22, 2, 48, 21, 1e8, time.UTC),
		"1795315725.264":                 time.Unix(1795315725, 264e6).UTC(),
	} {
		if got, ok := parseTime(in, false); !ok || !got.Equal(want) {
			t.Errorf("%q: %v %v, want %v", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "yesterday", "2026-13-01T00:00:00Z", "2026-11-22T02:48:21+0100", "2026-11-22T02:48:21.Z"} {
		if _, ok := parseTime(in, false); ok {
			t.Errorf("%q parsed", in)
		}
	}
	for _, in := range []string{"1e9", "-1", "99999999999999999999"} {
		if _, ok := parseTime(in, true); ok {
			t.Errorf("%q parsed as epoch", in)
		}
	}
}
