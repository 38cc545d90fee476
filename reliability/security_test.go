package reliability

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// check runs `leitstand check` on config and returns its exit code and
// output.
func check(t testing.TB, config string) (int, string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "leitstand.yaml")
	if err := os.WriteFile(f, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "check", "-config", f, "-data", t.TempDir()).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// TestSecurityOffLoopback: once a listener leaves loopback every endpoint
// but the health checks and /metrics must ask for credentials. The suite
// binds loopback only, so it uses two judges: `leitstand check`, which must
// refuse listeners off loopback that authenticate no one, and a daemon whose
// http.listen names this machine's host name — not an address leitstand
// counts as loopback, yet resolving to 127.0.0.1 only — probed endpoint by
// endpoint without and with credentials.
func TestSecurityOffLoopback(t *testing.T) {
	suite.Require(t)
	rec := scenario(t, 50, "Security: authentication off loopback")
	cert, key := writeCert(t, t.TempDir())
	cases := []struct {
		name   string
		config string
		ok     bool // what leitstand check must answer
	}{
		{"HTTP on 0.0.0.0 without any authentication", `http:
  listen: 0.0.0.0:18080
syslog:
  enabled: false
`, false},
		{"syslog TCP on 0.0.0.0 without client certificates or allowed_sources", `syslog:
  listeners:
    - {protocol: tcp, address: "0.0.0.0:15514"}
`, false},
		{"HTTP on 0.0.0.0 with ingest bearer tokens (the other endpoints guarded at run time)", `http:
  listen: 0.0.0.0:18080
ingest:
  auth:
    tokens: ["rel-token-0123456789abcdef"]
syslog:
  enabled: false
`, true},
		{"HTTP on 0.0.0.0 with mutual TLS (client certificates authenticate every request)", `http:
  listen: 0.0.0.0:18080
  tls:
    cert_file: @CERT@
    key_file: @KEY@
    client_ca_file: @CERT@
syslog:
  enabled: false
`, true},
	}
	for _, c := range cases {
		cfg := strings.NewReplacer("@CERT@", cert, "@KEY@", key).Replace(c.config)
		code, out := check(t, cfg)
		got := code == 0
		verdict := "accepted"
		if !got {
			verdict = "refused: " + firstProblem(out)
		}
		rec.input("`leitstand check`, %s → %s", c.name, verdict)
		if got != c.ok {
			t.Errorf("leitstand check on %s: exit %d, want the config %s\n%s", c.name, code, map[bool]string{true: "accepted", false: "refused"}[c.ok], out)
		}
	}

	host := loopbackHostName(t)
	const ingestToken, allToken, shopToken = "rel-ingest-token-5f1e2d3c4b5a", "rel-role-all-token-9a8b7c6d5e", "rel-role-shop-token-1a2b3c4d5e"
	dir := t.TempDir()
	allFile, shopFile := filepath.Join(dir, "all.token"), filepath.Join(dir, "shop.token")
	os.WriteFile(allFile, []byte(allToken), 0o600)
	os.WriteFile(shopFile, []byte(shopToken), 0o600)
	d := newDaemon(t, "leitstand", strings.Replace(fmt.Sprintf(`http:
  listen: @HTTP@
ingest:
  auth:
    tokens: ["%s"]
syslog:
  enabled: false
alerting:
  roles:
    - name: platform-ops
      receiver: {name: ops}
      scope: {all: true}
      token_files: [%s]
    - name: dev/shop
      matchers: ['namespace="shop"']
      receiver: {name: shop}
      scope: {namespaces: [shop]}
      token_files: [%s]
`, ingestToken, allFile, shopFile), "listen: @HTTP@", "listen: "+host+":@PORT@", 1), daemonOptions{})
	type probe struct{ method, path, body, token string }
	open := map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}
	for _, p := range []probe{
		{"POST", "/v1/ingest", `{"message":"x"}`, ""},
		{"POST", "/v1/ingest", `{"message":"x"}`, ingestToken},
		{"POST", "/api/1/envelope/?sentry_key=dev", "{}\n", ""},
		{"GET", "/api/v1/query?query=up", "", ""},
		{"GET", "/api/v1/query?query=up", "", shopToken},
		{"GET", "/api/v1/query?query=up", "", allToken},
		{"POST", "/api/v1/write", "", ""},
		{"POST", "/api/v1/write", "", ingestToken},
		{"GET", "/api/v1/rules", "", ""},
		{"GET", "/api/v1/alerts", "", ""},
		{"GET", "/api/v1/alerts", "", shopToken},
		{"POST", "/api/v1/silences", `{"matchers":[]}`, ""},
		{"GET", "/metrics", "", ""},
		{"GET", "/healthz", "", ""},
		{"GET", "/readyz", "", ""},
	} {
		req, _ := http.NewRequest(p.method, d.url+p.path, strings.NewReader(p.body))
		who := "without credentials"
		if p.token != "" {
			req.Header.Set("Authorization", "Bearer "+p.token)
			who = "with " + map[string]string{ingestToken: "an ingest token", allToken: "a scope-all role token", shopToken: "the dev/shop role token"}[p.token]
		}
		resp, err := insecureClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		rec.input("daemon listening on %s:PORT (off loopback for leitstand), %s %s %s → %d", host, p.method, p.path, who, resp.StatusCode)
		path, _, _ := strings.Cut(p.path, "?")
		switch {
		case p.token == "" && !open[path] && resp.StatusCode != http.StatusUnauthorized:
			t.Errorf("%s %s without credentials off loopback: %d, want 401", p.method, path, resp.StatusCode)
		case p.token == shopToken && path == "/api/v1/query" && resp.StatusCode != http.StatusForbidden:
			t.Errorf("the Prometheus API with a scoped role's token: %d, want 403", resp.StatusCode)
		case (p.token == allToken || p.token == ingestToken && path == "/v1/ingest") && resp.StatusCode/100 != 2:
			t.Errorf("%s %s %s: %d, want 2xx", p.method, path, who, resp.StatusCode)
		case p.token == "" && open[path] && resp.StatusCode != http.StatusOK:
			t.Errorf("%s: %d, want 200 (probes and scrapers need no credentials)", path, resp.StatusCode)
		}
	}
	rec.Faults = "configs that leave loopback, judged by `leitstand check`; a running daemon that counts itself off loopback, called without, with wrong-scope and with right credentials"
	if code := d.stop(); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}

// loopbackHostName returns this machine's host name when it resolves to
// loopback addresses only: leitstand treats any name but "localhost" as
// off loopback, while the kernel binds it to 127.0.0.1.
func loopbackHostName(t testing.TB) string {
	t.Helper()
	for _, h := range []string{hostName(), "vm", "runsc"} {
		if h == "" || h == "localhost" {
			continue
		}
		ips, err := net.LookupHost(h)
		if err != nil || len(ips) == 0 {
			continue
		}
		ok := true
		for _, ip := range ips {
			if p := net.ParseIP(ip); p == nil || !p.IsLoopback() {
				ok = false
			}
		}
		if ok {
			return h
		}
	}
	t.Fatal("no host name that resolves to loopback only (add one to /etc/hosts, e.g. `127.0.0.1 leitstand-offloopback`)")
	return ""
}

func hostName() string {
	h, _ := os.Hostname()
	return h
}

// TestSecurityTLSMinimum: HTTPS and syslog over TLS refuse TLS 1.1 and
// accept TLS 1.2.
func TestSecurityTLSMinimum(t *testing.T) {
	suite.Require(t)
	rec := scenario(t, 51, "Security: TLS 1.2 minimum")
	cert, key := writeCert(t, t.TempDir())
	d := newDaemon(t, "leitstand", fmt.Sprintf(`http:
  listen: @HTTP@
  tls:
    cert_file: %s
    key_file: %s
syslog:
  listeners:
    - protocol: tls
      address: @SYSLOG@
      tls: {cert_file: %s, key_file: %s}
`, cert, key, cert, key), daemonOptions{Scheme: "https"})
	for _, l := range []struct{ name, addr string }{{"HTTPS", d.addr}, {"syslog TLS", d.syslog}} {
		for _, v := range []struct {
			name    string
			version uint16
			want    bool
		}{{"TLS 1.0", tls.VersionTLS10, false}, {"TLS 1.1", tls.VersionTLS11, false}, {"TLS 1.2", tls.VersionTLS12, true}, {"TLS 1.3", tls.VersionTLS13, true}} {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.addr, &tls.Config{
				InsecureSkipVerify: true, //nolint:gosec // the test's own certificate
				MinVersion:         v.version, MaxVersion: v.version,
			})
			ok := err == nil
			outcome := "handshake completed"
			if ok {
				conn.Close()
			} else {
				outcome = "refused: " + err.Error()
			}
			rec.input("%s with a %s-only client → %s", l.name, v.name, outcome)
			if ok != v.want {
				t.Errorf("%s, %s client: %s", l.name, v.name, outcome)
			}
		}
	}
	rec.Faults = "clients limited to TLS 1.0, 1.1, 1.2 and 1.3 against the HTTPS listener and a syslog TLS listener (default min_version)"
	if code := d.stop(); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}

// TestSecuritySecretsNotLogged: the daemon runs at log level debug with
// intake tokens, a Sentry key, an anonymizer hash key and a role API token,
// gets requests with right and wrong credentials, and none of these
// values may appear in its log.
func TestSecuritySecretsNotLogged(t *testing.T) {
	suite.Require(t)
	rec := scenario(t, 52, "Security: secrets never in the log")
	dir := t.TempDir()
	secrets := map[string]string{
		"ingest token":         "ingest-token-7f3a9c1e5b2d4f60",
		"second ingest token":  "file-token-51c2e8a0d9b7f3c4",
		"wrong token sent":     "wrong-token-a1b2c3d4e5f60718",
		"Sentry public key":    "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
		"wrong Sentry key":     "ffeeddccbbaa99887766554433221100",
		"anonymizer hash key":  "hash-key-9d8c7b6a5f4e3d2c1b0a",
		"role API token":       "role-token-3e4f5a6b7c8d9e0f1a2b",
		"Elasticsearch secret": "es-password-c0ffee15c0ffee15",
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tokensFile := write("tokens", "# intake tokens\n"+secrets["second ingest token"]+"\n")
	hashKey := write("hash.key", secrets["anonymizer hash key"])
	roleToken := write("role.token", secrets["role API token"])
	esPassword := write("es.password", secrets["Elasticsearch secret"])
	d := newDaemon(t, "leitstand", fmt.Sprintf(`log:
  level: debug
http:
  listen: @HTTP@
ingest:
  auth:
    tokens: ["${REL_INGEST_TOKEN}"]
    tokens_file: %s
sentry:
  projects:
    - id: 7
      keys: [{public_key: "${REL_SENTRY_KEY}"}]
anonymize:
  hash_key_file: %s
alerting:
  roles:
    - name: platform-ops
      receiver: {name: ops}
      scope: {all: true}
      token_files: [%s]
syslog:
  enabled: false
sinks:
  elasticsearch:
    enabled: true
    urls: [@ES@]
    username: leitstand
    password_file: %s
    namespace: secrets
`, tokensFile, hashKey, roleToken, esPassword), daemonOptions{Env: []string{
		"REL_INGEST_TOKEN=" + secrets["ingest token"],
		"REL_SENTRY_KEY=" + secrets["Sentry public key"],
	}})
	ctx := context.Background()
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	line := []byte(`{"message":"a line","event":{"dataset":"secrets"}}` + "\n")
	var answers []string
	for _, tok := range []string{secrets["ingest token"], secrets["second ingest token"], secrets["wrong token sent"]} {
		code, _, err := post(ctx, insecureClient, d.url+"/v1/ingest", "application/x-ndjson", line, bearer(tok))
		if err != nil {
			t.Fatal(err)
		}
		answers = append(answers, fmt.Sprint(code))
	}
	item := `{"event_id":"5ec7e75ec7e75ec7e75ec7e75ec7e75e","message":"sentry line"}`
	env := []byte(fmt.Sprintf("{}\n{\"type\":\"event\",\"length\":%d}\n%s\n", len(item), item))
	for _, key := range []string{secrets["Sentry public key"], secrets["wrong Sentry key"]} {
		code, _, err := post(ctx, insecureClient, d.url+"/api/7/envelope/?sentry_key="+key, "application/x-sentry-envelope", env, nil)
		if err != nil {
			t.Fatal(err)
		}
		answers = append(answers, fmt.Sprint(code))
	}
	for _, tok := range []string{secrets["role API token"], secrets["wrong token sent"]} {
		req, _ := http.NewRequest(http.MethodGet, d.url+"/api/v1/roles/alerts", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if resp, err := insecureClient.Do(req); err == nil {
			resp.Body.Close()
			answers = append(answers, fmt.Sprint(resp.StatusCode))
		}
	}
	d.kill() // a crash leaves whatever was logged so far
	d.start(true)
	if code := d.stop(); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
	log := d.log.String()
	for what, v := range secrets {
		if strings.Contains(log, v) {
			t.Errorf("the %s appears in the daemon's log", what)
		}
	}
	rec.Load = fmt.Sprintf("log.level debug; requests with right and wrong intake tokens, Sentry keys and a role API token (answers %s); a SIGKILL, a restart and a SIGTERM", strings.Join(answers, ", "))
	rec.Faults = fmt.Sprintf("%d secret values (tokens from ${ENV} and tokens_file, a Sentry key from ${ENV}, hash_key_file, a role token file, an Elasticsearch password_file, and the wrong values clients sent) searched in %d bytes of log", len(secrets), len(log))
	rec.note("hits: %d", countHits(log, secrets))
}

func countHits(s string, secrets map[string]string) int {
	n := 0
	for _, v := range secrets {
		n += strings.Count(s, v)
	}
	return n
}

func firstProblem(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, ": ") && !strings.HasPrefix(l, "leitstand: the configuration") {
			return strings.TrimSpace(l[strings.Index(l, ": ")+2:])
		}
	}
	return strings.TrimSpace(out)
}
