package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sentrygo "github.com/getsentry/sentry-go"

	"github.com/leitstand/leitstand/internal/peers"
)

// The end-to-end tests of the log rules (issue 9): each rule kind through
// the real daemon binary, fed by the real util-linux logger or the real
// sentry-go SDK, observed on leitstand's Prometheus API and at a real
// Alertmanager. Rule files are in testdata/logrules.

// TestLogRecordRuleFeedsPromQLAlert: lines from logger are counted per
// program by a record rule; the series is in the TSDB with the right
// counts, and a PromQL alert on its increase() in the same rule file fires
// for the program with the burst only.
func TestLogRecordRuleFeedsPromQLAlert(t *testing.T) {
	peers.Slow(t)
	peers.Require(t, peers.PeerLogger)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := startDaemon(t, fmt.Sprintf("rules:\n  rule_files: [%s]\nlog_rules:\n  interval: 1s\n", lrFixture(t, "record.rules.yml")))

	// One burst of four from sshd, one line from sudo, and a line the
	// rule must not count. A new series counts its first burst: it starts
	// from 0 at its first match, or increase() would see nothing.
	lrLogger(t, ctx, d, "sshd",
		"Failed password for invalid user admin from 192.0.2.10 port 4711 ssh2",
		"Failed password for invalid user admin from 192.0.2.10 port 4712 ssh2",
		"Failed password for root from 192.0.2.10 port 4713 ssh2",
		"Accepted password for alice from 192.0.2.11 port 4714 ssh2",
		"Failed password for root from 192.0.2.10 port 4715 ssh2")
	lrLogger(t, ctx, d, "sudo", "pam_unix(sudo:auth): Failed password for bob")

	want := map[string]float64{"sshd": 4, "sudo": 1}
	var got map[string]float64
	lrPoll(t, d, 30*time.Second, "record series sshd=4, sudo=1 on /api/v1/query", func() bool {
		got = map[string]float64{}
		for _, s := range lrQuery(t, d, "log:failed_logins:count") {
			got[s.Metric["process_name"]] = s.value(t)
			if s.Metric["__name__"] != "log:failed_logins:count" || len(s.Metric) != 2 {
				t.Fatalf("series %v: want exactly __name__ and process_name", s.Metric)
			}
		}
		return fmt.Sprint(got) == fmt.Sprint(want)
	}, func() string { return fmt.Sprintf("last query: %v", got) })

	lrPoll(t, d, 30*time.Second, "FailedLoginBurst firing for sshd", func() bool {
		return lrFind(lrDaemonAlerts(t, d), "FailedLoginBurst", "process_name", "sshd") != nil
	}, nil)
	alerts := lrDaemonAlerts(t, d)
	if a := lrFind(alerts, "FailedLoginBurst", "process_name", "sudo"); a != nil {
		t.Errorf("FailedLoginBurst fired for sudo's single line: %+v", a)
	}
	if a := lrFind(alerts, "FailedLoginBurst", "process_name", "sshd"); a.State != "firing" || a.value(t) < 4 {
		t.Errorf("FailedLoginBurst for sshd: state %s value %s, want firing with an increase of at least 4", a.State, a.Value)
	}
	if inc := lrQuery(t, d, `increase(log:failed_logins:count{process_name="sshd"}[1m])`); len(inc) != 1 || inc[0].value(t) < 4 {
		t.Errorf("increase() of the sshd series: %+v, want one value >= 4", inc)
	}
	m := scrape(t, d.url)
	if v := lrMetric(t, m, "leitstand_log_rules_matches_total"); v != 5 {
		t.Errorf("leitstand_log_rules_matches_total = %v, want 5", v)
	}
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, d.stderr)
	}
}

// TestLogAlertRuleThrottlesAndResolvesAtAlertmanager: a burst of failed
// root logins from logger raises one log alert, labelled with its owning
// role, which a real Alertmanager (configured by `leitstand
// alertmanager-config` from the same role registry) delivers to the role's
// webhook once; after the rule's quiet period the alert resolves and the
// webhook gets the resolved notification.
func TestLogAlertRuleThrottlesAndResolvesAtAlertmanager(t *testing.T) {
	peers.Slow(t)
	peers.Require(t, peers.PeerLogger)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	hooks := &lrWebhook{}
	srv := httptest.NewServer(hooks)
	defer srv.Close()
	amPort, err := peers.FreeTCPPort()
	if err != nil {
		t.Fatal(err)
	}
	amURL := fmt.Sprintf("http://127.0.0.1:%d", amPort)
	alerting := fmt.Sprintf(`alerting:
  alertmanagers: [%s]
  route: {group_wait: 0s, group_interval: 1s, repeat_interval: 1h}
  roles:
    - name: security
      matchers: ['team="security"']
      receiver: {webhook_configs: [{url: '%s/security', send_resolved: true}]}
    - name: platform-ops
      matchers: ['severity="warning"']
      receiver: {webhook_configs: [{url: '%s/ops', send_resolved: true}]}
`, amURL, srv.URL, srv.URL)

	// The Alertmanager's routing comes from the daemon's own role registry.
	dir := t.TempDir()
	regFile := filepath.Join(dir, "registry.yaml")
	if err := os.WriteFile(regFile, []byte(alerting), 0o600); err != nil {
		t.Fatal(err)
	}
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	amConfig, err := execCommand(bin, "alertmanager-config", "-config", regFile, "-data", filepath.Join(dir, "data")).Output()
	if err != nil {
		t.Fatalf("leitstand alertmanager-config: %v", err)
	}
	am, err := peers.StartAlertmanager(ctx, peers.AlertmanagerOptions{Config: string(amConfig), Port: amPort})
	peers.Check(t, err)
	peers.Cleanup(t, am)

	d := startDaemon(t, fmt.Sprintf("rules:\n  rule_files: [%s]\nlog_rules:\n  interval: 1s\n%s", lrFixture(t, "alert.rules.yml"), alerting))

	const burst = 5
	lines := []string{"Failed password for alice from 203.0.113.9 port 22 ssh2"} // not root: no match
	for i := range burst {
		lines = append(lines, fmt.Sprintf("Failed password for root from 203.0.113.9 port %d ssh2", 50000+i))
	}
	sent := time.Now()
	lrLogger(t, ctx, d, "sshd", lines...)

	// Firing, at the role's webhook, with the role label.
	lrPoll(t, d, 30*time.Second, "a firing RootLoginFailed at the security webhook", func() bool {
		return hooks.find("/security", "firing") != nil
	}, hooks.dump)
	fired := hooks.find("/security", "firing")
	if a := fired.Alerts[0]; a.Labels["role"] != "security" || a.Labels["severity"] != "critical" || a.Labels["host_hostname"] == "" {
		t.Errorf("alert at the webhook: %v, want role=security, severity=critical and host_hostname", a.Labels)
	}
	if !strings.HasPrefix(fired.Alerts[0].Annotations["summary"], "failed root logins on ") {
		t.Errorf("summary annotation %q", fired.Alerts[0].Annotations["summary"])
	}

	// The whole burst is one alert group: all five matches counted in it.
	lrPoll(t, d, 20*time.Second, "the alert counting all five matches", func() bool {
		a := lrFind(lrDaemonAlerts(t, d), "RootLoginFailed", "", "")
		return a != nil && a.value(t) == burst
	}, func() string { return fmt.Sprintf("%+v", lrDaemonAlerts(t, d)) })

	// Resolved after the quiet period, at the same webhook.
	lrPoll(t, d, 30*time.Second, "a resolved RootLoginFailed at the security webhook", func() bool {
		return hooks.find("/security", "resolved") != nil
	}, hooks.dump)
	resolved := hooks.find("/security", "resolved")
	if quiet := resolved.received.Sub(sent); quiet < 3*time.Second {
		t.Errorf("resolved %v after the burst was sent, before the 3s quiet period", quiet)
	}
	if a := resolved.Alerts[0]; a.Status != "resolved" || a.Labels["alertname"] != "RootLoginFailed" || a.Labels["role"] != "security" {
		t.Errorf("resolved notification: %+v", a)
	}
	if a := lrFind(lrDaemonAlerts(t, d), "RootLoginFailed", "", ""); a != nil {
		t.Errorf("still listed on /api/v1/alerts after it resolved: %+v", a)
	}

	// Throttled: five matches made one firing notification and one
	// resolved one, both accepted by the Alertmanager; nothing went to
	// another role.
	// The router counts an alert as sent once the Alertmanager answered,
	// which may be a moment after the Alertmanager notified the webhook.
	var m string
	lrPoll(t, d, 10*time.Second, "both notifications counted as sent", func() bool {
		m = scrape(t, d.url)
		return lrMetric(t, m, "leitstand_alerts_sent_total") >= 2
	}, func() string { return lrMetricLines(m) })
	for name, want := range map[string]float64{
		"leitstand_log_rules_matches_total":       burst,
		"leitstand_log_rules_notifications_total": 2,
		"leitstand_alerts_sent_total":             2,
	} {
		if v := lrMetric(t, m, name); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	if n := hooks.count("/security", "firing"); n != 1 {
		t.Errorf("%d firing notifications at the webhook, want 1:\n%s", n, hooks.dump())
	}
	if n := hooks.count("/ops", ""); n != 0 {
		t.Errorf("%d notifications reached the platform-ops webhook:\n%s", n, hooks.dump())
	}

	// Once resolved, the next failed root login is a new alert, not held
	// back by the old throttle window.
	lrLogger(t, ctx, d, "sshd", "Failed password for root from 203.0.113.9 port 50100 ssh2")
	lrPoll(t, d, 30*time.Second, "a second firing RootLoginFailed at the security webhook", func() bool {
		return hooks.count("/security", "firing") == 2
	}, hooks.dump)
	if a := lrFind(lrDaemonAlerts(t, d), "RootLoginFailed", "", ""); a == nil || a.value(t) != 1 {
		t.Errorf("the new alert on /api/v1/alerts: %+v, want one counting 1 match", a)
	}
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, d.stderr)
	}
}

// TestLogNewValueRuleOnSentryErrorsSurvivesRestart: errors from the real
// sentry-go SDK raise a NewErrorKind alert for each error grouping key new
// to a service, not for one the service already reported, and the seen-set
// survives a restart of the daemon.
func TestLogNewValueRuleOnSentryErrorsSurvivesRestart(t *testing.T) {
	d := startDaemon(t, fmt.Sprintf(`rules:
  rule_files: [%s]
log_rules:
  interval: 1s
sentry:
  projects:
    - {id: 1, service: shop, keys: [{public_key: shopkey}]}
    - {id: 2, service: billing, keys: [{public_key: billingkey}]}
`, lrFixture(t, "newvalue.rules.yml")))
	shop := lrSentryHub(t, d, "shopkey", 1)
	billing := lrSentryHub(t, d, "billingkey", 2)

	lrCapture(t, shop, paymentDeclinedError{order: "A-1001"})
	var first *lrAlert
	lrPoll(t, d, 30*time.Second, "NewErrorKind for shop's first error", func() bool {
		first = lrFind(lrDaemonAlerts(t, d), "NewErrorKind", "service_name", "shop")
		return first != nil
	}, nil)
	payment := first.Labels["error_grouping_key"]
	if len(payment) != 32 {
		t.Fatalf("alert labels %v: want error_grouping_key of 32 hex digits", first.Labels)
	}

	// The same kind again (another order, another call site line) is not
	// new; another kind is, and so is the first kind in another service.
	lrCapture(t, shop, paymentDeclinedError{order: "A-1002"})
	lrCapture(t, shop, stockMissingError{sku: "SKU-7"})
	lrCapture(t, billing, paymentDeclinedError{order: "B-1"})
	keys := func() map[string]bool {
		out := map[string]bool{}
		for _, a := range lrDaemonAlerts(t, d) {
			if a.Labels["alertname"] == "NewErrorKind" {
				out[a.Labels["service_name"]+"/"+a.Labels["error_grouping_key"]] = true
			}
		}
		return out
	}
	lrPoll(t, d, 30*time.Second, "four errors matched and three NewErrorKind alerts", func() bool {
		return lrMetric(t, scrape(t, d.url), "leitstand_log_rules_matches_total") == 4 && len(keys()) == 3
	}, func() string { return fmt.Sprintf("alerts %v\n%s", keys(), lrMetricLines(scrape(t, d.url))) })
	got := keys()
	if !got["shop/"+payment] || !got["billing/"+payment] {
		t.Errorf("alerts %v: want shop and billing with the payment error's key %s", got, payment)
	}
	stock := ""
	for k := range got {
		if s, ok := strings.CutPrefix(k, "shop/"); ok && s != payment {
			stock = s
		}
	}
	if n := lrMetric(t, scrape(t, d.url), "leitstand_log_rules_notifications_total"); n != 3 {
		t.Errorf("leitstand_log_rules_notifications_total = %v, want 3 (the repeated error must not notify)", n)
	}

	// Restart: the seen-set comes back from DATA/logrules.
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, d.stderr)
	}
	if _, err := os.Stat(filepath.Join(d.data, "logrules", "logrules-state.json")); err != nil {
		t.Fatalf("no state written at shutdown: %v", err)
	}
	d = lrRestart(t, d)
	shop = lrSentryHub(t, d, "shopkey", 1)
	billing = lrSentryHub(t, d, "billingkey", 2)
	lrCapture(t, shop, paymentDeclinedError{order: "A-1003"})
	lrCapture(t, billing, stockMissingError{sku: "SKU-8"})
	lrPoll(t, d, 30*time.Second, "two errors matched after the restart and billing's new kind alerting", func() bool {
		return lrMetric(t, scrape(t, d.url), "leitstand_log_rules_matches_total") == 2 &&
			keys()["billing/"+stock]
	}, func() string { return fmt.Sprintf("alerts %v\n%s", keys(), lrMetricLines(scrape(t, d.url))) })
	if n := lrMetric(t, scrape(t, d.url), "leitstand_log_rules_notifications_total"); n != 1 {
		t.Errorf("leitstand_log_rules_notifications_total = %v after the restart, want 1: shop's payment error was seen before it", n)
	}
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, d.stderr)
	}
}

// Two error types, so that the SDK's exceptions differ in type and the
// receiver gives them different grouping keys.
type paymentDeclinedError struct{ order string }

func (e paymentDeclinedError) Error() string { return "payment declined for order " + e.order }

type stockMissingError struct{ sku string }

func (e stockMissingError) Error() string { return "no stock left of " + e.sku }

// lrCapture sends err through the SDK and waits for the delivery. Every
// error is captured here, so the stack frames (part of the grouping) are
// the same for every call.
func lrCapture(t *testing.T, hub *sentrygo.Hub, err error) {
	t.Helper()
	hub.CaptureException(err)
	if !hub.Flush(10 * time.Second) {
		t.Fatal("the SDK did not deliver within 10s")
	}
}

func lrSentryHub(t *testing.T, d *daemonProcess, key string, project int) *sentrygo.Hub {
	t.Helper()
	dsn := fmt.Sprintf("%s/%d", strings.Replace(d.url, "http://", "http://"+key+"@", 1), project)
	client, err := sentrygo.NewClient(sentrygo.ClientOptions{Dsn: dsn, Environment: "test", Release: "shop@1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	return sentrygo.NewHub(client, sentrygo.NewScope())
}

// lrRestart starts the binary again with the stopped daemon's command
// line: the same config, ports and data directory.
func lrRestart(t *testing.T, old *daemonProcess) *daemonProcess {
	t.Helper()
	d := &daemonProcess{url: old.url, syslog: old.syslog, data: old.data, stderr: &bytes.Buffer{}, exited: make(chan error, 1)}
	d.cmd = execCommand(old.cmd.Path, old.cmd.Args[1:]...)
	d.cmd.Stderr = &lockedWriter{w: d.stderr}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			<-d.exited
		}
	})
	waitReady(t, d)
	return d
}

// lrFixture returns the absolute path of a rule file in testdata/logrules.
func lrFixture(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", "logrules", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// lrLogger sends lines to the daemon's TCP syslog listener with the real
// logger, one message per line, tagged tag.
func lrLogger(t *testing.T, ctx context.Context, d *daemonProcess, tag string, lines ...string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "lines")
	if err := os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(d.syslog)
	if _, err := peers.Logger(ctx, "--rfc5424", "-n", host, "-P", port, "-T", "--octet-count",
		"-t", tag, "-p", "auth.notice", "-f", f); err != nil {
		t.Fatal(err)
	}
}

// lrPoll calls ok until it returns true or the timeout passes; then the
// test fails with what and, if given, detail().
func lrPoll(t *testing.T, d *daemonProcess, timeout time.Duration, what string, ok func() bool, detail func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			msg := ""
			if detail != nil {
				msg = detail()
			}
			t.Fatalf("no %s within %v: %s\ndaemon log:\n%s", what, timeout, msg, d.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type lrAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	Value       string            `json:"value"`
}

func (a *lrAlert) value(t *testing.T) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(a.Value, 64)
	if err != nil {
		t.Fatalf("alert value %q: %v", a.Value, err)
	}
	return v
}

// lrDaemonAlerts reads /api/v1/alerts.
func lrDaemonAlerts(t *testing.T, d *daemonProcess) []lrAlert {
	t.Helper()
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Alerts []lrAlert `json:"alerts"`
		} `json:"data"`
	}
	lrGetJSON(t, d.url+"/api/v1/alerts", &r)
	if r.Status != "success" {
		t.Fatalf("/api/v1/alerts: status %q", r.Status)
	}
	return r.Data.Alerts
}

// lrFind returns the alert named name whose labels have the given
// name/value pairs (an empty value: the label is set to anything non-empty
// or, with an empty name, no condition).
func lrFind(alerts []lrAlert, name string, kv ...string) *lrAlert {
next:
	for i := range alerts {
		a := &alerts[i]
		if a.Labels["alertname"] != name {
			continue
		}
		for j := 0; j+1 < len(kv); j += 2 {
			if kv[j] == "" {
				continue
			}
			if v := a.Labels[kv[j]]; v == "" || kv[j+1] != "" && v != kv[j+1] {
				continue next
			}
		}
		return a
	}
	return nil
}

type lrSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s lrSample) value(t *testing.T) float64 {
	t.Helper()
	str, _ := s.Value[1].(string)
	v, err := strconv.ParseFloat(str, 64)
	if err != nil {
		t.Fatalf("sample %v: %v", s, err)
	}
	return v
}

// lrQuery runs an instant query on the daemon's Prometheus API.
func lrQuery(t *testing.T, d *daemonProcess, q string) []lrSample {
	t.Helper()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string     `json:"resultType"`
			Result     []lrSample `json:"result"`
		} `json:"data"`
	}
	lrGetJSON(t, d.url+"/api/v1/query?query="+url.QueryEscape(q), &r)
	if r.Status != "success" || r.Data.ResultType != "vector" {
		t.Fatalf("query %s: status %q, type %q: %s", q, r.Status, r.Data.ResultType, r.Error)
	}
	return r.Data.Result
}

func lrGetJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %d %v: %s", u, resp.StatusCode, err, b)
	}
}

// lrMetric returns the value of an unlabelled series in a /metrics page
// (0 when absent, as an unincremented counter of a vector is).
func lrMetric(t *testing.T, page, name string) float64 {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(page))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			return v
		}
	}
	return 0
}

// lrMetricLines are the log rule and alert lines of a /metrics page, for
// failure messages.
func lrMetricLines(page string) string {
	var out []string
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(l, "leitstand_log_rules_") || strings.HasPrefix(l, "leitstand_alerts_") || strings.HasPrefix(l, "leitstand_notifications_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// lrWebhook is an Alertmanager webhook receiver that keeps every
// notification with the path it came to.
type lrWebhook struct {
	mu    sync.Mutex
	notes []*lrNotification
}

type lrNotification struct {
	path     string
	received time.Time
	Status   string `json:"status"`
	Alerts   []struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"alerts"`
}

func (h *lrWebhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := &lrNotification{path: r.URL.Path, received: time.Now()}
	if err := json.NewDecoder(r.Body).Decode(n); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.notes = append(h.notes, n)
	h.mu.Unlock()
}

// find returns the first notification to path with status.
func (h *lrWebhook) find(path, status string) *lrNotification {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, n := range h.notes {
		if n.path == path && n.Status == status && len(n.Alerts) > 0 {
			return n
		}
	}
	return nil
}

// count counts the notifications to path with status ("": any).
func (h *lrWebhook) count(path, status string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := 0
	for _, n := range h.notes {
		if n.path == path && (status == "" || n.Status == status) {
			c++
		}
	}
	return c
}

func (h *lrWebhook) dump() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, _ := json.Marshal(h.notes)
	var paths []string
	for _, n := range h.notes {
		paths = append(paths, n.path)
	}
	return fmt.Sprintf("webhook notifications to %v: %s", paths, b)
}
