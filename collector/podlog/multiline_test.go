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

	// max_wait: a continuation stamped after the wait is an event of its own.
	appendFile(t, log0, criLineAt(time.Now(), "stdout", "F", "ERROR waits"))
	h.waitCount(5)
	time.Sleep(400 * time.Millisecond)
	appendFile(t, log0, criLineAt(time.Now(), "stdout", "F", "\tat late"))
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
// The file is read live (the continuation comes after the event was
// sent for having waited max_wait) and then again from its start, as
// after a restart that lost the acknowledgement: both reads give the same
// events under the same ids, so the aggregator stores each once.
func TestSplitIsTheSameWhenReadAgain(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PartialWait = 300 * time.Millisecond
	rule := &multiline{sel: newSelector([]string{"*"}), re: mustRegexp(DefaultStartPattern), maxLines: 50, maxBytes: 64 << 10, maxWait: 200 * time.Millisecond}
	path := filepath.Join(t.TempDir(), "0.log")
	t0 := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	at := func(d time.Duration, stream, tag, text string) string { return criLineAt(t0.Add(d), stream, tag, text) }
	// Each step: what the runtime wrote, and when the agent read it.
	steps := []struct {
		lines []string
		read  time.Duration
	}{
		{[]string{at(0, "stderr", "F", "ERROR first"), at(100*time.Millisecond, "stderr", "F", "\tat a")}, 110 * time.Millisecond},
		// 150ms after the last line: within max_wait, joins.
		{[]string{at(250*time.Millisecond, "stderr", "F", "\tat b")}, 260 * time.Millisecond},
		// Past max_wait but within the settle time: the event still waits,
		// and a line stamped in time but written late joins it.
		{nil, 500 * time.Millisecond},
		{[]string{at(440*time.Millisecond, "stderr", "F", "\tat c")}, 510 * time.Millisecond},
		// Nothing new long after: the event is sent.
		{nil, 900 * time.Millisecond},
		// Stamped 510ms after "\tat c": late, an event of its own, while
		// running and when read again (where it directly follows).
		{[]string{at(950*time.Millisecond, "stderr", "F", "\tat late")}, 960 * time.Millisecond},
		// A line's parts: the second part 500ms after the first is late
		// for partial_wait; the first was sent alone, flagged partial.
		{[]string{at(1000*time.Millisecond, "stdout", "P", "half ")}, 1010 * time.Millisecond},
		{nil, 1600 * time.Millisecond},
		{[]string{at(1500*time.Millisecond, "stdout", "F", "other half")}, 1610 * time.Millisecond},
		{nil, 3 * time.Second},
	}
	var live []string
	appendFile(t, path)
	rd := bareReader(t, cfg, rule, path)
	for _, s := range steps {
		appendFile(t, path, s.lines...)
		live = append(live, readAt(t, rd, t0.Add(s.read), false)...)
	}
	sort.Strings(live)
	want := []string{
		"0123456789abcdef.0:1 ERROR first\n\tat a\n\tat b\n\tat c",
		"0123456789abcdef.0:5 \tat late",
		"0123456789abcdef.0:6 half ",
		"0123456789abcdef.0:7 other half",
	}
	if strings.Join(live, "|") != strings.Join(want, "|") {
		t.Errorf("read live:\n%q\nwant\n%q", live, want)
	}
	again := readAt(t, bareReader(t, cfg, rule, path), t0.Add(time.Hour), true)
	sort.Strings(again)
	if strings.Join(again, "|") != strings.Join(live, "|") {
		t.Errorf("read again:\n%q\nlive:\n%q", again, live)
	}
}

// readAt reads rd to the file's end at the given clock and returns
// "<id> <message>" of the events it sent.
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
			got = append(got, b.Events[i].ID+" "+b.Events[i].Message())
		}
		b.Release()
		if eof {
			return got
		}
	}
}
