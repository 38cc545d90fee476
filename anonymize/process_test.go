package anonymize

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/leitstand/leitstand/collector"
)

// TestProcessSentryEvents runs the event items of real envelopes from the
// Go, Node.js and Python SDKs (shared/samples/sentry) through Process.
func TestProcessSentryEvents(t *testing.T) {
	a := newTestAnonymizer(t)
	for _, name := range []string{"sentry-go-event.json", "sentry-node-event.json", "sentry-python-event.json"} {
		doc, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		e := process(a, collector.Event{Fields: append(flattenJSON(t, doc), str(collector.FieldDataset, "sentry.error"))})
		out := encode(&e)
		var v map[string]any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("%s: not valid JSON: %v", name, err)
		}
		if left := contains(out, "jane.doe", "4111", "hunter2", "198.51.100.7", "203.0.113.42",
			"AKIAIOSFODNN7EXAMPLE", "DE89370400440532013000", "user:pw", "jdoe", "078-05-1120", `"u-1"`); len(left) > 0 {
			t.Errorf("%s: personal data survived: %q", name, left)
		}
		if kept := contains(out, `"event_id":"`+v["event_id"].(string)+`"`, `"timestamp":`, "probe@1.0.0", `"platform":"`); len(kept) != 4 {
			t.Errorf("%s: benign values altered: only %q kept", name, kept)
		}
	}
	e := process(a, sentryEvent(t))
	out := encode(&e)
	if kept := contains(out, "bf0edcf12976b442601346fab470f256", "d31e47de18502c81", "2026-11-22T02:48:21.367517833Z",
		"0.50.0", "go1.26.8", "/srv/shop-server/main.go", `"REMOTE_PORT":"51234"`); len(kept) != 7 {
		t.Errorf("benign values altered: only %q kept", kept)
	}
}

// newEvent builds an event of the dataset with the given fields.
func newEvent(dataset string, fields ...collector.Field) collector.Event {
	e := collector.Event{Fields: fields}
	if dataset != "" {
		e.AddString(collector.FieldDataset, dataset)
	}
	return e
}

func str(k, v string) collector.Field {
	return collector.Field{Key: k, Kind: collector.KindString, Str: v}
}
func raw(k, v string) collector.Field {
	return collector.Field{Key: k, Kind: collector.KindRaw, Str: v}
}
func num(k, v string) collector.Field {
	return collector.Field{Key: k, Kind: collector.KindNumber, Str: v}
}

// process runs a over one event and returns it.
func process(a *Anonymizer, e collector.Event) collector.Event {
	b := collector.NewBatch("test")
	defer b.Release()
	*b.Next() = e.Clone() // Release clears the batch's fields
	a.Process(b)
	return b.Events[0].Clone()
}

func get(e collector.Event, key string) (collector.Field, bool) {
	for _, f := range e.Fields {
		if f.Key == key {
			return f, true
		}
	}
	return collector.Field{}, false
}

// shape reduces a JSON value to its structure: member names and value
// kinds, no values.
func shape(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := map[string]any{}
		for k, x := range t {
			m[k] = shape(x)
		}
		return m
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = shape(x)
		}
		return out
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	}
	return "null"
}

func TestProcessRawStaysValidJSON(t *testing.T) {
	a := newTestAnonymizer(t)
	docs := []string{
		`[{"message":"login for jane@example.com from 203.0.113.42","data":{"password":"hunter2","url":"https://u:p@db.example.com/x"}}]`,
		`{"token":{"value":"abc","expires":3600,"ok":true},"pin":1234,"nested":[[{"mail":"a@b.de"}],"4111 1111 1111 1111",null]}`,
		`{"escaped":"line\n\"quoted\" jane\u0040example.com \ud83d\ude00 \\u0040","keys":{"k":1}}`,
		` [ "a@b.de" , { "password" : [ "x" , 2 , false ] } ] `,
		`{"user_id":"u-1","user":{"name":"Jane"},"users":["alice","bob"],"secret_list":["s1","s2"]}`,
	}
	for _, doc := range docs {
		e := process(a, newEvent("app", raw("payload", doc)))
		f, _ := get(e, "payload")
		var before, after any
		if err := json.Unmarshal([]byte(doc), &before); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(f.Str), &after); err != nil {
			t.Fatalf("not valid JSON after scrubbing %s:\n%s\n%v", doc, f.Str, err)
		}
		sb, _ := json.Marshal(shape(before))
		sa, _ := json.Marshal(shape(after))
		if string(sa) != string(sb) {
			t.Errorf("shape changed:\n%s\n%s\n(%s)", sb, sa, f.Str)
		}
		if left := contains(f.Str, "jane", "203.0.113.42", "hunter2", "4111", `"abc"`, "a@b.de", "u:p@", "1234", `"s1"`); len(left) > 0 {
			t.Errorf("survived in %s: %q", f.Str, left)
		}
	}
}

func TestProcessScrubsMemberNames(t *testing.T) {
	a := newTestAnonymizer(t)
	e := process(a, newEvent("app", raw("counts", `{"jane@example.com":3}`)))
	if f, _ := get(e, "counts"); !strings.HasPrefix(f.Str, `{"email:k1:`) || !json.Valid([]byte(f.Str)) {
		t.Errorf("member name not scrubbed: %s", f.Str)
	}
}

func TestProcessCountsScrubbedValues(t *testing.T) {
	a := newTestAnonymizer(t)
	e := process(a, newEvent("app",
		str("message", "jane@example.com paid with 4111 1111 1111 1111 from 203.0.113.42 and 198.51.100.7"),
		str("labels.note", "password=hunter2"),
	))
	want := map[string]string{"leitstand.scrub.email": "1", "leitstand.scrub.card": "1", "leitstand.scrub.ip": "2", "leitstand.scrub.secret": "1"}
	for k, v := range want {
		f, ok := get(e, k)
		if !ok || f.Str != v || f.Kind != collector.KindNumber {
			t.Errorf("%s = %+v, want number %s", k, f, v)
		}
	}
	if _, ok := get(e, "leitstand.scrub.phone"); ok {
		t.Error("a zero count was recorded")
	}
	clean := process(a, newEvent("app", str("message", "nothing to see, trace bf0edcf12976b442601346fab470f256")))
	for _, f := range clean.Fields {
		if strings.HasPrefix(f.Key, "leitstand.scrub.") {
			t.Errorf("clean event got %s", f.Key)
		}
	}
	// a second pass (agent, then aggregator) finds nothing new and keeps the counts
	again := process(a, e)
	if encode(&again) != encode(&e) {
		t.Errorf("second pass changed the event:\n%s\n%s", encode(&e), encode(&again))
	}
}

func TestProcessSkipsPipelineFields(t *testing.T) {
	a := newTestAnonymizer(t)
	e := process(a, newEvent("app",
		str("event.ingested", "2026-11-22T08:15:00.000000000Z"),
		str("leitstand.receiver", "jane@example.com"),
		str("message", "jane@example.com"),
	))
	if f, _ := get(e, "leitstand.receiver"); f.Str != "jane@example.com" {
		t.Errorf("leitstand.* was scrubbed: %q", f.Str)
	}
	if f, _ := get(e, "message"); f.Str == "jane@example.com" {
		t.Error("message was not scrubbed")
	}
	b := newTestAnonymizer(t, func(c *Config) { c.SkipFields = append(c.SkipFields, "labels.*") })
	e = process(b, newEvent("app", str("labels.owner", "jane@example.com")))
	if f, _ := get(e, "labels.owner"); f.Str != "jane@example.com" {
		t.Errorf("configured skip field was scrubbed: %q", f.Str)
	}
}

func TestProcessMethodsAndRules(t *testing.T) {
	a := newTestAnonymizer(t, func(c *Config) {
		c.Detectors.Card.Method = MethodDrop
		c.Detectors.Phone.Method = MethodReplace
		c.Detectors.Phone.Replacement = "<phone>"
		c.Detectors.IP.Method = MethodMask
		c.FieldRules = []FieldRule{
			{Datasets: []string{"app"}, Fields: []string{"labels.debug"}, Method: MethodKeep},
			{Datasets: []string{"app"}, Fields: []string{"payload.internal", "labels.gone"}, Method: MethodDrop, Type: "internal"},
			{Fields: []string{"labels.customer"}, Method: MethodHash, Type: "customer"},
		}
	})
	e := process(a, newEvent("app",
		str("message", "card 4111 1111 1111 1111"),
		str("labels.phone", "call +49 30 12345678 from 203.0.113.42"),
		str("labels.debug", "jane@example.com"),
		str("labels.gone", "x"),
		str("labels.customer", "ACME-4711"),
		raw("payload", `{"internal":{"a":1},"kept":"yes"}`),
		num("labels.password", "1234"),
	))
	if _, ok := get(e, "message"); ok {
		t.Error("a field with a card survived the drop method")
	}
	if e2 := process(a, newEvent("app", raw("items", `[{"a":"x"},{"b":"4111 1111 1111 1111"},{"c":"y"}]`))); len(e2.Fields) != 2 {
		t.Errorf("a raw field with a card survived the drop method: %+v", e2.Fields)
	}
	if f, _ := get(e, "labels.phone"); f.Str != "call <phone> from [ip]" {
		t.Errorf("replace/mask: %q", f.Str)
	}
	if f, _ := get(e, "labels.debug"); f.Str != "jane@example.com" {
		t.Errorf("keep rule: %q", f.Str)
	}
	if _, ok := get(e, "labels.gone"); ok {
		t.Error("drop rule did not drop the field")
	}
	if f, _ := get(e, "labels.customer"); !strings.HasPrefix(f.Str, "customer:k1:") {
		t.Errorf("hash rule: %q", f.Str)
	}
	if f, _ := get(e, "payload"); f.Str != `{"kept":"yes"}` {
		t.Errorf("drop rule inside raw JSON: %s", f.Str)
	}
	if f, _ := get(e, "labels.password"); f.Str != "0" || f.Kind != collector.KindNumber {
		t.Errorf("secret number: %+v", f)
	}
	if f, _ := get(e, "leitstand.scrub.card"); f.Str != "1" {
		t.Errorf("dropped card not counted: %+v", f)
	}
	// the same rule does not apply to another dataset
	other := process(a, newEvent("syslog", str("labels.debug", "jane@example.com")))
	if f, _ := get(other, "labels.debug"); f.Str == "jane@example.com" {
		t.Error("a dataset rule applied to another dataset")
	}
}

func TestProcessConcurrent(t *testing.T) {
	a := newTestAnonymizer(t)
	lines := denseLines(256)
	want := make([]string, len(lines))
	for i, l := range lines {
		want[i] = a.ScrubString(l)
	}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; round < 5; round++ {
				b := collector.NewBatch("test")
				for _, l := range lines {
					e := b.Next()
					e.AddString("message", l)
					e.Fields = append(e.Fields, sentryEvent(t).Fields...)
				}
				a.Process(b)
				for i := range b.Events {
					if got := b.Events[i].Message(); got != want[i] {
						t.Errorf("concurrent scrub differs:\n%s\n%s", got, want[i])
					}
				}
				b.Release()
			}
		}()
	}
	wg.Wait()
}

func TestMetricsCountPerDetector(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig()
	a, err := New(cfg, t.TempDir(), reg)
	if err != nil {
		t.Fatal(err)
	}
	b := collector.NewBatch("test")
	for i := 0; i < 3; i++ {
		b.Next().AddString("message", "jane@example.com from 203.0.113.42")
	}
	a.Process(b)
	b.Release()
	if got := testutil.ToFloat64(a.metrics.detections.WithLabelValues("email", "hash")); got != 3 {
		t.Errorf("email/hash = %v, want 3", got)
	}
	if got := testutil.ToFloat64(a.metrics.detections.WithLabelValues("ip", "truncate")); got != 3 {
		t.Errorf("ip/truncate = %v, want 3", got)
	}
	if got := testutil.ToFloat64(a.metrics.events); got != 3 {
		t.Errorf("events = %v, want 3", got)
	}
	if _, err := New(cfg, t.TempDir(), reg); err != nil {
		t.Errorf("a second anonymizer on the same registry: %v", err)
	}
	if a.ScrubString("a@b.de") == "a@b.de" || testutil.ToFloat64(a.metrics.detections.WithLabelValues("email", "hash")) != 3 {
		t.Error("ScrubString must scrub and count nothing")
	}
}
