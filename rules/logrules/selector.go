package logrules

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/leitstand/leitstand/collector"
)

// FilterOp is a LogQL line filter operator.
type FilterOp uint8

const (
	FilterContains    FilterOp = iota // |=
	FilterNotContains                 // !=
	FilterMatch                       // |~
	FilterNotMatch                    // !~
)

func (op FilterOp) String() string {
	return [...]string{"|=", "!=", "|~", "!~"}[op]
}

// LineFilter is one LogQL-style filter on the event's message.
type LineFilter struct {
	Op      FilterOp
	Pattern string
	re      *regexp.Regexp
}

// Selector is a parsed log selector: PromQL label matchers on event fields
// followed by line filters on the message.
type Selector struct {
	Matchers []*labels.Matcher
	Filters  []LineFilter
}

// MessageField is the field line filters apply to.
const MessageField = collector.FieldMessage

// ParseSelector parses `{field="v", other=~"re"} |= "text" !~ "re"`. The
// matcher part goes to the Prometheus parser; dotted field names may be
// written bare (event.dataset) or quoted ("event.dataset") as Prometheus 3
// allows for UTF-8 names. The braces may be left out when there are only
// line filters.
func ParseSelector(s string) (*Selector, error) {
	s = strings.TrimSpace(s)
	sel := &Selector{}
	rest := s
	if strings.HasPrefix(s, "{") {
		end, err := closingBrace(s)
		if err != nil {
			return nil, err
		}
		body := s[:end+1]
		rest = s[end+1:]
		if strings.TrimSpace(body[1:end]) != "" {
			ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector(quoteDottedNames(body))
			if err != nil {
				return nil, fmt.Errorf("selector %s: %w", body, err)
			}
			sel.Matchers = ms
		}
	}
	filters, err := parseFilters(rest)
	if err != nil {
		return nil, err
	}
	sel.Filters = filters
	if len(sel.Matchers) == 0 && len(sel.Filters) == 0 {
		return nil, fmt.Errorf("empty selector: give field matchers in {} or a line filter")
	}
	return sel, nil
}

// closingBrace returns the index of the } that closes s[0], skipping quoted
// strings.
func closingBrace(s string) (int, error) {
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\'', '`':
			j, err := skipQuoted(s, i)
			if err != nil {
				return 0, err
			}
			i = j
		case '}':
			return i, nil
		}
	}
	return 0, fmt.Errorf("selector: missing }")
}

// skipQuoted returns the index of the quote that ends the string at s[i].
func skipQuoted(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			if q != '`' {
				j++
			}
		case q:
			return j, nil
		}
	}
	return 0, fmt.Errorf("selector: unterminated string at offset %d", i)
}

func isNameByte(c byte) bool {
	return c == '_' || c == '.' || c == ':' || c == '-' || c == '@' ||
		'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// quoteDottedNames quotes bare field names that PromQL's lexer would not
// take as one identifier (event.dataset, @timestamp): Prometheus 3 accepts
// them quoted.
func quoteDottedNames(body string) string {
	var b strings.Builder
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j, err := skipQuoted(body, i)
			if err != nil {
				b.WriteString(body[i:])
				return b.String()
			}
			b.WriteString(body[i : j+1])
			i = j
		case isNameByte(c):
			j := i
			for j < len(body) && isNameByte(body[j]) {
				j++
			}
			name := body[i:j]
			if strings.ContainsAny(name, ".-@") {
				b.WriteString(strconv.Quote(name))
			} else {
				b.WriteString(name)
			}
			i = j - 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func parseFilters(s string) ([]LineFilter, error) {
	var out []LineFilter
	for {
		s = strings.TrimSpace(s)
		if s == "" {
			return out, nil
		}
		if len(s) < 2 {
			return nil, fmt.Errorf("line filter: want |=, !=, |~ or !~ at %q", s)
		}
		var op FilterOp
		switch s[:2] {
		case "|=":
			op = FilterContains
		case "!=":
			op = FilterNotContains
		case "|~":
			op = FilterMatch
		case "!~":
			op = FilterNotMatch
		default:
			return nil, fmt.Errorf("line filter: want |=, !=, |~ or !~ at %q", s)
		}
		s = strings.TrimSpace(s[2:])
		if s == "" || (s[0] != '"' && s[0] != '`') {
			return nil, fmt.Errorf("line filter %s: want a quoted string", op)
		}
		end, err := skipQuoted(s, 0)
		if err != nil {
			return nil, fmt.Errorf("line filter %s: %w", op, err)
		}
		pat, err := strconv.Unquote(s[:end+1])
		if err != nil {
			return nil, fmt.Errorf("line filter %s: bad string %s: %w", op, s[:end+1], err)
		}
		f := LineFilter{Op: op, Pattern: pat}
		if op == FilterMatch || op == FilterNotMatch {
			if f.re, err = regexp.Compile(pat); err != nil {
				return nil, fmt.Errorf("line filter %s: %w", op, err)
			}
		}
		out = append(out, f)
		s = s[end+1:]
	}
}

// Matches reports whether the event satisfies every matcher and filter. A
// missing field matches as "" (as a missing label does in PromQL).
func (s *Selector) Matches(e *collector.Event) bool {
	for _, m := range s.Matchers {
		v, _ := e.Get(m.Name)
		if !m.Matches(v) {
			return false
		}
	}
	if len(s.Filters) == 0 {
		return true
	}
	msg := e.Message()
	for i := range s.Filters {
		if !s.Filters[i].matches(msg) {
			return false
		}
	}
	return true
}

func (f *LineFilter) matches(msg string) bool {
	switch f.Op {
	case FilterContains:
		return strings.Contains(msg, f.Pattern)
	case FilterNotContains:
		return !strings.Contains(msg, f.Pattern)
	case FilterMatch:
		return f.re.MatchString(msg)
	default:
		return !f.re.MatchString(msg)
	}
}

// requiredLiteral is the longest literal a matching message must contain
// (from |= filters and the literal parts every match of a |~ regexp
// has): the prefilter scans for it.
func (s *Selector) requiredLiteral() string {
	best := ""
	for _, f := range s.Filters {
		lit := ""
		switch f.Op {
		case FilterContains:
			lit = f.Pattern
		case FilterMatch:
			if re, err := syntax.Parse(f.Pattern, syntax.Perl); err == nil {
				lit = regexpLiteral(re.Simplify())
			}
		}
		if len(lit) > len(best) {
			best = lit
		}
	}
	return best
}

// regexpLiteral returns the longest case-sensitive literal that every
// match of re contains ("" when there is none it can be sure of).
func regexpLiteral(re *syntax.Regexp) string {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return ""
		}
		lit := string(re.Rune)
		// Invalid bytes in a message match U+FFFD: a literal holding it
		// proves nothing about the message's bytes.
		if strings.ContainsRune(lit, utf8.RuneError) {
			return ""
		}
		return lit
	case syntax.OpCapture, syntax.OpPlus:
		return regexpLiteral(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return regexpLiteral(re.Sub[0])
		}
	case syntax.OpConcat:
		best := ""
		for _, sub := range re.Sub {
			if l := regexpLiteral(sub); len(l) > len(best) {
				best = l
			}
		}
		return best
	}
	return ""
}

// equalValue returns the value of an equality matcher on name, if any.
func (s *Selector) equalValue(name string) (string, bool) {
	for _, m := range s.Matchers {
		if m.Name == name && m.Type == labels.MatchEqual {
			return m.Value, true
		}
	}
	return "", false
}
