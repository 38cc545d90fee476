package alerting

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/leitstand/leitstand/collector/sink/elasticsearch"
)

// fakeES records search requests and answers what the test says. It is a
// shape and fault check only; TestEventSearchRealElasticsearch is the proof
// that the scope holds in a real cluster.
type fakeES struct {
	mu     sync.Mutex
	paths  []string
	bodies []map[string]any
	status int
	answer string
	delay  time.Duration
}

func (f *fakeES) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	f.mu.Lock()
	f.paths = append(f.paths, r.URL.Path+"?"+r.URL.RawQuery)
	f.bodies = append(f.bodies, body)
	status, answer, delay := f.status, f.answer, f.delay
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, answer)
}

func (f *fakeES) set(status int, answer string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.answer = status, answer
}

func (f *fakeES) last() (string, map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.paths) == 0 {
		return "", nil
	}
	return f.paths[len(f.paths)-1], f.bodies[len(f.bodies)-1]
}

func (f *fakeES) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.paths)
}

const fakeHits = `{"took":3,"timed_out":false,"_shards":{"failed":0},"hits":{"total":{"value":1,"relation":"eq"},"hits":[{"_source":{"message":"m","kubernetes":{"namespace":"payments"}}}]}}`

// filterTerms returns field → values of the bool query's terms filters.
func filterTerms(t *testing.T, body map[string]any) map[string][][]string {
	t.Helper()
	q, _ := body["query"].(map[string]any)
	b, _ := q["bool"].(map[string]any)
	filters, _ := b["filter"].([]any)
	out := map[string][][]string{}
	for _, f := range filters {
		terms, ok := f.(map[string]any)["terms"].(map[string]any)
		if !ok {
			continue
		}
		for field, vals := range terms {
			var vs []string
			for _, v := range vals.([]any) {
				vs = append(vs, v.(string))
			}
			out[field] = append(out[field], vs)
		}
	}
	return out
}

func TestEventSearchQueryShape(t *testing.T) {
	fake := &fakeES{status: 200, answer: fakeHits}
	es := httptest.NewServer(fake)
	defer es.Close()
	sinkCfg := elasticsearch.DefaultConfig()
	sinkCfg.Enabled = true
	sinkCfg.URLs = []string{es.URL}
	client, err := elasticsearch.NewSearchClient(sinkCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	cfg, err := loadConfig(t, "testdata/api.yml")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	r, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	api := r.NewAPI(nil, WithEventSearch(EventSearch{Transport: client, Indices: sinkCfg.SearchIndices(), Timeout: 2 * time.Second}))
	srv := httptest.NewServer(mountV1(api))
	defer srv.Close()

	// The payments role's scope is in the filter, q only in must.
	var ans searchAnswer
	code, body := getJSON(t, srv.URL, "/api/v1/events/search?q=kubernetes.namespace:other&dataset=syslog", "payments-token", &ans)
	if code != 200 || ans.Data.Total != 1 || len(ans.Data.Events) != 1 {
		t.Fatalf("%d %s", code, body)
	}
	path, req := fake.last()
	if !strings.HasPrefix(path, "/logs-%2A-default,leitstand-events-%2A,-leitstand-deadletter-%2A/_search?") &&
		!strings.HasPrefix(path, "/logs-*-default,leitstand-events-*,-leitstand-deadletter-*/_search?") {
		t.Errorf("searched %s", path)
	}
	for _, p := range []string{"ignore_unavailable=true", "allow_no_indices=true", "filter_path="} {
		if !strings.Contains(path, p) {
			t.Errorf("no %s in %s", p, path)
		}
	}
	terms := filterTerms(t, req)
	if got := terms["kubernetes.namespace"]; len(got) != 1 || strings.Join(got[0], ",") != "payments,payments-stage" {
		t.Errorf("namespace filter %v", got)
	}
	if got := terms["event.dataset"]; len(got) != 1 || strings.Join(got[0], ",") != "syslog" {
		t.Errorf("dataset filter %v", got)
	}
	b := req["query"].(map[string]any)["bool"].(map[string]any)
	sqs := b["must"].([]any)[0].(map[string]any)["simple_query_string"].(map[string]any)
	if sqs["query"] != "kubernetes.namespace:other" || sqs["flags"] != searchFlags || len(sqs["fields"].([]any)) != len(searchFields) {
		t.Errorf("q went in as %v", sqs)
	}
	if len(b) != 2 {
		t.Errorf("bool query has more than filter and must: %v", b)
	}
	if !strings.Contains(logs.String(), "audit: event search") || strings.Contains(logs.String(), "kubernetes.namespace:other") {
		t.Errorf("audit line missing or quoting q:\n%s", logs.String())
	}

	// The all-seeing role gets no scope terms; dba gets its services.
	getJSON(t, srv.URL, "/api/v1/events/search", "ops-token", nil)
	if _, req := fake.last(); len(filterTerms(t, req)) != 0 {
		t.Errorf("ops filtered by %v", filterTerms(t, req))
	}
	getJSON(t, srv.URL, "/api/v1/events/search?size=7&sort=asc", "dba-token", nil)
	_, req = fake.last()
	if got := filterTerms(t, req)["service.name"]; len(got) != 1 || got[0][0] != "postgres" {
		t.Errorf("dba filtered by %v", filterTerms(t, req))
	}
	if req["size"] != float64(7) || !strings.Contains(mustJSON(req["sort"]), `"order":"asc"`) {
		t.Errorf("size/sort: %v %v", req["size"], req["sort"])
	}

	// Refusals never reach Elasticsearch.
	before := fake.count()
	for _, c := range []struct{ token, query string }{
		{"payments-token", "namespace=db"}, {"security-token", ""}, {"", ""}, {"ops-token", "size=-1"},
	} {
		getJSON(t, srv.URL, "/api/v1/events/search?"+c.query, c.token, nil)
	}
	if fake.count() != before {
		t.Errorf("a refused search reached Elasticsearch")
	}

	// Faults: status and reason.
	for _, c := range []struct {
		name, answer string
		status, code int
		reason       string
		delay        time.Duration
	}{
		{name: "overloaded", status: 429, answer: `{"error":{"root_cause":[{"type":"es_rejected_execution_exception","reason":"rejected execution"}],"type":"search_phase_execution_exception","reason":"all shards failed"},"status":429}`,
			code: 503, reason: "es_rejected_execution_exception: rejected execution"},
		{name: "server error", status: 500, answer: `{"error":{"type":"illegal_state_exception","reason":"boom"},"status":500}`, code: 502, reason: "illegal_state_exception: boom"},
		{name: "refused credentials", status: 401, answer: `{"error":{"type":"security_exception","reason":"missing authentication credentials"},"status":401}`, code: 502, reason: "security_exception"},
		{name: "timed out in the cluster", status: 200, answer: `{"took":2000,"timed_out":true,"hits":{"total":{"value":0,"relation":"eq"}}}`, code: 504, reason: "longer than 2s"},
		{name: "shard failure", status: 200, answer: `{"took":1,"timed_out":false,"_shards":{"failed":1,"failures":[{"index":"logs-x-default","reason":{"type":"query_shard_exception","reason":"bad"}}]},"hits":{"total":{"value":0,"relation":"eq"}}}`, code: 502, reason: "query_shard_exception: bad"},
		{name: "not JSON", status: 200, answer: `<html>`, code: 502, reason: "not a search result"},
		{name: "no answer in time", status: 200, answer: fakeHits, delay: 3 * time.Second, code: 504, reason: "within 2s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fake.set(c.status, c.answer)
			fake.mu.Lock()
			fake.delay = c.delay
			fake.mu.Unlock()
			defer func() { fake.mu.Lock(); fake.delay = 0; fake.mu.Unlock() }()
			var ans searchAnswer
			code, body := getJSON(t, srv.URL, "/api/v1/events/search", "ops-token", &ans)
			if code != c.code || !strings.Contains(ans.Error, c.reason) {
				t.Fatalf("%d %s; want %d with %q", code, body, c.code, c.reason)
			}
		})
	}
	for _, res := range []string{"unavailable", "error", "timeout"} {
		if v := testutil.ToFloat64(r.m.searches.WithLabelValues(res)); v == 0 {
			t.Errorf("no %s search counted", res)
		}
	}
}

// TestEventSearchLimits: the answer cap and the endpoint without a
// cluster.
func TestEventSearchLimits(t *testing.T) {
	fake := &fakeES{status: 200, answer: `{"took":1,"hits":{"total":{"value":1,"relation":"eq"},"hits":[{"_source":{"message":"` + strings.Repeat("x", 4096) + `"}}]}}`}
	es := httptest.NewServer(fake)
	defer es.Close()
	sinkCfg := elasticsearch.DefaultConfig()
	sinkCfg.URLs = []string{es.URL}
	client, err := elasticsearch.NewSearchClient(sinkCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	cfg, err := loadConfig(t, "testdata/api.yml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	capped := httptest.NewServer(mountV1(r.NewAPI(nil, WithEventSearch(EventSearch{Transport: client, Indices: sinkCfg.SearchIndices(), MaxResponseBytes: 1024}))))
	defer capped.Close()
	var ans searchAnswer
	if code, body := getJSON(t, capped.URL, "/api/v1/events/search", "ops-token", &ans); code != 400 || !strings.Contains(ans.Error, "lower size") {
		t.Fatalf("%d %s", code, body)
	}
	off := httptest.NewServer(mountV1(r.NewAPI(nil)))
	defer off.Close()
	if code, body := getJSON(t, off.URL, "/api/v1/events/search", "ops-token", &ans); code != 501 || !strings.Contains(ans.Error, "Elasticsearch sink") {
		t.Fatalf("%d %s", code, body)
	}
	noIndices := httptest.NewServer(mountV1(r.NewAPI(nil, WithEventSearch(EventSearch{Transport: client}))))
	defer noIndices.Close()
	if code, _ := getJSON(t, noIndices.URL, "/api/v1/events/search", "ops-token", nil); code != 501 {
		t.Fatalf("without indices: %d", code)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
