package kubernetes

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leitstand/leitstand/collector/podlog"
	"github.com/leitstand/leitstand/internal/peers"
)

// The pod whose log file the agent finds in its /var/log/pods.
const (
	testPodNamespace = "shop"
	testPodName      = "checkout-5f7c9d-x2x4q"
	testPodUID       = "3f0e6d2a-8c1b-4e57-9a7d-2b6c4d8e1f90"
	testContainer    = "api"
	testPodApp       = "checkout"
	// testEmail must not leave the node: the agent hashes it.
	testEmail = "jane.doe@example.org"
	// saToken is the service account token materialize lays out.
	saToken = "fixture-service-account-token"
)

// agentPeers is what an agent pod talks to, on loopback: a real leitstand
// aggregator (file sink) in place of the aggregators' Service, and a
// stand-in of the Kubernetes API that lists and watches the node's pods.
// It also writes the pod log file the agent is to forward.
type agentPeers struct {
	agent agentSections
	tree  *tree

	// kubeAPI is the API stand-in's host:port, for KUBERNETES_SERVICE_*.
	kubeAPI string
	// aggURL is the stand-in aggregator's scheme://host:port.
	aggURL string
	// events is the stand-in aggregator's file sink directory.
	events string
	aggLog *syncBuffer
	// logFile is the pod log file (in the tree); line the nonce in it.
	logFile, nonce string

	mu       sync.Mutex
	requests []string // the API requests, for failure messages
	listed   bool     // a list with the node's fieldSelector and the token
}

// startAgentPeers starts the agent's peers and writes one CRI line of a pod
// into the first podlog root of the tree.
func startAgentPeers(t *testing.T, bin string, tr *tree, a agentSections) *agentPeers {
	t.Helper()
	p := &agentPeers{agent: a, tree: tr, aggLog: &syncBuffer{}}
	nonce := make([]byte, 8)
	_, _ = rand.Read(nonce)
	p.nonce = hex.EncodeToString(nonce)

	if len(a.Podlog.Roots) == 0 {
		t.Fatal("the agent has no podlog.roots")
	}
	dir := filepath.Join(tr.path(a.Podlog.Roots[0]), testPodNamespace+"_"+testPodName+"_"+testPodUID, testContainer)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p.logFile = filepath.Join(dir, "0.log")
	line := fmt.Sprintf("%s stdout F order 4711 placed by %s (probe %s)\n", time.Now().UTC().Format(time.RFC3339Nano), testEmail, p.nonce)
	writeFile(t, p.logFile, []byte(line))

	p.startKubeAPI(t)

	https := false
	for _, raw := range a.Sinks.Forward.URLs {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		https = https || u.Scheme == "https"
	}
	p.startAggregator(t, bin, https)
	return p
}

// startKubeAPI serves GET /api/v1/pods the way the API server answers the
// agent: the list of the node's pods (the test pod, with its labels), then
// a watch that stays open until the agent ends it. HTTPS with a
// certificate of the service account's CA, as in a cluster.
func (p *agentPeers) startKubeAPI(t *testing.T) {
	t.Helper()
	certs := testCerts(t)
	cert, err := tls.X509KeyPair(certs.serverCert, certs.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		p.mu.Lock()
		p.requests = append(p.requests, r.Method+" "+r.URL.RequestURI())
		p.mu.Unlock()
		switch {
		case r.Method != http.MethodGet || r.URL.Path != "/api/v1/pods":
			http.Error(w, "not found", http.StatusNotFound)
			return
		case r.Header.Get("Authorization") != "Bearer "+saToken:
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		case q.Get("fieldSelector") != "spec.nodeName="+testNode:
			// Every node's pods: what the agent must never ask for.
			http.Error(w, "the agent must ask for its node's pods only", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if q.Get("watch") == "" {
			p.mu.Lock()
			p.listed = true
			p.mu.Unlock()
			fmt.Fprintf(w, `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"100"},"items":[`+
				`{"metadata":{"name":%q,"namespace":%q,"uid":%q,"resourceVersion":"99","labels":{"app":%q}},"spec":{"nodeName":%q}}]}`,
				testPodName, testPodNamespace, testPodUID, testPodApp, testNode)
			return
		}
		// A watch with nothing to report until the agent ends it.
		w.WriteHeader(http.StatusOK)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(func() {
		close(stop)
		srv.Close()
	})
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if !isLoopback(u.Hostname()) {
		t.Fatalf("the Kubernetes API stand-in listens on %s, not loopback", u.Host)
	}
	p.kubeAPI = u.Host
}

// startAggregator runs a leitstand aggregator on loopback that takes the
// agent's token (the ingest tokens fixture of the aggregators' Secret) and
// writes what it receives to files. Its own e-mail detector is off, so an
// address hashed in what it stores was hashed by the agent.
func (p *agentPeers) startAggregator(t *testing.T, bin string, https bool) {
	t.Helper()
	dir := t.TempDir()
	port, err := peers.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens")
	writeFile(t, tokens, secretFixture(t, "leitstand-ingest-tokens", "tokens"))
	scheme, tlsConf := "http", ""
	if https {
		certs := testCerts(t)
		writeFile(t, filepath.Join(dir, "tls.crt"), certs.serverCert)
		writeFile(t, filepath.Join(dir, "tls.key"), certs.serverKey)
		scheme = "https"
		tlsConf = fmt.Sprintf("\n  tls:\n    cert_file: %s\n    key_file: %s", filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	}
	p.events = filepath.Join(dir, "events")
	cfg := fmt.Sprintf(`http:
  listen: 127.0.0.1:%d%s
ingest:
  auth:
    tokens_file: %s
syslog:
  enabled: false
sentry:
  enabled: false
anonymize:
  detectors:
    email:
      enabled: false
sinks:
  file:
    dir: %s
`, port, tlsConf, tokens, p.events)
	cfgPath := filepath.Join(dir, "aggregator.yaml")
	writeFile(t, cfgPath, []byte(cfg))

	cmd := exec.Command(bin, "run", "-config", cfgPath, "-data", filepath.Join(dir, "data"))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = p.aggLog, p.aggLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("the stand-in aggregator's log:\n%s", tail(p.aggLog.String(), 30))
		}
	})
	p.aggURL = fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := waitOK(ctx, testClient(t, ""), p.aggURL+"/readyz", exited, &waitErr); err != nil {
		t.Fatalf("the stand-in aggregator is not ready: %v\n%s", err, tail(p.aggLog.String(), 30))
	}
}

// testClient trusts the test CA; serverName "" checks the URL's host.
func testClient(t *testing.T, serverName string) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(testCerts(t).caCert)
	return &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12},
	}}
}

// redirect points the agent's forward URLs (the aggregators' Service,
// checked by TestAgentConfig) at the stand-in aggregator.
func (p *agentPeers) redirect(t *testing.T, text string) string {
	t.Helper()
	for _, raw := range p.agent.Sinks.Forward.URLs {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		from := u.Scheme + "://" + u.Host + "/"
		if !strings.Contains(text, from) {
			t.Fatalf("forward URL %s is not written as %q in the config", raw, from)
		}
		text = strings.ReplaceAll(text, from, p.aggURL+"/")
	}
	return text
}

// checkForwarded waits for the pod's line at the stand-in aggregator and
// checks what arrived: the pod's identity from its path, the node from the
// downward API, the labels from the API stand-in, the e-mail address
// hashed at the edge.
func (p *agentPeers) checkForwarded(t *testing.T, exited <-chan struct{}, agentLog *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var doc map[string]any
	for doc == nil {
		doc = p.find(t)
		if doc != nil {
			break
		}
		select {
		case <-exited:
			t.Fatalf("the agent exited before its pod's line reached the aggregator\n%s", tail(agentLog.String(), 40))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.mu.Lock()
			reqs := strings.Join(p.requests, "\n")
			p.mu.Unlock()
			t.Fatalf("the pod's line did not reach the aggregator in 60s\nKubernetes API requests:\n%s\nagent's log:\n%s", reqs, tail(agentLog.String(), 40))
		}
	}
	msg, _ := lookup(doc, "message").(string)
	t.Logf("forwarded: %s", mustJSON(t, doc))
	if strings.Contains(msg, testEmail) || strings.Contains(string(mustJSON(t, doc)), testEmail) {
		t.Errorf("the e-mail address left the node in clear: %s", mustJSON(t, doc))
	}
	if !strings.Contains(msg, "order 4711 placed by email:") {
		t.Errorf("message %q: want the address hashed by the agent (email:<key id>:…)", msg)
	}
	want := map[string]string{
		"kubernetes.namespace":      testPodNamespace,
		"kubernetes.pod.name":       testPodName,
		"kubernetes.pod.uid":        testPodUID,
		"kubernetes.container.name": testContainer,
		"kubernetes.node.name":      testNode,
		"event.dataset":             podlog.Dataset,
	}
	labels := p.agent.Podlog.Kubernetes.Labels
	if labels {
		want["kubernetes.labels.app"] = testPodApp
	}
	for path, w := range want {
		if got := lookup(doc, path); got != w {
			t.Errorf("%s = %v, want %q", path, got, w)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case labels && !p.listed:
		t.Errorf("the agent never listed its node's pods with its service account token; requests:\n%s", strings.Join(p.requests, "\n"))
	case !labels && len(p.requests) > 0:
		t.Errorf("podlog.kubernetes.labels is off, yet the agent asked the API:\n%s", strings.Join(p.requests, "\n"))
	}
}

// find returns the stored event that carries the nonce, or nil.
func (p *agentPeers) find(t *testing.T) map[string]any {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(p.events, "*.ndjson"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if !bytes.Contains(sc.Bytes(), []byte(p.nonce)) || !bytes.HasSuffix(sc.Bytes(), []byte("}")) {
				continue
			}
			var doc map[string]any
			if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
				t.Fatalf("%s: %v: %s", f, err, sc.Text())
			}
			return doc
		}
	}
	return nil
}

// checkPositions: after SIGTERM, the agent's read position of the pod's
// file, past the forwarded line, is on the state directory (the hostPath
// that outlives the pod).
func (p *agentPeers) checkPositions(t *testing.T) {
	t.Helper()
	f := filepath.Join(p.tree.path(p.agent.Podlog.StateDir), "positions.json")
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatalf("no read positions on the state directory: %v", err)
	}
	var pos struct {
		Files []struct {
			Family string `json:"family"`
			Offset int64  `json:"offset"`
		} `json:"files"`
	}
	// A header line (magic, version, checksum, length), then JSON.
	_, body, _ := bytes.Cut(data, []byte("\n"))
	if err := json.Unmarshal(body, &pos); err != nil {
		t.Fatalf("%s: %v", f, err)
	}
	st, err := os.Stat(p.logFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range pos.Files {
		if strings.HasPrefix(r.Family, testPodNamespace+"_"+testPodName+"_") {
			if r.Offset != st.Size() {
				t.Errorf("position of %s is %d, want %d (the end of the forwarded line)", r.Family, r.Offset, st.Size())
			}
			return
		}
	}
	t.Errorf("%s has no position of the pod's file:\n%s", f, data)
}

// lookup follows a dotted path through nested objects.
func lookup(doc map[string]any, path string) any {
	var v any = doc
	for _, part := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[part]
	}
	return v
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// syncBuffer is a bytes.Buffer a process writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
