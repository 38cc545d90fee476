// Command agentbench measures the node agent as a process of its own, the
// way the OpenTelemetry Collector's load tests do: pods write CRI logs
// (rotated by size like the kubelet, older files compressed), the agent
// (podlog receiver, pipeline with the anonymizer, forward sink) tails and
// forwards them to an aggregator intake (collector/httpin in front of a
// pipeline that counts), and the agent's CPU time and peak RSS are read
// from /proc.
//
//	go run ./collector/podlog/internal/agentbench -rate 10000 -duration 60s
//	go run ./collector/podlog/internal/agentbench -backlog 2000000
//
// The first form holds a steady rate and reports the agent's CPU (percent
// of one core) and peak RSS; the second writes a backlog first and reports
// how fast the agent drains it, in lines per second and per CPU-second.
// Writers and aggregator run in this process, the agent in a child.
package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leitstand/leitstand/anonymize"
	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/httpin"
	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/collector/podlog"
	"github.com/leitstand/leitstand/collector/sink/forward"
	"github.com/leitstand/leitstand/collector/telemetry"
)

func main() {
	var (
		agentMode = flag.Bool("agent", false, "run as the agent (internal)")
		root      = flag.String("root", "", "pod log root (agent mode)")
		state     = flag.String("state", "", "state directory (agent mode)")
		url       = flag.String("url", "", "aggregator intake URL (agent mode)")
		noAnon    = flag.Bool("no-anonymize", false, "leave the anonymizer out of the agent's pipeline")
		rate      = flag.Float64("rate", 10000, "lines per second, all pods together")
		pods      = flag.Int("pods", 20, "pods writing")
		lineBytes = flag.Int("line-bytes", 180, "bytes of text per line")
		warmup    = flag.Duration("warmup", 10*time.Second, "time before measuring")
		duration  = flag.Duration("duration", 60*time.Second, "time measured")
		backlog   = flag.Int("backlog", 0, "write this many lines first, then measure how fast the agent drains them")
		batchWait = flag.Duration("batch-wait", podlog.DefaultConfig().BatchWait, "the agent's batch_wait")
	)
	flag.Parse()
	if *agentMode {
		runAgent(*root, *state, *url, !*noAnon, *batchWait)
		return
	}
	b := &bench{pods: *pods, lineBytes: *lineBytes, anonymize: !*noAnon, batchWait: *batchWait}
	var err error
	if *backlog > 0 {
		err = b.drain(*backlog)
	} else {
		err = b.steady(*rate, *warmup, *duration)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentbench:", err)
		os.Exit(1)
	}
}

// ---- the agent process ----

func runAgent(root, state, url string, anon bool, batchWait time.Duration) {
	level := slog.LevelWarn
	if os.Getenv("AGENTBENCH_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	reg := prometheus.NewRegistry()
	m := telemetry.New(reg)
	cfg := podlog.DefaultConfig()
	cfg.Enabled = true
	cfg.Roots = []string{root}
	cfg.StateDir = state
	cfg.NodeName = "bench-node"
	cfg.BatchWait = batchWait
	fc := forward.DefaultConfig()
	fc.URLs = []string{url}
	fwd, err := forward.New(fc, m, reg, log)
	check(err)
	var stages []collector.Stage
	if anon {
		a, err := anonymize.New(anonymize.DefaultConfig(), state, reg)
		check(err)
		stages = append(stages, a)
	}
	pc := pipeline.DefaultConfig()
	pc.Workers = cfg.MaxInflightBatches // the forward sink waits on the network
	pipe := pipeline.New(pc, stages, []collector.Sink{fwd}, m, log)
	r, err := podlog.New(cfg, pipe, m, reg, log)
	check(err)
	for _, c := range []collector.Component{fwd, pipe, r} {
		check(c.Start(context.Background()))
	}
	if path := os.Getenv("AGENTBENCH_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			_ = pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	if path := os.Getenv("AGENTBENCH_MEMPROFILE"); path != "" {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(os.Stderr, "agent memstats: heap inuse %.1f MiB, heap sys %.1f MiB, heap idle %.1f MiB released %.1f MiB, stacks %.1f MiB, other sys %.1f MiB, total sys %.1f MiB, GC %d\n",
			mib(ms.HeapInuse), mib(ms.HeapSys), mib(ms.HeapIdle), mib(ms.HeapReleased), mib(ms.StackSys), mib(ms.OtherSys+ms.GCSys+ms.MSpanSys+ms.MCacheSys+ms.BuckHashSys), mib(ms.Sys), ms.NumGC)
		if f, err := os.Create(path); err == nil {
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range []collector.Component{r, pipe, fwd} {
		_ = c.Shutdown(ctx)
	}
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentbench agent:", err)
		os.Exit(2)
	}
}

// ---- the parent: writers, aggregator, measurement ----

type bench struct {
	pods      int
	lineBytes int
	anonymize bool
	batchWait time.Duration
	dir       string
	delivered atomic.Int64
	written   atomic.Int64
	srv       *http.Server
	pipe      *pipeline.Pipeline
}

// counter is the aggregator's only sink.
type counter struct{ b *bench }

func (c counter) Name() string                   { return "count" }
func (c counter) Start(context.Context) error    { return nil }
func (c counter) Shutdown(context.Context) error { return nil }
func (c counter) Consume(_ context.Context, b *collector.Batch) error {
	c.b.delivered.Add(int64(b.Len()))
	return nil
}

func (b *bench) startAggregator() (string, error) {
	reg := prometheus.NewRegistry()
	m := telemetry.New(reg)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b.pipe = pipeline.New(pipeline.DefaultConfig(), nil, []collector.Sink{counter{b}}, m, log)
	if err := b.pipe.Start(context.Background()); err != nil {
		return "", err
	}
	h, err := httpin.New(httpin.DefaultConfig(), b.pipe, m, log)
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	mux := http.NewServeMux()
	mux.Handle(httpin.Path, h)
	b.srv = &http.Server{Handler: mux}
	go func() { _ = b.srv.Serve(ln) }()
	return "http://" + ln.Addr().String() + httpin.Path, nil
}

type agentProc struct {
	cmd *exec.Cmd
	pid int
}

func (b *bench) startAgent(url string) (*agentProc, error) {
	args := []string{"-agent", "-root", filepath.Join(b.dir, "pods"), "-state", filepath.Join(b.dir, "state"), "-url", url}
	if !b.anonymize {
		args = append(args, "-no-anonymize")
	}
	args = append(args, "-batch-wait", b.batchWait.String())
	cmd := exec.Command(os.Args[0], args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "ready" {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("the agent did not start")
	}
	go func() {
		for sc.Scan() {
		}
	}()
	return &agentProc{cmd: cmd, pid: cmd.Process.Pid}, nil
}

func (a *agentProc) stop() {
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	_ = a.cmd.Wait()
}

// cpu returns the process's user and system time.
func (a *agentProc) cpu() (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", a.pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name in parentheses; utime and stime are
	// fields 14 and 15 of the whole line.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clkTck, nil
}

// memory returns VmHWM (peak RSS) and VmRSS in bytes.
func (a *agentProc) memory() (peak, now int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmHWM:":
			peak = kb << 10
		case "VmRSS:":
			now = kb << 10
		}
	}
	return peak, now, nil
}

func (b *bench) setup() (*agentProc, error) {
	dir, err := os.MkdirTemp("", "agentbench-")
	if err != nil {
		return nil, err
	}
	b.dir = dir
	if err := os.MkdirAll(filepath.Join(dir, "pods"), 0o755); err != nil {
		return nil, err
	}
	url, err := b.startAggregator()
	if err != nil {
		return nil, err
	}
	return b.startAgent(url)
}

func (b *bench) cleanup(a *agentProc) {
	if a != nil {
		a.stop()
	}
	if b.srv != nil {
		_ = b.srv.Close()
	}
	if b.pipe != nil {
		_ = b.pipe.Shutdown(context.Background())
	}
	os.RemoveAll(b.dir)
}

func (b *bench) steady(rate float64, warmup, duration time.Duration) error {
	agent, err := b.setup()
	defer b.cleanup(agent)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < b.pods; i++ {
		w, err := newWriter(filepath.Join(b.dir, "pods"), i, b.lineBytes)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() { defer wg.Done(); w.run(ctx, rate/float64(b.pods), &b.written) }()
	}
	for t := time.Now(); time.Since(t) < warmup; {
		time.Sleep(time.Second)
		if os.Getenv("AGENTBENCH_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "warmup %s: written %d delivered %d\n", time.Since(t).Round(time.Second), b.written.Load(), b.delivered.Load())
		}
	}
	cpu0, err := agent.cpu()
	if err != nil {
		return err
	}
	d0, w0, t0 := b.delivered.Load(), b.written.Load(), time.Now()
	var samples []int64
	for time.Since(t0) < duration {
		time.Sleep(time.Second)
		_, rss, _ := agent.memory()
		samples = append(samples, rss)
	}
	cpu1, _ := agent.cpu()
	d1, w1, elapsed := b.delivered.Load(), b.written.Load(), time.Since(t0)
	peak, _, _ := agent.memory()
	cancel()
	wg.Wait()
	lag := b.written.Load() - b.delivered.Load()
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	median := int64(0)
	if len(samples) > 0 {
		median = samples[len(samples)/2]
	}
	fmt.Printf("agentbench steady: %d pods, target %.0f lines/s, %d bytes per line, anonymizer %v, batch_wait %s, GOMAXPROCS %d\n",
		b.pods, rate, b.lineBytes, b.anonymize, b.batchWait, runtime.GOMAXPROCS(0))
	fmt.Printf("  written:          %.0f lines/s over %s (backlog at start %d lines)\n", float64(w1-w0)/elapsed.Seconds(), elapsed.Round(time.Second), w0-d0)
	fmt.Printf("  forwarded:        %.0f lines/s\n", float64(d1-d0)/elapsed.Seconds())
	fmt.Printf("  agent CPU:        %.1f%% of one core (%s CPU in %s)\n", 100*(cpu1-cpu0).Seconds()/elapsed.Seconds(), cpu1-cpu0, elapsed.Round(time.Second))
	fmt.Printf("  agent RSS:        peak %.1f MiB, median %.1f MiB\n", float64(peak)/(1<<20), float64(median)/(1<<20))
	fmt.Printf("  backlog at end:   %d lines written but not yet forwarded\n", lag)
	return nil
}

func (b *bench) drain(lines int) error {
	dir, err := os.MkdirTemp("", "agentbench-")
	if err != nil {
		return err
	}
	b.dir = dir
	per := lines / b.pods
	for i := 0; i < b.pods; i++ {
		w, err := newWriter(filepath.Join(b.dir, "pods"), i, b.lineBytes)
		if err != nil {
			return err
		}
		w.noRotate = true
		for n := 0; n < per; n += 100 {
			if err := w.write(min(100, per-n)); err != nil {
				return err
			}
		}
		w.f.Close()
	}
	total := int64(per * b.pods)
	url, err := b.startAggregator()
	if err != nil {
		return err
	}
	start := time.Now()
	agent, err := b.startAgent(url)
	defer b.cleanup(agent)
	if err != nil {
		return err
	}
	for b.delivered.Load() < total {
		time.Sleep(10 * time.Millisecond)
		if time.Since(start) > 30*time.Minute {
			return fmt.Errorf("only %d of %d lines forwarded in 30 minutes", b.delivered.Load(), total)
		}
	}
	elapsed := time.Since(start)
	cpu, _ := agent.cpu()
	peak, _, _ := agent.memory()
	fmt.Printf("agentbench drain: %d lines from %d pods (%d bytes per line), anonymizer %v, GOMAXPROCS %d\n",
		total, b.pods, b.lineBytes, b.anonymize, runtime.GOMAXPROCS(0))
	fmt.Printf("  forwarded:        %.0f lines/s (%s)\n", float64(total)/elapsed.Seconds(), elapsed.Round(time.Millisecond))
	fmt.Printf("  per core:         %.0f lines per CPU-second of the agent (%s CPU)\n", float64(total)/cpu.Seconds(), cpu)
	fmt.Printf("  agent RSS:        peak %.1f MiB\n", float64(peak)/(1<<20))
	return nil
}

// ---- pods ----

// writer writes one container's CRI log and rotates it like the kubelet:
// at 10MiB the live file is renamed and a new one created, older rotated
// files are compressed, five files are kept.
type writer struct {
	noRotate bool // a backlog is written before the agent starts, which reads rotated files only from its own time on
	dir      string
	idx      int
	text     string
	f        *os.File
	size     int64
	seq      int
	rot      int
	buf      []byte
	bytes    int
}

func newWriter(root string, idx, lineBytes int) (*writer, error) {
	dir := filepath.Join(root, fmt.Sprintf("bench_load-%02d-5d8b7c_%08x-0000-4000-8000-%012x", idx, idx, idx), "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	text := strings.Repeat("GET /api/v1/orders?page=2 status=200 took=12ms bytes=5120 cache=miss the quick brown fox ", 1+lineBytes/80)[:lineBytes]
	w := &writer{dir: dir, idx: idx, text: text, bytes: lineBytes}
	return w, w.open()
}

func (w *writer) open() error {
	f, err := os.OpenFile(filepath.Join(w.dir, "0.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	w.f, w.size = f, 0
	return nil
}

// write appends n lines, one write each, as a container runtime does.
func (w *writer) write(n int) error {
	for i := 0; i < n; i++ {
		b := w.buf[:0]
		b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, " stdout F "...)
		b = strconv.AppendInt(b, int64(w.seq), 10)
		b = append(b, ' ')
		b = append(b, w.text[:len(w.text)-8]...)
		b = append(b, '\n')
		w.seq++
		w.buf = b
		if _, err := w.f.Write(b); err != nil {
			return err
		}
		w.size += int64(len(b))
		if w.size >= 10<<20 && !w.noRotate {
			if err := w.rotate(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *writer) rotate() error {
	w.rot++
	live := filepath.Join(w.dir, "0.log")
	if err := os.Rename(live, fmt.Sprintf("%s.%s-%04d", live, time.Now().UTC().Format("20060102-150405"), w.rot)); err != nil {
		return err
	}
	w.f.Close()
	if err := w.open(); err != nil {
		return err
	}
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return err
	}
	var old []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "0.log.") && !strings.HasSuffix(e.Name(), ".tmp") {
			old = append(old, e.Name())
		}
	}
	sort.Strings(old)
	for _, name := range old[:len(old)-1] {
		if !strings.HasSuffix(name, ".gz") {
			if err := gzipFile(filepath.Join(w.dir, name)); err != nil {
				return err
			}
		}
	}
	for len(old) > 4 {
		os.Remove(filepath.Join(w.dir, old[0]))
		old = old[1:]
	}
	return nil
}

func gzipFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	f, err := os.Create(path + ".gz.tmp")
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(f)
	if _, err := zw.Write(data); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(path+".gz.tmp", path+".gz"); err != nil {
		return err
	}
	return os.Remove(path)
}

// run writes at rate lines per second in bursts of ten milliseconds.
func (w *writer) run(ctx context.Context, rate float64, written *atomic.Int64) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	done := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		due := int(rate * time.Since(start).Seconds())
		if n := due - done; n > 0 {
			if err := w.write(n); err != nil {
				fmt.Fprintln(os.Stderr, "writer:", err)
				return
			}
			done += n
			written.Add(int64(n))
		}
	}
}
