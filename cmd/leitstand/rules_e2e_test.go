package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestRulesThroughTheDaemon: the daemon appends its own metrics to the
// embedded TSDB, evaluates a rule file over them, serves the alert on the
// Prometheus API, and picks up a changed rule file on SIGHUP.
func TestRulesThroughTheDaemon(t *testing.T) {
	dir := t.TempDir()
	ruleFile := filepath.Join(dir, "self.rules.yml")
	writeRules := func(alerts ...string) {
		body := "groups:\n  - name: self\n    interval: 1s\n    rules:\n"
		for _, a := range alerts {
			body += fmt.Sprintf("      - alert: %s\n        expr: leitstand_build_info == 1\n        labels: {severity: info}\n", a)
		}
		if err := os.WriteFile(ruleFile, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeRules("LeitstandRuns")
	d := startDaemon(t, fmt.Sprintf("rules:\n  rule_files: [%s]\n  watch_interval: 0s\n  self_metrics:\n    interval: 1s\n", ruleFile))

	waitForAlert(t, d, "LeitstandRuns")
	writeRules("LeitstandRuns", "LeitstandStillRuns")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitForAlert(t, d, "LeitstandStillRuns")
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func waitForAlert(t *testing.T, d *daemonProcess, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(d.url + "/api/v1/alerts")
		if err == nil {
			var r struct {
				Data struct {
					Alerts []struct {
						Labels map[string]string `json:"labels"`
						State  string            `json:"state"`
					} `json:"alerts"`
				} `json:"data"`
			}
			json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			for _, a := range r.Data.Alerts {
				if a.Labels["alertname"] == name && a.State == "firing" {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("alert %s not firing after 30s:\n%s", name, d.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
