package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/leitstand/leitstand/internal/peers"
)

// TestRoleScopedAPIThroughTheDaemon wires the role registry, a log alert
// rule and the Elasticsearch sink in the real binary, and reads the same
// alerts and events with two roles' tokens: each sees its own namespace
// only, a request for the other's is refused, and nothing personal comes
// back. `leitstand check` on the same config warns about the rule no role
// owns.
func TestRoleScopedAPIThroughTheDaemon(t *testing.T) {
	peers.Slow(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	es, err := peers.StartElasticsearch(ctx, peers.ElasticsearchOptions{})
	peers.Check(t, err)
	peers.Cleanup(t, es)

	dir := t.TempDir()
	ruleFile := filepath.Join(dir, "app.rules.yml")
	writeTestFile(t, ruleFile, `groups:
  - name: app
    rules:
      - log: '{event.dataset="app"} |= "login failed"'
        alert: LoginFailed
        by: [kubernetes.namespace]
        labels:
          severity: warning
          namespace: '{{ .Field "kubernetes.namespace" }}'
      - log: '{event.dataset="app"} |= "disk full"'
        alert: NobodysDiskFull
        labels: {namespace: lost-and-found}
`)
	tokens := map[string]string{"webmail": "webmail-token-0123456789", "schule-nord": "schule-token-0123456789"}
	for name, tok := range tokens {
		writeTestFile(t, filepath.Join(dir, name+".token"), tok+"\n")
	}
	extra := fmt.Sprintf(`rules:
  rule_files: [%s]
sinks:
  file:
    enabled: false
  elasticsearch:
    enabled: true
    urls: [%s]
    namespace: rolesapi
alerting:
  default_role: platform-ops
  roles:
    - name: platform-ops
      receiver: {name: ops}
    - name: dev/webmail
      matchers: ['namespace="webmail"']
      receiver: {name: webmail}
      scope: {namespaces: [webmail]}
      token_files: [%s]
    - name: tenant-admin/schule-nord
      matchers: ['namespace="schule-nord"']
      receiver: {name: schule-nord}
      scope: {namespaces: [schule-nord]}
      token_files: [%s]
`, ruleFile, es.URL, filepath.Join(dir, "webmail.token"), filepath.Join(dir, "schule-nord.token"))
	d := startDaemon(t, extra)

	// The warning about the unowned rule, from the same config.
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"check", "-config", d.cmd.Args[3]}, &stdout, &stderr); code != 0 {
		t.Fatalf("check exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "NobodysDiskFull: no role owns it") || strings.Contains(stderr.String(), "LoginFailed") {
		t.Errorf("check warnings:\n%s", stderr.String())
	}

	var body bytes.Buffer
	for _, ev := range []struct{ ns, who string }{{"webmail", "anna@example.org"}, {"webmail", "ben@example.org"}, {"schule-nord", "carla@example.org"}} {
		fmt.Fprintf(&body, `{"message":"login failed for %s from 198.51.100.7","event":{"dataset":"app"},"kubernetes":{"namespace":%q}}`+"\n", ev.who, ev.ns)
	}
	body.WriteString(`{"message":"disk full","event":{"dataset":"app"}}` + "\n")
	if err := postUntilAccepted(d.url, body.Bytes(), 4); err != nil {
		t.Fatal(err)
	}

	get := func(token, path string) (int, []byte) {
		req, _ := http.NewRequest("GET", d.url+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.Bytes()
	}
	if code, _ := get("", "/api/v1/alerts"); code != http.StatusUnauthorized {
		t.Errorf("alerts without a token: %d, want 401", code)
	}
	if code, _ := get("not-a-token-0123456789", "/api/v1/events/search"); code != http.StatusUnauthorized {
		t.Errorf("search with a wrong token: %d, want 401", code)
	}

	// Alerts: each role sees its own namespace's alert, nothing else.
	alertNamespaces := func(token string) []string {
		code, b := get(token, "/api/v1/alerts")
		if code != http.StatusOK {
			t.Fatalf("alerts: %d %s", code, b)
		}
		var r struct {
			Data struct {
				Alerts []struct {
					Labels map[string]string `json:"labels"`
				} `json:"alerts"`
			} `json:"data"`
		}
		json.Unmarshal(b, &r)
		var ns []string
		for _, a := range r.Data.Alerts {
			ns = append(ns, a.Labels["namespace"]+"/"+a.Labels["alertname"])
		}
		sort.Strings(ns)
		return ns
	}
	want := map[string]string{"webmail": "webmail/LoginFailed", "schule-nord": "schule-nord/LoginFailed"}
	deadline := time.Now().Add(30 * time.Second)
	for name, tok := range tokens {
		for {
			got := alertNamespaces(tok)
			if len(got) == 1 && got[0] == want[name] {
				break
			}
			if len(got) > 1 || time.Now().After(deadline) {
				t.Fatalf("%s sees alerts %v, want [%s]", name, got, want[name])
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// Events: each role finds its own, anonymized; the other's namespace is
	// refused, and a query naming it finds nothing.
	search := func(token, query string) (int, int, string) {
		code, b := get(token, "/api/v1/events/search?"+query)
		var r struct {
			Data struct {
				Total  int               `json:"total"`
				Events []json.RawMessage `json:"events"`
			} `json:"data"`
		}
		json.Unmarshal(b, &r)
		return code, r.Data.Total, string(b)
	}
	wantTotal := map[string]int{"webmail": 2, "schule-nord": 1}
	deadline = time.Now().Add(60 * time.Second)
	for name, tok := range tokens {
		for {
			code, total, raw := search(tok, "q=%22login+failed%22")
			if code == http.StatusOK && total == wantTotal[name] {
				if strings.Contains(raw, "@example.org") || strings.Contains(raw, "198.51.100.7") {
					t.Errorf("%s's search returned personal data: %s", name, raw)
				}
				if !strings.Contains(raw, `"namespace":"`+name+`"`) {
					t.Errorf("%s's search: %s", name, raw)
				}
				break
			}
			if total > wantTotal[name] || time.Now().After(deadline) {
				t.Fatalf("%s's search: %d, total %d, want %d: %s", name, code, total, wantTotal[name], raw)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	if code, _, raw := search(tokens["schule-nord"], "namespace=webmail"); code != http.StatusForbidden {
		t.Errorf("schule-nord asking for webmail: %d %s, want 403", code, raw)
	}
	if code, total, raw := search(tokens["schule-nord"], "q=webmail+%7C+anna"); code != http.StatusOK || total != 0 {
		t.Errorf("schule-nord's query naming webmail: %d, total %d: %s", code, total, raw)
	}
	if code := d.stop(t); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
