package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leitstand/leitstand/internal/peers"
)

// TestAgentForwardsPodLogsIntoElasticsearchExactlyOnce runs two leitstand
// processes as they run on Kubernetes: an agent (role: agent) tailing a
// directory in the kubelet's layout, and an aggregator with Elasticsearch
// behind its spool. Pods write while their files rotate; the agent is
// SIGKILLed twice and restarted on its state directory. Every line must
// end up in Elasticsearch exactly once, with its pod's metadata.
func TestAgentForwardsPodLogsIntoElasticsearchExactlyOnce(t *testing.T) {
	peers.Slow(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	es, err := peers.StartElasticsearch(ctx, peers.ElasticsearchOptions{})
	peers.Check(t, err)
	peers.Cleanup(t, es)

	agg := startDaemon(t, fmt.Sprintf(`sinks:
  file:
    enabled: false
  elasticsearch:
    enabled: true
    urls: [%s]
    namespace: agente2e
`, es.URL))

	root := t.TempDir()
	agent := startDaemon(t, fmt.Sprintf(`role: agent
podlog:
  roots: [%s]
  node_name: node-e2e
  checkpoint_interval: 100ms
  poll_interval: 50ms
  batch_wait: 50ms
  rotate_wait: 2s
sinks:
  forward:
    urls: [%s/v1/ingest]
    min_backoff: 50ms
`, root, agg.url))

	const pods, linesPerPod, rotateEvery = 4, 5000, 1500
	var wg sync.WaitGroup
	errs := make(chan error, pods)
	for p := 0; p < pods; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			errs <- writePod(root, p, linesPerPod, rotateEvery, 6*time.Second)
		}(p)
	}
	// Kill the agent twice while the pods write and rotate.
	for kill := 0; kill < 2; kill++ {
		time.Sleep(2 * time.Second)
		if err := agent.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-agent.exited
		agent = restartDaemon(t, agent)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	want := pods * linesPerPod
	index := "logs-kubernetes.container-agente2e"
	var got map[string]int
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got = searchMessages(t, es.URL, index)
		if len(got) >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d lines in Elasticsearch after 2 minutes\nagent:\n%s\naggregator:\n%s", len(got), want, tail(agent.stderr.String(), 40), tail(agg.stderr.String(), 40))
		}
		time.Sleep(time.Second)
	}
	// Give late duplicates a chance to show up before counting them.
	time.Sleep(2 * time.Second)
	got = searchMessages(t, es.URL, index)
	missing, dups := 0, 0
	for p := 0; p < pods; p++ {
		for i := 0; i < linesPerPod; i++ {
			switch n := got[podLine(p, i)]; {
			case n == 0:
				if missing++; missing < 5 {
					t.Errorf("%s is missing", podLine(p, i))
				}
			case n > 1:
				if dups++; dups < 5 {
					t.Errorf("%s stored %d times", podLine(p, i), n)
				}
			}
		}
	}
	if len(got) != want {
		t.Errorf("%d distinct messages in Elasticsearch, want %d", len(got), want)
	}
	if missing+dups > 0 {
		t.Fatalf("%d lines missing, %d stored more than once", missing, dups)
	}

	// The pod's identity comes from the path, the node from the config.
	doc := firstDoc(t, es.URL, index, podLine(2, 7))
	for path, want := range map[string]string{
		"kubernetes.namespace":      "shop",
		"kubernetes.pod.name":       "web-2",
		"kubernetes.container.name": "app",
		"kubernetes.node.name":      "node-e2e",
		"host.name":                 "node-e2e",
		"event.dataset":             "kubernetes.container",
	} {
		if got := lookup(doc, path); got != want {
			t.Errorf("%s = %v, want %q", path, got, want)
		}
	}
	if code := agent.stop(t); code != 0 {
		t.Errorf("agent exit %d after SIGTERM", code)
	}
	if code := agg.stop(t); code != 0 {
		t.Errorf("aggregator exit %d after SIGTERM", code)
	}
	t.Logf("%d lines from %d pods with rotations every %d lines and 2 agent kills: each in Elasticsearch once", want, pods, rotateEvery)
}

func podLine(p, i int) string { return fmt.Sprintf("agent-e2e p%d l%d", p, i) }

// writePod writes lines in the CRI format as the kubelet's runtime does,
// spread over d, rotating by rename-and-create every rotateEvery lines.
func writePod(root string, p, lines, rotateEvery int, d time.Duration) error {
	dir := filepath.Join(root, fmt.Sprintf("shop_web-%d_0000000%d-aaaa-bbbb-cccc-dddddddddddd", p, p), "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	live := filepath.Join(dir, "0.log")
	f, err := os.Create(live)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	pause := d / time.Duration(lines/100)
	for i := 0; i < lines; i++ {
		if i > 0 && i%rotateEvery == 0 {
			if err := w.Flush(); err != nil {
				return err
			}
			f.Close()
			rotated := fmt.Sprintf("%s.%s", live, time.Now().UTC().Format("20060102-150405.000000000"))
			if err := os.Rename(live, rotated); err != nil {
				return err
			}
			if f, err = os.Create(live); err != nil {
				return err
			}
			w.Reset(f)
		}
		fmt.Fprintf(w, "%s stdout F %s\n", time.Now().UTC().Format(time.RFC3339Nano), podLine(p, i))
		if i%100 == 99 {
			if err := w.Flush(); err != nil {
				return err
			}
			time.Sleep(pause)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// firstDoc returns the _source of the document whose message is msg.
func firstDoc(t *testing.T, esURL, index, msg string) map[string]any {
	t.Helper()
	q := fmt.Sprintf(`{"size":1,"query":{"match_phrase":{"message":%q}}}`, msg)
	resp, err := http.Post(esURL+"/"+index+"/_search", "application/json", strings.NewReader(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Hits struct {
			Hits []struct {
				Source map[string]any `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || len(r.Hits.Hits) == 0 {
		t.Fatalf("no document with message %q (%v)", msg, err)
	}
	return r.Hits.Hits[0].Source
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

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
