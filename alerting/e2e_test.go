package alerting

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/leitstand/leitstand/internal/peers"
	"github.com/leitstand/leitstand/rules"
)

// TestRulesToAlertmanager: alerts of the real PromQL engine pass the
// Router to a real Alertmanager running the generated config and reach
// exactly their roles' receivers; the scoped API shows them to the owner
// only.
func TestRulesToAlertmanager(t *testing.T) {
	peers.Slow(t)
	rec := &recorder{got: map[string]int{}}
	hook := httptest.NewServer(rec)
	defer hook.Close()
	cfg := haConfig(t, hook.URL)
	cfg.Roles[1].TokenSHA256 = nil
	dir := t.TempDir()
	tok := filepath.Join(dir, "dba-token")
	if err := os.WriteFile(tok, []byte("dba-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Roles[1].TokenFiles = []string{tok}
	cfg.Roles[1].Scope = Scope{Services: []string{"postgres"}}
	gen, err := GenerateAlertmanagerConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	am, err := peers.StartAlertmanager(ctx, peers.AlertmanagerOptions{Config: string(gen)})
	peers.Check(t, err)
	peers.Cleanup(t, am)
	cfg.Alertmanagers = []string{am.URL}
	router, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := router.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer router.Shutdown(ctx)

	ruleFile := filepath.Join(dir, "rules.yml")
	if err := os.WriteFile(ruleFile, []byte(`groups:
  - name: t
    rules:
      - alert: PostgresDown
        expr: vector(1)
        labels: {service: postgres, severity: critical}
      - alert: PaymentsSlow
        expr: vector(1)
        labels: {namespace: payments, severity: warning}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	rcfg := rules.DefaultConfig(t.TempDir())
	rcfg.RuleFiles = []string{ruleFile}
	rcfg.EvaluationInterval = time.Second
	rcfg.WatchInterval = 0
	rcfg.SelfMetrics.Enabled = false
	eng, err := rules.New(rcfg, rules.Options{Notifier: router})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer eng.Shutdown(ctx)

	waitNotified(t, rec, []string{
		"dba PostgresDown role=dba firing",
		"platform-ops PostgresDown role=dba firing",
		"dev/payments PaymentsSlow role=dev/payments firing",
	})
	got := rec.snapshot()
	if len(got) != 3 {
		t.Errorf("notified beyond the owners: %v", got)
	}

	api := httptest.NewServer(http.StripPrefix("/api/v1", router.NewAPI(router.FromRules(eng.ActiveAlerts))))
	defer api.Close()
	req, _ := http.NewRequest("GET", api.URL+"/api/v1/alerts", nil)
	req.Header.Set("Authorization", "Bearer dba-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		Data struct{ Alerts []Alert } `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Data.Alerts) != 1 || out.Data.Alerts[0].Labels["alertname"] != "PostgresDown" || out.Data.Alerts[0].State != "firing" {
		t.Fatalf("dba sees %s", body)
	}
}
