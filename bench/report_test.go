package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestProcAccounting(t *testing.T) {
	// Burn a little CPU so the figure is above zero.
	deadline := time.Now().Add(50 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	cpu, err := procCPU(os.Getpid())
	if err != nil || cpu <= 0 {
		t.Errorf("procCPU: %v, %v", cpu, err)
	}
	rss, err := peakRSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Errorf("peakRSS: %v, %v", rss, err)
	}
	if _, err := procCPU(-1); err == nil {
		t.Error("procCPU of no process did not fail")
	}
}

func TestLineCounter(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.json")
	if err := os.WriteFile(p, []byte("a\nb\nhalf"), 0o644); err != nil {
		t.Fatal(err)
	}
	lc := newLineCounter()
	if n := lc.count([]string{p}); n != 2 {
		t.Errorf("%d lines, want 2", n)
	}
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(" line\nc\n")
	f.Close()
	if n := lc.count([]string{p, filepath.Join(dir, "missing")}); n != 4 {
		t.Errorf("%d lines, want 4", n)
	}
	if n, err := countLines([]string{p}); n != 4 || err != nil {
		t.Errorf("countLines: %d, %v", n, err)
	}
}

func TestSummaryAndMarkdown(t *testing.T) {
	o := Quick()
	o.UDPRates = nil
	o.Only = "^syslog-tcp/(leitstand|rsyslog|syslog-ng)$"
	cases, err := o.Cases()
	if err != nil || len(cases) != 3 {
		t.Fatalf("cases %v, %v", cases, err)
	}
	r := &Results{Schema: SchemaVersion, Mode: "quick", Cases: cases, Settings: Settings{Reps: 2}}
	add := func(c Case, rep int, cpu float64, rss int64) {
		m := Measurement{Case: c.Name, Group: c.Group, Path: c.Path, Daemon: c.Daemon, Rep: rep,
			Sent: 1000, Delivered: 1000, Bytes: 1 << 20, WallSeconds: 1, CPUSeconds: cpu, PeakRSSBytes: rss << 20}
		m.derive()
		r.Runs = append(r.Runs, m)
	}
	for rep := 1; rep <= 2; rep++ {
		add(cases[0], rep, 0.5, 100) // leitstand
		add(cases[1], rep, 1, 50)    // rsyslog
		add(cases[2], rep, 2, 10)    // syslog-ng
	}
	r.Runs = append(r.Runs, Measurement{Case: cases[2].Name, Rep: 3, Error: "boom"})
	r.summarize()
	ls := r.Summary[0]
	if ls.EventsPerCPUSecond != 2000 || ls.VsRsyslog.EventsPerCPUSecond != 2 || ls.VsSyslogNG.EventsPerCPUSecond != 4 || ls.VsRsyslog.PeakRSS != 2 {
		t.Errorf("leitstand summary %+v, vs rsyslog %+v, vs syslog-ng %+v", ls, ls.VsRsyslog, ls.VsSyslogNG)
	}
	if ng := r.Summary[2]; ng.Runs != 2 || ng.Failed != 1 {
		t.Errorf("syslog-ng summary %+v", ng)
	}
	var b bytes.Buffer
	r.Markdown(&b)
	for _, want := range []string{"## syslog-tcp", "| leitstand | 1000 / 1000 | 1000 |", "2.00×", "4.00×", "## Failed runs", "boom"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("Markdown lacks %q:\n%s", want, b.String())
		}
	}

	// A peer that writes more lines than it got (rsyslog's imtcp did, in
	// one run of a CI bench) is shown as extra, not as "-0.0 % lost".
	extra := &Results{Schema: SchemaVersion, Mode: "quick", Cases: cases[1:2], Settings: Settings{Reps: 2}}
	for rep, delivered := range []int64{1000, 1006} {
		m := Measurement{Case: cases[1].Name, Group: cases[1].Group, Path: cases[1].Path, Daemon: cases[1].Daemon, Rep: rep + 1,
			Sent: 1000, Delivered: delivered, Bytes: 1 << 20, WallSeconds: 1, CPUSeconds: 1, PeakRSSBytes: 50 << 20}
		m.derive()
		extra.Runs = append(extra.Runs, m)
	}
	extra.summarize()
	b.Reset()
	extra.Markdown(&b)
	if want := "| rsyslog | 1003 / 1000 (3 extra; runs 1000–1006) |"; !strings.Contains(b.String(), want) {
		t.Errorf("Markdown lacks %q:\n%s", want, b.String())
	}
	if err := (&Results{}).WriteFiles("", "", ""); err == nil {
		t.Error("empty results written")
	}
}

func TestCasesOnly(t *testing.T) {
	o := Full()
	all, _ := o.Cases()
	// 4 TCP, 4 TCP at the latency rate (peers and leitstand-fsync too), 3
	// per UDP rate, NDJSON, NDJSON at the latency rate twice (leitstand-fsync),
	// Sentry, 3 overload.
	if want := 4 + 4 + 3*len(o.UDPRates) + 1 + 2 + 1 + 3; len(all) != want {
		t.Errorf("%d cases, want %d", len(all), want)
	}
	o.Only = "nothing-matches"
	if _, err := o.Cases(); err == nil {
		t.Error("a filter that matches nothing was accepted")
	}
	o.Only = "("
	if _, err := o.Cases(); err == nil {
		t.Error("a broken filter was accepted")
	}
}
