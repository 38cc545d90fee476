package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/notifier"

	"github.com/leitstand/leitstand/internal/config"
	"github.com/leitstand/leitstand/internal/peers"
)

// recorder is the webhook receiver of every role: /hook/<role> records
// which receiver was notified of which alert in which state.
type recorder struct {
	mu  sync.Mutex
	got map[string]int // "receiver alertname role=... status"
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var msg struct {
		Receiver string `json:"receiver"`
		Alerts   []struct {
			Status string            `json:"status"`
			Labels map[string]string `json:"labels"`
		} `json:"alerts"`
	}
	if err := json.NewDecoder(r.Body).Decode(&msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, a := range msg.Alerts {
		rec.got[fmt.Sprintf("%s %s role=%s %s", msg.Receiver, a.Labels["alertname"], a.Labels[RoleLabel], a.Status)]++
	}
}

func (rec *recorder) snapshot() map[string]int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := make(map[string]int, len(rec.got))
	for k, v := range rec.got {
		out[k] = v
	}
	return out
}

func haConfig(t *testing.T, hook string) Config {
	t.Helper()
	src := fmt.Sprintf(`
default_role: platform-ops
route: {group_wait: 0s, group_interval: 3s, repeat_interval: 1h}
roles:
  - name: platform-ops
    matchers: ['namespace="kube-system"']
    receiver: {webhook_configs: [{url: "%[1]s/hook/platform-ops"}]}
  - name: dba
    matchers: ['service="postgres"']
    receiver: {webhook_configs: [{url: "%[1]s/hook/dba"}]}
    escalate: [{matchers: ['severity="critical"'], to: platform-ops}]
  - name: dev/payments
    matchers: ['namespace="payments"']
    receiver: {webhook_configs: [{url: "%[1]s/hook/payments"}]}
  - name: security
    matchers: ['namespace="vault"']
    receiver: {webhook_configs: [{url: "%[1]s/hook/security"}]}
`, hook)
	cfg := DefaultConfig()
	if _, err := config.Decode("ha.yml", []byte(src), &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestHAPairDeliversEachNotificationOnce runs two real Alertmanagers as an
// HA pair and two Routers (two leitstand replicas) sending the same alerts
// to both: every role's receiver, and only its, is notified once of each
// firing and once of each resolved alert.
func TestHAPairDeliversEachNotificationOnce(t *testing.T) {
	peers.Slow(t)
	rec := &recorder{got: map[string]int{}}
	hook := httptest.NewServer(rec)
	defer hook.Close()
	cfg := haConfig(t, hook.URL)
	gen, err := GenerateAlertmanagerConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Alertmanager's HA de-duplication holds when a group's interval is
	// longer than the peer timeout (5m against 15s by default): a member
	// that flushed a stale snapshot and waited its turn would otherwise
	// repeat a firing notification the other already resolved.
	const peerTimeout = time.Second
	cluster, err := peers.StartAlertmanagerCluster(ctx, 2, peers.AlertmanagerOptions{
		Config:    string(gen),
		ExtraArgs: []string{"--cluster.peer-timeout=" + peerTimeout.String()},
	})
	peers.Check(t, err)
	defer func() {
		if err := cluster.Stop(); err != nil {
			t.Error(err)
		}
	}()
	cfg.Alertmanagers = cluster.URLs()
	var replicas []*Router
	for range 2 {
		r, err := New(cfg, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer r.Shutdown(ctx)
		replicas = append(replicas, r)
	}
	start := time.Now().Add(-time.Minute)
	mk := func(endsAt time.Time, kv ...string) *notifier.Alert {
		return &notifier.Alert{Labels: labels.FromStrings(kv...), StartsAt: start, EndsAt: endsAt,
			GeneratorURL: "http://leitstand/graph"}
	}
	send := func(endsAt time.Time) {
		for _, r := range replicas {
			r.Send(
				mk(endsAt, "alertname", "PostgresDown", "service", "postgres", "severity", "critical", "instance", "db-0"),
				mk(endsAt, "alertname", "PaymentsLatency", "namespace", "payments", "severity", "warning"),
				mk(endsAt, "alertname", "Orphan", "namespace", "elsewhere", "severity", "warning"),
			)
		}
	}
	firing := []string{
		"dba PostgresDown role=dba firing",
		"dev/payments PaymentsLatency role=dev/payments firing",
		"platform-ops Orphan role=platform-ops firing",
		"platform-ops PostgresDown role=dba firing",
	}
	resolved := make([]string, len(firing))
	for i, f := range firing {
		resolved[i] = strings.TrimSuffix(f, "firing") + "resolved"
	}

	send(time.Now().Add(4 * time.Minute))
	waitNotified(t, rec, firing)
	time.Sleep(3*time.Second + 2*peerTimeout) // a group interval and the second member's turn
	send(time.Now())                          // resolved, as the rule engine sends it
	all := append(slices.Clone(firing), resolved...)
	sort.Strings(all)
	waitNotified(t, rec, all)
	time.Sleep(3*time.Second + 2*peerTimeout)
	got := rec.snapshot()
	var keys []string
	for k, n := range got {
		keys = append(keys, fmt.Sprintf("%s x%d", k, n))
	}
	sort.Strings(keys)
	var want []string
	for _, k := range all {
		want = append(want, k+" x1")
	}
	if !slices.Equal(keys, want) {
		t.Fatalf("notifications:\n%s\nwant:\n%s", strings.Join(keys, "\n"), strings.Join(want, "\n"))
	}
}

// waitNotified waits until every key has arrived at least once.
func waitNotified(t *testing.T, rec *recorder, keys []string) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		got := rec.snapshot()
		missing := 0
		for _, k := range keys {
			if got[k] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 45s still missing %d of %v; got %v", missing, keys, got)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
