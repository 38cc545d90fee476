package logrules

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/leitstand/leitstand/rules"
)

// TestSameFileAsPromQL: the PromQL loader accepts the file the log rules
// live in (it skips the log: items), so both engines read one file.
func TestSameFileAsPromQL(t *testing.T) {
	if err := rules.CheckRuleFiles([]string{"testdata/log.rules.yml"}); err != nil {
		t.Fatal(err)
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/log.rules.yml", "testdata/bad.rules.yml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("groups: [{name: g, rules: [{log: '|= \"x\"', alert: A, by: [a.b]}]}]"))
	f.Fuzz(func(t *testing.T, content []byte) {
		rs, err := Parse("fuzz.yml", content)
		if err != nil {
			return
		}
		for _, r := range rs {
			if r.Selector == nil || r.Name == "" && r.Kind != KindRecord {
				t.Fatalf("accepted incomplete rule %+v", r)
			}
		}
		compile(rs)
	})
}

// FuzzMatcher: the prefilter finds every pattern that strings.Contains finds.
func FuzzMatcher(f *testing.F) {
	f.Add("he\x00she\x00his\x00hers", "ushers")
	f.Add("a\x00aa\x00aaa", "aaaa")
	f.Fuzz(func(t *testing.T, pats, text string) {
		var ps []string
		for _, p := range strings.Split(pats, "\x00") {
			if p != "" {
				ps = append(ps, p)
			}
		}
		if len(ps) == 0 {
			return
		}
		m := newMatcher(ps)
		got := map[int32]bool{}
		m.scan(text, func(id int32) { got[id] = true })
		for id, p := range ps {
			if want := strings.Contains(text, p); got[int32(id)] != want {
				t.Fatalf("%q in %q: got %v want %v", p, text, got[int32(id)], want)
			}
		}
	})
}

// FuzzRegexpLiteral: a message a |~ filter matches always contains the
// literal the prefilter scans for.
func FuzzRegexpLiteral(f *testing.F) {
	f.Add("errcode-1 (timeout|refused)", "x errcode-1 timeout")
	f.Add("(?i)abc", "ABC")
	f.Add("a\\x{fffd}b", "a\xffb")
	f.Fuzz(func(t *testing.T, pattern, msg string) {
		sel, err := ParseSelector("|~ " + strconv.Quote(pattern))
		if err != nil {
			return
		}
		lit := sel.requiredLiteral()
		if sel.Matches(ev(msg)) && !strings.Contains(msg, lit) {
			t.Fatalf("%q matches %q without literal %q", pattern, msg, lit)
		}
	})
}
