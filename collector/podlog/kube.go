package podlog

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
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
// the labels for every event, so news from the API updates them in place.
type podInfo struct {
	labels  atomic.Pointer[[]collector.Field]
	known   atomic.Bool // the API has told about the pod
	created time.Time
	seen    atomic.Int64 // Unix seconds of the last listing or event naming it
}

// kubeClient keeps the labels of this node's pods with plain HTTP, the
// way the kubelet follows its pods: one list of /api/v1/pods with the
// fieldSelector spec.nodeName (from the API server's cache,
// resourceVersion=0), then a watch from that version, renewed when it ends
// and replaced by a new list when the version is too old (410 Gone) or the
// connection fails. A pod is usually known before its containers write
// their first line. No client library: the agent needs this one call.
type kubeClient struct {
	cfg  KubernetesConfig
	node string
	base string
	http *http.Client
	log  *slog.Logger
	m    *metrics

	mu      sync.Mutex
	pods    map[string]*podInfo
	changed chan struct{} // closed when pods become known, then replaced
	failing bool
}

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
	tr := &http.Transport{TLSClientConfig: tlsConf, MaxIdleConnsPerHost: 1, IdleConnTimeout: 2 * time.Minute,
		ResponseHeaderTimeout: 30 * time.Second, TLSHandshakeTimeout: 10 * time.Second}
	return &kubeClient{
		cfg: cfg, node: node, base: strings.TrimRight(cfg.apiServer(), "/"), log: log, m: m,
		// No overall timeout: a watch lasts refresh_interval. Requests end
		// with their context.
		http:    &http.Client{Transport: tr},
		pods:    map[string]*podInfo{},
		changed: make(chan struct{}),
	}, nil
}

// info returns the entry of a pod, creating it (without labels) if needed.
func (k *kubeClient) info(uid string) *podInfo {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.infoLocked(uid)
}

func (k *kubeClient) infoLocked(uid string) *podInfo {
	p := k.pods[uid]
	if p == nil {
		p = &podInfo{created: time.Now()}
		k.pods[uid] = p
	}
	return p
}

// wait waits, at most d, for the API to tell about the pod, so a new pod's
// first lines carry its labels.
func (k *kubeClient) wait(ctx context.Context, p *podInfo, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for !p.known.Load() {
		k.mu.Lock()
		changed := k.changed
		k.mu.Unlock()
		if p.known.Load() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case <-changed:
		}
	}
}

// run lists and watches until ctx ends.
func (k *kubeClient) run(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		rv, err := k.list(ctx)
		for err == nil && ctx.Err() == nil {
			rv, err = k.watch(ctx, rv)
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errGone) {
			failures = 0
			continue // list again at once
		}
		failures++
		k.failed(err)
		d := time.Second << min(failures-1, 5) // up to 32s
		t := time.NewTimer(d/2 + rand.N(d/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (k *kubeClient) failed(err error) {
	k.mu.Lock()
	was := k.failing
	k.failing = true
	k.mu.Unlock()
	if !was {
		k.log.Warn("podlog: following this node's pods failed; new pods' events go without labels until it works",
			"api_server", k.base, "err", err)
	}
}

func (k *kubeClient) recovered() {
	k.mu.Lock()
	was := k.failing
	k.failing = false
	k.mu.Unlock()
	if was {
		k.log.Info("podlog: following this node's pods again", "api_server", k.base)
	}
}

// errGone: the watch's resource version is too old; list again.
var errGone = errors.New("resource version expired")

type podObject struct {
	Metadata struct {
		UID             string            `json:"uid"`
		Labels          map[string]string `json:"labels"`
		ResourceVersion string            `json:"resourceVersion"`
	} `json:"metadata"`
}

type podList struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Items []podObject `json:"items"`
}

// watchEvent is one line of a watch stream. For ERROR the object is a
// Status.
type watchEvent struct {
	Type   string `json:"type"`
	Object struct {
		podObject
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	} `json:"object"`
}

// maxPodList bounds the listing read, whatever the API server sends.
const maxPodList = 64 << 20

func (k *kubeClient) request(ctx context.Context, q url.Values) (*http.Response, error) {
	token, err := os.ReadFile(k.cfg.TokenFile) // bound tokens rotate: read for every request
	if err != nil {
		return nil, err
	}
	q.Set("fieldSelector", "spec.nodeName="+k.node)
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
	k.m.kubeRequests.WithLabelValues(strconv.Itoa(resp.StatusCode)).Inc()
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode == http.StatusGone {
			return nil, errGone
		}
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	return resp, nil
}

// list replaces what is known by a listing and returns its version.
func (k *kubeClient) list(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	resp, err := k.request(ctx, url.Values{"resourceVersion": {"0"}})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var pl podList
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxPodList)).Decode(&pl); err != nil {
		return "", fmt.Errorf("decoding the pod list: %w", err)
	}
	now := time.Now()
	k.mu.Lock()
	for i := range pl.Items {
		k.applyLocked(&pl.Items[i], now)
	}
	// Forget pods gone from the node a while ago; families still reading
	// their files keep their entry.
	for uid, p := range k.pods {
		if now.Unix()-p.seen.Load() > 600 && now.Sub(p.created) > 10*time.Minute {
			delete(k.pods, uid)
		}
	}
	k.broadcastLocked()
	k.mu.Unlock()
	k.recovered()
	return pl.Metadata.ResourceVersion, nil
}

// watch follows changes from version rv until the watch ends, and returns
// the last version seen.
func (k *kubeClient) watch(ctx context.Context, rv string) (string, error) {
	timeout := max(k.cfg.RefreshInterval, time.Second)
	ctx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
	defer cancel()
	resp, err := k.request(ctx, url.Values{
		"watch": {"1"}, "resourceVersion": {rv}, "allowWatchBookmarks": {"true"},
		"timeoutSeconds": {strconv.Itoa(int(timeout.Seconds()))},
	})
	if err != nil {
		return rv, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev watchEvent
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				return rv, nil // the watch ran its time: renew it
			}
			return rv, err
		}
		switch ev.Type {
		case "ERROR":
			if ev.Object.Code == http.StatusGone {
				return rv, errGone
			}
			return rv, fmt.Errorf("watch: %d %s", ev.Object.Code, ev.Object.Reason)
		case "ADDED", "MODIFIED":
			k.mu.Lock()
			k.applyLocked(&ev.Object.podObject, time.Now())
			k.broadcastLocked()
			k.mu.Unlock()
		}
		if v := ev.Object.Metadata.ResourceVersion; v != "" {
			rv = v // BOOKMARK and DELETED only move the version on
		}
	}
}

func (k *kubeClient) applyLocked(o *podObject, now time.Time) {
	if o.Metadata.UID == "" {
		return
	}
	fields := labelFields(o.Metadata.Labels)
	p := k.infoLocked(o.Metadata.UID)
	p.labels.Store(&fields)
	p.known.Store(true)
	p.seen.Store(now.Unix())
}

func (k *kubeClient) broadcastLocked() {
	close(k.changed)
	k.changed = make(chan struct{})
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
