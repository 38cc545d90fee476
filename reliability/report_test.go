package reliability

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// record is one scenario's figures for RELIABILITY.md. Counts of -1 mean
// "not applicable" (a scenario without events to count).
type record struct {
	Order    int
	Scenario string
	Test     string
	Load     string   // the load held
	Faults   string   // the faults injected
	Inputs   []string // hostile inputs tried and what happened
	Sent     int
	Acked    int
	Found    int
	Lost     int
	Dup      int
	Notes    []string
	Passed   bool
	Duration time.Duration
}

type reportBook struct {
	mu      sync.Mutex
	records []*record
}

var report = &reportBook{}

// scenario starts a record for t; its result and duration are filled in
// when the test ends.
func scenario(t *testing.T, order int, name string) *record {
	r := &record{Order: order, Scenario: name, Test: t.Name(), Sent: -1, Acked: -1, Found: -1, Lost: -1, Dup: -1}
	start := time.Now()
	t.Cleanup(func() {
		r.Passed = !t.Failed() && !t.Skipped()
		r.Duration = time.Since(start).Round(time.Second)
		if !t.Skipped() {
			report.mu.Lock()
			report.records = append(report.records, r)
			report.mu.Unlock()
		}
	})
	return r
}

func (r *record) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *record) input(format string, args ...any) {
	r.Inputs = append(r.Inputs, fmt.Sprintf(format, args...))
}

func (r *record) counts(c tally) {
	r.Sent, r.Acked, r.Found, r.Lost, r.Dup = c.Sent, c.Acked, c.Found, c.Lost, c.Duplicated
}

func num(n int) string {
	if n < 0 {
		return "–"
	}
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// write renders the records as Markdown.
func (b *reportBook) write(path string, seed uint64, took time.Duration) error {
	b.mu.Lock()
	recs := append([]*record(nil), b.records...)
	b.mu.Unlock()
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Order < recs[j].Order })
	var w strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&w, "# RELIABILITY\n\n")
	fmt.Fprintf(&w, "Written by `go test ./reliability/` (package reliability) on %s: %s, %d CPUs, %s, seed %d, %s in all.\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), host, runtime.NumCPU(), runtime.Version(), seed, took.Round(time.Second))
	fmt.Fprintf(&w, "Every scenario drives the real leitstand binary; Elasticsearch and Alertmanager are real processes.\n")
	fmt.Fprintf(&w, "Settings of this run: %s.\n\n", envSummary())
	fmt.Fprintf(&w, "Lost and duplicated count acknowledged events only and must be 0. An event is acknowledged when\n")
	fmt.Fprintf(&w, "its request got a 2xx; clients resend unacknowledged requests with the same ids until they get one.\n\n")
	fmt.Fprintf(&w, "| scenario | result | sent | acknowledged | found | lost | duplicated | time |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range recs {
		res := "pass"
		if !r.Passed {
			res = "**FAIL**"
		}
		fmt.Fprintf(&w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Scenario, res, num(r.Sent), num(r.Acked), num(r.Found), num(r.Lost), num(r.Dup), r.Duration)
	}
	for _, r := range recs {
		fmt.Fprintf(&w, "\n## %s\n\n`%s`", r.Scenario, r.Test)
		if !r.Passed {
			fmt.Fprintf(&w, " — **FAILED**")
		}
		fmt.Fprintf(&w, "\n\n")
		if r.Load != "" {
			fmt.Fprintf(&w, "- Load held: %s\n", r.Load)
		}
		if r.Faults != "" {
			fmt.Fprintf(&w, "- Faults injected: %s\n", r.Faults)
		}
		if r.Sent >= 0 {
			fmt.Fprintf(&w, "- Events sent %s, acknowledged %s, found %s, lost %s, duplicated %s\n", num(r.Sent), num(r.Acked), num(r.Found), num(r.Lost), num(r.Dup))
		}
		for _, n := range r.Notes {
			fmt.Fprintf(&w, "- %s\n", n)
		}
		if len(r.Inputs) > 0 {
			fmt.Fprintf(&w, "\nInputs tried:\n\n")
			for _, in := range r.Inputs {
				fmt.Fprintf(&w, "- %s\n", in)
			}
		}
	}
	return os.WriteFile(path, []byte(w.String()), 0o644)
}

func envSummary() string {
	var parts []string
	for _, k := range []string{"LEITSTAND_RELIABILITY_KILLS", "LEITSTAND_RELIABILITY_ES_OUTAGE", "LEITSTAND_RELIABILITY_ES_RATE", "LEITSTAND_RELIABILITY_OVERLOAD", "CI"} {
		if v := os.Getenv(k); v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	if len(parts) == 0 {
		return "the CI defaults"
	}
	return strings.Join(parts, ", ")
}
