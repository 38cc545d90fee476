package alerting

import "testing"

// FuzzParseMatcher: matchers come from operators' configs; whatever parses
// must print back to itself and never panic when matched.
func FuzzParseMatcher(f *testing.F) {
	for _, s := range []string{`a="b"`, `a!~"x|y"`, `severity=~"crit.*"`, `a=b`, `a="\"q\""`, `=`, `a=~"("`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMatcher(s)
		if err != nil {
			return
		}
		m.Matches("x")
		m2, err := ParseMatcher(m.String())
		if err != nil || m2.String() != m.String() {
			t.Fatalf("%q -> %s does not round-trip: %v", s, m, err)
		}
	})
}
