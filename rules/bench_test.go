package rules

// The rule evaluation benchmark: 500 rules (10 groups of 50: rates,
// aggregations, topk, *_over_time, quantiles, predict_linear, alerts with
// `for`) over 10,000 series (100 families of 100 series, 20 minutes at 15s).
//
//	go test -run '^$' -bench BenchmarkRuleEvaluation -benchtime 20x ./rules/
//
// evaluates them in-process. TestBenchmarkVsPrometheus runs the same rule
// file over the same data in leitstand and in a real Prometheus 2.42, one
// after the other, each loaded through its remote_write receiver and
// evaluating every 5s, and reports evaluations per second, heap and the
// ratio, alternating the two for two rounds. It takes about five minutes
// and runs only with LEITSTAND_BENCH=1:
//
//	LEITSTAND_BENCH=1 go test -run TestBenchmarkVsPrometheus -v -timeout 20m ./rules/

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"

	"github.com/leitstand/leitstand/internal/peers"
)

const (
	benchFamilies       = 100
	benchSeriesPerFam   = 100
	benchStep           = 15 * time.Second
	benchSpan           = 20 * time.Minute
	benchGroups         = 10
	benchRulesPerFamily = 5
	benchEvalInterval   = 5 * time.Second
)

// benchRules writes the benchmark's rule file: five rules per family, ten
// families per group.
func benchRules(t testing.TB, dir string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("groups:\n")
	for g := range benchGroups {
		fmt.Fprintf(&b, "  - name: bench-%d\n    interval: %s\n    rules:\n", g, model.Duration(benchEvalInterval))
		for f := g * benchFamilies / benchGroups; f < (g+1)*benchFamilies/benchGroups; f++ {
			if f%2 == 0 {
				m := fmt.Sprintf("bench_f%d_total", f)
				fmt.Fprintf(&b, "      - record: bench:f%d:rate5m\n        expr: rate(%s[5m])\n", f, m)
				fmt.Fprintf(&b, "      - record: bench:f%d:zone_rate5m\n        expr: sum by (job, zone) (rate(%s[5m]))\n", f, m)
				fmt.Fprintf(&b, "      - record: bench:f%d:top_increase10m\n        expr: topk(5, increase(%s[10m]))\n", f, m)
				fmt.Fprintf(&b, "      - alert: BenchF%dHighRate\n        expr: rate(%s[5m]) > 15\n        for: 1m\n        labels: {severity: warning}\n        annotations: {summary: '{{ $labels.instance }} at {{ $value | humanize }}/s'}\n", f, m)
				fmt.Fprintf(&b, "      - alert: BenchF%dZoneRate\n        expr: sum by (zone) (rate(%s[5m])) > 200\n", f, m)
			} else {
				m := fmt.Sprintf("bench_g%d", f)
				fmt.Fprintf(&b, "      - record: bench:g%d:avg5m\n        expr: avg_over_time(%s[5m])\n", f, m)
				fmt.Fprintf(&b, "      - record: bench:g%d:zone_max\n        expr: max by (job, zone) (%s)\n", f, m)
				fmt.Fprintf(&b, "      - record: bench:g%d:q90_5m\n        expr: quantile_over_time(0.9, %s[5m])\n", f, m)
				fmt.Fprintf(&b, "      - alert: BenchG%dHigh\n        expr: %s > 95\n        for: 30s\n        labels: {severity: critical}\n", f, m)
				fmt.Fprintf(&b, "      - alert: BenchG%dTrend\n        expr: predict_linear(%s[10m], 3600) > 150\n", f, m)
			}
		}
	}
	path := filepath.Join(dir, "bench.rules.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CheckRuleFiles([]string{path}); err != nil {
		t.Fatal(err)
	}
	return path
}

// benchData calls send with batches of the 10,000 series, ending at end.
// The values depend only on family, series and sample index.
func benchData(end time.Time, send func([]prompb.TimeSeries) error) error {
	n := int(benchSpan / benchStep)
	start := end.Add(-time.Duration(n-1) * benchStep)
	batch := make([]prompb.TimeSeries, 0, 100)
	for f := range benchFamilies {
		for k := range benchSeriesPerFam {
			name := fmt.Sprintf("bench_g%d", f)
			if f%2 == 0 {
				name = fmt.Sprintf("bench_f%d_total", f)
			}
			ts := prompb.TimeSeries{Labels: []prompb.Label{
				{Name: "__name__", Value: name},
				{Name: "instance", Value: "i" + strconv.Itoa(k)},
				{Name: "job", Value: "bench"},
				{Name: "zone", Value: "z" + strconv.Itoa(k%5)},
			}, Samples: make([]prompb.Sample, n)}
			rate := float64(1 + (k*(f+1))%20)
			for i := range n {
				v := rate * float64(i) * benchStep.Seconds()
				if f%2 == 1 {
					v = 50 + 49*math.Sin(float64(i)/10+float64(k+f))
				}
				ts.Samples[i] = prompb.Sample{Value: v, Timestamp: start.Add(time.Duration(i) * benchStep).UnixMilli()}
			}
			batch = append(batch, ts)
			if len(batch) == cap(batch) {
				if err := send(batch); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
	}
	if len(batch) > 0 {
		return send(batch)
	}
	return nil
}

func remoteWriteTo(url string) func([]prompb.TimeSeries) error {
	return func(ts []prompb.TimeSeries) error {
		raw, err := (&prompb.WriteRequest{Timeseries: ts}).Marshal()
		if err != nil {
			return err
		}
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(snappy.Encode(nil, raw)))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Encoding", "snappy")
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("remote write to %s: %s: %s", url, resp.Status, body)
		}
		return nil
	}
}

// BenchmarkRuleEvaluation evaluates the 500 rules once per iteration,
// in-process, over the 10,000 series.
func BenchmarkRuleEvaluation(b *testing.B) {
	dir := b.TempDir()
	cfg := DefaultConfig(dir)
	cfg.RuleFiles = []string{benchRules(b, dir)}
	cfg.WatchInterval = 0
	cfg.SelfMetrics.Enabled = false
	e, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	e.manual = true
	if err := e.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = e.Shutdown(context.Background()) }()
	srv := httptest.NewServer(e.Handler())
	defer srv.Close()
	end := time.Now()
	if err := benchData(end, remoteWriteTo(srv.URL+"/api/v1/write")); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ts := end
	e.evalAll(ctx, ts) // warm up (and restore) outside the timer
	e.evalAll(ctx, ts.Add(time.Second))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		e.evalAll(ctx, ts.Add(time.Duration(i+2)*time.Second))
	}
	b.StopTimer()
	rules := float64(benchGroups * benchFamilies / benchGroups * benchRulesPerFamily)
	b.ReportMetric(rules*float64(b.N)/b.Elapsed().Seconds(), "evals/s")
	for _, g := range e.RuleGroups() {
		for _, r := range g.Rules() {
			if err := r.LastError(); err != nil {
				b.Fatalf("%s: %v", r.Name(), err)
			}
		}
	}
}

// groupDurations reads Prometheus' own rule group duration summary
// (prometheus_rule_group_duration_seconds: one observation per group
// evaluation) and the evaluation failures.
func groupDurations(mfs []*dto.MetricFamily) (sum, count, failures float64) {
	for _, mf := range mfs {
		switch mf.GetName() {
		case "prometheus_rule_group_duration_seconds":
			for _, m := range mf.GetMetric() {
				sum += m.GetSummary().GetSampleSum()
				count += float64(m.GetSummary().GetSampleCount())
			}
		case "prometheus_rule_evaluation_failures_total":
			for _, m := range mf.GetMetric() {
				failures += m.GetCounter().GetValue()
			}
		}
	}
	return sum, count, failures
}

func gaugeValue(mfs []*dto.MetricFamily, name string) float64 {
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return math.NaN()
}

func scrapeMetrics(url string) ([]*dto.MetricFamily, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, err
	}
	out := make([]*dto.MetricFamily, 0, len(fams))
	for _, f := range fams {
		out = append(out, f)
	}
	return out, nil
}

func vmRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return math.NaN()
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb * 1024
		}
	}
	return math.NaN()
}

type benchResult struct {
	name          string
	load          time.Duration
	evalsPerSec   float64
	iterations    float64
	heapInuse     float64
	rss           float64
	evalFailures  float64
	groupDuration time.Duration // mean time of one group iteration (50 rules)
}

func (r benchResult) String() string {
	return fmt.Sprintf("%-16s load %6.1fs  %5.0f group iterations  mean group eval %7.2fms  %8.0f rule evals/s  heap in use %6.1f MiB  RSS %6.1f MiB  eval failures %.0f",
		r.name, r.load.Seconds(), r.iterations, float64(r.groupDuration.Microseconds())/1000, r.evalsPerSec, r.heapInuse/(1<<20), r.rss/(1<<20), r.evalFailures)
}

// measure loads the data, lets a few iterations pass, then measures the
// group durations over window.
func measure(t *testing.T, name, writeURL string, gather func() ([]*dto.MetricFamily, error), mem func() (heap, rss float64), window time.Duration) benchResult {
	t.Helper()
	res := benchResult{name: name}
	begin := time.Now()
	if err := benchData(begin, remoteWriteTo(writeURL)); err != nil {
		t.Fatal(err)
	}
	res.load = time.Since(begin)
	time.Sleep(3 * benchEvalInterval)
	mfs, err := gather()
	if err != nil {
		t.Fatal(err)
	}
	sum0, count0, fail0 := groupDurations(mfs)
	time.Sleep(window)
	if mfs, err = gather(); err != nil {
		t.Fatal(err)
	}
	sum1, count1, fail1 := groupDurations(mfs)
	res.iterations = count1 - count0
	if res.iterations < benchGroups {
		t.Fatalf("%s: only %.0f group iterations in %v", name, res.iterations, window)
	}
	rulesPerGroup := float64(benchFamilies / benchGroups * benchRulesPerFamily)
	res.evalsPerSec = rulesPerGroup * res.iterations / (sum1 - sum0)
	res.groupDuration = time.Duration((sum1 - sum0) / res.iterations * float64(time.Second))
	res.evalFailures = fail1 - fail0
	res.heapInuse, res.rss = mem()
	return res
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// TestBenchmarkVsPrometheus alternates Prometheus and leitstand for
// LEITSTAND_BENCH_ROUNDS rounds (default 2), so a busy shared machine
// weighs on both alike; each measurement logs the load average.
func TestBenchmarkVsPrometheus(t *testing.T) {
	if os.Getenv("LEITSTAND_BENCH") != "1" {
		t.Skip("set LEITSTAND_BENCH=1 to run the comparison with Prometheus 2.42 (about five minutes)")
	}
	window := 60 * time.Second
	if s := os.Getenv("LEITSTAND_BENCH_WINDOW"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		window = d
	}
	rounds := 2
	if s := os.Getenv("LEITSTAND_BENCH_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("LEITSTAND_BENCH_ROUNDS=%q", s)
		}
		rounds = n
	}
	dir := t.TempDir()
	ruleFile := benchRules(t, dir)
	content, err := os.ReadFile(ruleFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	runPrometheus := func() benchResult {
		prom, err := peers.StartPrometheus(ctx, peers.PrometheusOptions{
			Config: fmt.Sprintf("global:\n  evaluation_interval: %s\nrule_files: [bench.rules.yml]\n", model.Duration(benchEvalInterval)),
			Files:  map[string]string{"bench.rules.yml": string(content)},
			// The same bound leitstand's engine has by default.
			ExtraArgs:           []string{"--query.max-samples=50000000"},
			RemoteWriteReceiver: true,
		})
		peers.Check(t, err)
		defer func() {
			if err := prom.Stop(); err != nil {
				t.Error(err)
			}
		}()
		return measure(t, "Prometheus 2.42", prom.URL+"/api/v1/write",
			func() ([]*dto.MetricFamily, error) { return scrapeMetrics(prom.URL + "/metrics") },
			func() (float64, float64) {
				mfs, err := scrapeMetrics(prom.URL + "/metrics")
				if err != nil {
					return math.NaN(), math.NaN()
				}
				return gaugeValue(mfs, "go_memstats_heap_inuse_bytes"), vmRSS(prom.PID())
			}, window)
	}
	runLeitstand := func(round int) benchResult {
		cfg := DefaultConfig(filepath.Join(dir, strconv.Itoa(round)))
		cfg.RuleFiles = []string{ruleFile}
		cfg.WatchInterval = 0
		cfg.SelfMetrics.Enabled = false
		e, err := New(cfg, Options{})
		if err != nil {
			t.Fatal(err)
		}
		start(t, e)
		defer func() {
			if err := e.Shutdown(ctx); err != nil {
				t.Error(err)
			}
		}()
		srv := httptest.NewServer(e.Handler())
		defer srv.Close()
		runtime.GC()
		return measure(t, "leitstand", srv.URL+"/api/v1/write", e.Gatherer().Gather,
			func() (float64, float64) {
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				return float64(ms.HeapInuse), vmRSS(os.Getpid())
			}, window)
	}

	t.Logf("500 rules over 10,000 series (20m at 15s), groups every %v, measured over %v each, %d rounds:", benchEvalInterval, window, rounds)
	var pSum, lSum, pHeap, lHeap float64
	for round := range rounds {
		pr := runPrometheus()
		t.Logf("round %d: %s  (load average %s)", round+1, pr, loadavg())
		lr := runLeitstand(round)
		t.Logf("round %d: %s  (load average %s)", round+1, lr, loadavg())
		t.Logf("round %d: ratio leitstand/Prometheus: evals/s %.2f, heap in use %.2f", round+1, lr.evalsPerSec/pr.evalsPerSec, lr.heapInuse/pr.heapInuse)
		if pr.evalFailures > 0 || lr.evalFailures > 0 {
			t.Errorf("evaluation failures: Prometheus %.0f, leitstand %.0f", pr.evalFailures, lr.evalFailures)
		}
		pSum += pr.evalsPerSec
		lSum += lr.evalsPerSec
		pHeap += pr.heapInuse
		lHeap += lr.heapInuse
	}
	t.Logf("mean over %d rounds: Prometheus %.0f evals/s, leitstand %.0f evals/s, ratio %.2f; heap in use %.1f vs %.1f MiB, ratio %.2f",
		rounds, pSum/float64(rounds), lSum/float64(rounds), lSum/pSum, pHeap/float64(rounds)/(1<<20), lHeap/float64(rounds)/(1<<20), lHeap/pHeap)
}
