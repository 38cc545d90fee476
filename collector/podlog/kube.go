package podlog

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leitstand/leitstand/collector"
)

// podInfo is what the API says about one pod. Families hold it and read
// the labels for every event, so a listing updates them in place.
type podInfo struct {
	labels  atomic.Pointer[[]collector.Field]
	known   atomic.Bool // listed at least once
	created time.Time
}

// kubeClient lists the pods of this node with plain HTTP: one GET of
// /api/v1/pods with fieldSelector spec.nodeName, from the API server's
// cache (resourceVersion=0), as the kubelet does. No client library: the
// agent needs one read-only call.
type kubeClient struct {
	cfg  KubernetesConfig
	node string
	base string
	http *http.Client
	log  *slog.Logger
	m    *metrics

	mu      sync.Mutex
	pods    map[string]*podInfo
	listed  chan struct{} // closed after each listing, then replaced
	refresh chan struct{}
	last    time.Time
}

// minRelist is the least time between listings asked for by new pods.
const minRelist = 2 * time.Second

func newKubeClient(cfg KubernetesConfig, node string, m *metrics, log *slog.Logger) (*kubeClient, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kubernetes.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kubernetes.ca_file %s holds no PEM certificate", cfg.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	tr := &http.Transport{TLSClientConfig: tlsConf, MaxIdleConnsPerHost: 1, IdleConnTimeout: 2 * time.Minute}
	return &kubeClient{
		cfg: cfg, node: node, base: strings.TrimRight(cfg.apiServer(), "/"), log: log, m: m,
		http:    &http.Client{Transport: tr, Timeout: 30 * time.Second},
		pods:    map[string]*podInfo{},
		listed:  make(chan struct{}),
		refresh: make(chan struct{}, 1),
	}, nil
}

// info returns the entry of a pod, creating it (without labels) if needed.
func (k *kubeClient) info(uid string) *podInfo {
	k.mu.Lock()
	defer k.mu.Unlock()
	p := k.pods[uid]
	if p == nil {
		p = &podInfo{created: time.Now()}
		k.pods[uid] = p
	}
	return p
}

// wait asks for a listing when the pod is not known yet and waits for it,
// at most d, so a new pod's first lines carry its labels.
func (k *kubeClient) wait(ctx context.Context, p *podInfo, d time.Duration) {
	if p.known.Load() || d <= 0 {
		return
	}
	k.mu.Lock()
	listed := k.listed
	k.mu.Unlock()
	select {
	case k.refresh <- struct{}{}:
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-listed:
	case <-t.C:
	}
}

func (k *kubeClient) run(ctx context.Context) {
	tick := time.NewTicker(k.cfg.RefreshInterval)
	defer tick.Stop()
	k.list(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-k.refresh:
			if d := minRelist - time.Since(k.last); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
		}
		k.list(ctx)
	}
}

type podList struct {
	Items []struct {
		Metadata struct {
			UID    string            `json:"uid"`
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	} `json:"items"`
}

// maxPodList bounds the listing read, whatever the API server sends.
const maxPodList = 64 << 20

func (k *kubeClient) list(ctx context.Context) {
	k.last = time.Now()
	defer func() {
		k.mu.Lock()
		close(k.listed)
		k.listed = make(chan struct{})
		k.mu.Unlock()
	}()
	pods, err := k.fetch(ctx)
	if err != nil {
		if ctx.Err() == nil {
			k.log.Warn("podlog: listing this node's pods failed; events go without labels until it works", "api_server", k.base, "err", err)
		}
		return
	}
	seen := make(map[string]bool, len(pods.Items))
	for _, it := range pods.Items {
		uid := it.Metadata.UID
		if uid == "" {
			continue
		}
		seen[uid] = true
		fields := labelFields(it.Metadata.Labels)
		p := k.info(uid)
		p.labels.Store(&fields)
		p.known.Store(true)
	}
	// Forget pods gone from the node a while ago; families still reading
	// their files keep their entry.
	k.mu.Lock()
	for uid, p := range k.pods {
		if !seen[uid] && time.Since(p.created) > 10*time.Minute {
			delete(k.pods, uid)
		}
	}
	k.mu.Unlock()
}

func (k *kubeClient) fetch(ctx context.Context) (*podList, error) {
	token, err := os.ReadFile(k.cfg.TokenFile)
	if err != nil {
		return nil, err
	}
	q := url.Values{"fieldSelector": {"spec.nodeName=" + k.node}, "resourceVersion": {"0"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.base+"/api/v1/pods?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "leitstand-agent")
	resp, err := k.http.Do(req)
	if err != nil {
		k.m.kubeRequests.WithLabelValues("error").Inc()
		return nil, err
	}
	defer resp.Body.Close()
	k.m.kubeRequests.WithLabelValues(strconv.Itoa(resp.StatusCode)).Inc()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	var pl podList
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxPodList)).Decode(&pl); err != nil {
		return nil, fmt.Errorf("decoding the pod list: %w", err)
	}
	return &pl, nil
}

func (k *kubeClient) close() { k.http.CloseIdleConnections() }

// labelFields turns labels into kubernetes.labels.<name> fields, in name
// order. Dots in names become '_' ("app.kubernetes.io/name" becomes
// "app_kubernetes_io/name"), as Beats do, since a dot would nest.
func labelFields(labels map[string]string) []collector.Field {
	if len(labels) == 0 {
		return nil
	}
	out := make([]collector.Field, 0, len(labels))
	for name, v := range labels {
		out = append(out, collector.Field{Key: labelPrefix + strings.ReplaceAll(name, ".", "_"), Kind: collector.KindString, Str: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}
