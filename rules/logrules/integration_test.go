package logrules

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/leitstand/leitstand/rules"
)

// TestWithRuleEngine: record series land in the embedded TSDB where PromQL
// sees them, and log alerts show in the rule engine's /api/v1/alerts.
func TestWithRuleEngine(t *testing.T) {
	dir := t.TempDir()
	rcfg := rules.DefaultConfig(dir)
	rcfg.SelfMetrics.Enabled = false
	re, err := rules.New(rcfg, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := re.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer re.Shutdown(ctx)

	le, err := New(DefaultConfig(dir), Options{Appendable: re.Appendable()})
	if err != nil {
		t.Fatal(err)
	}
	if err := le.LoadFiles([]string{"testdata/log.rules.yml"}); err != nil {
		t.Fatal(err)
	}
	re.AddAlertSource(le.Alerts)
	h := &harness{e: le}
	h.feed(ev("Failed password for root", "event.dataset", "syslog", "host.name", "a"),
		ev("Failed password for bob", "event.dataset", "syslog", "host.name", "a"))
	now := time.Now()
	if err := le.Tick(ctx, now); err != nil {
		t.Fatal(err)
	}
	q, err := re.QueryEngine().NewInstantQuery(ctx, re.Queryable(), nil, `sum(log:failed_logins:count{host_name="a"})`, now)
	if err != nil {
		t.Fatal(err)
	}
	res := q.Exec(ctx)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if got := res.String(); !strings.Contains(got, "=> 2 @") {
		t.Errorf("query: %s", got)
	}
	q.Close()

	srv := httptest.NewServer(re.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/api/v1/alerts")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "RootLoginFailed") {
		t.Errorf("/api/v1/alerts: %s", body)
	}
}
