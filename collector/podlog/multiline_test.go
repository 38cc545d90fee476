package podlog

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/leitstand/leitstand/collector"
)

func multilineConfig(t *testing.T, rule MultilineRule) Config {
	cfg := testConfig(t)
	cfg.Multiline = []MultilineRule{rule}
	return cfg
}

func defaultRule() MultilineRule {
	var r MultilineRule
	r.SetDefaults()
	r.StartPattern = DefaultStartPattern
	r.MaxWait = 200 * time.Millisecond
	return r
}

// TestMultilineStackTraces feeds the stack traces of Java, Python, Go and
// Node.js services (testdata/multiline/*.txt, events separated by "---")
// through the default start pattern.
func TestMultilineStackTraces(t *testing.T) {
	for _, lang := range []string{"java", "python", "go", "node"} {
		t.Run(lang, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "multiline", lang+".txt"))
			if err != nil {
				t.Fatal(err)
			}
			want := strings.Split(strings.TrimRight(string(data), "\n"), "\n---\n")
			h := newHarness(t, multilineConfig(t, defaultRule()))
			dir := containerDir(t, h.root, "ns", lang, "app")
			var lines []string
			for _, ev := range want {
				for _, l := range strings.Split(ev, "\n") {
					lines = append(lines, criLine("stderr", "F", l))
				}
			}
			appendFile(t, filepath.Join(dir, "0.log"), lines...)
			h.waitCount(len(want))
			time.Sleep(50 * time.Millisecond)
			evs := h.sink.events()
			sort.Slice(evs, func(i, j int) bool { return field(evs[i], "log.offset") < field(evs[j], "log.offset") })
			var got []string
			for _, e := range evs {
				got = append(got, e.Message())
				multi := strings.Contains(e.Message(), "\n")
				if flags := field(e, "log.flags"); multi != (flags == `["multiline"]`) {
					t.Errorf("event %q: log.flags %q", firstLine(e.Message()), flags)
				}
			}
			sort.Strings(got)
			sort.Strings(want)
			if strings.Join(got, "\n===\n") != strings.Join(want, "\n===\n") {
				t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n===\n"), strings.Join(want, "\n===\n"))
			}
		})
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func TestMultilineLimits(t *testing.T) {
	rule := defaultRule()
	rule.MaxLines = 3
	rule.MaxBytes = 1024
	h := newHarness(t, multilineConfig(t, rule))
	dir := containerDir(t, h.root, "ns", "limits", "app")
	log0 := filepath.Join(dir, "0.log")
	// max_lines: a start line and five continuations become two events.
	appendFile(t, log0,
		criLine("stdout", "F", "ERROR five frames"),
		criLine("stdout", "F", "\tat a"), criLine("stdout", "F", "\tat b"),
		criLine("stdout", "F", "\tat c"), criLine("stdout", "F", "\tat d"), criLine("stdout", "F", "\tat e"),
		// max_bytes: three 400-byte continuations do not fit in 1KiB.
		criLine("stdout", "F", "ERROR big"),
		criLine("stdout", "F", " "+strings.Repeat("a", 399)),
		criLine("stdout", "F", " "+strings.Repeat("b", 399)),
		criLine("stdout", "F", " "+strings.Repeat("c", 399)),
	)
	h.waitCount(4)
	got := h.sink.messages()
	want := []string{
		"\tat c\n\tat d\n\tat e",
		" " + strings.Repeat("c", 399),
		"ERROR big\n " + strings.Repeat("a", 399) + "\n " + strings.Repeat("b", 399),
		"ERROR five frames\n\tat a\n\tat b",
	}
	sort.Strings(want)
	if len(got) != len(want) {
		t.Fatalf("got %d events: %q", len(got), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d = %q, want %q", i, got[i], want[i])
		}
	}

	// max_wait: a continuation stamped more than the wait after the line
	// before it is an event of its own, even when both are read at once.
	now := time.Now()
	appendFile(t, log0, criLineAt(now, "stdout", "F", "ERROR waits"), criLineAt(now.Add(400*time.Millisecond), "stdout", "F", "\tat late"))
	h.waitCount(6)
	msgs := strings.Join(h.sink.messages(), "|")
	if !strings.Contains(msgs, "|ERROR waits|") && !strings.HasSuffix(msgs, "|ERROR waits") {
		t.Errorf("the waiting event was not sent alone: %q", msgs)
	}
}

func TestMultilineOnlyWhereTheRuleMatches(t *testing.T) {
	rule := defaultRule()
	rule.Match = "java-apps"
	h := newHarness(t, multilineConfig(t, rule))
	other := containerDir(t, h.root, "plain", "pod", "app")
	appendFile(t, filepath.Join(other, "0.log"), criLine("stdout", "F", "ERROR x"), criLine("stdout", "F", "\tat y"))
	h.waitCount(2)
	if got := h.sink.messages(); len(got) != 2 {
		t.Errorf("lines of a container without a rule were joined: %q", got)
	}
}

// TestSplitIsTheSameWhenReadAgain: whether a line joins the event before
// it is decided by the runtime's timestamps, not by when the agent read.
// Each file is read live, step by step with the agent's clock given, and
// then again from its start, as after a restart that lost the
// acknowledgement: both reads must give the same events under the same
// ids and flags, so the aggregator stores each once.
func TestSplitIsTheSameWhenReadAgain(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PartialWait = 300 * time.Millisecond
	rule := &multiline{sel: newSelector([]string{"*"}), re: mustRegexp(DefaultStartPattern), maxLines: 50, maxBytes: 64 << 10, maxWait: 200 * time.Millisecond}
	t0 := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	at := func(d time.Duration, stream, tag, text string) string { return criLineAt(t0.Add(d), stream, tag, text) }
	// A step: what the runtime wrote, then when the agent read.
	type step struct {
		lines []string
		read  time.Duration
	}
	for _, tc := range []struct {
		name  string
		steps []step
		want  []string // "<id> <flags> <message>", sorted
	}{{
		name: "max_wait, settle and partial_wait",
		steps: []step{
			{[]string{at(0, "stderr", "F", "ERROR first"), at(ms(100), "stderr", "F", "\tat a")}, ms(110)},
			// 150ms after the last line: within max_wait, joins.
			{[]string{at(ms(250), "stderr", "F", "\tat b")}, ms(260)},
			// Past max_wait but within the settle time: the event still
			// waits, and a line stamped in time but written late joins it.
			{nil, ms(500)},
			{[]string{at(ms(440), "stderr", "F", "\tat c")}, ms(510)},
			// Nothing new long after: the event is sent.
			{nil, ms(900)},
			// Stamped 510ms after "\tat c": late, an event of its own, while
			// running and when read again (where it directly follows).
			{[]string{at(ms(950), "stderr", "F", "\tat late")}, ms(960)},
			// A line's parts: the second part 500ms after the first is late
			// for partial_wait; the first is sent alone, flagged partial.
			{[]string{at(ms(1000), "stdout", "P", "half ")}, ms(1010)},
			{nil, ms(1600)},
			{[]string{at(ms(1500), "stdout", "F", "other half")}, ms(1610)},
			{nil, 3 * time.Second},
		},
		want: []string{
			`0123456789abcdef.0:1 ["multiline"] ERROR first` + "\n\tat a\n\tat b\n\tat c",
			"0123456789abcdef.0:5 - \tat late",
			`0123456789abcdef.0:6 ["partial"] half `,
			"0123456789abcdef.0:7 - other half",
		},
	}, {
		// The event's wait runs out while a continuation is still coming
		// in parts: its first part is in time, so the event waits for the
		// whole line.
		name: "continuation in parts",
		steps: []step{
			{[]string{at(0, "stderr", "F", "ERROR first"), at(ms(100), "stderr", "P", "\tat a ")}, ms(500)},
			{[]string{at(ms(350), "stderr", "F", "rest")}, ms(510)},
			{nil, 3 * time.Second},
		},
		want: []string{`0123456789abcdef.0:1 ["multiline"] ERROR first` + "\n\tat a rest"},
	}, {
		// A line without a runtime timestamp joins, but does not make a
		// later line stamped long after look in time.
		name: "line without a timestamp",
		steps: []step{
			// A line that is not CRI counts as stdout.
			{[]string{at(0, "stdout", "F", "ERROR first"), "\tgarbage\n"}, ms(10)},
			{nil, ms(1000)},
			{[]string{at(ms(2000), "stdout", "F", "\tat late")}, ms(2010)},
			{nil, 3 * time.Second},
		},
		want: []string{
			`0123456789abcdef.0:1 ["multiline"] ERROR first` + "\n\tgarbage",
			"0123456789abcdef.0:3 - \tat late",
		},
	}, {
		// Stamps that go backwards: the latest one counts.
		name: "timestamps going backwards",
		steps: []step{
			{[]string{at(ms(1000), "stderr", "F", "ERROR first"), at(ms(500), "stderr", "F", "\tat a")}, ms(1010)},
			{[]string{at(ms(1150), "stderr", "F", "\tat b")}, ms(1160)},
			{nil, 3 * time.Second},
		},
		want: []string{`0123456789abcdef.0:1 ["multiline"] ERROR first` + "\n\tat a\n\tat b"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "0.log")
			appendFile(t, path)
			rd := bareReader(t, cfg, rule, path)
			var live []string
			for _, s := range tc.steps {
				appendFile(t, path, s.lines...)
				live = append(live, readAt(t, rd, t0.Add(s.read), false)...)
			}
			sort.Strings(live)
			if strings.Join(live, "|") != strings.Join(tc.want, "|") {
				t.Errorf("read live:\n%q\nwant\n%q", live, tc.want)
			}
			again := readAt(t, bareReader(t, cfg, rule, path), t0.Add(time.Hour), true)
			sort.Strings(again)
			if strings.Join(again, "|") != strings.Join(live, "|") {
				t.Errorf("read again:\n%q\nlive:\n%q", again, live)
			}
		})
	}
}

// readAt reads rd to the file's end at the given clock and returns
// "<id> <log.flags or -> <message>" of the events it sent.
func readAt(t *testing.T, rd *reader, now time.Time, final bool) []string {
	t.Helper()
	var got []string
	buf := make([]byte, 4<<10)
	for {
		b := collector.NewBatch("test")
		rd.batchBytes = 0
		eof, _, err := rd.fill(b, buf, final, now)
		if err != nil {
			t.Fatal(err)
		}
		if eof {
			rd.flushDue(b, now, final)
		}
		for i := range b.Events {
			e := &b.Events[i]
			flags := field(*e, "log.flags")
			if flags == "" {
				flags = "-"
			}
			got = append(got, e.ID+" "+flags+" "+e.Message())
		}
		b.Release()
		if eof {
			return got
		}
	}
}
