package alerting

import (
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"
)

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

// FuzzSearchParams: the event search's query string comes from callers.
// Whatever it says, a search that is not refused carries the caller's
// scope as a terms filter and q only inside simple_query_string.
func FuzzSearchParams(f *testing.F) {
	for _, s := range []string{"", "q=a", "namespace=payments&q=x", "dataset=a,b&from=15m&to=now", "from=2026-11-22T08:00:00Z",
		"size=0&sort=asc", "namespace=,", "q=%22a%22+%7C+b*", "service=x&service=y", "from=now-7d"} {
		f.Add(s)
	}
	a := &API{}
	WithEventSearch(EventSearch{Indices: []string{"logs-*-default"}})(a)
	s := a.search
	role := &Role{Name: "dev/payments", Scope: Scope{Namespaces: []string{"payments", "payments-stage"}}}
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, err := s.parse(v, now)
		if err != nil {
			return
		}
		scope, err := scopeFilters(role, &p)
		if err != nil {
			return
		}
		body, err := s.query(&p, scope)
		if err != nil {
			t.Fatal(err)
		}
		var q struct {
			Query struct {
				Bool struct {
					Filter []map[string]map[string]any `json:"filter"`
					Must   []map[string]map[string]any `json:"must"`
				} `json:"bool"`
			} `json:"query"`
		}
		if err := json.Unmarshal(body, &q); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, f := range q.Query.Bool.Filter {
			if terms, ok := f["terms"]; ok && fmt.Sprint(terms["kubernetes.namespace"]) == "[payments payments-stage]" {
				found = true
			}
		}
		if !found {
			t.Fatalf("%q: no scope filter in %s", raw, body)
		}
		for _, m := range q.Query.Bool.Must {
			if len(m) != 1 || m["simple_query_string"] == nil {
				t.Fatalf("%q: must holds %v", raw, m)
			}
		}
	})
}
