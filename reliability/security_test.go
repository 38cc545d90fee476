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

// TestSecurityOffLoopback: a config whose listeners leave loopback must
// authenticate every endpoint but the health checks. The suite listens on
// loopback only, so `leitstand check` is the judge: it must refuse configs
// that would serve anything else to anyone.
func TestSecurityOffLoopback(t *testing.T) {
	suite.Require(t)
	rec := scenario(t, 50, "Security: authentication off loopback")
	const token = "rel-token-0123456789abcdef"
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
		// Bearer tokens on the intake only: the Prometheus query API and
		// remote_write (/api/v1/), /api/v1/alerts and /metrics stay open
		// to anyone who can reach the port.
		{"HTTP on 0.0.0.0 with ingest bearer tokens, Prometheus API and remote_write receiver on (defaults)", `http:
  listen: 0.0.0.0:18080
ingest:
  auth:
    tokens: ["` + token + `"]
syslog:
  enabled: false
`, false},
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
	cert, key := writeCert(t, t.TempDir())
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
			rec.note("FINDING: `leitstand check` accepts %s: ingest.auth guards /v1/ingest only, so off loopback the Prometheus query API and remote_write (/api/v1/), /api/v1/alerts and /metrics answer anyone (see the loopback probes below: 200 without credentials)", c.name)
		}
	}

	// What a daemon with intake tokens answers to a caller without
	// credentials, endpoint by endpoint (on loopback, where the open
	// Prometheus API is intended for a local Grafana).
	d := newDaemon(t, "leitstand", `http:
  listen: @HTTP@
ingest:
  auth:
    tokens: ["`+token+`"]
syslog:
  enabled: false
`, daemonOptions{})
	for _, ep := range []struct{ method, path, body string }{
		{"POST", "/v1/ingest", `{"message":"x"}`},
		{"POST", "/api/1/envelope/", "{}\n"},
		{"GET", "/api/v1/query?query=up", ""},
		{"POST", "/api/v1/write", ""},
		{"GET", "/api/v1/alerts", ""},
		{"GET", "/metrics", ""},
		{"GET", "/healthz", ""},
		{"GET", "/readyz", ""},
	} {
		req, _ := http.NewRequest(ep.method, d.url+ep.path, strings.NewReader(ep.body))
		resp, err := insecureClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		rec.input("loopback daemon with ingest tokens, %s %s without credentials → %d", ep.method, ep.path, resp.StatusCode)
		if (ep.path == "/v1/ingest" || ep.path == "/api/1/envelope/") && resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s %s without credentials: %d, want 401", ep.method, ep.path, resp.StatusCode)
		}
	}
	rec.Faults = "configs that leave loopback, checked with `leitstand check`; unauthenticated requests to a running daemon"
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
