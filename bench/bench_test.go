package bench

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leitstand/leitstand/internal/peers"
)

// TestWholeProcessQuick runs the quick mode of bench/run end to end: it
// builds leitstand and leitstand-load, starts leitstand, rsyslog and
// syslog-ng in turn and sends them the same input. It checks counts and
// the results file, never timings: those go in the report, not in a test.
// With CI=true the peers are installed or the test fails.
func TestWholeProcessQuick(t *testing.T) {
	peers.Slow(t)
	peers.Require(t, peers.PeerRsyslog)
	peers.Require(t, peers.PeerSyslogNG)
	o := Quick()
	o.Command = "go test ./bench -run TestWholeProcessQuick"
	o.WorkDir = t.TempDir()
	o.Log = testLog{t}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("quick mode took %s", time.Since(start).Round(time.Second))
	for _, f := range res.Failures() {
		t.Error(f)
	}

	dir := t.TempDir()
	jsonPath, mdPath, plotPath := filepath.Join(dir, "results.json"), filepath.Join(dir, "RESULTS.md"), filepath.Join(dir, "plot.png")
	if err := res.WriteFiles(jsonPath, mdPath, plotPath); err != nil {
		t.Fatal(err)
	}
	got := readResults(t, jsonPath)
	cases, _ := o.Cases()
	overload := 0
	for _, c := range cases {
		if c.Overload {
			overload++
		}
	}
	// The overload cases run once.
	if runs := (len(cases)-overload)*o.Reps + overload; got.Schema != SchemaVersion || got.Mode != "quick" || len(got.Cases) != len(cases) || len(got.Runs) != runs || len(got.Summary) != len(cases) {
		t.Fatalf("results: schema %d, mode %q, %d cases, %d runs, %d summaries; want %d cases, %d runs",
			got.Schema, got.Mode, len(got.Cases), len(got.Runs), len(got.Summary), len(cases), runs)
	}
	if got.Machine.CPUs == 0 || got.Versions[Leitstand] == "" || got.Versions[Rsyslog] == "" || got.Versions[SyslogNG] == "" {
		t.Errorf("machine %+v, versions %v", got.Machine, got.Versions)
	}
	for _, m := range got.Runs {
		checkRun(t, m)
	}
	withPeers := map[string]bool{}
	for _, c := range cases {
		if c.Daemon == Rsyslog {
			withPeers[c.Group] = true
		}
	}
	for _, s := range got.Summary {
		runs := o.Reps
		if strings.HasPrefix(s.Group, "overload/") {
			runs = 1
		}
		if s.Runs != runs || s.EventsPerSecond <= 0 || s.EventsPerCPUSecond <= 0 || s.PeakRSSMiB <= 0 {
			t.Errorf("summary %s: %+v", s.Case, s)
		}
		// Every case in a group the peers ran in has its ratios.
		if withPeers[s.Group] && (s.VsRsyslog == nil || s.VsSyslogNG == nil) {
			t.Errorf("summary %s: no ratio to the peers", s.Case)
		}
		if s.Daemon == Rsyslog && s.VsRsyslog.EventsPerCPUSecond != 1 {
			t.Errorf("rsyslog against itself: %+v", s.VsRsyslog)
		}
	}
	checkLatencyAndOverload(t, got)
	checkPlot(t, plotPath)
	md, err := os.ReadFile(mdPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## End-to-end latency", "## Overload", "](plot.png)"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("RESULTS.md has no %q", want)
		}
	}
	for _, c := range cases {
		if !strings.Contains(string(md), "## "+c.Group) || !strings.Contains(string(md), "| "+c.Daemon+" | ") {
			t.Errorf("RESULTS.md has no row for %s", c.Name)
		}
	}
	t.Logf("\n%s", md)
}

// checkLatencyAndOverload: every case at a fixed rate below saturation
// has latency figures for every mark that reached the output; every
// leitstand run has its accounting, the overload cases stay within the
// queue and lose nothing on the lossless paths.
func checkLatencyAndOverload(t *testing.T, r Results) {
	t.Helper()
	for _, s := range r.Summary {
		if s.OfferedRate > 0 && !strings.HasPrefix(s.Group, "overload/") {
			l := s.Latency
			if l == nil || l.Seen == 0 || l.Seen > l.Marks || l.P50Ms <= 0 || l.P50Ms > l.P99Ms || l.P99Ms > l.MaxMs {
				t.Errorf("%s: latency %+v", s.Case, l)
			}
			if s.Path != PathUDP && l != nil && l.Seen != l.Marks {
				t.Errorf("%s: %d of %d marks in the output", s.Case, l.Seen, l.Marks)
			}
		}
	}
	overload := 0
	for _, m := range r.Runs {
		if m.Error != "" || !isLeitstand(m.Daemon) {
			continue
		}
		a := m.Accounting
		if a == nil {
			t.Errorf("%s rep %d: no accounting", m.Case, m.Rep)
			continue
		}
		if a.Sent != m.Sent || a.Delivered != m.Delivered || a.QueueCapacity <= 0 {
			t.Errorf("%s rep %d: accounting %+v", m.Case, m.Rep, a)
		}
		if m.Path != PathUDP && (a.Unaccounted != 0 || len(a.Dropped) != 0) {
			t.Errorf("%s rep %d: a lossless path lost events: %+v", m.Case, m.Rep, a)
		}
		if !strings.HasPrefix(m.Group, "overload/") {
			continue
		}
		overload++
		if a.MaxQueueDepth > a.QueueCapacity || a.MaxHeapInuseBytes <= 0 {
			t.Errorf("%s: queue depth %d of %d, heap %d", m.Case, a.MaxQueueDepth, a.QueueCapacity, a.MaxHeapInuseBytes)
		}
		// Reported, not asserted: the kernel's count may run ahead of
		// leitstand's metric (read from the next datagram's ancillary data).
		t.Logf("%s: sent %d, delivered %d, dropped %v, kernel drops %d (metric) %d (/proc), unaccounted %d, peak RSS %.0f MiB",
			m.Case, a.Sent, a.Delivered, a.Dropped, a.KernelDropsMetric, a.KernelDropsProc, a.Unaccounted, float64(m.PeakRSSBytes)/(1<<20))
	}
	if overload != 3 {
		t.Errorf("%d overload runs, want 3", overload)
	}
	if r.Capacity.EventsPerSecond <= 0 {
		t.Errorf("no capacity: %+v", r.Capacity)
	}
}

// checkRun checks one run's counts and its personal-data check.
func checkRun(t *testing.T, m Measurement) {
	t.Helper()
	if m.Error != "" {
		return // reported by Failures
	}
	g := m.Generator
	if g == nil {
		t.Errorf("%s rep %d: no generator report", m.Case, m.Rep)
		return
	}
	switch m.Path {
	case PathUDP:
		// UDP may lose; the figure is reported, not asserted.
		t.Logf("%s rep %d: %d of %d datagrams stored, %d lost", m.Case, m.Rep, m.Delivered, m.Sent, m.Lost)
		if m.Delivered > m.Sent {
			t.Errorf("%s rep %d: %d delivered of %d sent", m.Case, m.Rep, m.Delivered, m.Sent)
		}
	case PathTCP, PathNDJSON, PathSentry:
		if g.Sent != int64(g.Count) || m.Sent != g.Events {
			t.Errorf("%s rep %d: generator sent %d of %d (%d events)", m.Case, m.Rep, g.Sent, g.Count, g.Events)
		}
		switch {
		case m.Delivered < m.Sent:
			// Lossless paths: a shortfall is the harness (flow control,
			// counting) or the daemon losing events, whichever daemon.
			t.Errorf("%s rep %d: %d of %d events in the output", m.Case, m.Rep, m.Delivered, m.Sent)
		case m.Delivered > m.Sent && isLeitstand(m.Daemon):
			t.Errorf("%s rep %d: %d lines in the output for %d events", m.Case, m.Rep, m.Delivered, m.Sent)
		case m.Delivered > m.Sent:
			// A peer's own duplicates or split frames; RESULTS.md shows
			// them as "extra" with the range over the runs.
			t.Logf("%s rep %d: %d lines in the output for %d events (%d extra, the peer's)", m.Case, m.Rep, m.Delivered, m.Sent, m.Delivered-m.Sent)
		}
	default:
		t.Errorf("%s: unknown path %q", m.Case, m.Path)
	}
	if m.WallSeconds <= 0 || m.CPUSeconds <= 0 || m.PeakRSSBytes <= 0 || m.EventsPerSecond <= 0 {
		t.Errorf("%s rep %d: wall %v, CPU %v, RSS %d", m.Case, m.Rep, m.WallSeconds, m.CPUSeconds, m.PeakRSSBytes)
	}
	if m.PII.Sent["email"] == 0 || m.PII.Sent["ipv4"] == 0 {
		t.Errorf("%s rep %d: the input had no personal data: %v", m.Case, m.Rep, m.PII.Sent)
	}
	survived := m.PII.Survived
	switch m.Daemon {
	case Leitstand, LeitstandFsync:
		if m.PII.Total() != 0 {
			t.Errorf("%s rep %d: personal data in leitstand's output: %v, e.g. %v", m.Case, m.Rep, survived, m.PII.Examples)
		}
	default:
		// The peers (and leitstand with the IP detector alone) truncate
		// addresses and keep e-mail addresses.
		if survived["ipv4"] != 0 || survived["ipv6"] != 0 {
			t.Errorf("%s rep %d: untruncated IP addresses in the output: %v, e.g. %v", m.Case, m.Rep, survived, m.PII.Examples)
		}
		if m.Path != PathUDP && survived["email"] != m.PII.Sent["email"] {
			t.Errorf("%s rep %d: %d of %d e-mail addresses in the output; the IP-only setups keep them all", m.Case, m.Rep, survived["email"], m.PII.Sent["email"])
		}
	}
}

// readResults decodes the results file strictly: a field the harness
// writes but Results does not know is a mistake.
func readResults(t *testing.T, path string) Results {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	var r Results
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if dec.More() {
		t.Fatalf("%s: more than one JSON value", path)
	}
	return r
}

// testLog sends the harness's progress lines to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
