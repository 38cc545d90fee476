package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/leitstand/leitstand/internal/peers"
)

// TestLogRuleAlertReachesAlertmanagerWithItsRole: a syslog line from the
// real logger matches a log rule in the stream; the alert is labelled with
// its owning role and arrives at a real Alertmanager.
func TestLogRuleAlertReachesAlertmanagerWithItsRole(t *testing.T) {
	peers.Slow(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	am, err := peers.StartAlertmanager(ctx, peers.AlertmanagerOptions{})
	peers.Check(t, err)
	peers.Cleanup(t, am)

	dir := t.TempDir()
	ruleFile := filepath.Join(dir, "security.rules.yml")
	os.WriteFile(ruleFile, []byte(`groups:
  - name: security
    rules:
      - log: '{event.dataset="syslog"} |= "Failed password" |~ "for (invalid user )?root"'
        alert: RootLoginFailed
        by: [host.hostname]
        labels: {severity: critical, team: security}
`), 0o600)
	d := startDaemon(t, fmt.Sprintf(`rules:
  rule_files: [%s]
alerting:
  alertmanagers: [%s]
  roles:
    - name: security
      matchers: ['team="security"']
      receiver: {name: security-pager}
    - name: platform-ops
      matchers: ['severity="warning"']
      receiver: {name: ops}
`, ruleFile, am.URL))

	host, port, _ := net.SplitHostPort(d.syslog)
	if _, err := peers.Logger(ctx, "--rfc5424", "-n", host, "-P", port, "-T", "--octet-count", "-t", "sshd",
		"-p", "auth.notice", "Failed password for root from 203.0.113.9 port 22 ssh2"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(am.URL + "/api/v2/alerts")
		if err == nil {
			var alerts []struct {
				Labels map[string]string `json:"labels"`
			}
			json.NewDecoder(resp.Body).Decode(&alerts)
			resp.Body.Close()
			for _, a := range alerts {
				if a.Labels["alertname"] == "RootLoginFailed" {
					if a.Labels["role"] != "security" {
						t.Fatalf("alert arrived with role %q, want security: %v", a.Labels["role"], a.Labels)
					}
					if code := d.stop(t); code != 0 {
						t.Fatalf("exit %d", code)
					}
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log-rule alert never reached Alertmanager:\n%s", d.stderr)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
