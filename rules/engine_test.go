package rules

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/notifier"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"

	"github.com/leitstand/leitstand/internal/config"
)

// testConfig is an embedded engine over a temp folder, evaluating files
// every second.
func testConfig(t *testing.T, files ...string) Config {
	t.Helper()
	cfg := DefaultConfig(t.TempDir())
	cfg.RuleFiles = files
	cfg.EvaluationInterval = time.Second
	cfg.WatchInterval = 0
	cfg.SelfMetrics.Enabled = false
	return cfg
}

func newEngine(t *testing.T, cfg Config, opts Options) *Engine {
	t.Helper()
	e, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return e
}

func start(t *testing.T, e *Engine) {
	t.Helper()
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// feed appends value to series every 100ms until the test ends or stop
// is closed.
func feed(t *testing.T, a storage.AppendableV2, ls labels.Labels, value float64) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			app := a.AppenderV2(context.Background())
			_, err := app.Append(0, ls, 0, time.Now().UnixMilli(), value, nil, nil, storage.AppendV2Options{})
			if err == nil {
				_ = app.Commit()
			} else {
				_ = app.Rollback()
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	var once sync.Once
	stop = func() { once.Do(func() { close(done); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// apiGet calls the engine's API and decodes the data of a success answer.
func apiGet(t *testing.T, e *Engine, path string, data any) (status int, body string) {
	t.Helper()
	rec := httptest.NewRecorder()
	e.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body = rec.Body.String()
	if data != nil && rec.Code == http.StatusOK {
		var env struct {
			Status string          `json:"status"`
			Data   json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, body)
		}
		if err := json.Unmarshal(env.Data, data); err != nil {
			t.Fatalf("GET %s: data: %v: %s", path, err, body)
		}
	}
	return rec.Code, body
}

type testAlert struct {
	Labels   map[string]string `json:"labels"`
	State    string            `json:"state"`
	ActiveAt time.Time         `json:"activeAt"`
	Value    string            `json:"value"`
}

func alerts(t *testing.T, e *Engine) []testAlert {
	t.Helper()
	var data struct {
		Alerts []testAlert `json:"alerts"`
	}
	if code, body := apiGet(t, e, "/api/v1/alerts", &data); code != http.StatusOK {
		t.Fatalf("alerts: %d %s", code, body)
	}
	return data.Alerts
}

func findAlert(as []testAlert, name string) *testAlert {
	for i := range as {
		if as[i].Labels["alertname"] == name {
			return &as[i]
		}
	}
	return nil
}

// eventually retries f until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, timeout, err)
}

type vectorResult []struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func instantQuery(t *testing.T, e *Engine, q string) (vectorResult, error) {
	t.Helper()
	var data struct {
		ResultType string       `json:"resultType"`
		Result     vectorResult `json:"result"`
	}
	code, body := apiGet(t, e, "/api/v1/query?query="+url.QueryEscape(q), &data)
	if code != http.StatusOK {
		return nil, errors.New(body)
	}
	return data.Result, nil
}

func TestLifecycle(t *testing.T) {
	cfg := testConfig(t, "testdata/fire.rules.yml")
	cfg.SelfMetrics.Enabled = true
	reg := prometheus.NewRegistry()
	e := newEngine(t, cfg, Options{Registerer: reg, Gatherer: reg})
	ctx := context.Background()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown without start: %v", err)
	}
	if code, _ := apiGet(t, e, "/api/v1/alerts", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("API before start: %d, want 503", code)
	}
	app := e.Appendable().AppenderV2(ctx)
	if _, err := app.Append(0, labels.FromStrings("__name__", "x"), 0, 1, 1, nil, nil, storage.AppendV2Options{}); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("append before start: %v, want ErrNotRunning", err)
	}
	for i := range 2 {
		start(t, e)
		if err := e.Start(ctx); err != nil {
			t.Fatalf("second Start: %v", err)
		}
		if n := len(e.RuleGroups()); n != 1 {
			t.Fatalf("round %d: %d groups, want 1", i, n)
		}
		if err := e.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if err := e.Shutdown(ctx); err != nil {
			t.Fatalf("second Shutdown: %v", err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig("/data")
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	bad := DefaultConfig("/data")
	bad.Datasource = "elsewhere"
	bad.RuleFiles = []string{"", "[bad"}
	bad.EvaluationInterval = 0
	bad.ExternalLabels = map[string]string{"bad-name": "x"}
	bad.Scrape.Jobs = []ScrapeJob{{JobName: "a", Targets: []string{"nohost"}, Scheme: "ftp", MetricsPath: "metrics"}, {JobName: "a"}}
	err := bad.Validate()
	for _, want := range []string{"datasource", "rule_files[0]", "rule_files[1]", "evaluation_interval", "external_labels.bad-name",
		"scrape.jobs[0].targets[0]", "scrape.jobs[0].scheme", "scrape.jobs[0].metrics_path", "scrape.jobs[1].job_name", "scrape.jobs[1]: needs targets"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want an error about %s, got %v", want, err)
		}
	}
	remote := DefaultConfig("/data")
	remote.Datasource = DatasourceRemote
	if err := remote.Validate(); err == nil || !strings.Contains(err.Error(), "remote.url") {
		t.Errorf("remote without url: %v", err)
	}
}

func TestConfigDecode(t *testing.T) {
	cfg := DefaultConfig("/data")
	_, err := config.Decode("leitstand.yaml", []byte(`
rule_files: [/etc/leitstand/rules/*.yml]
tsdb:
  retention: 30d
  retention_size: 10GiB
scrape:
  jobs:
    - job_name: node
      targets: ["127.0.0.1:9100"]
`), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(cfg.TSDB.Retention) != 30*24*time.Hour || cfg.TSDB.RetentionSize != 10<<30 {
		t.Fatalf("tsdb: %+v", cfg.TSDB)
	}
	if j := cfg.Scrape.Jobs[0]; j.MetricsPath != "/metrics" || j.Scheme != "http" {
		t.Fatalf("job defaults: %+v", j)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, err = config.Decode("leitstand.yaml", []byte("tsdb:\n  retention: soon\n"), &cfg)
	if err == nil || !strings.Contains(err.Error(), "leitstand.yaml:2") {
		t.Fatalf("bad retention: %v", err)
	}
}

func TestCheckRuleFiles(t *testing.T) {
	err := CheckRuleFiles([]string{"testdata/bad.rules.yml", "testdata/unknown.rules.yml"})
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		"testdata/bad.rules.yml:5:15: group \"bad\", rule 1, \"Broken\": could not parse expression",
		"testdata/bad.rules.yml:6:17: group \"bad\", rule 2, \"not a metric {name}\": braces present",
		"testdata/bad.rules.yml:8: group \"bad\", rule 3, \"BadTemplate\": annotation \"summary\"",
		"testdata/bad.rules.yml:12: groupname: \"bad\" is repeated",
		"testdata/unknown.rules.yml:6: field frobnicate not found",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("want %q in\n%s", want, msg)
		}
	}
	if err := CheckRuleFiles([]string{"testdata/fire.rules.yml"}); err != nil {
		t.Fatal(err)
	}
	if err := CheckRuleFiles([]string{"testdata/missing.yml"}); err == nil || !strings.Contains(err.Error(), "testdata/missing.yml: no such file") {
		t.Fatalf("missing file: %v", err)
	}
	// Log rules are skipped, and the lines of the rest stay where they are.
	err = CheckRuleFiles([]string{"testdata/withlog.rules.yml"})
	if err == nil || !strings.Contains(err.Error(), "testdata/withlog.rules.yml:13:15: group \"mixed\", rule 2, \"Broken\"") {
		t.Fatalf("with log rules: %v", err)
	}
	if errs := config.Flatten(err); len(errs) != 1 {
		t.Fatalf("want 1 error, got %v", errs)
	}
}

type recordingNotifier struct {
	mu     sync.Mutex
	alerts []*notifier.Alert
}

func (n *recordingNotifier) Send(as ...*notifier.Alert) {
	n.mu.Lock()
	n.alerts = append(n.alerts, as...)
	n.mu.Unlock()
}

func (n *recordingNotifier) names() map[string]bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]bool{}
	for _, a := range n.alerts {
		out[a.Labels.Get("alertname")] = true
	}
	return out
}

func TestAlertFires(t *testing.T) {
	n := &recordingNotifier{}
	reg := prometheus.NewRegistry()
	e := newEngine(t, testConfig(t, "testdata/fire.rules.yml"), Options{Notifier: n, Registerer: reg})
	start(t, e)
	feed(t, e.Appendable(), labels.FromStrings("__name__", "test_metric", "job", "test", "instance", "a"), 10)

	eventually(t, 10*time.Second, "TestMetricHigh firing", func() error {
		a := findAlert(alerts(t, e), "TestMetricHigh")
		if a == nil || a.State != "firing" {
			return errors.New("not firing")
		}
		return nil
	})
	eventually(t, 10*time.Second, "ALERTS series", func() error {
		v, err := instantQuery(t, e, `ALERTS{alertname="TestMetricHigh",alertstate="firing"}`)
		if err != nil || len(v) != 1 {
			return errors.New("no ALERTS series yet")
		}
		return nil
	})
	v, err := instantQuery(t, e, `job:test_metric:max`)
	if err != nil || len(v) != 1 || v[0].Value[1] != "10" {
		t.Fatalf("recording rule: %v %v", v, err)
	}
	if !n.names()["TestMetricHigh"] {
		t.Fatalf("notifier got %v", n.names())
	}
	if n.names()["TestMetricPending"] {
		t.Fatal("a pending alert was sent")
	}
	e.AddAlertSource(func() []*promrules.Alert {
		return []*promrules.Alert{{State: promrules.StateFiring, Labels: labels.FromStrings("alertname", "FromLogs"), ActiveAt: time.Now()}}
	})
	if findAlert(alerts(t, e), "FromLogs") == nil {
		t.Fatal("alert of an added source missing")
	}
	a := findAlert(alerts(t, e), "TestMetricHigh")
	if a.Labels["severity"] != "warning" {
		t.Fatalf("labels: %v", a.Labels)
	}
	var rules struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Name   string `json:"name"`
				Type   string `json:"type"`
				Health string `json:"health"`
			} `json:"rules"`
		} `json:"groups"`
	}
	apiGet(t, e, "/api/v1/rules", &rules)
	if len(rules.Groups) != 1 || len(rules.Groups[0].Rules) != 3 || rules.Groups[0].Rules[1].Health != "ok" {
		t.Fatalf("rules: %+v", rules)
	}
	// The engine's own metrics say what happened.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	for _, name := range []string{"leitstand_rule_group_evaluation_duration_seconds", "leitstand_rule_alerts",
		"leitstand_rule_alerts_sent_total", "leitstand_rule_samples_appended_total", "leitstand_rule_evaluation_failures_total"} {
		if !got[name] {
			t.Errorf("metric %s missing", name)
		}
	}
}

// A pending alert keeps its `for` progress over a restart of the engine:
// the restored activeAt lies before the restart (shifted by the downtime),
// not at the first evaluation after it.
func TestPendingSurvivesRestart(t *testing.T) {
	cfg := testConfig(t, "testdata/fire.rules.yml")
	e := newEngine(t, cfg, Options{})
	start(t, e)
	stop := feed(t, e.Appendable(), labels.FromStrings("__name__", "test_metric", "job", "test", "instance", "a"), 10)

	var before time.Time
	eventually(t, 10*time.Second, "pending alert in ALERTS_FOR_STATE", func() error {
		a := findAlert(alerts(t, e), "TestMetricPending")
		if a == nil || a.State != "pending" {
			return errors.New("not pending")
		}
		before = a.ActiveAt
		v, err := instantQuery(t, e, `ALERTS_FOR_STATE{alertname="TestMetricPending"}`)
		if err != nil || len(v) != 1 {
			return errors.New("no ALERTS_FOR_STATE yet")
		}
		return nil
	})
	// Pending for a while: the restore shifts activeAt by the time from
	// the last evaluation before the stop to the restore, a few seconds.
	time.Sleep(5 * time.Second)
	stop()
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	restart := time.Now()
	start(t, e)
	feed(t, e.Appendable(), labels.FromStrings("__name__", "test_metric", "job", "test", "instance", "a"), 10)
	var after time.Time
	eventually(t, 15*time.Second, "restored pending alert", func() error {
		a := findAlert(alerts(t, e), "TestMetricPending")
		if a == nil {
			return errors.New("no alert")
		}
		// Restoration happens after the second evaluation.
		if a.ActiveAt.After(restart) {
			return errors.New("activeAt " + a.ActiveAt.String() + " is after the restart")
		}
		after = a.ActiveAt
		return nil
	})
	if down := after.Sub(before); down < 0 || down > 10*time.Second {
		t.Fatalf("activeAt before %v, after %v: shifted by %v, want the downtime", before, after, down)
	}
}

func TestReloadKeepsState(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "r.yml")
	orig, err := os.ReadFile("testdata/fire.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, filepath.Join(dir, "*.yml"))
	cfg.WatchInterval = 200 * time.Millisecond
	e := newEngine(t, cfg, Options{})
	start(t, e)
	feed(t, e.Appendable(), labels.FromStrings("__name__", "test_metric", "job", "test", "instance", "a"), 10)
	var before time.Time
	eventually(t, 10*time.Second, "pending", func() error {
		a := findAlert(alerts(t, e), "TestMetricPending")
		if a == nil {
			return errors.New("not pending")
		}
		before = a.ActiveAt
		return nil
	})
	// A broken file keeps the old rules.
	// Files are replaced whole (write and rename), as ConfigMap mounts and
	// config management do: the watcher (every 200ms) must not see one
	// truncated and half written, which would reload it as empty and drop
	// the group with its alert state.
	if err := replaceFile(file, []byte("groups: [{name: x, rules: [{alert: A, expr: 'sum('}]}]")); err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(); err == nil || !strings.Contains(err.Error(), file+":1:") {
		t.Fatalf("reload of a broken file: %v", err)
	}
	if findAlert(alerts(t, e), "TestMetricPending") == nil {
		t.Fatal("broken reload lost the alert")
	}
	// A changed group takes over the state of its alerts; the watcher
	// notices the change.
	changed := strings.Replace(string(orig), "for: 1h", "for: 2h", 1)
	if err := replaceFile(file, []byte(changed)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "reloaded rule", func() error {
		var rules struct {
			Groups []struct {
				Rules []struct {
					Name     string  `json:"name"`
					Duration float64 `json:"duration"`
				} `json:"rules"`
			} `json:"groups"`
		}
		apiGet(t, e, "/api/v1/rules", &rules)
		if len(rules.Groups) != 1 || rules.Groups[0].Rules[2].Duration != 7200 {
			return errors.New("not reloaded")
		}
		a := findAlert(alerts(t, e), "TestMetricPending")
		if a == nil {
			t.Fatal("the reload lost the alert")
		}
		if !a.ActiveAt.Equal(before) {
			t.Fatalf("activeAt changed over a reload: %v -> %v", before, a.ActiveAt)
		}
		return nil
	})
}

// replaceFile replaces path's content in one step.
func replaceFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func TestAPIErrors(t *testing.T) {
	e := newEngine(t, testConfig(t), Options{})
	start(t, e)
	for path, want := range map[string]int{
		"/api/v1/query?query=sum(":                               http.StatusBadRequest,
		"/api/v1/query?query=up&time=yesterday":                  http.StatusBadRequest,
		"/api/v1/query_range?query=up&start=1&end=0&step=1":      http.StatusBadRequest,
		"/api/v1/query_range?query=up&start=0&end=100000&step=1": http.StatusBadRequest,
		"/api/v1/series":         http.StatusBadRequest,
		"/api/v1/nothing":        http.StatusNotFound,
		"/api/v1/query?query=up": http.StatusOK,
		"/api/v1/query_range?query=up&start=0&end=100&step=10": http.StatusOK,
		"/api/v1/labels":                                          http.StatusOK,
		"/api/v1/label/__name__/values":                           http.StatusOK,
		"/api/v1/series?match[]=up":                               http.StatusOK,
		"/api/v1/status/buildinfo":                                http.StatusOK,
		"/api/v1/rules?type=alert":                                http.StatusOK,
		"/api/v1/rules?type=nonsense":                             http.StatusBadRequest,
		"/api/v1/query?query=" + url.QueryEscape(`rate(up[5m])`):  http.StatusOK,
		"/api/v1/query?query=" + url.QueryEscape(`up @ start()`):  http.StatusOK,
		"/api/v1/query?query=" + url.QueryEscape(`up offset -1m`): http.StatusOK,
	} {
		if code, body := apiGet(t, e, path, nil); code != want {
			t.Errorf("GET %s: %d, want %d: %s", path, code, want, body)
		}
	}
	rec := httptest.NewRecorder()
	e.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/write", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET /api/v1/write: %d", rec.Code)
	}
	_ = io.Discard
}
