package podlog

import (
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeAPI imitates the API server's pod list and watch, for fault
// injection and to check exactly what the agent asks.
type fakeAPI struct {
	t       *testing.T
	token   atomic.Value // string
	node    string
	failing atomic.Bool

	mu      sync.Mutex
	version int
	oldest  int // watches from before this version get 410 Gone
	pods    map[string]map[string]string
	log     []fakeEvent
	changed chan struct{}

	lists, watches atomic.Int32
}

type fakeEvent struct {
	version int
	uid     string
	labels  map[string]string
}

func newFakeAPI(t *testing.T, node, token string) *fakeAPI {
	a := &fakeAPI{t: t, node: node, pods: map[string]map[string]string{}, changed: make(chan struct{})}
	a.token.Store(token)
	return a
}

// setPod adds or changes a pod, as the API server sees it.
func (a *fakeAPI) setPod(uid string, labels map[string]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.version++
	a.pods[uid] = labels
	a.log = append(a.log, fakeEvent{a.version, uid, labels})
	close(a.changed)
	a.changed = make(chan struct{})
}

// expire makes every watch from an older version end with 410 Gone.
func (a *fakeAPI) expire() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.version++
	a.oldest = a.version
	a.log = nil
	close(a.changed)
	a.changed = make(chan struct{})
}

type fakePod struct {
	Metadata struct {
		UID             string            `json:"uid"`
		Labels          map[string]string `json:"labels,omitempty"`
		ResourceVersion string            `json:"resourceVersion"`
	} `json:"metadata"`
	Spec struct {
		NodeName string `json:"nodeName"`
	} `json:"spec"`
}

func (a *fakeAPI) pod(uid string, labels map[string]string, version int) fakePod {
	var p fakePod
	p.Metadata.UID, p.Metadata.Labels, p.Metadata.ResourceVersion, p.Spec.NodeName = uid, labels, strconv.Itoa(version), a.node
	return p
}

func (a *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/pods" || r.Method != http.MethodGet {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+a.token.Load().(string) {
		http.Error(w, `{"kind":"Status","code":401,"reason":"Unauthorized"}`, http.StatusUnauthorized)
		return
	}
	if got := r.URL.Query().Get("fieldSelector"); got != "spec.nodeName="+a.node {
		a.t.Errorf("fieldSelector %q: the agent must ask for its node's pods only", got)
	}
	if a.failing.Load() {
		http.Error(w, "etcdserver: request timed out", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Query().Get("watch") != "1" {
		a.lists.Add(1)
		a.mu.Lock()
		list := struct {
			Kind     string `json:"kind"`
			Metadata struct {
				ResourceVersion string `json:"resourceVersion"`
			} `json:"metadata"`
			Items []fakePod `json:"items"`
		}{Kind: "PodList"}
		list.Metadata.ResourceVersion = strconv.Itoa(a.version)
		for uid, l := range a.pods {
			list.Items = append(list.Items, a.pod(uid, l, a.version))
		}
		a.mu.Unlock()
		_ = json.NewEncoder(w).Encode(list)
		return
	}
	a.watches.Add(1)
	rv, _ := strconv.Atoi(r.URL.Query().Get("resourceVersion"))
	secs, _ := strconv.Atoi(r.URL.Query().Get("timeoutSeconds"))
	timeout := time.NewTimer(time.Duration(secs) * time.Second)
	defer timeout.Stop()
	enc := json.NewEncoder(w)
	flush := w.(http.Flusher)
	for {
		a.mu.Lock()
		if rv < a.oldest {
			a.mu.Unlock()
			_ = enc.Encode(map[string]any{"type": "ERROR", "object": map[string]any{"kind": "Status", "code": 410, "reason": "Expired"}})
			return
		}
		var send []fakeEvent
		for _, ev := range a.log {
			if ev.version > rv {
				send = append(send, ev)
			}
		}
		changed := a.changed
		a.mu.Unlock()
		for _, ev := range send {
			_ = enc.Encode(map[string]any{"type": "MODIFIED", "object": a.pod(ev.uid, ev.labels, ev.version)})
			rv = ev.version
		}
		flush.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-timeout.C:
			return
		case <-changed:
		}
	}
}

func TestPodLabelsFromTheAPI(t *testing.T) {
	api := newFakeAPI(t, "node-1", "sa-token-1")
	srv := httptest.NewUnstartedServer(api)
	srv.EnableHTTP2 = true
	srv.StartTLS()
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
	cfg.Kubernetes.Wait = 5 * time.Second
	cfg.Kubernetes.RefreshInterval = time.Second
	h := newHarness(t, cfg)
	uidOf := func(cdir string) string { return strings.Split(filepath.Base(filepath.Dir(cdir)), "_")[2] }

	// A pod scheduled after the agent started: the watch brings its labels
	// before (or while) its first line waits.
	cdir := containerDir(t, h.root, "shop", "web", "app")
	api.setPod(uidOf(cdir), map[string]string{"app.kubernetes.io/name": "web", "tier": "front"})
	appendFile(t, filepath.Join(cdir, "0.log"), criLine("stdout", "F", "hello"))
	h.waitCount(1)
	e := h.sink.events()[0]
	if got := field(e, "kubernetes.labels.app_kubernetes_io/name"); got != "web" {
		t.Errorf("kubernetes.labels.app_kubernetes_io/name = %q", got)
	}
	if got := field(e, "kubernetes.labels.tier"); got != "front" {
		t.Errorf("kubernetes.labels.tier = %q", got)
	}

	// Labels change: later lines carry the new ones.
	api.setPod(uidOf(cdir), map[string]string{"tier": "back"})
	h.waitFor("the changed label", 5*time.Second, func() bool {
		return h.r.kube.info(uidOf(cdir)).labels.Load() != nil && len(*h.r.kube.info(uidOf(cdir)).labels.Load()) == 1
	})
	appendFile(t, filepath.Join(cdir, "0.log"), criLine("stdout", "F", "after"))
	h.waitCount(2)
	for _, e := range h.sink.events() {
		if e.Message() == "after" && field(e, "kubernetes.labels.tier") != "back" {
			t.Errorf("labels after the change: %q", field(e, "kubernetes.labels.tier"))
		}
	}

	// The watch's version expires: the agent lists again.
	lists := api.lists.Load()
	api.expire()
	other := containerDir(t, h.root, "shop", "worker", "app")
	api.setPod(uidOf(other), map[string]string{"tier": "batch"})
	h.waitFor("a new listing after 410 Gone", 10*time.Second, func() bool { return api.lists.Load() > lists })
	appendFile(t, filepath.Join(other, "0.log"), criLine("stdout", "F", "worker line"))
	h.waitCount(3)
	for _, e := range h.sink.events() {
		if e.Message() == "worker line" && field(e, "kubernetes.labels.tier") != "batch" {
			t.Errorf("labels after a re-list: %q", field(e, "kubernetes.labels.tier"))
		}
	}

	// The API fails and the token rotates: lines go on without new labels,
	// and the failure is counted.
	api.failing.Store(true)
	api.token.Store("sa-token-2")
	if err := os.WriteFile(tokenFile, []byte("sa-token-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	api.expire() // end the running watch
	h.waitFor("a failed request counted", 10*time.Second, func() bool {
		return readCounter(h.r.m.kubeRequests.WithLabelValues("500")) >= 1
	})
	api.failing.Store(false)
	third := containerDir(t, h.root, "shop", "cron", "app")
	api.setPod(uidOf(third), map[string]string{"tier": "cron"})
	appendFile(t, filepath.Join(third, "0.log"), criLine("stdout", "F", "cron line"))
	h.waitCount(4)
	for _, e := range h.sink.events() {
		if e.Message() == "cron line" && field(e, "kubernetes.labels.tier") != "cron" {
			t.Errorf("labels after the API recovered with a rotated token: %q", field(e, "kubernetes.labels.tier"))
		}
	}
}
