package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestPrometheusAPIOffLoopbackNeedsTokens starts the daemon with its HTTP
// listener on every address (the test still talks on loopback) and checks
// who may use which endpoint: queries need a role token with scope all,
// remote_write an ingest token, the intake its token; health and metrics
// stay open for probes and scrapers.
func TestPrometheusAPIOffLoopbackNeedsTokens(t *testing.T) {
	dir := t.TempDir()
	const ingestToken, opsToken, devToken = "ingest-token-0123456789", "ops-token-0123456789", "dev-token-0123456789"
	writeTestFile(t, filepath.Join(dir, "ops"), opsToken)
	writeTestFile(t, filepath.Join(dir, "dev"), devToken)
	d := startDaemonOn(t, "0.0.0.0", fmt.Sprintf(`ingest:
  auth:
    tokens: [%s]
alerting:
  default_role: ops
  roles:
    - name: ops
      receiver: {name: ops}
      scope: {all: true}
      token_files: [%s]
    - name: dev/shop
      matchers: ['namespace="shop"']
      receiver: {name: shop}
      scope: {namespaces: [shop]}
      token_files: [%s]
`, ingestToken, filepath.Join(dir, "ops"), filepath.Join(dir, "dev")))

	for _, c := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/api/v1/query?query=up", "", 401},
		{"GET", "/api/v1/query?query=up", ingestToken, 401},
		{"GET", "/api/v1/query?query=up", devToken, 403},
		{"GET", "/api/v1/query?query=up", opsToken, 200},
		{"GET", "/api/v1/series?match[]=up", devToken, 403},
		{"GET", "/api/v1/labels", "", 401},
		{"GET", "/api/v1/rules", opsToken, 200},
		{"POST", "/api/v1/write", "", 401},
		{"POST", "/api/v1/write", opsToken, 401},
		{"POST", "/api/v1/write", ingestToken, 400}, // authenticated; the empty body is refused
		{"GET", "/api/v1/alerts", "", 401},
		{"GET", "/api/v1/alerts", devToken, 200}, // the role-scoped view
		{"POST", "/v1/ingest", "", 401},
		{"POST", "/v1/ingest", opsToken, 401},
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"GET", "/metrics", "", 200},
	} {
		req, _ := http.NewRequest(c.method, d.url+c.path, strings.NewReader(""))
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s with token %q: %d, want %d", c.method, c.path, c.token, resp.StatusCode, c.want)
		}
	}
	for _, secret := range []string{ingestToken, opsToken, devToken} {
		if strings.Contains(d.stderr.String(), secret) {
			t.Errorf("the daemon's log contains a token")
		}
	}
	if code := d.stop(t); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}
