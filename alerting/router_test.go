package alerting

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/notifier"
	promrules "github.com/prometheus/prometheus/rules"
)

// fakeAM records what reaches /api/v2/alerts; the first failures requests
// get a 503.
type fakeAM struct {
	*httptest.Server
	mu       sync.Mutex
	got      []Alert
	failures atomic.Int32
}

func newFakeAM(t *testing.T, failures int32) *fakeAM {
	f := &fakeAM{}
	f.failures.Store(failures)
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v2/alerts" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		if f.failures.Add(-1) >= 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		var as []Alert
		if err := json.NewDecoder(r.Body).Decode(&as); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.got = append(f.got, as...)
		f.mu.Unlock()
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAM) alerts() []Alert {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Alert(nil), f.got...)
}

func testConfig(t testing.TB) Config {
	cfg, err := loadConfig(t, "testdata/roles.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func alert(kv ...string) *notifier.Alert {
	return &notifier.Alert{Labels: labels.FromStrings(kv...), StartsAt: time.Now(), EndsAt: time.Now().Add(4 * time.Minute)}
}

func TestRouterLabelsAndSendsToEveryAlertmanager(t *testing.T) {
	am1, am2 := newFakeAM(t, 2), newFakeAM(t, 0)
	cfg := testConfig(t)
	cfg.Alertmanagers = []string{am1.URL, am2.URL}
	reg := prometheus.NewPedanticRegistry()
	r, err := New(cfg, Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.Send(
		alert("alertname", "PGDown", "service", "postgres", "namespace", "payments", "severity", "critical"),
		alert("alertname", "Lost", "namespace", "nowhere"),
		alert("alertname", "Tagged", "role", "security-less", "tenant", "acme", "severity", "warning"),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, am := range []*fakeAM{am1, am2} {
		var got []string
		for _, a := range am.alerts() {
			got = append(got, a.Labels["alertname"]+"/"+a.Labels[RoleLabel])
		}
		slices.Sort(got)
		want := []string{"Lost/platform-ops", "PGDown/dba", "PGDown/dev/payments", "Tagged/tenant-admin/acme"}
		if !slices.Equal(got, want) {
			t.Errorf("%s got %v, want %v", am.URL, got, want)
		}
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP leitstand_alerts_sent_total Role-labelled alerts (firing and resolved, resends included) delivered to at least one Alertmanager.
# TYPE leitstand_alerts_sent_total counter
leitstand_alerts_sent_total 4
# HELP leitstand_alerts_unowned_total Alerts no role owns, routed to the default role.
# TYPE leitstand_alerts_unowned_total counter
leitstand_alerts_unowned_total 1
`), "leitstand_alerts_sent_total", "leitstand_alerts_unowned_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.ToFloat64(r.m.errors.WithLabelValues(am1.URL)); n != 0 {
		t.Errorf("errors after successful retry: %v", n)
	}
	if n, err := testutil.GatherAndCount(reg, "leitstand_alerts"); err != nil || n != 4 {
		t.Errorf("leitstand_alerts series: %d %v", n, err)
	}
}

// TestRouterCountsPendingAlerts: alerts whose for: has not passed never
// reach the router, yet the dashboards show them per role; WatchRules
// counts them from the rule engines.
func TestRouterCountsPendingAlerts(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	r, err := New(testConfig(t), Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ruleAlert := func(state promrules.AlertState, kv ...string) *promrules.Alert {
		return &promrules.Alert{State: state, Labels: labels.FromStrings(kv...), ActiveAt: time.Now()}
	}
	r.WatchRules(func() []*promrules.Alert {
		return []*promrules.Alert{
			ruleAlert(promrules.StatePending, "alertname", "PGSlow", "service", "postgres", "namespace", "payments", "severity", "warning"),
			ruleAlert(promrules.StatePending, "alertname", "Lost", "namespace", "nowhere", "severity", "info"),
			// Firing alerts are counted from what the router sent.
			ruleAlert(promrules.StateFiring, "alertname", "PGDown", "service", "postgres", "severity", "critical"),
		}
	})
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP leitstand_alerts Alerts per role, state and severity: pending (the rule's condition holds, its for: has not passed), firing, and resolved in the last 15m.
# TYPE leitstand_alerts gauge
leitstand_alerts{role="dba",severity="warning",state="pending"} 1
leitstand_alerts{role="dev/payments",severity="warning",state="pending"} 1
leitstand_alerts{role="platform-ops",severity="info",state="pending"} 1
`), "leitstand_alerts"); err != nil {
		t.Error(err)
	}
}

func TestRouterQueueBoundAndErrors(t *testing.T) {
	down := newFakeAM(t, 1<<30)
	cfg := testConfig(t)
	cfg.Alertmanagers = []string{down.URL}
	cfg.QueueCapacity = 2
	cfg.Retries = 1
	r, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		r.Send(alert("alertname", "X", "namespace", "payments"))
	}
	if n := testutil.ToFloat64(r.m.dropped); n != 3 {
		t.Errorf("dropped %v, want 3", n)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(r.m.errors.WithLabelValues(down.URL)); n != 2 {
		t.Errorf("errors %v, want 2", n)
	}
	r.Send(alert("alertname", "late"))
	if n := testutil.ToFloat64(r.m.dropped); n != 4 {
		t.Errorf("dropped after shutdown %v, want 4", n)
	}
}

func TestRouterLifecycle(t *testing.T) {
	for _, name := range []string{"shutdown without start", "start shutdown twice"} {
		t.Run(name, func(t *testing.T) {
			r, err := New(testConfig(t), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(name, "start") {
				if err := r.Start(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			for range 2 {
				if err := r.Shutdown(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if err := r.Start(context.Background()); err == nil {
				t.Fatal("start after shutdown accepted")
			}
		})
	}
}

func TestReceivers(t *testing.T) {
	cfg := testConfig(t)
	for _, c := range []struct {
		labels map[string]string
		want   []string
	}{
		{map[string]string{"role": "dba", "severity": "critical"}, []string{"platform-ops", "dba"}},
		{map[string]string{"role": "dba", "severity": "warning"}, []string{"dba"}},
		{map[string]string{"role": "nobody"}, []string{"platform-ops"}},
		{map[string]string{}, []string{"platform-ops"}},
	} {
		get := func(k string) string { return c.labels[k] }
		if got := cfg.Receivers(get); !slices.Equal(got, c.want) {
			t.Errorf("%v: got %v want %v", c.labels, got, c.want)
		}
	}
}
