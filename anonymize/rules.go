package anonymize

import (
	mathbits "math/bits"
	"strings"
)

// builtinRules are the field rules on by default (Config.BuiltinRules).
// Sentry events carry the user, the request's cookies and the local
// variables of stack frames as structure, so they are handled by name
// rather than left to the value detectors. The secret key list covers
// request headers (Authorization, Cookie, X-Api-Key, …) everywhere.
func builtinRules() []FieldRule {
	sentry := []string{"sentry", "sentry.*"}
	return []FieldRule{
		{Datasets: sentry, Fields: []string{"user.ip_address"}, Method: MethodTruncate, Type: "ip"},
		{Datasets: sentry, Fields: []string{"user.geo", "user.geo.*"}, Method: MethodDrop, Type: "user"},
		{Datasets: sentry, Fields: []string{"user.email"}, Method: MethodHash, Type: "email"},
		{Datasets: sentry, Fields: []string{"user", "user.*"}, Method: MethodHash, Type: "user"},
		{Datasets: sentry, Fields: []string{"request.cookies", "request.cookies.*"}, Method: MethodMask, Type: "secret"},
		{Datasets: sentry, Fields: []string{"*.frames.vars", "*.frames.vars.*"}, Method: MethodMask, Type: "var"},
	}
}

// glob is a compiled pattern where '*' matches any run of characters
// (dots included), matched against lower-case text.
type glob struct {
	kind uint8
	s    string // lower-case
}

const (
	gExact uint8 = iota
	gPrefix
	gSuffix
	gAll
	gContains
	gGeneral
)

func compileGlob(p string) glob {
	p = strings.ToLower(strings.TrimSpace(p))
	n := strings.Count(p, "*")
	switch {
	case n == 0:
		return glob{gExact, p}
	case p == "*":
		return glob{gAll, ""}
	case n == 1 && strings.HasSuffix(p, "*"):
		return glob{gPrefix, p[:len(p)-1]}
	case n == 1 && strings.HasPrefix(p, "*"):
		return glob{gSuffix, p[1:]}
	case n == 2 && len(p) > 2 && p[0] == '*' && p[len(p)-1] == '*':
		return glob{gContains, p[1 : len(p)-1]}
	}
	return glob{gGeneral, p}
}

func (g glob) match(s string) bool {
	switch g.kind {
	case gExact:
		return s == g.s
	case gPrefix:
		return strings.HasPrefix(s, g.s)
	case gSuffix:
		return strings.HasSuffix(s, g.s)
	case gAll:
		return true
	case gContains:
		return strings.Contains(s, g.s)
	}
	return globMatch(g.s, s)
}

// globMatch matches p ('*' for any run) against s without allocating.
func globMatch(p, s string) bool {
	star, mark := -1, 0
	i, j := 0, 0
	for j < len(s) {
		switch {
		case i < len(p) && p[i] == '*':
			star, mark = i, j
			i++
		case i < len(p) && p[i] == s[j]:
			i++
			j++
		case star >= 0:
			i = star + 1
			mark++
			j = mark
		default:
			return false
		}
	}
	for i < len(p) && p[i] == '*' {
		i++
	}
	return i == len(p)
}

// globSet matches a name against many globs, exact names by map.
type globSet struct {
	exact  map[string]bool
	others []glob
}

func newGlobSet(patterns []string) globSet {
	gs := globSet{exact: map[string]bool{}}
	for _, p := range patterns {
		g := compileGlob(p)
		if g.kind == gExact {
			gs.exact[g.s] = true
		} else {
			gs.others = append(gs.others, g)
		}
	}
	return gs
}

func (gs *globSet) match(lowerName string) bool {
	if gs.exact[lowerName] {
		return true
	}
	for _, g := range gs.others {
		if g.match(lowerName) {
			return true
		}
	}
	return false
}

// rule is a compiled FieldRule.
type rule struct {
	datasets []glob // empty: every dataset
	act      action
}

// ruleSet finds the first rule, in order, that matches a field path among
// the rules active for an event's dataset.
type ruleSet struct {
	rules  []rule
	exact  map[string][]uint8 // path → rules with that exact pattern, in order
	others []ruleGlob
}

type ruleGlob struct {
	g   glob
	idx uint8
}

// active returns the bit set of rules whose datasets match dataset (lower-case).
func (rs *ruleSet) active(dataset string) uint64 {
	var bits uint64
	for i := range rs.rules {
		r := &rs.rules[i]
		ok := len(r.datasets) == 0
		for _, g := range r.datasets {
			if g.match(dataset) {
				ok = true
				break
			}
		}
		if ok {
			bits |= 1 << uint(i)
		}
	}
	return bits
}

// mask returns the bit set of rules with a field glob matching path
// (lower-case), whatever their datasets.
func (rs *ruleSet) mask(path string) uint64 {
	var bits uint64
	for _, idx := range rs.exact[path] {
		bits |= 1 << idx
	}
	for _, rg := range rs.others {
		if rg.g.match(path) {
			bits |= 1 << rg.idx
		}
	}
	return bits
}

// first returns the action of the first rule in bits, or nil.
func (rs *ruleSet) first(bits uint64) *action {
	if bits == 0 {
		return nil
	}
	return &rs.rules[mathbits.TrailingZeros64(bits)].act
}
