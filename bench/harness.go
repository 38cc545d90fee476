package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/leitstand/leitstand/bench/loadgen"
	"github.com/leitstand/leitstand/internal/peers"
)

// Path is the way events take into a daemon.
type Path string

// The paths measured.
const (
	PathTCP    Path = "syslog-tcp"
	PathUDP    Path = "syslog-udp"
	PathNDJSON Path = "ndjson"
	PathSentry Path = "sentry"
)

// Options configure a run of the harness.
type Options struct {
	// Mode names the preset ("quick", "full") in the results.
	Mode string
	// Reps is how often each case runs; the summary takes the median.
	Reps int
	// SyslogCount, NDJSONCount and SentryCount are messages, lines and
	// envelopes per case.
	SyslogCount, NDJSONCount, SentryCount int
	// UDPRates are the offered rates (messages/s) of the UDP cases, one
	// set of cases per rate. UDP has no flow control, so "as fast as
	// possible" would measure the sender, not the receivers.
	UDPRates []float64
	// LatencyRate is the fixed offered rate (messages or lines per
	// second) of the TCP and NDJSON cases that measure latency below
	// capacity; LatencyCount their input. 0: no such cases. The UDP cases
	// measure latency too, at their rates.
	LatencyRate  float64
	LatencyCount int
	// LatencyPeers runs rsyslog and syslog-ng in the TCP latency case
	// too (leitstand alone otherwise).
	LatencyPeers bool
	// MaxCaseSeconds bounds the input of a fixed-rate case to this many
	// seconds of sending (count = rate × MaxCaseSeconds when smaller). 0:
	// no bound.
	MaxCaseSeconds float64
	// MarkEvery is the share of messages that carry their send time
	// (leitstand-load -mark-every).
	MarkEvery int
	// Overload runs, after the other cases, leitstand alone under three
	// times its capacity: UDP at 3× the delivered rate of its most
	// overloaded UDP case in this run (or of its TCP case, when no UDP case
	// lost events), and TCP and NDJSON as fast as OverloadConns
	// connections go; OverloadCount messages each, once.
	Overload      bool
	OverloadCount int
	OverloadConns int
	// QueueSize and Workers, when not 0, replace leitstand's
	// pipeline.queue_size and pipeline.workers (for memory experiments).
	QueueSize, Workers int
	// Seed and PIIShare pick the input (loadgen.NewMix).
	Seed     uint64
	PIIShare float64
	// Only, when set, is a regular expression on case names
	// ("syslog-tcp/leitstand"); other cases are left out.
	Only string
	// RepoRoot is the repository to build from; default: found from the
	// working folder.
	RepoRoot string
	// WorkDir holds binaries, configurations and outputs; default a
	// temporary folder, removed at the end.
	WorkDir string
	// CaseTimeout bounds one case (start, send, drain). Default 5m.
	CaseTimeout time.Duration
	// Log gets progress lines; default os.Stderr.
	Log io.Writer
	// Command is recorded in the results as the way to reproduce them.
	Command string
}

// Quick is the preset for CI: a few seconds per case, each case twice
// (the overload cases once); the latency case on TCP for leitstand alone.
func Quick() Options {
	return Options{Mode: "quick", Reps: 2, SyslogCount: 200_000, NDJSONCount: 200_000, SentryCount: 20_000,
		UDPRates: []float64{50_000}, MaxCaseSeconds: 2, LatencyRate: 100_000, LatencyCount: 100_000, MarkEvery: loadgen.DefaultMarkEvery,
		Overload: true, OverloadCount: 200_000, OverloadConns: 32,
		Seed: 1, PIIShare: loadgen.DefaultPIIShare}
}

// Full is the preset for figures to publish: five times the input, three
// runs per case, UDP at three offered rates (at most 5 s of sending each).
func Full() Options {
	return Options{Mode: "full", Reps: 3, SyslogCount: 1_000_000, NDJSONCount: 1_000_000, SentryCount: 50_000,
		UDPRates: []float64{50_000, 100_000, 200_000}, LatencyRate: 100_000, LatencyCount: 300_000, LatencyPeers: true,
		MaxCaseSeconds: 5, MarkEvery: loadgen.DefaultMarkEvery,
		Overload: true, OverloadCount: 500_000, OverloadConns: 32,
		Seed: 1, PIIShare: loadgen.DefaultPIIShare}
}

// latencyHTTPClients is the generator's clients in the NDJSON latency case.
const latencyHTTPClients = 16

// overloadFactor is how far beyond leitstand's capacity the overload cases
// offer.
const overloadFactor = 3

// The overload groups; their cases run once, after the others.
const (
	OverloadUDP    = "overload/syslog-udp"
	OverloadTCP    = "overload/syslog-tcp"
	OverloadNDJSON = "overload/ndjson"
)

// Case is one daemon on one path with one input.
type Case struct {
	Name   string  `json:"name"`
	Path   Path    `json:"path"`
	Group  string  `json:"group"` // the cases compared with each other: path and rate
	Daemon string  `json:"daemon"`
	Count  int     `json:"count"`
	Rate   float64 `json:"offered_rate"` // 0: as fast as the receiver takes them
	// Conns is the generator's connections, sockets or clients (0: its
	// default). Overload marks the overload cases, which run once after
	// the others; the UDP one gets its Rate when the capacity is known.
	Conns    int  `json:"conns,omitempty"`
	Overload bool `json:"overload,omitempty"`
}

// Cases lists the cases of the options, in the order they run.
func (o Options) Cases() ([]Case, error) {
	var cs []Case
	add := func(p Path, group string, count int, rate float64, daemons ...string) {
		if rate > 0 && o.MaxCaseSeconds > 0 {
			count = min(count, int(rate*o.MaxCaseSeconds))
		}
		for _, d := range daemons {
			cs = append(cs, Case{Name: group + "/" + d, Path: p, Group: group, Daemon: d, Count: count, Rate: rate})
		}
	}
	add(PathTCP, string(PathTCP), o.SyslogCount, 0, Leitstand, Rsyslog, SyslogNG, LeitstandIPOnly)
	if o.LatencyRate > 0 {
		ds := []string{Leitstand, LeitstandFsync}
		if o.LatencyPeers {
			ds = append(ds, Rsyslog, SyslogNG)
		}
		add(PathTCP, fmt.Sprintf("%s@%g", PathTCP, o.LatencyRate), o.LatencyCount, o.LatencyRate, ds...)
	}
	for _, r := range o.UDPRates {
		add(PathUDP, fmt.Sprintf("%s@%g", PathUDP, r), o.SyslogCount, r, Leitstand, Rsyslog, SyslogNG)
	}
	add(PathNDJSON, string(PathNDJSON), o.NDJSONCount, 0, Leitstand)
	if o.LatencyRate > 0 {
		// 16 clients: with 4, each waiting for its answer, a slow answer
		// or two keep the generator below the offered rate.
		add(PathNDJSON, fmt.Sprintf("%s@%g", PathNDJSON, o.LatencyRate), o.LatencyCount, o.LatencyRate, Leitstand, LeitstandFsync)
		cs[len(cs)-2].Conns = latencyHTTPClients
		cs[len(cs)-1].Conns = latencyHTTPClients
	}
	add(PathSentry, string(PathSentry), o.SentryCount, 0, Leitstand)
	if o.Overload {
		for _, c := range []Case{
			{Path: PathUDP, Group: OverloadUDP, Conns: 2},
			{Path: PathTCP, Group: OverloadTCP, Conns: o.OverloadConns},
			{Path: PathNDJSON, Group: OverloadNDJSON, Conns: o.OverloadConns},
		} {
			c.Name, c.Daemon, c.Count, c.Overload = c.Group+"/"+Leitstand, Leitstand, o.OverloadCount, true
			cs = append(cs, c)
		}
	}
	if o.Only == "" {
		return cs, nil
	}
	re, err := regexp.Compile(o.Only)
	if err != nil {
		return nil, fmt.Errorf("only: %v", err)
	}
	cs = slices.DeleteFunc(cs, func(c Case) bool { return !re.MatchString(c.Name) })
	if len(cs) == 0 {
		return nil, fmt.Errorf("no case matches %q", o.Only)
	}
	return cs, nil
}

// binaries are the programs built for the run.
type binaries struct {
	leitstand, load string
	samples         string // the Sentry captures
}

// build compiles leitstand and the load generator with -trimpath into dir.
func build(ctx context.Context, root, dir string) (binaries, error) {
	b := binaries{
		leitstand: filepath.Join(dir, "leitstand"),
		load:      filepath.Join(dir, "leitstand-load"),
		samples:   filepath.Join(root, "bench", "testdata", "sentry"),
	}
	version := "bench"
	if out, err := exec.CommandContext(ctx, "git", "-C", root, "describe", "--tags", "--always", "--dirty").Output(); err == nil {
		version = strings.TrimSpace(string(out))
	}
	for _, t := range []struct{ out, pkg, ldflags string }{
		{b.leitstand, "./cmd/leitstand", "-X main.version=" + version},
		{b.load, "./cmd/leitstand-load", ""},
	} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", t.ldflags, "-o", t.out, t.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("go build %s: %v\n%s", t.pkg, err, out)
		}
	}
	return b, nil
}

// Run builds the binaries, installs the peers if needed, runs every case
// Reps times (alternating the order, so that a drift of the machine does
// not always favour the same daemon) and returns the results.
func Run(ctx context.Context, o Options) (*Results, error) {
	if o.Log == nil {
		o.Log = os.Stderr
	}
	if o.Reps <= 0 {
		o.Reps = 1
	}
	if o.CaseTimeout <= 0 {
		o.CaseTimeout = 5 * time.Minute
	}
	cases, err := o.Cases()
	if err != nil {
		return nil, err
	}
	if o.RepoRoot == "" {
		if o.RepoRoot, err = peers.RepoRoot(); err != nil {
			return nil, err
		}
	}
	if o.WorkDir == "" {
		dir, err := os.MkdirTemp("", "leitstand-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		o.WorkDir = dir
	}
	for _, c := range cases {
		switch c.Daemon {
		case Rsyslog:
			err = peers.Ensure(ctx, peers.PeerRsyslog)
		case SyslogNG:
			err = peers.Ensure(ctx, peers.PeerSyslogNG)
		}
		if err != nil {
			return nil, err
		}
	}
	logf(o.Log, "building leitstand and leitstand-load (-trimpath)")
	bins, err := build(ctx, o.RepoRoot, o.WorkDir)
	if err != nil {
		return nil, err
	}
	res := &Results{
		Schema:   SchemaVersion,
		Mode:     o.Mode,
		Command:  o.Command,
		Started:  time.Now().UTC(),
		Machine:  machine(),
		Versions: versions(ctx, bins),
		Settings: Settings{Reps: o.Reps, SyslogCount: o.SyslogCount, NDJSONCount: o.NDJSONCount,
			SentryCount: o.SentryCount, UDPRates: o.UDPRates, Seed: o.Seed, PIIShare: o.PIIShare,
			LatencyRate: o.LatencyRate, LatencyCount: o.LatencyCount, MaxCaseSeconds: o.MaxCaseSeconds,
			MarkEvery: o.MarkEvery, QueueSize: o.QueueSize, Workers: o.Workers},
		Cases: cases,
	}
	res.Machine.LoadStart = loadAverage()
	pii := newPIISets(o, bins)
	run := func(c Case, rep int) {
		m := runCase(ctx, o, bins, pii, c, rep)
		res.Runs = append(res.Runs, m)
		if m.Error != "" {
			logf(o.Log, "%-32s rep %d: FAILED: %s", c.Name, rep, firstLine(m.Error))
			return
		}
		lat := ""
		if l := m.Latency; l != nil {
			lat = fmt.Sprintf(", latency p50 %.1f ms p99 %.1f ms max %.1f ms (%d marks)", l.P50Ms, l.P99Ms, l.MaxMs, l.Seen)
		}
		logf(o.Log, "%-32s rep %d: %d/%d delivered, %.2fs, %.2f CPU-s, %.0f events/s, %.0f events/CPU-s, peak RSS %.1f MiB%s",
			c.Name, rep, m.Delivered, m.Sent, m.WallSeconds, m.CPUSeconds, m.EventsPerSecond, m.EventsPerCPUSecond, float64(m.PeakRSSBytes)/(1<<20), lat)
	}
	regular := slices.DeleteFunc(slices.Clone(cases), func(c Case) bool { return c.Overload })
	for rep := 1; rep <= o.Reps; rep++ {
		order := slices.Clone(regular)
		if rep%2 == 0 {
			slices.Reverse(order)
		}
		for _, c := range order {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			run(c, rep)
		}
	}
	// Overload: once each, after the capacity is known.
	res.summarize()
	for i := range res.Cases {
		c := &res.Cases[i]
		if !c.Overload {
			continue
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if c.Path == PathUDP {
			res.Capacity = capacity(res.Summary)
			c.Rate = overloadFactor * res.Capacity.EventsPerSecond
			logf(o.Log, "overload: leitstand's capacity %.0f events/s (%s), offering %.0f/s", res.Capacity.EventsPerSecond, res.Capacity.Basis, c.Rate)
		}
		run(*c, 1)
	}
	res.Finished = time.Now().UTC()
	res.Machine.LoadEnd = loadAverage()
	res.summarize()
	return res, nil
}

// Capacity is the rate leitstand's overload case is based on.
type Capacity struct {
	EventsPerSecond float64 `json:"events_per_second"`
	// Basis says where it comes from: the case whose delivered rate it is.
	Basis string `json:"basis"`
}

// fallbackCapacity is used when the run measured no capacity (a subset
// of cases ran): about what leitstand takes over UDP on two cores.
const fallbackCapacity = 130_000

// capacity is leitstand's delivered rate in its UDP case that lost the
// most (more than 1 %: the receiver was saturated), else in its TCP case
// as fast as it goes.
func capacity(sum []Summary) Capacity {
	var best *Summary
	for i := range sum {
		s := &sum[i]
		if s.Daemon != Leitstand || s.Path != PathUDP || s.OfferedRate <= 0 || s.Runs == 0 || strings.HasPrefix(s.Group, "overload/") {
			continue
		}
		if s.Sent > 0 && float64(s.Lost) > 0.01*float64(s.Sent) && (best == nil || s.OfferedRate > best.OfferedRate) {
			best = s
		}
	}
	if best != nil {
		return Capacity{best.EventsPerSecond, fmt.Sprintf("delivered rate of %s, which lost %.1f %%", best.Case, 100*float64(best.Lost)/float64(best.Sent))}
	}
	for _, s := range sum {
		if s.Case == string(PathTCP)+"/"+Leitstand && s.Runs > 0 {
			return Capacity{s.EventsPerSecond, "delivered rate of " + s.Case + " (no UDP case of this run saturated leitstand)"}
		}
	}
	return Capacity{fallbackCapacity, "a fixed estimate: this run measured no capacity"}
}

// loadAverage is /proc/loadavg's first three fields.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func logf(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// piiSets holds the personal data that went into each input, regenerated
// from the seed (syslog, NDJSON) or read from the samples (Sentry).
type piiSets struct {
	o       Options
	bins    binaries
	byCount map[int]loadgen.PIISet
	sentry  loadgen.PIISet
}

func newPIISets(o Options, bins binaries) *piiSets {
	return &piiSets{o: o, bins: bins, byCount: map[int]loadgen.PIISet{}}
}

func (p *piiSets) of(c Case) (loadgen.PIISet, error) {
	if c.Path == PathSentry {
		if p.sentry == nil {
			samples, err := loadgen.LoadSentrySamples(p.bins.samples)
			if err != nil {
				return nil, err
			}
			p.sentry = loadgen.PIISet{}
			for i := range samples {
				p.sentry.Add(samples[i].PII()...)
			}
		}
		return p.sentry, nil
	}
	s, ok := p.byCount[c.Count]
	if !ok {
		s = loadgen.PIIOf(p.o.Seed, p.o.PIIShare, c.Count)
		p.byCount[c.Count] = s
	}
	return s, nil
}

// Polling of the output: often enough that a run of one or two seconds is
// timed to a few per cent, cheap because only new bytes are read. Cases
// at a fixed rate, which measure latency, look every 2 ms: the arrival
// time of a marked line is the first poll that sees it.
const (
	pollEvery        = 20 * time.Millisecond
	latencyPollEvery = 2 * time.Millisecond
)

// udpQuiet is how long a UDP output must stay the same after the sender
// has finished before the rest counts as lost.
const udpQuiet = time.Second

// stallAfter is how long a lossless path may make no progress after the
// sender has finished before the case fails.
const stallAfter = 30 * time.Second

// metricsReceiver is a receiver with a /metrics endpoint (leitstand).
type metricsReceiver interface {
	metricsURL() string
}

// runCase starts the daemon, lets the generator send, follows the output
// until everything arrived (or, for UDP, until it stopped growing), reads
// the process's accounting and checks the output for personal data.
func runCase(ctx context.Context, o Options, bins binaries, pii *piiSets, c Case, rep int) (m Measurement) {
	m = Measurement{Case: c.Name, Group: c.Group, Path: c.Path, Daemon: c.Daemon, Rep: rep, OfferedRate: c.Rate}
	fail := func(err error) Measurement {
		m.Error = err.Error()
		return m
	}
	ctx, cancel := context.WithTimeout(ctx, o.CaseTimeout)
	defer cancel()
	dir, err := os.MkdirTemp(o.WorkDir, strings.NewReplacer("/", "-", "@", "-").Replace(c.Name)+"-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)

	spec := startSpec{path: c.Path, workDir: dir, bins: bins, queueSize: o.QueueSize, workers: o.Workers}
	var rcv receiver
	var target string
	switch c.Daemon {
	case Leitstand, LeitstandIPOnly, LeitstandFsync:
		rcv, target, err = startLeitstand(ctx, spec, c.Daemon)
	case Rsyslog:
		rcv, target, err = startRsyslog(ctx, spec)
	case SyslogNG:
		rcv, target, err = startSyslogNG(ctx, spec)
	default:
		err = fmt.Errorf("unknown daemon %q", c.Daemon)
	}
	if err != nil {
		return fail(err)
	}
	finished := false
	defer func() {
		if !finished {
			_ = rcv.Finish()
		}
	}()

	gen, err := startGenerator(ctx, bins, c, o, target)
	if err != nil {
		return fail(err)
	}
	pid := rcv.PID()
	mr, _ := rcv.(metricsReceiver)
	var before metricSet
	if mr != nil {
		if before, err = scrape(ctx, mr.metricsURL()); err != nil {
			gen.abort()
			return fail(fmt.Errorf("metrics before the run: %v", err))
		}
	}
	cpu0, err := procCPU(pid)
	if err != nil {
		gen.abort()
		return fail(err)
	}
	counter := newLineCounter()
	defer counter.close()
	poll := pollEvery
	var latencies []time.Duration
	var t0 time.Time
	if c.Rate > 0 && !c.Overload && o.MarkEvery > 0 {
		// A latency is the time from the generator's start (its gate,
		// opened just after t0) to the poll that saw the line, less the
		// send time in the mark: both from monotonic clocks.
		poll = latencyPollEvery
		counter.onMark = func(sentNS int64) {
			latencies = append(latencies, time.Since(t0)-time.Duration(sentNS))
		}
	}
	var samp *sampler
	if mr != nil && c.Overload {
		samp = startSampler(ctx, mr.metricsURL())
		defer samp.finish()
	}
	t0 = time.Now()
	if err := gen.start(); err != nil {
		return fail(err)
	}
	defer gen.abort() // a no-op once it has exited

	var seen int64
	tLast, cpuLast := t0, cpu0
	var report *loadgen.Report
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			gen.abort()
			return fail(fmt.Errorf("case timeout: %d events in the output (%v)", seen, ctx.Err()))
		case r := <-gen.done:
			if r.err != nil {
				return fail(r.err)
			}
			report = r.report
			m.Generator = report
		case <-tick.C:
		}
		outs, err := rcv.Outputs()
		if err != nil {
			return fail(err)
		}
		if n := counter.count(outs); n > seen {
			seen, tLast = n, time.Now()
			if cpuLast, err = procCPU(pid); err != nil {
				return fail(fmt.Errorf("%s exited during the run: %v", c.Daemon, err))
			}
		}
		if report == nil {
			continue
		}
		if seen >= report.Events {
			break
		}
		idle := time.Since(tLast)
		if c.Path == PathUDP && idle > udpQuiet && time.Since(report.Finished) > udpQuiet {
			break
		}
		if c.Path != PathUDP && idle > stallAfter && time.Since(report.Finished) > stallAfter {
			m.Error = fmt.Sprintf("stalled: %d of %d events in the output after %s without progress", seen, report.Events, stallAfter)
			break
		}
	}
	m.Sent = report.Events
	m.Bytes = report.Bytes
	m.WallSeconds = tLast.Sub(t0).Seconds()
	m.CPUSeconds = cpuLast - cpu0
	if m.PeakRSSBytes, err = peakRSS(pid); err != nil {
		return fail(err)
	}
	if counter.onMark != nil {
		m.Latency = latencyStats(latencies, report.Marks)
	}
	var after metricSet
	var procDrops int64
	if mr != nil {
		if after, err = scrape(ctx, mr.metricsURL()); err != nil {
			return fail(fmt.Errorf("metrics after the run: %v", err))
		}
		if lp, ok := rcv.(*leitstandProc); ok && c.Path == PathUDP {
			if procDrops, err = udpDrops(lp.udpPort); err != nil {
				return fail(err)
			}
		}
	}
	if rcv.stopFirst() {
		finished = true
		if err := rcv.Finish(); err != nil {
			return fail(err)
		}
	}
	outs, err := rcv.Outputs()
	if err != nil {
		return fail(err)
	}
	if m.Delivered, err = countLines(outs); err != nil {
		return fail(err)
	}
	if mr != nil {
		m.Accounting = account(c.Path, before, after, m.Sent, m.Delivered, procDrops)
		m.Accounting.Retries, m.Accounting.SenderErrors = report.Retries, report.Errors
		if samp != nil {
			m.Accounting.MaxQueueDepth, m.Accounting.MaxHeapInuseBytes = samp.finish()
		}
	}
	set, err := pii.of(c)
	if err != nil {
		return fail(err)
	}
	found, err := set.ScanFiles(outs)
	if err != nil {
		return fail(err)
	}
	m.PII = PIICheck{Sent: report.PII, Distinct: set.Kinds(), Survived: found.Occurrences, SurvivedDistinct: found.Distinct, Examples: found.Examples}
	if !finished {
		finished = true
		if err := rcv.Finish(); err != nil {
			return fail(err)
		}
	}
	m.derive()
	return m
}

// generator is a running leitstand-load waiting at its gate.
type generator struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *bytes.Buffer
	done   chan genResult
}

type genResult struct {
	report *loadgen.Report
	err    error
}

// startGenerator runs leitstand-load with -gate and waits until it has
// prepared the input: the receiver's clock starts only after that.
func startGenerator(ctx context.Context, bins binaries, c Case, o Options, target string) (*generator, error) {
	args := []string{"-mode", string(c.Path), "-target", target, "-count", strconv.Itoa(c.Count),
		"-seed", strconv.FormatUint(o.Seed, 10), "-pii", strconv.FormatFloat(o.PIIShare, 'g', -1, 64),
		"-rate", strconv.FormatFloat(c.Rate, 'g', -1, 64), "-samples", bins.samples,
		"-duration", o.CaseTimeout.String(), "-mark-every", strconv.Itoa(o.MarkEvery), "-gate"}
	if c.Conns > 0 {
		args = append(args, "-conns", strconv.Itoa(c.Conns))
	}
	g := &generator{stderr: &bytes.Buffer{}, done: make(chan genResult, 1)}
	g.cmd = exec.Command(bins.load, args...)
	g.cmd.Stderr = g.stderr
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var err error
	if g.stdin, err = g.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := g.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := g.cmd.Start(); err != nil {
		return nil, err
	}
	br := bufio.NewReader(stdout)
	ready := make(chan error, 1)
	go func() {
		line, err := br.ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("leitstand-load said %q instead of ready", line)
		}
		ready <- err
		if err != nil {
			return
		}
		out, _ := io.ReadAll(br)
		werr := g.cmd.Wait()
		var r genResult
		if werr != nil {
			r.err = fmt.Errorf("leitstand-load %s: %v\n%s", strings.Join(args, " "), werr, g.stderr)
		} else {
			r.report = &loadgen.Report{}
			if err := json.Unmarshal(out, r.report); err != nil {
				r.err = fmt.Errorf("leitstand-load report: %v: %q", err, out)
			}
		}
		g.done <- r
	}()
	select {
	case err := <-ready:
		if err != nil {
			g.abort()
			return nil, fmt.Errorf("%v\n%s", err, g.stderr)
		}
		return g, nil
	case <-ctx.Done():
		g.abort()
		return nil, ctx.Err()
	}
}

// start opens the gate.
func (g *generator) start() error {
	if _, err := io.WriteString(g.stdin, "go\n"); err != nil {
		g.abort()
		return err
	}
	return g.stdin.Close()
}

// abort kills the generator (it is our child; its PID is ours to end).
func (g *generator) abort() {
	if g.cmd.Process != nil {
		_ = g.cmd.Process.Kill()
	}
}

// machine describes where the run happened.
func machine() Machine {
	m := Machine{CPUs: numCPU(), GoVersion: goVersion()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				m.MemoryMiB = kb >> 10
			}
		}
	}
	if b, err := os.ReadFile("/etc/debian_version"); err == nil {
		m.OS = "Debian " + strings.TrimSpace(string(b))
	}
	return m
}

// errNoResults is returned by WriteFiles for an empty run.
var errNoResults = errors.New("no results")
