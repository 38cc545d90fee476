package podlog

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// kubeletScale is the size of the kubelet imitation: a million lines
// rotated every 2MiB, or a tenth of it rotated every 256KiB under the race
// detector, whose slowdown would make the run long without finding more.
func kubeletScale() (lines int, rate float64, rotateBytes int64) {
	if raceEnabled {
		return 100_000, 8_000, 256 << 10
	}
	return 1_000_000, 40_000, 2 << 20
}

// TestKubeletImitation: 20 pods write at a high rate while their logs are
// rotated every 2MiB, by rename and create with the older files compressed
// (the kubelet's way) and, in a second run, by copytruncate; the agent is
// killed (abandoned without saving anything) and restarted three times, the
// aggregator restarts once, and one pod is deleted while its files are being
// read. Every line must reach the aggregator, under one id, with partial
// lines joined and over-long lines truncated and flagged.
func TestKubeletImitation(t *testing.T) {
	for _, mode := range []string{rotateRename, rotateCopyTruncate} {
		t.Run(mode, func(t *testing.T) { kubeletRun(t, mode) })
	}
}

func kubeletRun(t *testing.T, mode string) {
	const pods = 20
	const deleted = pods - 1 // written in one burst, then deleted while read
	lines, rate, rotateBytes := kubeletScale()
	perPod := lines / pods
	tmp := t.TempDir()
	root := filepath.Join(tmp, "var-log-pods")
	state := filepath.Join(tmp, "var-lib-leitstand")
	aggDir := filepath.Join(tmp, "aggregator")
	agentDir := filepath.Join(tmp, "agent")
	for _, d := range []string{root, aggDir, agentDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	ids := newIDLog(pods, perPod)
	agg := startAggregator(t, aggDir, "127.0.0.1:0", ids)
	cfg, fc := agentConfigs(root, state, agg.url())
	agent := startAgent(t, cfg, fc, agentDir)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	simPods := make([]*simPod, pods)
	for i := range simPods {
		simPods[i] = newSimPod(t, root, i, mode, perPod)
		simPods[i].rotateBytes = rotateBytes
	}
	var wg sync.WaitGroup
	errs := make(chan error, pods)
	for i := 0; i < deleted; i++ {
		wg.Add(1)
		go func(p *simPod) {
			defer wg.Done()
			if err := p.run(ctx, rate/float64(pods-1)); err != nil && ctx.Err() == nil {
				errs <- err
			}
		}(simPods[i])
	}
	written := func() float64 {
		n := 0
		for _, p := range simPods[:deleted] {
			n += p.written()
		}
		return float64(n) / float64(perPod*deleted)
	}
	waitWritten := func(frac float64) {
		for written() < frac {
			select {
			case err := <-errs:
				t.Fatalf("pod: %v", err)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	phase := func(what string) {
		t.Logf("%6.1fs %3.0f%% written: %s", time.Since(start).Seconds(), written()*100, what)
	}
	kill := func() {
		phase("agent killed")
		agent.crash()
		time.Sleep(200 * time.Millisecond)
		agent = startAgent(t, cfg, fc, agentDir)
	}

	waitWritten(0.15)
	kill()
	waitWritten(0.30)
	phase("aggregator restarts")
	agg.stop()
	time.Sleep(500 * time.Millisecond)
	agg = startAggregator(t, aggDir, agg.addr, ids)
	waitWritten(0.45)
	kill()

	// The deleted pod: its first lines are read, then it writes the rest
	// in one burst (rotating as it goes) and the pod directory is removed
	// while the agent is still reading.
	waitWritten(0.55)
	phase("pod deletion")
	dp := simPods[deleted]
	if err := dp.write(100); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deleted pod's first lines", 30*time.Second, func() bool { _, n := ids.stats(deleted); return n > 0 })
	for dp.written() < perPod {
		if err := dp.write(min(500, perPod-dp.written())); err != nil {
			t.Fatal(err)
		}
	}
	dp.f.Close()
	waitFor(t, "the agent to have seen every file of the deleted pod", 30*time.Second, func() bool {
		return agentKnowsAll(agent.r, dp)
	})
	_, before := ids.stats(deleted)
	if err := os.RemoveAll(filepath.Dir(dp.dir)); err != nil {
		t.Fatal(err)
	}
	if before == perPod {
		t.Errorf("the deleted pod was read to its end before it was deleted: nothing tested")
	}
	t.Logf("pod deleted with %d of its %d lines delivered", before, perPod)
	waitProgress(t, "the deleted pod's lines", perPod, func() int { _, n := ids.stats(deleted); return n })

	phase("pod deleted and drained")
	waitWritten(0.75)
	kill()
	wg.Wait()
	phase("pods done")
	select {
	case err := <-errs:
		t.Fatalf("pod: %v", err)
	default:
	}
	wrote := time.Since(start)
	waitProgress(t, "every line at the aggregator", lines, func() int { all, _ := ids.stats(0); return all })
	delivered := time.Since(start)
	agent.stop(t)
	agg.stop()

	// The file sink's files: every line there, nothing else.
	copies, bad, total := fileCounts(t, filepath.Join(aggDir, "events"), pods, perPod)
	missing, dupLines := 0, 0
	for p := range copies {
		for seq, c := range copies[p] {
			switch {
			case c == 0:
				if missing < 5 {
					t.Errorf("p%d line %d missing from the files", p, seq)
				}
				missing++
			case c > 1:
				dupLines++
			}
		}
	}
	ids.mu.Lock()
	defer ids.mu.Unlock()
	for _, p := range ids.problems {
		t.Error(p)
	}
	if bad > 0 || missing > 0 || ids.problemN > 0 {
		t.Errorf("%d lines missing, %d unexpected documents, %d id problems", missing, bad, ids.problemN)
	}
	rotations := 0
	for _, p := range simPods {
		rotations += p.rotations
	}
	if ids.truncated == 0 {
		t.Error("no over-long line came through")
	}
	t.Logf("%s: %d lines from %d pods, %d rotations; written in %s, all delivered after %s",
		mode, lines, pods, rotations, wrote.Round(time.Millisecond), delivered.Round(time.Millisecond))
	t.Logf("aggregator: %d distinct ids = %d lines (%d over-long, truncated and flagged); %d documents stored in all, %d lines stored more than once (at-least-once transport, deduplicated by id)",
		len(ids.idLine), lines, ids.truncated, total, dupLines)
}

// agentKnowsAll reports whether the agent has a record for every file of
// the pod's container, so that it holds them open.
func agentKnowsAll(r *Receiver, p *simPod) bool {
	st := r.stateStore()
	if st == nil {
		return false
	}
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return false
	}
	family := filepath.Base(filepath.Dir(p.dir)) + "/app/0.log"
	for _, e := range entries {
		if e.Name() != "0.log" && !rotatedOf(e.Name(), "0.log") {
			continue
		}
		path := filepath.Join(p.dir, e.Name())
		src, _, err := openSource(path, filepath.Ext(path) == ".gz")
		if err != nil {
			return false
		}
		id, ok, _ := fileID(family, src)
		src.Close()
		if !ok || st.get(id) == nil {
			return false
		}
	}
	return true
}

// waitProgress waits until count reaches want, as long as it keeps
// growing: on a loaded machine the agent is slower, not wrong; it fails
// when nothing arrived for 30s (or count passes want).
func waitProgress(t *testing.T, what string, want int, count func() int) {
	t.Helper()
	const stall = 30 * time.Second
	last, lastAt := -1, time.Now()
	for {
		n := count()
		switch {
		case n == want:
			return
		case n > want:
			t.Fatalf("%s: %d, more than the %d written", what, n, want)
		case n != last:
			last, lastAt = n, time.Now()
		case time.Since(lastAt) > stall:
			t.Fatalf("timed out waiting for %s: %d of %d, none more for %s", what, n, want, stall)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
