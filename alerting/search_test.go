package alerting

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/sink/elasticsearch"
	"github.com/leitstand/leitstand/internal/peers"
)

// searchEvents are the events the search tests store: namespace, service,
// dataset, message, how many.
var searchEvents = []struct {
	namespace, service, dataset, message string
	n                                    int
}{
	{"kube-system", "kubelet", "kubernetes.container", "node pressure: connection refused by apiserver", 3},
	{"db", "postgres", "postgresql.log", "checkpoint starting: time", 4},
	{"payments", "payments-api", "kubernetes.container", "payment accepted for order", 5},
	{"payments", "postgres", "postgresql.log", "connection refused: too many clients", 2},
	{"payments-stage", "payments-api", "kubernetes.container", "payment declined for order", 1},
	{"other", "mail", "syslog", "Failed password for root from 10.0.0.0", 3},
}

// syncBuffer is a log sink the API writes to from handler goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// mountV1 mounts the API as cmd/leitstand does when it replaces the
// unscoped endpoints: StripPrefix("/api/v1") for exactly its three paths.
func mountV1(api http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	h := http.StripPrefix("/api/v1", api)
	for _, p := range []string{"/api/v1/alerts", "/api/v1/silences", "/api/v1/events/search"} {
		mux.Handle(p, h)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "other handler", http.StatusTeapot) })
	return mux
}

type searchAnswer struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   struct {
		Total         int               `json:"total"`
		TotalRelation string            `json:"total_relation"`
		Events        []json.RawMessage `json:"events"`
	} `json:"data"`
}

func getJSON(t *testing.T, base, path, token string, into any) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if into != nil {
		if err := json.Unmarshal(body, into); err != nil {
			t.Fatalf("%s: %v: %s", path, err, body)
		}
	}
	return resp.StatusCode, string(body)
}

// storedEvent is the part of a stored document the tests look at.
type storedEvent struct {
	Timestamp  time.Time `json:"@timestamp"`
	Message    string    `json:"message"`
	Kubernetes struct {
		Namespace string `json:"namespace"`
	} `json:"kubernetes"`
	Service struct {
		Name string `json:"name"`
	} `json:"service"`
	Event struct {
		Dataset string `json:"dataset"`
	} `json:"event"`
}

// TestEventSearchRealElasticsearch stores events of several namespaces,
// services and datasets with the real sink in a real Elasticsearch and
// searches them with each role's token: every role sees exactly its own,
// asking beyond the scope is refused, and no query text widens the scope.
func TestEventSearchRealElasticsearch(t *testing.T) {
	peers.Slow(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Private: the test stops it to see the API answer 503.
	es, err := peers.StartElasticsearch(ctx, peers.ElasticsearchOptions{Private: true})
	peers.Check(t, err)
	peers.Cleanup(t, es)

	sinkCfg := elasticsearch.DefaultConfig()
	sinkCfg.Enabled = true
	sinkCfg.URLs = []string{es.URL}
	sinkCfg.Namespace = "search"
	sinkCfg.DeadLetterIndex = "lt-search-dlq"
	if err := sinkCfg.Validate(); err != nil {
		t.Fatal(err)
	}
	sink, err := elasticsearch.New(sinkCfg, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sink.Shutdown(context.Background()) }()
	for sink.Ready() != nil {
		if ctx.Err() != nil {
			t.Fatalf("sink not ready: %v", sink.Ready())
		}
		time.Sleep(50 * time.Millisecond)
	}

	base := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Second)
	b := collector.NewBatch("test")
	seq := 0
	for _, spec := range searchEvents {
		for range spec.n {
			e := b.Next()
			e.Timestamp = base.Add(time.Duration(seq) * time.Second)
			e.ID = fmt.Sprintf("search-%d", seq)
			e.AddString(collector.FieldMessage, spec.message)
			e.AddString(collector.FieldDataset, spec.dataset)
			e.AddString(collector.FieldNamespace, spec.namespace)
			e.AddString(collector.FieldService, spec.service)
			e.AddString(collector.FieldReceiver, "podlog")
			e.AddString(collector.FieldHostName, "node-1")
			e.Normalize()
			seq++
		}
	}
	if err := sink.Consume(ctx, b); err != nil {
		t.Fatal(err)
	}
	b.Release()
	// Documents leitstand did not write (no leitstand.receiver: they never
	// passed the anonymizer) in one of its data streams, and a dead-letter
	// document: neither may ever be found.
	foreign := `{"create":{"_index":"logs-kubernetes.container-search"}}
{"@timestamp":"` + base.Format(time.RFC3339) + `","message":"foreign payment accepted","kubernetes":{"namespace":"payments"},"service":{"name":"payments-api"},"user":{"email":"ann@example.org"}}
{"index":{"_index":"lt-search-dlq-2026.11.22"}}
{"@timestamp":"` + base.Format(time.RFC3339) + `","message":"dead payment accepted","kubernetes":{"namespace":"payments"},"leitstand":{"receiver":"podlog"}}
`
	resp, err := http.Post(es.URL+"/_bulk?refresh=true", "application/x-ndjson", strings.NewReader(foreign))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || bytes.Contains(out, []byte(`"errors":true`)) {
		t.Fatalf("bulk: %d %s", resp.StatusCode, out)
	}
	resp, err = http.Post(es.URL+"/_refresh", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	client, err := elasticsearch.NewSearchClient(sinkCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	cfg, err := loadConfig(t, "testdata/api.yml")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	r, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	api := r.NewAPI(func() []Alert { return apiAlerts },
		WithEventSearch(EventSearch{Transport: client, Indices: sinkCfg.SearchIndices(), Timeout: 10 * time.Second}))
	srv := httptest.NewServer(mountV1(api))
	defer srv.Close()
	defer srv.CloseClientConnections()

	inScope := map[string]func(storedEvent) bool{
		"ops-token":      func(storedEvent) bool { return true },
		"dba-token":      func(e storedEvent) bool { return e.Service.Name == "postgres" },
		"payments-token": func(e storedEvent) bool { return strings.HasPrefix(e.Kubernetes.Namespace, "payments") },
	}
	for _, c := range []struct {
		name, token, query string
		code               int
		total              int    // for 200; -1: any number, all in scope
		events             int    // -1: as total
		reason             string // for errors: part of the message
	}{
		{name: "no token", query: "", code: 401, reason: "bearer token"},
		{name: "bad token", token: "nope", code: 401},
		{name: "ops sees all", token: "ops-token", code: 200, total: 18, events: -1},
		{name: "dba sees postgres", token: "dba-token", code: 200, total: 6, events: -1},
		{name: "payments sees its namespaces", token: "payments-token", code: 200, total: 8, events: -1},
		{name: "security has no scope", token: "security-token", code: 403, reason: "no API scope"},
		{name: "payments narrows to a dataset", token: "payments-token", query: "dataset=postgresql.log", code: 200, total: 2, events: -1},
		{name: "payments narrows to stage", token: "payments-token", query: "namespace=payments-stage", code: 200, total: 1, events: -1},
		{name: "payments asks for kube-system", token: "payments-token", query: "namespace=kube-system", code: 403, reason: `namespace="kube-system" is outside`},
		{name: "payments asks for its and another namespace", token: "payments-token", query: "namespace=payments,other", code: 403, reason: `"other"`},
		{name: "dba asks for another service", token: "dba-token", query: "service=payments-api", code: 403, reason: `service="payments-api"`},
		{name: "dba narrows by an unscoped dimension", token: "dba-token", query: "dataset=syslog", code: 200, total: 0, events: -1},
		{name: "ops asks for any namespace", token: "ops-token", query: "namespace=other", code: 200, total: 3, events: -1},
		{name: "ops text search", token: "ops-token", query: "q=" + url.QueryEscape(`"connection refused"`), code: 200, total: 5, events: -1},
		{name: "dba text search stays in scope", token: "dba-token", query: "q=" + url.QueryEscape(`"connection refused"`), code: 200, total: 2, events: -1},
		{name: "field syntax does not escape", token: "payments-token", query: "q=" + url.QueryEscape("kubernetes.namespace:other"), code: 200, total: 0, events: -1},
		{name: "OR of everything does not escape", token: "payments-token", query: "q=" + url.QueryEscape("payment | mail | Failed | kube-system | *"), code: 200, total: 6, events: -1},
		{name: "the same OR for ops", token: "ops-token", query: "q=" + url.QueryEscape("payment | mail | Failed | kube-system | *"), code: 200, total: 12, events: -1},
		{name: "boolean injection does not escape", token: "dba-token", query: "q=" + url.QueryEscape(`") OR (* | kubelet`), code: 200, total: -1, events: -1},
		{name: "other's text from payments", token: "payments-token", query: "q=" + url.QueryEscape(`"Failed password"`), code: 200, total: 0, events: -1},
		{name: "size and order", token: "ops-token", query: "size=2", code: 200, total: 18, events: 2},
		{name: "size 0 counts", token: "ops-token", query: "size=0&namespace=db", code: 200, total: 4, events: 0},
		{name: "relative from", token: "ops-token", query: "from=2h", code: 200, total: 18, events: -1},
		{name: "window before the events", token: "ops-token",
			query: "from=" + base.Add(-time.Hour).Format(time.RFC3339) + "&to=" + base.Add(-time.Second).Format(time.RFC3339), code: 200, total: 0, events: -1},
		{name: "window around the first ones", token: "ops-token",
			query: "from=" + base.Format(time.RFC3339) + "&to=" + base.Add(2*time.Second).Format(time.RFC3339), code: 200, total: 3, events: -1},
		{name: "ascending", token: "ops-token", query: "sort=asc&size=1", code: 200, total: 18, events: 1},
		{name: "size too big", token: "ops-token", query: "size=5000", code: 400, reason: "size"},
		{name: "size not a number", token: "ops-token", query: "size=ten", code: 400, reason: "size"},
		{name: "bad from", token: "ops-token", query: "from=yesterday", code: 400, reason: "from"},
		{name: "from after to", token: "ops-token", query: "from=1h&to=2h", code: 400, reason: "before"},
		{name: "unknown parameter", token: "ops-token", query: "namespaces=db", code: 400, reason: `unknown parameter "namespaces"`},
		{name: "bad sort", token: "ops-token", query: "sort=up", code: 400, reason: "sort"},
		{name: "empty value", token: "ops-token", query: "dataset=", code: 400, reason: "dataset"},
		{name: "query too long", token: "ops-token", query: "q=" + strings.Repeat("a", 2000), code: 400, reason: "q:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var ans searchAnswer
			code, body := getJSON(t, srv.URL, "/api/v1/events/search?"+c.query, c.token, &ans)
			if code != c.code {
				t.Fatalf("status %d, want %d: %s", code, c.code, body)
			}
			if c.code != 200 {
				if ans.Status != "error" || !strings.Contains(ans.Error, c.reason) {
					t.Fatalf("want an error naming %q, got %s", c.reason, body)
				}
				return
			}
			want := c.events
			if want < 0 {
				want = c.total
			}
			if c.total < 0 {
				c.total, want = ans.Data.Total, ans.Data.Total
			}
			if ans.Data.Total != c.total || len(ans.Data.Events) != want || ans.Data.TotalRelation != "eq" {
				t.Fatalf("total %d (%s), %d events; want %d, %d: %s", ans.Data.Total, ans.Data.TotalRelation, len(ans.Data.Events), c.total, want, body)
			}
			var prev time.Time
			for i, raw := range ans.Data.Events {
				var e storedEvent
				if err := json.Unmarshal(raw, &e); err != nil {
					t.Fatal(err)
				}
				if !inScope[c.token](e) {
					t.Errorf("out of scope: %s", raw)
				}
				if strings.Contains(e.Message, "foreign") || strings.Contains(e.Message, "dead") {
					t.Errorf("not leitstand's event: %s", raw)
				}
				asc := strings.Contains(c.query, "sort=asc")
				if i > 0 && (asc && e.Timestamp.Before(prev) || !asc && e.Timestamp.After(prev)) {
					t.Errorf("out of order: %s after %s", e.Timestamp, prev)
				}
				prev = e.Timestamp
				if c.name == "ascending" && !e.Timestamp.Equal(base) {
					t.Errorf("first event %s, want %s", e.Timestamp, base)
				}
			}
		})
	}
	if n := strings.Count(logs.String(), "audit: event search"); n < 20 {
		t.Errorf("%d audit lines:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "connection refused") {
		t.Errorf("the audit log quotes query text:\n%s", logs.String())
	}

	// Alerts and silences answer on the same mount.
	var alerts struct {
		Status string `json:"status"`
		Data   struct {
			Alerts []promAlert `json:"alerts"`
		} `json:"data"`
	}
	if code, body := getJSON(t, srv.URL, "/api/v1/alerts", "dba-token", &alerts); code != 200 || len(alerts.Data.Alerts) != 2 {
		t.Fatalf("alerts: %d %s", code, body)
	}
	if code, _ := getJSON(t, srv.URL, "/api/v1/rules", "ops-token", nil); code != http.StatusTeapot {
		t.Fatalf("the mount takes /api/v1/rules: %d", code)
	}

	// Elasticsearch gone: 503 with the reason, a log line, the counter.
	if err := es.Kill(); err != nil {
		t.Fatal(err)
	}
	client.Close()
	var ans searchAnswer
	code, body := getJSON(t, srv.URL, "/api/v1/events/search", "ops-token", &ans)
	if code != http.StatusServiceUnavailable || !strings.Contains(ans.Error, "Elasticsearch unreachable") {
		t.Fatalf("with Elasticsearch down: %d %s", code, body)
	}
	if !strings.Contains(logs.String(), "event search failed") {
		t.Errorf("no log line:\n%s", logs.String())
	}
	if v := testutil.ToFloat64(r.m.searches.WithLabelValues("unavailable")); v != 1 {
		t.Errorf("unavailable searches %v, want 1", v)
	}
	if v := testutil.ToFloat64(r.m.searches.WithLabelValues("forbidden")); v != 4 {
		t.Errorf("forbidden searches %v, want 4", v)
	}
}
