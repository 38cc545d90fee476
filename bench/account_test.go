package bench

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLatencyStats(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	l := latencyStats(d, 120)
	if l.Marks != 120 || l.Seen != 100 || l.P50Ms != 50 || l.P90Ms != 90 || l.P99Ms != 99 || l.MaxMs != 100 {
		t.Errorf("%+v", l)
	}
	if l := latencyStats(nil, 5); l.Seen != 0 || l.MaxMs != 0 {
		t.Errorf("empty: %+v", l)
	}
}

func TestLineCounterMarks(t *testing.T) {
	p := filepath.Join(t.TempDir(), "out")
	if err := os.WriteFile(p, []byte("a lsbt=1000000000000042\nb\nc lsbt=1000000"), 0o644); err != nil {
		t.Fatal(err)
	}
	lc := newLineCounter()
	defer lc.close()
	var marks []int64
	lc.onMark = func(ns int64) { marks = append(marks, ns) }
	if n := lc.count([]string{p}); n != 2 || len(marks) != 1 || marks[0] != 42 {
		t.Fatalf("%d lines, marks %v", n, marks)
	}
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("000000007\n")
	f.Close()
	// The half line is read again whole: its mark is seen once, complete.
	if n := lc.count([]string{p}); n != 3 || len(marks) != 2 || marks[1] != 7 {
		t.Fatalf("%d lines, marks %v", n, marks)
	}
}

const exposition = `# HELP leitstand_events_received_total x
# TYPE leitstand_events_received_total counter
leitstand_events_received_total{component="syslog_udp"} 1000
leitstand_events_received_total{component="syslog_tcp"} 5
leitstand_events_accepted_total{component="syslog_udp"} 900
leitstand_events_dropped_total{component="syslog_udp",reason="queue_full"} 100
leitstand_events_dropped_total{component="ingest",reason="queue_full"} 7
leitstand_syslog_kernel_drops_total{protocol="udp"} 40
leitstand_queue_capacity_events{queue="pipeline"} 65536
leitstand_queue_depth_events{queue="pipeline"} 12
go_memstats_heap_inuse_bytes 1.5e+07
`

func TestAccount(t *testing.T) {
	before, err := parseMetrics(strings.NewReader(`leitstand_events_received_total{component="syslog_udp"} 0`))
	if err != nil {
		t.Fatal(err)
	}
	after, err := parseMetrics(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	if after.total("go_memstats_heap_inuse_bytes") != 15e6 || after.total("leitstand_queue_depth_events", `queue="pipeline"`) != 12 {
		t.Errorf("parsed %v", after)
	}
	// 1050 sent: 900 delivered, 100 dropped by the queue, 40 by the kernel
	// as the metric says, 45 as /proc says: 10 unaccounted by metrics.
	a := account(PathUDP, before, after, 1050, 900, 45)
	if a.Received != 1000 || a.Accepted != 900 || a.Dropped["queue_full"] != 100 || len(a.Dropped) != 1 ||
		a.KernelDropsMetric != 40 || a.KernelDropsProc != 45 || a.Counted != 1040 || a.Unaccounted != 10 ||
		a.UnaccountedByKernel != 5 || a.QueueCapacity != 65536 {
		t.Errorf("%+v", a)
	}
}

func TestParseUDPDrops(t *testing.T) {
	table := `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 0100007F:3039 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 17
  101: 0100007F:3039 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2 2 0000000000000000 3
  102: 0100007F:303A 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3 2 0000000000000000 99
`
	if n, err := parseUDPDrops(table, 12345); n != 20 || err != nil {
		t.Errorf("%d, %v; want 20", n, err)
	}
	if _, err := udpDrops(1); err != nil {
		t.Errorf("reading /proc/net/udp: %v", err)
	}
}

func TestCapacity(t *testing.T) {
	sum := []Summary{
		{Case: "syslog-tcp/leitstand", Daemon: Leitstand, Path: PathTCP, Runs: 1, EventsPerSecond: 300000},
		{Case: "syslog-udp@50000/leitstand", Daemon: Leitstand, Path: PathUDP, OfferedRate: 50000, Runs: 1, Sent: 100, Lost: 0, EventsPerSecond: 50000},
	}
	if c := capacity(sum); c.EventsPerSecond != 300000 || !strings.Contains(c.Basis, "syslog-tcp/leitstand") {
		t.Errorf("%+v", c)
	}
	sum = append(sum, Summary{Case: "syslog-udp@200000/leitstand", Daemon: Leitstand, Path: PathUDP, OfferedRate: 200000, Runs: 1, Sent: 100, Lost: 30, EventsPerSecond: 130000})
	if c := capacity(sum); c.EventsPerSecond != 130000 || !strings.Contains(c.Basis, "200000") {
		t.Errorf("%+v", c)
	}
	if c := capacity(nil); c.EventsPerSecond != fallbackCapacity {
		t.Errorf("%+v", c)
	}
}

// TestPlot: the PNG decodes with the expected size, holds each daemon's
// colour, and the Markdown links it.
func TestPlot(t *testing.T) {
	r := &Results{Schema: SchemaVersion, Runs: []Measurement{{Case: "x"}}}
	if _, err := r.Plot(); err == nil {
		t.Error("a plot without UDP cases")
	}
	for _, d := range []string{Leitstand, Rsyslog, SyslogNG} {
		for _, rate := range []float64{50000, 100000, 200000} {
			r.Summary = append(r.Summary, Summary{Case: d, Daemon: d, Path: PathUDP, OfferedRate: rate, Runs: 1,
				GeneratorPerSecond: rate, EventsPerSecond: min(rate, 130000)})
		}
	}
	dir := t.TempDir()
	mdPath, plotPath := filepath.Join(dir, "RESULTS.md"), filepath.Join(dir, "img", "plot.png")
	if err := r.WriteFiles("", mdPath, plotPath); err != nil {
		t.Fatal(err)
	}
	checkPlot(t, plotPath)
	md, _ := os.ReadFile(mdPath)
	if !strings.Contains(string(md), "](img/plot.png)") {
		t.Errorf("RESULTS.md does not link the plot:\n%s", md)
	}
}

// checkPlot decodes the plot and looks for each daemon's colour in it.
func checkPlot(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if s := img.Bounds().Size(); s.X != PlotWidth || s.Y != PlotHeight {
		t.Fatalf("%s is %v, want %dx%d", path, s, PlotWidth, PlotHeight)
	}
	found := map[string]bool{}
	for y := 0; y < PlotHeight; y++ {
		for x := 0; x < PlotWidth; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			for d, c := range plotColors {
				if uint8(r>>8) == c.R && uint8(g>>8) == c.G && uint8(b>>8) == c.B {
					found[d] = true
				}
			}
		}
	}
	for d := range plotColors {
		if !found[d] {
			t.Errorf("%s: no %s in the plot", path, d)
		}
	}
}
