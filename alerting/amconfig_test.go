package alerting

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/notifier"

	"github.com/leitstand/leitstand/internal/peers"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestGenerateAlertmanagerConfigGolden(t *testing.T) {
	got, err := GenerateAlertmanagerConfig(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	const golden = "testdata/alertmanager.golden.yml"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("generated config differs from %s (run with -update):\n%s", golden, got)
	}
}

// routingCases are alerts as rules produce them (no role label yet).
var routingCases = []map[string]string{
	{"alertname": "PostgresDown", "service": "postgres", "severity": "critical", "instance": "db-0"},
	{"alertname": "PostgresSlow", "service": "postgres", "severity": "warning"},
	{"alertname": "PaymentsErrors", "namespace": "payments", "severity": "critical"},
	{"alertname": "PaymentsLatency", "namespace": "payments", "severity": "warning"},
	{"alertname": "RedisInPayments", "namespace": "payments", "service": "redis", "severity": "critical"},
	{"alertname": "NodeDown", "namespace": "kube-system", "severity": "critical"},
	{"alertname": "AcmeQuota", "tenant": "acme", "severity": "warning"},
	{"alertname": "AcmeInfo", "tenant": "acme", "severity": "info"},
	{"alertname": "Orphan", "namespace": "somewhere"},
	{"alertname": "Weird", "namespace": "kube-systemx"},
}

// TestAmtoolAgreesWithRouter: for every copy the Router makes of each
// case, amtool's routing through the generated config names the same
// receivers as Config.Receivers.
func TestAmtoolAgreesWithRouter(t *testing.T) {
	peers.Require(t, peers.PeerAlertmanager)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	amtool, err := peers.Bin(ctx, "amtool")
	peers.Check(t, err)
	cfg := testConfig(t)
	gen, err := GenerateAlertmanagerConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "alertmanager.yml")
	if err := os.WriteFile(path, gen, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, amtool, "check-config", path).CombinedOutput(); err != nil {
		t.Fatalf("amtool check-config: %v\n%s", err, out)
	}
	r, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown(ctx)
	checked := 0
	var table []string
	for _, lset := range routingCases {
		copies, _ := r.Label(&notifier.Alert{Labels: labels.FromMap(lset)})
		for _, c := range copies {
			mine := cfg.Receivers(func(k string) string { return c.Labels[k] })
			args := []string{"config", "routes", "test", "--config.file=" + path}
			keys := make([]string, 0, len(c.Labels))
			for k := range c.Labels {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				args = append(args, k+"="+c.Labels[k])
			}
			out, err := exec.CommandContext(ctx, amtool, args...).Output()
			if err != nil {
				t.Fatalf("amtool %v: %v", args, err)
			}
			theirs := strings.Split(strings.TrimSpace(string(out)), ",")
			if !slices.Equal(theirs, mine) {
				t.Errorf("%v: amtool routes to %v, Router to %v", c.Labels, theirs, mine)
			}
			table = append(table, lset["alertname"]+" role="+c.Labels[RoleLabel]+" -> "+strings.Join(mine, ","))
			checked++
		}
	}
	want := []string{
		"PostgresDown role=dba -> platform-ops,dba",
		"PostgresSlow role=dba -> dba",
		"PaymentsErrors role=dev/payments -> platform-ops,dev/payments",
		"PaymentsLatency role=dev/payments -> dev/payments",
		"RedisInPayments role=dba -> platform-ops,dba",
		"RedisInPayments role=dev/payments -> platform-ops,dev/payments",
		"NodeDown role=platform-ops -> platform-ops",
		"AcmeQuota role=tenant-admin/acme -> tenant-admin/acme",
		"AcmeInfo role=platform-ops -> platform-ops",
		"Orphan role=platform-ops -> platform-ops",
		"Weird role=platform-ops -> platform-ops",
	}
	if !slices.Equal(table, want) {
		t.Errorf("routing table:\n%s\nwant:\n%s", strings.Join(table, "\n"), strings.Join(want, "\n"))
	}
	t.Logf("amtool agreed with the Router on %d alert copies", checked)
}
