package podlog

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
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

	// max_wait: a continuation that comes after the wait is an event of its own.
	appendFile(t, log0, criLine("stdout", "F", "ERROR waits"))
	h.waitCount(5)
	time.Sleep(400 * time.Millisecond)
	appendFile(t, log0, criLine("stdout", "F", "\tat late"))
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
