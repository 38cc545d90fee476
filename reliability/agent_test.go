package reliability

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCrashAgent: pods write CRI log lines in the kubelet's layout (and
// rotate) while a leitstand agent (role: agent) tails them and forwards
// to an aggregator — the leitstand binary with Elasticsearch behind its
// spool. The agent is SIGKILLed at random moments and restarted on its
// state directory. Every line a pod wrote must be in Elasticsearch
// exactly once: for a file source, written is acknowledged.
func TestCrashAgent(t *testing.T) {
	suite.Require(t)
	rec := scenario(t, 12, "Crash consistency: agent forwarding (role: agent)")
	kills := envInt(t, "LEITSTAND_RELIABILITY_KILLS", 20)
	r := rng(t.Name())
	const namespace = "crashagent"
	agg := newDaemon(t, "aggregator", esConfig(namespace, ""), daemonOptions{})
	root := t.TempDir()
	agent := newDaemon(t, "agent", fmt.Sprintf(`role: agent
http:
  listen: @HTTP@
podlog:
  roots: [%s]
  node_name: node-reliability
  checkpoint_interval: 100ms
  poll_interval: 50ms
  batch_wait: 50ms
  rotate_wait: 2s
sinks:
  forward:
    urls: [%s/v1/ingest]
    min_backoff: 50ms
`, root, agg.url), daemonOptions{})

	const pods, rotateEvery, perSecond = 4, 2000, 500 // lines per pod
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var written atomic.Int64
	errs := make(chan error, pods)
	for p := 0; p < pods; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			n, err := writePodUntil(root, p, rotateEvery, perSecond, stop)
			written.Add(int64(n))
			errs <- err
		}(p)
	}
	start := time.Now()
	var moments []string
	aggKills := 0
	for i := 1; i <= kills; i++ {
		after := time.Duration(300+r.IntN(1700)) * time.Millisecond
		time.Sleep(after)
		// Every fifth kill hits the aggregator: the agent keeps reading
		// and retries its unacknowledged batches until the aggregator is
		// back on the same spool.
		victim, d := "agent", agent
		if i%5 == 0 {
			victim, d = "aggregator", agg
			aggKills++
		}
		d.kill()
		moments = append(moments, victim+" "+after.Round(10*time.Millisecond).String())
		t.Logf("kill %d/%d: SIGKILL of the %s %s after ready", i, kills, victim, after)
		d.start(true)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	loadTime := time.Since(start)
	want := map[string]string{}
	for p := 0; p < pods; p++ {
		for i := 0; i < podCount(p); i++ {
			want[podLine(p, i)] = ""
		}
	}
	if len(want) != int(written.Load()) {
		t.Fatalf("bookkeeping: %d lines recorded, %d written", len(want), written.Load())
	}
	c := reconcile(t, "logs-*-"+namespace, want, want, 3*time.Minute)
	rec.counts(c)
	rec.Load = fmt.Sprintf("%d pods writing CRI lines at %d lines/s each with rename-and-create rotation every %d lines: %d lines in %s", pods, perSecond, rotateEvery, c.Sent, loadTime.Round(time.Second))
	rec.Faults = fmt.Sprintf("%d × SIGKILL at a random moment 0.3–2 s after ready (seed %d), %d of them the aggregator (every fifth), the rest the agent, each restarted on its state directory or spool: %s", kills, seed, aggKills, strings.Join(moments, ", "))
	rec.note("for a file source every written line counts as acknowledged; the aggregator is leitstand with Elasticsearch behind its spool")
	if code := agent.stop(); code != 0 {
		t.Errorf("agent exit %d after SIGTERM", code)
	}
	if code := agg.stop(); code != 0 {
		t.Errorf("aggregator exit %d after SIGTERM", code)
	}
}

var podCounts sync.Map // pod → lines written

func podCount(p int) int {
	v, _ := podCounts.Load(p)
	n, _ := v.(int)
	return n
}

func podDir(p int) string {
	return filepath.Join(fmt.Sprintf("shop_web-%d_0000000%d-aaaa-bbbb-cccc-dddddddddddd", p, p), "app")
}

func podLine(p, i int) string { return fmt.Sprintf("reliability-agent p%d l%d", p, i) }

// writePodUntil writes CRI lines as a container runtime does, perSecond a
// second in bursts of 50, rotating by rename-and-create every rotateEvery
// lines, until stop; it returns how many lines it wrote.
func writePodUntil(root string, p, rotateEvery, perSecond int, stop <-chan struct{}) (int, error) {
	dir := filepath.Join(root, podDir(p))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	live := filepath.Join(dir, "0.log")
	f, err := os.Create(live)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriter(f)
	pause := time.Second * 50 / time.Duration(perSecond)
	i := 0
	defer func() { podCounts.Store(p, i) }()
	for {
		if i > 0 && i%rotateEvery == 0 {
			if err := w.Flush(); err != nil {
				return i, err
			}
			f.Close()
			rotated := fmt.Sprintf("%s.%s", live, time.Now().UTC().Format("20060102-150405.000000000"))
			if err := os.Rename(live, rotated); err != nil {
				return i, err
			}
			if f, err = os.Create(live); err != nil {
				return i, err
			}
			w.Reset(f)
		}
		fmt.Fprintf(w, "%s stdout F %s\n", time.Now().UTC().Format(time.RFC3339Nano), podLine(p, i))
		i++
		if i%50 == 0 {
			if err := w.Flush(); err != nil {
				return i, err
			}
			select {
			case <-stop:
				return i, f.Close()
			case <-time.After(pause):
			}
		}
	}
}
