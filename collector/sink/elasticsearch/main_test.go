package elasticsearch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/internal/peers"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// Two real nodes serve the package's tests, started at once in TestMain:
// shared is the cluster named by ELASTICSEARCH_URL or a node of our own;
// fragile is always our own, with a write queue of 2 so that concurrent
// bulk requests get real 429s, and it is the one killed and restarted.
var (
	suite   = &peers.Suite{Slow: true}
	shared  *peers.Elasticsearch
	fragile *peers.Elasticsearch
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		os.Exit(crashChild())
	}
	os.Exit(suite.Run(m, func(ctx context.Context) error {
		var g errgroup.Group
		var mu sync.Mutex
		g.Go(func() error {
			es, err := peers.StartElasticsearch(ctx, peers.ElasticsearchOptions{})
			mu.Lock()
			shared = es
			suite.Add(es)
			mu.Unlock()
			return err
		})
		g.Go(func() error {
			es, err := peers.StartElasticsearch(ctx, peers.ElasticsearchOptions{
				Private:  true,
				Settings: map[string]string{"thread_pool.write.queue_size": "2"},
			})
			mu.Lock()
			fragile = es
			suite.Add(es)
			mu.Unlock()
			return err
		})
		return g.Wait()
	}))
}

// runID keeps names of one run apart from those of earlier runs against
// the same cluster (ELASTICSEARCH_URL).
var runID = strconv.FormatInt(time.Now().UnixNano()/1e6%(36*36*36*36*36), 36)

// testName turns a test's name into a namespace: the test's name and
// the run's id.
func testName(t testing.TB) string { return baseName(t) + "_" + runID }

func baseName(t testing.TB) string {
	return strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(t.Name()), "_"), "_")
}

// indexName builds an index name (prefix) for the test. The run's id comes
// first, so that no pattern of an earlier run's templates covers it.
func indexName(t testing.TB, kind string) string {
	return "lt-" + kind + "-" + runID + "-" + strings.ReplaceAll(baseName(t), "_", "-")
}

// testConfig is a config for url with a namespace and dead-letter index of
// the test's own, so tests sharing a node do not see each other's data.
func testConfig(t testing.TB, url string) Config {
	cfg := DefaultConfig()
	cfg.Enabled = true
	cfg.URLs = []string{url}
	cfg.Namespace = testName(t)
	cfg.DeadLetterIndex = indexName(t, "dlq")
	cfg.RetryInitial = 20 * time.Millisecond
	cfg.RetryMax = 500 * time.Millisecond
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// logBuffer collects the sink's JSON log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// startSink creates and starts a sink and stops it when the test ends.
func startSink(t testing.TB, cfg Config) (*Sink, *prometheus.Registry, *logBuffer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	logs := &logBuffer{}
	s, err := New(cfg, reg, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, reg, logs
}

// waitReady waits until the sink is set up.
func waitReady(t testing.TB, s *Sink, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for s.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("sink not ready after %s: %v", within, s.Ready())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eventSpec describes the test events makeBatch builds.
type eventSpec struct {
	dataset  string
	idPrefix string // "" leaves the ID empty (the spool sets one)
	size     int    // pad the message to about this many bytes of JSON
	extra    func(seq int, e *collector.Event)
}

var padding = strings.Repeat("lorem ipsum dolor sit amet ", 200)

// makeBatch builds n events numbered first..first+n-1 in test.seq.
func makeBatch(first, n int, spec eventSpec) *collector.Batch {
	b := collector.NewBatch("test")
	ts := time.Date(2026, 11, 22, 8, 15, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		seq := first + i
		e := b.Next()
		e.Timestamp = ts.Add(time.Duration(seq) * time.Microsecond)
		if spec.idPrefix != "" {
			e.ID = spec.idPrefix + "-" + strconv.Itoa(seq)
		}
		msg := "event " + strconv.Itoa(seq)
		if spec.size > 0 {
			if pad := spec.size - 220; pad > 0 {
				msg += " " + padding[:min(pad, len(padding))]
			}
		}
		e.AddString(collector.FieldMessage, msg)
		e.AddString(collector.FieldDataset, spec.dataset)
		e.AddString(collector.FieldLevel, []string{"info", "warn", "error"}[seq%3])
		e.AddString(collector.FieldHostName, "node-1")
		e.AddString(collector.FieldService, "webmail")
		e.AddString("source.ip", "10.1.2.0")
		e.Add("test.seq", collector.KindNumber, strconv.Itoa(seq))
		e.AddString("labels.team", "platform")
		e.AddString(collector.FieldIngested, "2026-11-22T08:15:01.000000000Z")
		if spec.extra != nil {
			spec.extra(seq, e)
		}
		e.Normalize()
	}
	return b
}

// esRequest is a plain HTTP request to a node, for checking what the sink
// did; it fails the test on a transport error.
func esRequest(t testing.TB, method, url, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return res.StatusCode, data
}

// esJSON sends a request that must answer 200 and decodes the answer.
func esJSON(t testing.TB, method, url, body string, into any) {
	t.Helper()
	code, data := esRequest(t, method, url, body)
	if code != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, url, code, data)
	}
	if into != nil {
		if err := json.Unmarshal(data, into); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, data)
		}
	}
}

// count refreshes target and counts its documents.
func count(t testing.TB, base, target string) int {
	t.Helper()
	esJSON(t, http.MethodPost, base+"/"+target+"/_refresh", "", nil)
	var c struct{ Count int }
	esJSON(t, http.MethodGet, base+"/"+target+"/_count", "", &c)
	return c.Count
}

// seqStats pages through a composite aggregation over test.seq and returns
// how many distinct values there are and how many of them occur more than
// once: an exact check, unlike the cardinality aggregation.
func seqStats(t testing.TB, base, target string) (distinct, duplicated int) {
	t.Helper()
	esJSON(t, http.MethodPost, base+"/"+target+"/_refresh", "", nil)
	after := ""
	for {
		q := `{"size":0,"aggs":{"s":{"composite":{"size":10000,"sources":[{"seq":{"terms":{"field":"test.seq"}}}]` + after + `}}}}`
		var res struct {
			Aggregations struct {
				S struct {
					AfterKey json.RawMessage `json:"after_key"`
					Buckets  []struct {
						DocCount int `json:"doc_count"`
					} `json:"buckets"`
				} `json:"s"`
			} `json:"aggregations"`
		}
		esJSON(t, http.MethodPost, base+"/"+target+"/_search", q, &res)
		for _, b := range res.Aggregations.S.Buckets {
			distinct++
			if b.DocCount > 1 {
				duplicated++
			}
		}
		if len(res.Aggregations.S.Buckets) == 0 || len(res.Aggregations.S.AfterKey) == 0 {
			return distinct, duplicated
		}
		after = `,"after":` + string(res.Aggregations.S.AfterKey)
	}
}

// metricValue reads one series from a registry ("name" or "name{l=v}").
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}

func dataStreamName(dataset, namespace string) string {
	return fmt.Sprintf("logs-%s-%s", dataset, namespace)
}
