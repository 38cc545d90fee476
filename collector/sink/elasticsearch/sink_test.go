package elasticsearch

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/leitstand/leitstand/collector"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestAppendDataset(t *testing.T) {
	for in, want := range map[string]string{
		"syslog":                      "syslog",
		"kubernetes.container":        "kubernetes.container",
		"Nginx-Access":                "nginx_access",
		"a b/c\\d*e?f\"g<h>i|j,k#l:m": "a_b_c_d_e_f_g_h_i_j_k_l_m",
		"":                            "generic",
		"ünï":                         "__n__", // bytes, not runes: each byte of ü and ï is replaced
		strings.Repeat("x", 150):      strings.Repeat("x", 100),
	} {
		if got := string(appendDataset(nil, in)); got != want {
			t.Errorf("appendDataset(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTargets(t *testing.T) {
	ts := time.Date(2026, 3, 7, 23, 59, 0, 0, time.FixedZone("CET", 3600))
	cfg := DefaultConfig()
	tg := newTargets(&cfg)
	if got := string(tg.appendTarget(nil, "Sentry-Error", ts)); got != "logs-sentry_error-default" {
		t.Errorf("data stream: %q", got)
	}
	cfg.Mode, cfg.IndexPrefix = ModeIndex, "platform"
	tg = newTargets(&cfg)
	if got := string(tg.appendTarget(nil, "syslog", ts)); got != "platform-syslog-2026.03.07" {
		t.Errorf("daily index (UTC date): %q", got)
	}
}

func TestChunkSize(t *testing.T) {
	s := &Sink{cfg: DefaultConfig()} // workers 4, bulk_max_events 1000
	for n, want := range map[int]int{1: 1, 150: 150, 400: 200, 2000: 500, 4000: 1000, 10000: 1000, 4001: 801} {
		if got := s.chunkSize(n); got != want {
			t.Errorf("chunkSize(%d) = %d, want %d", n, got, want)
		}
	}
}

// TestLifecycle: Shutdown works without Start and twice; a start against a
// cluster that is not there succeeds, says why the sink is not ready, names
// the peer in its log, counts the failure, and Consume refuses batches.
func TestLifecycle(t *testing.T) {
	ignoreBefore := goleak.IgnoreCurrent()
	s, err := New(DefaultConfig(), prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != collector.ErrClosed {
		t.Fatalf("Start after Shutdown: %v", err)
	}

	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close()
	cfg := testConfig(t, url)
	t0 := time.Now()
	s, reg, logs := startSink(t, cfg)
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("Start took %s with the cluster down", d)
	}
	if err := s.Ready(); err == nil || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("Ready() = %v, want an error naming the peer", err)
	}
	b := makeBatch(0, 3, eventSpec{dataset: "x", idPrefix: "l"})
	defer b.Release()
	if err := s.Consume(context.Background(), b); err == nil {
		t.Error("Consume succeeded with the cluster down")
	}
	if !strings.Contains(logs.String(), url) || !strings.Contains(logs.String(), `"level":"WARN"`) {
		t.Errorf("no warning naming %s in the log:\n%s", url, logs)
	}
	if v := metricValue(t, reg, "leitstand_elasticsearch_up"); v != 0 {
		t.Errorf("up = %v", v)
	}
	if v := metricValue(t, reg, "leitstand_elasticsearch_setup_failures_total"); v < 1 {
		t.Errorf("setup_failures_total = %v", v)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Consume(context.Background(), b); err != collector.ErrClosed {
		t.Errorf("Consume after Shutdown: %v", err)
	}
	goleak.VerifyNone(t, ignoreBefore)
}

// TestIndexesWithMappedTypes: events become searchable documents in the
// data stream, and the backing index maps leitstand's fields as the
// templates say.
func TestIndexesWithMappedTypes(t *testing.T) {
	suite.Require(t)
	cfg := testConfig(t, shared.URL)
	s, reg, logs := startSink(t, cfg)
	waitReady(t, s, 30*time.Second)

	const n = 2500 // more than one request
	b := makeBatch(0, n, eventSpec{dataset: "webmail.access", idPrefix: "m", extra: func(seq int, e *collector.Event) {
		e.AddString("error.message", "quota exceeded for mailbox")
		e.AddString("kubernetes.pod.name", "webmail-0")
	}})
	defer b.Release()
	if err := s.Consume(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	ds := dataStreamName("webmail.access", cfg.Namespace)
	if got := count(t, shared.URL, ds); got != n {
		t.Fatalf("%d documents in %s, want %d", got, ds, n)
	}

	// Searchable by the mapped types: a term on a keyword, a CIDR query on
	// an ip, a range on date_nanos with sub-millisecond bounds, full text.
	for _, q := range []struct {
		query string
		want  int
	}{
		{`{"term":{"log.level":"error"}}`, n / 3},
		{`{"term":{"source.ip":"10.1.0.0/16"}}`, n},
		{`{"range":{"@timestamp":{"gte":"2026-11-22T08:15:00.000010000Z","lt":"2026-11-22T08:15:00.000020000Z"}}}`, 10},
		{`{"match":{"message":"event"}}`, n},
		{`{"match":{"error.message":"quota"}}`, n},
		{`{"term":{"labels.team":"platform"}}`, n},
	} {
		var res struct {
			Hits struct {
				Total struct{ Value int } `json:"total"`
			} `json:"hits"`
		}
		esJSON(t, http.MethodPost, shared.URL+"/"+ds+"/_search?track_total_hits=true&size=0", `{"query":`+q.query+`}`, &res)
		if res.Hits.Total.Value != q.want {
			t.Errorf("%s: %d hits, want %d", q.query, res.Hits.Total.Value, q.want)
		}
	}

	var mapping map[string]struct {
		Mappings struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"mappings"`
	}
	esJSON(t, http.MethodGet, shared.URL+"/"+ds+"/_mapping", "", &mapping)
	if len(mapping) != 1 {
		t.Fatalf("want one backing index, got %d", len(mapping))
	}
	for index, m := range mapping {
		if !strings.HasPrefix(index, ".ds-"+ds+"-") {
			t.Errorf("backing index %q: not a data stream", index)
		}
		for path, want := range map[string]string{
			"@timestamp": "date_nanos", "source.ip": "ip", "log.level": "keyword", "labels": "flattened",
			"event.dataset": "keyword", "event.ingested": "date_nanos", "host.name": "keyword",
			"kubernetes.pod.name": "keyword", "test.seq": "long", "error.message": "text|match_only_text",
			"message": "text|match_only_text",
		} {
			got := fieldType(m.Mappings.Properties, path)
			if !strings.Contains("|"+want+"|", "|"+got+"|") {
				t.Errorf("%s is mapped as %q, want %s", path, got, want)
			}
		}
	}

	if v := metricValue(t, reg, "leitstand_elasticsearch_items_total", "status", "2xx"); v != n {
		t.Errorf("items_total{2xx} = %v, want %d", v, n)
	}
	if v := metricValue(t, reg, "leitstand_elasticsearch_bulk_requests_total", "outcome", "ok"); v < 3 {
		t.Errorf("bulk_requests_total{ok} = %v, want at least 3 for %d events", v, n)
	}
	if v := metricValue(t, reg, "leitstand_elasticsearch_up"); v != 1 {
		t.Errorf("up = %v", v)
	}
	if sent, enc := metricValue(t, reg, "leitstand_elasticsearch_sent_bytes_total"), metricValue(t, reg, "leitstand_elasticsearch_encoded_bytes_total"); sent <= 0 || sent*3 > enc {
		t.Errorf("sent %v bytes for %v encoded: gzip not working", sent, enc)
	}
	// Never an event's content in the logs.
	if strings.Contains(logs.String(), "quota") || strings.Contains(logs.String(), "event 1") {
		t.Errorf("event content in the log:\n%s", logs)
	}
}

// fieldType walks a mapping's properties along a dotted path.
func fieldType(props map[string]json.RawMessage, path string) string {
	head, rest, nested := strings.Cut(path, ".")
	raw, ok := props[head]
	if !ok {
		return "(missing)"
	}
	var f struct {
		Type       string                     `json:"type"`
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return "(bad)"
	}
	if !nested {
		return f.Type
	}
	return fieldType(f.Properties, rest)
}

// TestTemplatesInstalledOnce: the templates are there after a start, and a
// second start (another replica, a restart) finds them current and writes
// nothing.
func TestTemplatesInstalledOnce(t *testing.T) {
	suite.Require(t)
	cfg := testConfig(t, shared.URL)
	s, _, _ := startSink(t, cfg)
	waitReady(t, s, 30*time.Second)

	var it struct {
		IndexTemplates []struct {
			IndexTemplate struct {
				IndexPatterns []string       `json:"index_patterns"`
				Priority      int            `json:"priority"`
				DataStream    map[string]any `json:"data_stream"`
				ComposedOf    []string       `json:"composed_of"`
				Version       int            `json:"version"`
			} `json:"index_template"`
		} `json:"index_templates"`
	}
	esJSON(t, http.MethodGet, shared.URL+"/_index_template/"+dataStreamTemplate, "", &it)
	got := it.IndexTemplates[0].IndexTemplate
	if got.Priority != 150 || got.DataStream == nil || got.Version != templateVersion ||
		strings.Join(got.IndexPatterns, ",") != "logs-*-*" || strings.Join(got.ComposedOf, ",") != mappingsTemplate+","+customTemplate {
		t.Errorf("index template: %+v", got)
	}
	code, _ := esRequest(t, http.MethodGet, shared.URL+"/_component_template/"+mappingsTemplate, "")
	if code != http.StatusOK {
		t.Errorf("component template: %d", code)
	}
	code, _ = esRequest(t, http.MethodGet, shared.URL+"/_index_template/"+cfg.DeadLetterIndex, "")
	if code != http.StatusOK {
		t.Errorf("dead-letter template: %d", code)
	}

	info, err := s.clusterInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	written, err := s.installTemplates(context.Background(), info)
	if err != nil || written != 0 {
		t.Errorf("second install wrote %d templates (%v), want 0", written, err)
	}
	s2, _, logs2 := startSink(t, cfg)
	waitReady(t, s2, 30*time.Second)
	if !strings.Contains(logs2.String(), `"templates_written":0`) {
		t.Errorf("second start wrote templates:\n%s", logs2)
	}
	// A changed template (here: another priority) is written again.
	cfg.TemplatePriority = 151
	s3, _, _ := startSink(t, cfg)
	waitReady(t, s3, 30*time.Second)
	esJSON(t, http.MethodGet, shared.URL+"/_index_template/"+dataStreamTemplate, "", &it)
	if p := it.IndexTemplates[0].IndexTemplate.Priority; p != 151 {
		t.Errorf("priority after a config change: %d", p)
	}
	cfg.TemplatePriority = 150
	s4, _, _ := startSink(t, cfg) // put it back for the other tests
	waitReady(t, s4, 30*time.Second)
}

// TestNaming: datasets are cleaned for names, namespaces come from the
// config, and mode index writes dated indices.
func TestNaming(t *testing.T) {
	suite.Require(t)
	cfg := testConfig(t, shared.URL)
	s, _, _ := startSink(t, cfg)
	waitReady(t, s, 30*time.Second)
	b := makeBatch(0, 4, eventSpec{dataset: "Nginx-Access", idPrefix: "n"})
	defer b.Release()
	if err := s.Consume(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	ds := dataStreamName("nginx_access", cfg.Namespace)
	if got := count(t, shared.URL, ds); got != 4 {
		t.Errorf("%d documents in %s, want 4", got, ds)
	}
	// The document keeps its own dataset.
	var res struct {
		Hits struct {
			Hits []struct {
				Source struct {
					Event struct{ Dataset string } `json:"event"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	esJSON(t, http.MethodGet, shared.URL+"/"+ds+"/_search?size=1", "", &res)
	if len(res.Hits.Hits) != 1 || res.Hits.Hits[0].Source.Event.Dataset != "Nginx-Access" {
		t.Errorf("event.dataset not kept: %+v", res)
	}
	// Events without an id (no spool in front) get one from Elasticsearch;
	// an event without a dataset goes to "generic".
	noID := makeBatch(100, 3, eventSpec{dataset: ""})
	defer noID.Release()
	if err := s.Consume(context.Background(), noID); err != nil {
		t.Fatal(err)
	}
	if got := count(t, shared.URL, dataStreamName("generic", cfg.Namespace)); got != 3 {
		t.Errorf("%d documents without ids in the generic data stream, want 3", got)
	}

	cfg.Mode, cfg.IndexPrefix = ModeIndex, indexName(t, "idx")
	si, _, _ := startSink(t, cfg)
	waitReady(t, si, 30*time.Second)
	if err := si.Consume(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	index := cfg.IndexPrefix + "-nginx_access-2026.11.22"
	if got := count(t, shared.URL, index); got != 4 {
		t.Errorf("%d documents in %s, want 4", got, index)
	}
	var mapping map[string]struct {
		Mappings struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"mappings"`
	}
	esJSON(t, http.MethodGet, shared.URL+"/"+index+"/_mapping", "", &mapping)
	if got := fieldType(mapping[index].Mappings.Properties, "source.ip"); got != "ip" {
		t.Errorf("daily index maps source.ip as %q: template not applied", got)
	}
}

// TestReplayStoresOnce: the same batch sent again (a replay after a crash)
// adds nothing: every document answers 409 and counts as done.
func TestReplayStoresOnce(t *testing.T) {
	suite.Require(t)
	cfg := testConfig(t, shared.URL)
	s, reg, _ := startSink(t, cfg)
	waitReady(t, s, 30*time.Second)
	b := makeBatch(0, 300, eventSpec{dataset: "replay", idPrefix: "r"})
	defer b.Release()
	for i := 0; i < 3; i++ {
		if err := s.Consume(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	if got := count(t, shared.URL, dataStreamName("replay", cfg.Namespace)); got != 300 {
		t.Errorf("%d documents, want 300", got)
	}
	if v := metricValue(t, reg, "leitstand_elasticsearch_items_total", "status", "409"); v != 600 {
		t.Errorf("items_total{409} = %v, want 600", v)
	}
}

// TestMappingConflictDeadLetters: a document the cluster refuses for its
// content goes to the dead-letter index with the reason; the rest of the
// batch is indexed and Consume succeeds. Sent again, nothing is added.
func TestMappingConflictDeadLetters(t *testing.T) {
	suite.Require(t)
	cfg := testConfig(t, shared.URL)
	s, reg, logs := startSink(t, cfg)
	waitReady(t, s, 30*time.Second)
	b := makeBatch(0, 50, eventSpec{dataset: "conflict", idPrefix: "c", extra: func(seq int, e *collector.Event) {
		switch seq {
		case 7: // mapped long by the template
			e.AddString("http.response.status_code", "abc")
		case 8: // mapped ip
			e.AddString("client.ip", "not-an-address")
		}
	}})
	defer b.Release()
	if err := s.Consume(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if got := count(t, shared.URL, dataStreamName("conflict", cfg.Namespace)); got != 48 {
		t.Errorf("%d documents indexed, want 48", got)
	}
	dlq := cfg.DeadLetterIndex + "-2026.11.22"
	if got := count(t, shared.URL, dlq); got != 2 {
		t.Fatalf("%d dead letters in %s, want 2", got, dlq)
	}
	var res struct {
		Hits struct {
			Hits []struct {
				ID     string `json:"_id"`
				Source struct {
					Timestamp string `json:"@timestamp"`
					Event     struct {
						Original string `json:"original"`
						Dataset  string `json:"dataset"`
					} `json:"event"`
					Error struct {
						Type    string `json:"type"`
						Message string `json:"message"`
					} `json:"error"`
					HTTP struct {
						Response struct {
							StatusCode int `json:"status_code"`
						} `json:"response"`
					} `json:"http"`
					Leitstand struct {
						DeadLetter struct {
							Reason   string `json:"reason"`
							Target   string `json:"target"`
							ID       string `json:"id"`
							Attempts int    `json:"attempts"`
						} `json:"dead_letter"`
					} `json:"leitstand"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	esJSON(t, http.MethodGet, shared.URL+"/"+dlq+"/_search?sort=leitstand.dead_letter.id", "", &res)
	for i, h := range res.Hits.Hits {
		d := h.Source
		wantID := []string{"c-7", "c-8"}[i]
		if h.ID != wantID || d.Leitstand.DeadLetter.ID != wantID || d.Leitstand.DeadLetter.Reason != deadInvalid ||
			d.Leitstand.DeadLetter.Target != dataStreamName("conflict", cfg.Namespace) || d.HTTP.Response.StatusCode != 400 ||
			d.Error.Type == "" || d.Event.Dataset != "conflict" || d.Leitstand.DeadLetter.Attempts != 1 || d.Timestamp == "" {
			t.Errorf("dead letter %d: %+v", i, h)
		}
		var orig map[string]any
		if err := json.Unmarshal([]byte(d.Event.Original), &orig); err != nil {
			t.Errorf("original is not the JSON document: %v", err)
		}
		if !strings.Contains(d.Error.Message, []string{"status_code", "client.ip"}[i]) {
			t.Errorf("reason does not name the field: %q", d.Error.Message)
		}
	}
	if v := metricValue(t, reg, "leitstand_elasticsearch_dead_lettered_total", "reason", deadInvalid); v != 2 {
		t.Errorf("dead_lettered_total{invalid} = %v", v)
	}
	// The log says what and where, not the values Elasticsearch quotes.
	if !strings.Contains(logs.String(), "dead-letter") || strings.Contains(logs.String(), "not-an-address") {
		t.Errorf("log:\n%s", logs)
	}

	// A replay: the dead letters answer 409 too, nothing is added.
	if err := s.Consume(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if got := count(t, shared.URL, dlq); got != 2 {
		t.Errorf("%d dead letters after a replay, want 2", got)
	}
}

func TestLimiterAdapts(t *testing.T) {
	var last int
	l := newLimiter(8, func(n int) { last = n })
	ctx := context.Background()
	for i := 0; i < 8; i++ {
		if err := l.acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Full: the ninth waits until its context ends.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := l.acquire(short); err == nil {
		t.Fatal("acquired a ninth slot of 8")
	}
	l.release(true) // a 429: halve
	if last != 4 {
		t.Fatalf("limit after a 429 = %d, want 4", last)
	}
	l.release(true) // within the cut interval: no second cut
	if last != 4 {
		t.Fatalf("limit after a second 429 at once = %d, want 4", last)
	}
	for i := 0; i < 6; i++ {
		l.release(false)
	}
	// Six good answers at a limit of 4 add 6/4..: one slot.
	if last != 5 {
		t.Fatalf("limit after good answers = %d, want 5", last)
	}
	for i := 0; i < 100; i++ {
		if err := l.acquire(ctx); err != nil {
			t.Fatal(err)
		}
		l.release(false)
	}
	if last != 8 {
		t.Fatalf("limit recovers to %d, want 8", last)
	}
}

func TestAllCreated(t *testing.T) {
	ok := `{"errors":false,"items":[{"create":{"status":201}},{"create":{"status":201}}]}`
	if !allCreated([]byte(ok), 2) {
		t.Error("the common answer not recognized")
	}
	for _, c := range []struct {
		body string
		n    int
	}{
		{ok, 1}, {ok, 3}, {ok, 0},
		{`{"errors":false,"items":[{"create":{"status":201}},{"create":{"status":200}}]}`, 2},
		{`{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":201}}]}`, 2},
		{`{"errors":false,"items":[{"create":{"status":201}};{"create":{"status":201}}]}`, 2},
		{`{"errors":false,"items":[{"index":{"status":201}},{"create":{"status":201}}]} `, 2},
		{`{"errors":false,"items":[{"create":{"status":201}}, {"create":{"status":201}}]}`, 2},
	} {
		if allCreated([]byte(c.body), c.n) {
			t.Errorf("allCreated(%s, %d) = true", c.body, c.n)
		}
	}
}
