package rules

// Integration tests with real peers: node_exporter, PostgreSQL under
// pgbench load with postgres_exporter, and Prometheus 2.42. They start
// their peers on 127.0.0.1 and stop them when done; with CI=true a missing
// peer fails instead of skipping.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/leitstand/leitstand/internal/peers"
)

// startPostgresUnderLoad starts PostgreSQL with postgres_exporter and runs
// pgbench against it until the test ends.
func startPostgresUnderLoad(t *testing.T) *peers.Postgres {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pg, err := peers.StartPostgres(ctx, peers.PostgresOptions{})
	peers.Check(t, err)
	peers.Cleanup(t, pg)
	pgbench, err := peers.Bin(ctx, "pgbench")
	peers.Check(t, err)
	conn := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port), "-U", "postgres"}
	if out, err := exec.CommandContext(ctx, pgbench, append(append([]string{"-i", "-q", "-s", "1"}, conn...), "postgres")...).CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	loadCtx, stop := context.WithCancel(context.Background())
	load := exec.CommandContext(loadCtx, pgbench, append(append([]string{"-c", "2", "-T", "600", "-n"}, conn...), "postgres")...)
	if err := load.Start(); err != nil {
		stop()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop() // kills the pgbench this test started, by its PID
		_ = load.Wait()
	})
	return pg
}

func hostOf(rawURL string) string { return strings.TrimPrefix(rawURL, "http://") }

// TestScrapeRealExporters scrapes a real node_exporter (static target) and
// postgres_exporter (file_sd) into the embedded TSDB, appends leitstand's
// own metrics, and evaluates low-threshold rules over the real data.
func TestScrapeRealExporters(t *testing.T) {
	peers.Slow(t)
	ctx := context.Background()
	ne, err := peers.StartNodeExporter(ctx, peers.NodeExporterOptions{})
	peers.Check(t, err)
	peers.Cleanup(t, ne)
	pg := startPostgresUnderLoad(t)

	dir := t.TempDir()
	sdFile := filepath.Join(dir, "postgres.json")
	sd := fmt.Sprintf(`[{"targets": [%q], "labels": {"env": "test"}}]`, hostOf(pg.ExporterURL))
	if err := os.WriteFile(sdFile, []byte(sd), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, "testdata/lowthreshold.rules.yml")
	cfg.Scrape.Interval, cfg.Scrape.Timeout = time.Second, time.Second
	cfg.Scrape.Jobs = []ScrapeJob{
		{JobName: "node", Targets: []string{hostOf(ne.URL)}, MetricsPath: "/metrics", Scheme: "http"},
		{JobName: "postgres", FileSDFiles: []string{filepath.Join(dir, "*.json")}, FileSDRefresh: time.Minute, MetricsPath: "/metrics", Scheme: "http"},
	}
	cfg.SelfMetrics.Enabled = true
	cfg.SelfMetrics.Interval = time.Second
	cfg.SelfMetrics.Instance = "leitstand-test"
	reg := prometheus.NewRegistry()
	e := newEngine(t, cfg, Options{Registerer: reg, Gatherer: reg})
	start(t, e)

	eventually(t, 30*time.Second, "node_exporter series", func() error {
		v, err := instantQuery(t, e, `node_load1{job="node"}`)
		if err != nil || len(v) != 1 {
			return fmt.Errorf("%v %v", v, err)
		}
		return nil
	})
	eventually(t, 30*time.Second, "postgres_exporter series via file_sd", func() error {
		v, err := instantQuery(t, e, `pg_up{job="postgres",env="test"} == 1`)
		if err != nil || len(v) != 1 {
			return fmt.Errorf("%v %v", v, err)
		}
		return nil
	})
	eventually(t, 30*time.Second, "the pgbench load fires PostgresCommitting and ALERTS has it", func() error {
		v, err := instantQuery(t, e, `ALERTS{alertname="PostgresCommitting",alertstate="firing",datname="postgres"}`)
		if err != nil || len(v) != 1 {
			return fmt.Errorf("%v %v", v, err)
		}
		return nil
	})
	eventually(t, 30*time.Second, "NodeLoadKnown pending, then firing", func() error {
		a := findAlert(alerts(t, e), "NodeLoadKnown")
		if a == nil || a.State != "firing" {
			return errors.New("not firing")
		}
		return nil
	})
	eventually(t, 30*time.Second, "leitstand's own metrics", func() error {
		v, err := instantQuery(t, e, `leitstand_rule_group_evaluations_total{job="leitstand",instance="leitstand-test"}`)
		if err != nil || len(v) == 0 {
			return fmt.Errorf("%v %v", v, err)
		}
		v, err = instantQuery(t, e, `prometheus_tsdb_head_series{job="leitstand"}`)
		if err != nil || len(v) == 0 {
			return fmt.Errorf("tsdb metrics: %v %v", v, err)
		}
		return nil
	})

	// The rest of the query API on the real data.
	var values []string
	apiGet(t, e, "/api/v1/label/job/values", &values)
	for _, want := range []string{"leitstand", "node", "postgres"} {
		if !contains(values, want) {
			t.Errorf("job values %v lack %s", values, want)
		}
	}
	var series []map[string]string
	apiGet(t, e, "/api/v1/series?match[]=pg_up&match[]=up", &series)
	if len(series) != 3 { // pg_up, up{job=node}, up{job=postgres}
		t.Errorf("series: %v", series)
	}
	eventually(t, 20*time.Second, "query_range", func() error {
		return queryRange(t, e)
	})
}

func queryRange(t *testing.T, e *Engine) error {
	var rng struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
		} `json:"result"`
	}
	now := time.Now()
	q := fmt.Sprintf("/api/v1/query_range?query=%s&start=%d&end=%d&step=1",
		"rate(pg_stat_database_xact_commit%7Bdatname%3D%22postgres%22%7D%5B5s%5D)", now.Add(-10*time.Second).Unix(), now.Unix())
	if code, body := apiGet(t, e, q, &rng); code != http.StatusOK || rng.ResultType != "matrix" || len(rng.Result) != 1 || len(rng.Result[0].Values) < 9 {
		return fmt.Errorf("%d %s", code, body)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// sensitiveRules turns every alerting rule of the shipped rule files into
// one without its threshold and `for` (the left side of the outermost
// comparison, following `and`), so real data from healthy peers makes
// alerts with the labels the shipped expressions produce.
func sensitiveRules(t *testing.T, dir string) string {
	t.Helper()
	files, err := filepath.Glob("shipped/*.rules.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("shipped rules: %v %v", files, err)
	}
	p := newParser()
	out := rulefmt.RuleGroups{}
	for _, f := range files {
		groups, errs := parseRuleFile(f, p)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		for _, g := range groups.Groups {
			ng := rulefmt.RuleGroup{Name: "sensitive-" + g.Name, Interval: model.Duration(time.Second)}
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				expr, err := p.ParseExpr(r.Expr)
				if err != nil {
					t.Fatal(err)
				}
				ng.Rules = append(ng.Rules, rulefmt.Rule{Alert: "Sensitive" + r.Alert, Expr: withoutThreshold(expr).String()})
			}
			out.Groups = append(out.Groups, ng)
		}
	}
	b, err := yaml.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "sensitive.rules.yml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CheckRuleFiles([]string{path}); err != nil {
		t.Fatal(err)
	}
	return path
}

func withoutThreshold(e parser.Expr) parser.Expr {
	switch n := e.(type) {
	case *parser.ParenExpr:
		return withoutThreshold(n.Expr)
	case *parser.BinaryExpr:
		if n.Op == parser.LAND || (n.Op.IsComparisonOperator() && !n.ReturnBool) {
			return withoutThreshold(n.LHS)
		}
	}
	return e
}

// alertSet is the labels and state of every active alert, sorted.
func alertSet(e *Engine) []string {
	var out []string
	for _, a := range e.ActiveAlerts() {
		out = append(out, a.State.String()+" "+a.Labels.String())
	}
	sort.Strings(out)
	return out
}

// TestRealPrometheus: a real Prometheus 2.42 scrapes node_exporter,
// postgres_exporter and leitstand, and remote-writes everything into an
// embedded leitstand, whose query API then serves the series. A second
// leitstand in remote mode evaluates the same rules (the shipped ones,
// without their thresholds, and low-threshold ones) against that
// Prometheus' query API; at the same evaluation times both produce the
// same alerts.
func TestRealPrometheus(t *testing.T) {
	peers.Slow(t)
	ctx := context.Background()
	ne, err := peers.StartNodeExporter(ctx, peers.NodeExporterOptions{})
	peers.Check(t, err)
	peers.Cleanup(t, ne)
	pg := startPostgresUnderLoad(t)
	dir := t.TempDir()
	ruleFiles := []string{"testdata/lowthreshold.rules.yml", sensitiveRules(t, dir)}

	// Embedded leitstand, receiving remote_write, its own metrics on /metrics.
	regA := prometheus.NewRegistry()
	cfgA := testConfig(t, ruleFiles...)
	embedded := newEngine(t, cfgA, Options{Registerer: regA})
	embedded.manual = true
	start(t, embedded)
	mux := http.NewServeMux()
	embedded.Register(mux)
	mux.Handle("/metrics", promhttp.HandlerFor(regA, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	prom, err := peers.StartPrometheus(ctx, peers.PrometheusOptions{Config: fmt.Sprintf(`
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: node
    static_configs: [{targets: [%q]}]
  - job_name: postgres
    static_configs: [{targets: [%q]}]
  - job_name: leitstand
    static_configs: [{targets: [%q]}]
remote_write:
  - url: %s/api/v1/write
    queue_config:
      batch_send_deadline: 500ms
      min_backoff: 50ms
`, hostOf(ne.URL), hostOf(pg.ExporterURL), hostOf(srv.URL), srv.URL)})
	peers.Check(t, err)
	peers.Cleanup(t, prom)

	// The remote-written series are queryable in leitstand.
	eventually(t, 60*time.Second, "remote-written series in leitstand", func() error {
		for _, q := range []string{`up{job="node"} == 1`, `pg_up{job="postgres"}`, `node_load1`, `leitstand_rule_reloads_total{job="leitstand",outcome="success"}`} {
			v, err := instantQuery(t, embedded, q)
			if err != nil || len(v) == 0 {
				return fmt.Errorf("%s: %v %v", q, v, err)
			}
		}
		return nil
	})
	var received float64
	mfs, _ := regA.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "leitstand_rule_samples_appended_total" {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetValue() == SourceRemoteWrite {
						received = m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	if received == 0 {
		t.Fatal("leitstand_rule_samples_appended_total{source=remote_write} is 0")
	}

	// Remote mode against the same Prometheus.
	cfgB := testConfig(t, ruleFiles...)
	cfgB.Datasource = DatasourceRemote
	cfgB.Remote.URL = prom.URL
	cfgB.Remote.StateFile = filepath.Join(dir, "state.json")
	remote := newEngine(t, cfgB, Options{})
	remote.manual = true
	start(t, remote)

	// Let ten seconds of data reach both, then evaluate both at the same
	// past times, once leitstand has every sample up to them.
	time.Sleep(10 * time.Second)
	base := time.Now().Add(-8 * time.Second).Truncate(time.Second)
	eventually(t, 30*time.Second, "remote_write caught up", func() error {
		v, err := instantQuery(t, embedded, `min(timestamp(up))`)
		if err != nil || len(v) != 1 {
			return fmt.Errorf("%v %v", v, err)
		}
		ts, _ := strconv.ParseFloat(v[0].Value[1].(string), 64)
		if ts < float64(base.Add(6*time.Second).Unix()) {
			return fmt.Errorf("newest sample at %v", ts)
		}
		return nil
	})
	for i := range 6 {
		ts := base.Add(time.Duration(i) * time.Second)
		embedded.evalAll(ctx, ts)
		remote.evalAll(ctx, ts)
	}
	for _, g := range remote.RuleGroups() {
		for _, r := range g.Rules() {
			if err := r.LastError(); err != nil {
				t.Errorf("remote mode: %s: %v", r.Name(), err)
			}
		}
	}
	a, b := alertSet(embedded), alertSet(remote)
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Fatalf("embedded and remote mode disagree:\nembedded:\n%s\nremote:\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
	names := map[string]int{}
	for _, al := range embedded.ActiveAlerts() {
		names[al.Labels.Get(labels.AlertName)]++
	}
	for _, want := range []string{"NodeScraped", "NodeLoadKnown", "PostgresCommitting", "PostgresUp", "SensitiveNodeHighCPU",
		"SensitiveNodeMemoryLow", "SensitiveNodeFilesystemSpaceFillingUp", "SensitivePostgresTooManyConnections",
		"SensitivePostgresLowCacheHitRatio", "SensitiveLeitstandRuleReloadFailed"} {
		if names[want] == 0 {
			t.Errorf("no %s alert; alerts: %v", want, names)
		}
	}
	t.Logf("%d alerts agree in both modes: %v", len(a), names)

	// The remote mode's alert state went to its state file.
	if err := remote.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	var state stateFile
	b2, err := os.ReadFile(cfgB.Remote.StateFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b2, &state); err != nil || len(state.Series) == 0 {
		t.Fatalf("state file: %v %s", err, b2)
	}
	for _, s := range state.Series {
		if s.Map["__name__"] != alertForStateMetric {
			t.Fatalf("state file holds %v", s.Map)
		}
	}
}

// TestRemotePendingSurvivesRestart: in remote mode a pending alert keeps
// its `for` progress over a restart, through the state file.
func TestRemotePendingSurvivesRestart(t *testing.T) {
	peers.Slow(t)
	ctx := context.Background()
	ne, err := peers.StartNodeExporter(ctx, peers.NodeExporterOptions{})
	peers.Check(t, err)
	peers.Cleanup(t, ne)
	prom, err := peers.StartPrometheus(ctx, peers.PrometheusOptions{Config: fmt.Sprintf(`
global: {scrape_interval: 1s, scrape_timeout: 1s}
scrape_configs:
  - job_name: node
    static_configs: [{targets: [%q]}]
`, hostOf(ne.URL))})
	peers.Check(t, err)
	peers.Cleanup(t, prom)

	cfg := testConfig(t, "testdata/remote-pending.rules.yml")
	cfg.Datasource = DatasourceRemote
	cfg.Remote.URL = prom.URL
	cfg.Remote.StateFile = filepath.Join(t.TempDir(), "state.json")
	e := newEngine(t, cfg, Options{})
	start(t, e)
	var before time.Time
	eventually(t, 30*time.Second, "pending alert in the state file", func() error {
		a := findAlert(alerts(t, e), "NodeUpForLong")
		if a == nil || a.State != "pending" {
			return errors.New("not pending")
		}
		before = a.ActiveAt
		b, err := os.ReadFile(cfg.Remote.StateFile)
		if err != nil || !strings.Contains(string(b), "NodeUpForLong") {
			return fmt.Errorf("state file: %v", err)
		}
		return nil
	})
	// Pending for a while: the restore shifts activeAt by the time from
	// the last evaluation before the stop to the restore, a few seconds.
	time.Sleep(5 * time.Second)
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	restart := time.Now()
	start(t, e)
	eventually(t, 20*time.Second, "restored pending alert", func() error {
		a := findAlert(alerts(t, e), "NodeUpForLong")
		if a == nil || a.ActiveAt.After(restart) {
			return errors.New("not restored yet")
		}
		if d := a.ActiveAt.Sub(before); d < 0 || d > 10*time.Second {
			t.Fatalf("activeAt moved by %v over the restart", d)
		}
		return nil
	})
}
