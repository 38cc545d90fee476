package podlog

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The agent as a process of its own: the test binary, started again with
// PODLOG_TEST_AGENT set, runs an agent until it is killed.
type agentSpec struct {
	Root, State, Data, URL string
}

func init() { runAgentMain = agentMain }

func agentMain() bool {
	raw := os.Getenv("PODLOG_TEST_AGENT")
	if raw == "" {
		return false
	}
	var spec agentSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "agent spec:", err)
		os.Exit(2)
	}
	cfg, fc := agentConfigs(spec.Root, spec.State, spec.URL)
	a, err := buildAgent(cfg, fc, spec.Data)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(2)
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := 0
	for _, c := range []interface{ Shutdown(context.Context) error }{a.r, a.pipe, a.fwd} {
		if err := c.Shutdown(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "shutdown:", err)
			code = 1
		}
	}
	os.Exit(code)
	return true
}

type agentProcess struct {
	cmd *exec.Cmd
}

func startAgentProcess(t *testing.T, spec agentSpec) *agentProcess {
	t.Helper()
	raw, _ := json.Marshal(spec)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PODLOG_TEST_AGENT="+string(raw))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := sc.Scan() && sc.Text() == "ready"
		ready <- ok
		for sc.Scan() {
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("the agent process did not start")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the agent process did not start in 30s")
	}
	return &agentProcess{cmd: cmd}
}

func (p *agentProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := p.cmd.Wait()
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("agent did not die of SIGKILL: %v", err)
	}
}

func (p *agentProcess) terminate(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("agent did not stop cleanly on SIGTERM: %v", err)
	}
}

// TestSIGKILLedAgentLosesNothing kills the agent process with SIGKILL
// three times while pods write and rotate; every line must arrive once by
// id.
func TestSIGKILLedAgentLosesNothing(t *testing.T) {
	const pods = 8
	lines, rate := 200_000, 12_000.0
	if raceEnabled {
		lines, rate = 40_000, 4_000
	}
	perPod := lines / pods
	tmp := t.TempDir()
	spec := agentSpec{Root: filepath.Join(tmp, "pods"), State: filepath.Join(tmp, "state"), Data: filepath.Join(tmp, "agent")}
	for _, d := range []string{spec.Root, spec.Data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ids := newIDLog(pods, perPod)
	agg := startAggregator(t, filepath.Join(tmp, "aggregator"), "127.0.0.1:0", ids)
	defer agg.stop()
	spec.URL = agg.url()

	simPods := make([]*simPod, pods)
	for i := range simPods {
		simPods[i] = newSimPod(t, spec.Root, i, rotateRename, perPod)
		simPods[i].rotateBytes = 512 << 10
	}
	agent := startAgentProcess(t, spec)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for _, p := range simPods {
		wg.Add(1)
		go func(p *simPod) {
			defer wg.Done()
			if err := p.run(ctx, rate/pods); err != nil && ctx.Err() == nil {
				t.Error(err)
			}
		}(p)
	}
	written := func() float64 {
		n := 0
		for _, p := range simPods {
			n += p.written()
		}
		return float64(n) / float64(lines)
	}
	for _, at := range []float64{0.2, 0.45, 0.7} {
		waitFor(t, fmt.Sprintf("%.0f%% written", at*100), 120*time.Second, func() bool { return written() >= at })
		agent.kill(t)
		t.Logf("agent SIGKILLed at %.0f%%", written()*100)
		time.Sleep(100 * time.Millisecond)
		agent = startAgentProcess(t, spec)
	}
	wg.Wait()
	waitProgress(t, "every line at the aggregator", lines, func() int { all, _ := ids.stats(0); return all })
	agent.terminate(t)

	ids.mu.Lock()
	defer ids.mu.Unlock()
	for _, p := range ids.problems {
		t.Error(p)
	}
	t.Logf("%d lines, %d distinct ids, %d documents stored (%d sent again after the kills)", lines, len(ids.idLine), ids.copies, ids.copies-lines)
	if len(ids.idLine) != lines || ids.problemN > 0 {
		t.Errorf("%d distinct ids for %d lines, %d problems", len(ids.idLine), lines, ids.problemN)
	}
}
