package podlog

import (
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeAPI imitates the API server's pod listing, for fault injection and
// for checking exactly what the agent asks.
type fakeAPI struct {
	t        *testing.T
	token    atomic.Value // string
	node     string
	mu       sync.Mutex
	labels   map[string]map[string]string // uid → labels
	requests atomic.Int32
	failing  atomic.Bool
}

func (a *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.requests.Add(1)
	if r.URL.Path != "/api/v1/pods" || r.Method != http.MethodGet {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+a.token.Load().(string) {
		http.Error(w, `{"kind":"Status","reason":"Unauthorized"}`, http.StatusUnauthorized)
		return
	}
	if got := r.URL.Query().Get("fieldSelector"); got != "spec.nodeName="+a.node {
		a.t.Errorf("fieldSelector %q: the agent must ask for its node's pods only", got)
	}
	if a.failing.Load() {
		http.Error(w, "etcdserver: request timed out", http.StatusInternalServerError)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	type item struct {
		Metadata struct {
			Name      string            `json:"name"`
			Namespace string            `json:"namespace"`
			UID       string            `json:"uid"`
			Labels    map[string]string `json:"labels,omitempty"`
		} `json:"metadata"`
		Spec struct {
			NodeName string `json:"nodeName"`
		} `json:"spec"`
	}
	list := struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
		Items      []item `json:"items"`
	}{Kind: "PodList", APIVersion: "v1"}
	for uid, l := range a.labels {
		var it item
		it.Metadata.UID, it.Metadata.Labels, it.Metadata.Name, it.Spec.NodeName = uid, l, "p-"+uid[:4], a.node
		list.Items = append(list.Items, it)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(list)
}

func TestPodLabelsFromTheAPI(t *testing.T) {
	api := &fakeAPI{t: t, node: "node-1", labels: map[string]map[string]string{}}
	api.token.Store("sa-token-1")
	srv := httptest.NewTLSServer(api)
	defer srv.Close()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("sa-token-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig(t)
	cfg.Kubernetes.Labels = true
	cfg.Kubernetes.APIServer = srv.URL
	cfg.Kubernetes.CAFile = caFile
	cfg.Kubernetes.TokenFile = tokenFile
	cfg.Kubernetes.Wait = 300 * time.Millisecond
	h := newHarness(t, cfg)

	// A pod the API knows: its first line already carries the labels.
	cdir := containerDir(t, h.root, "shop", "web", "app")
	uid := strings.Split(filepath.Base(filepath.Dir(cdir)), "_")[2]
	api.mu.Lock()
	api.labels[uid] = map[string]string{"app.kubernetes.io/name": "web", "tier": "front"}
	api.mu.Unlock()
	appendFile(t, filepath.Join(cdir, "0.log"), criLine("stdout", "F", "hello"))
	h.waitCount(1)
	e := h.sink.events()[0]
	if got := field(e, "kubernetes.labels.app_kubernetes_io/name"); got != "web" {
		t.Errorf("kubernetes.labels.app_kubernetes_io/name = %q", got)
	}
	if got := field(e, "kubernetes.labels.tier"); got != "front" {
		t.Errorf("kubernetes.labels.tier = %q", got)
	}

	// The API fails: lines go on without labels, and a rotated token is
	// read again.
	api.failing.Store(true)
	api.token.Store("sa-token-2")
	if err := os.WriteFile(tokenFile, []byte("sa-token-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := containerDir(t, h.root, "shop", "worker", "app")
	appendFile(t, filepath.Join(other, "0.log"), criLine("stdout", "F", "unlabelled"))
	h.waitCount(2)
	for _, e := range h.sink.events() {
		if e.Message() == "unlabelled" && field(e, "kubernetes.labels.tier") != "" {
			t.Error("labels of another pod")
		}
	}
	h.waitFor("a failed listing counted", 5*time.Second, func() bool {
		return readCounter(h.r.m.kubeRequests.WithLabelValues("500")) >= 1
	})
	api.failing.Store(false)
}
