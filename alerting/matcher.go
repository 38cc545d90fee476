package alerting

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// MatchType is one of Alertmanager's four matcher operators.
type MatchType string

// The matcher operators.
const (
	MatchEqual     MatchType = "="
	MatchNotEqual  MatchType = "!="
	MatchRegexp    MatchType = "=~"
	MatchNotRegexp MatchType = "!~"
)

// Matcher is one label condition in Alertmanager's syntax. Regexps are
// anchored, as in Alertmanager, so the generated routes and the Router
// agree.
type Matcher struct {
	Name  string
	Type  MatchType
	Value string
	re    *regexp.Regexp
}

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// ParseMatcher reads `name="value"`, `name!="value"`, `name=~"re"` or
// `name!~"re"` (the value may also be unquoted when it has no spaces).
func ParseMatcher(s string) (Matcher, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexAny(s, "=!")
	if i <= 0 {
		return Matcher{}, fmt.Errorf("%q: want name=\"value\", name!=\"value\", name=~\"regexp\" or name!~\"regexp\"", s)
	}
	m := Matcher{Name: strings.TrimSpace(s[:i])}
	rest := s[i:]
	for _, op := range []MatchType{MatchRegexp, MatchNotRegexp, MatchNotEqual, MatchEqual} {
		if strings.HasPrefix(rest, string(op)) {
			m.Type = op
			rest = strings.TrimSpace(rest[len(op):])
			break
		}
	}
	if m.Type == "" {
		return Matcher{}, fmt.Errorf("%q: unknown operator", s)
	}
	if !labelName.MatchString(m.Name) {
		return Matcher{}, fmt.Errorf("%q: %q is not a label name", s, m.Name)
	}
	if strings.HasPrefix(rest, `"`) {
		v, err := strconv.Unquote(rest)
		if err != nil {
			return Matcher{}, fmt.Errorf("%q: bad quoted value: %v", s, err)
		}
		m.Value = v
	} else {
		if strings.ContainsAny(rest, "\" ,{}") {
			return Matcher{}, fmt.Errorf("%q: quote the value", s)
		}
		m.Value = rest
	}
	if m.Type == MatchRegexp || m.Type == MatchNotRegexp {
		re, err := regexp.Compile("^(?:" + m.Value + ")$")
		if err != nil {
			return Matcher{}, fmt.Errorf("%q: %v", s, err)
		}
		m.re = re
	}
	return m, nil
}

// Matches reports whether the value of the matcher's label (empty when the
// label is missing, as in Alertmanager) satisfies it.
func (m Matcher) Matches(v string) bool {
	switch m.Type {
	case MatchEqual:
		return v == m.Value
	case MatchNotEqual:
		return v != m.Value
	case MatchRegexp:
		return m.re.MatchString(v)
	default:
		return !m.re.MatchString(v)
	}
}

// String is the matcher in Alertmanager's syntax, value always quoted.
func (m Matcher) String() string {
	return m.Name + string(m.Type) + strconv.Quote(m.Value)
}

func matchAll(ms []Matcher, get func(string) string) bool {
	for _, m := range ms {
		if !m.Matches(get(m.Name)) {
			return false
		}
	}
	return true
}
