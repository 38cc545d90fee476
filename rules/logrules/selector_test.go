package logrules

import (
	"strings"
	"testing"

	"github.com/leitstand/leitstand/collector"
)

func ev(msg string, kv ...string) *collector.Event {
	e := &collector.Event{}
	e.AddString(collector.FieldMessage, msg)
	for i := 0; i+1 < len(kv); i += 2 {
		e.AddString(kv[i], kv[i+1])
	}
	return e
}

func TestSelector(t *testing.T) {
	cases := []struct {
		sel  string
		ev   *collector.Event
		want bool
	}{
		{`{event.dataset="syslog"}`, ev("x", "event.dataset", "syslog"), true},
		{`{"event.dataset"="syslog"}`, ev("x", "event.dataset", "syslog"), true},
		{`{event.dataset="syslog"}`, ev("x", "event.dataset", "nginx"), false},
		{`{service.name=~"api|web", log.level!="debug"}`, ev("x", "service.name", "web", "log.level", "error"), true},
		{`{service.name=~"api|web", log.level!="debug"}`, ev("x", "service.name", "web", "log.level", "debug"), false},
		{`{service.name=~"api|web"}`, ev("x", "service.name", "webx"), false},
		{`{event.dataset="syslog"} |= "timeout" != "healthcheck"`, ev("db timeout", "event.dataset", "syslog"), true},
		{`{event.dataset="syslog"} |= "timeout" != "healthcheck"`, ev("healthcheck timeout", "event.dataset", "syslog"), false},
		{`|~ "user (root|admin)" !~ "^debug"`, ev("login user admin"), true},
		{`|~ "user (root|admin)" !~ "^debug"`, ev("debug user admin"), false},
		{"{a=\"}\"} |= `x\"y`", ev(`a x"y`, "a", "}"), true},
		{`{missing=""} |= "a"`, ev("a"), true},
	}
	for _, c := range cases {
		s, err := ParseSelector(c.sel)
		if err != nil {
			t.Fatalf("%s: %v", c.sel, err)
		}
		if got := s.Matches(c.ev); got != c.want {
			t.Errorf("%s on %v: got %v", c.sel, c.ev.Fields, got)
		}
	}
}

func TestSelectorErrors(t *testing.T) {
	for _, s := range []string{``, `{}`, `{a="b"`, `{a="b"} |= x`, `{a="b"} |~ "("`, `{a=}`, `{a="b"} |= "x" ||`, `{a="b"} |= "unterminated`} {
		if _, err := ParseSelector(s); err == nil {
			t.Errorf("%q: no error", s)
		}
	}
}

func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{`{event.dataset="syslog", log.level!="debug"} |= "timeout" != "healthcheck"`,
		`{"a.b"=~"x|y"} |~ "(?i)err" !~ "ok"`, "|= `raw`", `{a="}"}`, `{`, `|=`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseSelector(s)
		if err != nil {
			return
		}
		e := ev(s, "event.dataset", s)
		sel.Matches(e)
		if lit := sel.requiredLiteral(); lit != "" && sel.Matches(e) && !strings.Contains(e.Message(), lit) {
			t.Fatalf("matched without required literal %q", lit)
		}
	})
}

func TestMatcherFindsAll(t *testing.T) {
	pats := []string{"he", "she", "his", "hers", "timeout", "out"}
	m := newMatcher(pats)
	got := map[int32]bool{}
	m.scan("ushers had a timeout", func(id int32) { got[id] = true })
	for id, p := range pats {
		want := strings.Contains("ushers had a timeout", p)
		if got[int32(id)] != want {
			t.Errorf("%q: got %v want %v", p, got[int32(id)], want)
		}
	}
}

func TestRequiredLiteral(t *testing.T) {
	for sel, want := range map[string]string{
		`|= "ab" |~ "errcode-1 (timeout|refused)"`: "errcode-1 ",
		`|~ "(?i)timeout"`:                         "",
		`|~ "a|b"`:                                 "",
		`|~ "x(yz)+w"`:                             "yz",
		`|~ "(foo)?bar"`:                           "bar",
		`!~ "longliteral" |= "x"`:                  "x",
	} {
		s, err := ParseSelector(sel)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.requiredLiteral(); got != want {
			t.Errorf("%s: got %q want %q", sel, got, want)
		}
	}
}
