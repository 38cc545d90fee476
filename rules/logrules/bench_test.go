package logrules

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/leitstand/leitstand/collector"
)

// benchRules writes n log rules over 20 datasets: mostly record rules with
// a literal and a negative filter, every 10th an alert with a regexp, every
// 25th a new_value rule.
func benchRules(n int) string {
	var b strings.Builder
	b.WriteString("groups:\n  - name: bench\n    rules:\n")
	for i := range n {
		ds := fmt.Sprintf("ds%d", i%20)
		switch {
		case i%25 == 0:
			fmt.Fprintf(&b, "      - log: '{event.dataset=%q, log.level!=\"debug\"} |= \"errcode-%d \"'\n        alert: New%d\n        new_value: error.grouping_key\n        by: [service.name]\n", ds, i, i)
		case i%10 == 0:
			fmt.Fprintf(&b, "      - log: '{event.dataset=%q} |= \"errcode-%d \" |~ \"errcode-%d (timeout|refused)\"'\n        alert: A%d\n        by: [host.name]\n", ds, i, i, i)
		default:
			fmt.Fprintf(&b, "      - log: '{event.dataset=%q, log.level!=\"debug\"} |= \"errcode-%d \" != \"healthcheck\"'\n        record: log:e%d:count\n        by: [host.name]\n", ds, i, i)
		}
	}
	return b.String()
}

// benchEvents returns events with ~200-byte messages; about 5% carry an
// error code that a rule of their dataset looks for.
func benchEvents(n int) []collector.Event {
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"request", "GET", "/api/v1/items", "failed", "upstream", "connection", "timeout", "refused", "retrying", "worker", "pool", "exhausted", "user", "session", "cache", "miss"}
	out := make([]collector.Event, n)
	for i := range out {
		code := r.IntN(20000)
		ds := code % 20
		if r.IntN(2) == 0 {
			ds = r.IntN(20)
		}
		var m strings.Builder
		fmt.Fprintf(&m, "2026-11-22T04:%02d:%02dZ host-%d app[%d]: errcode-%d ", i%60, i%60, i%50, 1000+i%999, code)
		for m.Len() < 200 {
			m.WriteString(words[r.IntN(len(words))])
			m.WriteByte(' ')
		}
		msg := m.String()[:200]
		e := &out[i]
		e.AddString(collector.FieldDataset, fmt.Sprintf("ds%d", ds))
		e.AddString(collector.FieldHostName, fmt.Sprintf("host-%d", i%50))
		e.AddString(collector.FieldLevel, "error")
		e.AddString(collector.FieldService, "api")
		e.AddString("error.grouping_key", fmt.Sprintf("g%d", code%7))
		e.AddString(collector.FieldMessage, msg)
	}
	return out
}

// naiveRule is the comparison: every rule's field matchers and a regexp
// per line filter, on every event.
type naiveRule struct {
	sel *Selector
	res []*regexp.Regexp
	neg []bool
}

func naiveCompile(rs []*Rule) []naiveRule {
	out := make([]naiveRule, len(rs))
	for i, r := range rs {
		out[i].sel = r.Selector
		for _, f := range r.Selector.Filters {
			pat := f.Pattern
			if f.Op == FilterContains || f.Op == FilterNotContains {
				pat = regexp.QuoteMeta(pat)
			}
			out[i].res = append(out[i].res, regexp.MustCompile(pat))
			out[i].neg = append(out[i].neg, f.Op == FilterNotContains || f.Op == FilterNotMatch)
		}
	}
	return out
}

func naiveMatch(rs []naiveRule, e *collector.Event) int {
	n := 0
	msg := e.Message()
rules:
	for i := range rs {
		for j, re := range rs[i].res {
			if re.MatchString(msg) == rs[i].neg[j] {
				continue rules
			}
		}
		for _, m := range rs[i].sel.Matchers {
			v, _ := e.Get(m.Name)
			if !m.Matches(v) {
				continue rules
			}
		}
		n++
	}
	return n
}

// BenchmarkLogRules: 1,000 log rules over 200-byte events. Run with
// -cpu 2 for the figure (target ≥ 500,000 events/s in total).
func BenchmarkLogRules(b *testing.B) {
	rs, err := Parse("bench.yml", []byte(benchRules(1000)))
	if err != nil {
		b.Fatal(err)
	}
	events := benchEvents(4096)
	const batchSize = 256

	b.Run("compiled", func(b *testing.B) {
		cfg := DefaultConfig(b.TempDir())
		e, err := New(cfg, Options{})
		if err != nil {
			b.Fatal(err)
		}
		e.SetRules(rs)
		b.SetBytes(200 * batchSize)
		start := time.Now()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			batch := &collector.Batch{}
			i := 0
			for pb.Next() {
				batch.Events = events[i : i+batchSize]
				i = (i + batchSize) % (len(events) - batchSize)
				e.Process(batch)
			}
		})
		b.ReportMetric(float64(b.N*batchSize)/time.Since(start).Seconds(), "events/s")
	})

	b.Run("naive", func(b *testing.B) {
		nr := naiveCompile(rs)
		b.SetBytes(200)
		start := time.Now()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			sink := 0
			for pb.Next() {
				sink += naiveMatch(nr, &events[i])
				i = (i + 1) % len(events)
			}
			_ = sink
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	})
}

// TestCompiledMatchesNaive: the prefilter must not change what matches.
func TestCompiledMatchesNaive(t *testing.T) {
	rs, err := Parse("bench.yml", []byte(benchRules(300)))
	if err != nil {
		t.Fatal(err)
	}
	events := benchEvents(2000)
	e, err := New(DefaultConfig(t.TempDir()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.SetRules(rs)
	set := e.set.Load()
	sc := e.getScratch(len(set.rules))
	nr := naiveCompile(rs)
	total := 0
	for i := range events {
		sc.epoch++
		got := e.evalEvent(set, sc, &events[i], t0)
		want := naiveMatch(nr, &events[i])
		if got != want {
			t.Fatalf("event %d (%s): compiled %d, naive %d", i, events[i].Message(), got, want)
		}
		total += got
	}
	if total == 0 {
		t.Fatal("benchmark data matches nothing")
	}
	t.Logf("%d matches in %d events", total, len(events))
}
