package logrules

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/leitstand/leitstand/collector"
)

// TestFile is a unit-test file for log rules, beside the promtool-format
// tests:
//
//	rule_files: [log.rules.yml]     # relative to this file
//	tests:
//	  - name: failed root logins
//	    events:
//	      - at: 0s
//	        fields: {event.dataset: syslog, host.name: a, message: "Failed password for root"}
//	    expect:
//	      - at: 1m                  # after the events up to 1m and an evaluation at 1m
//	        alerts:                 # exactly the active log alerts
//	          - labels: {alertname: RootLoginFailed, host_name: a}
//	            annotations: {summary: failed root login on a}   # optional
//	        series:                 # record series and their counts
//	          - series: 'log:failed_logins:count{host_name="a"}'
//	            value: 1
type TestFile struct {
	RuleFiles []string   `yaml:"rule_files"`
	Tests     []TestCase `yaml:"tests"`
}

// TestCase is one scenario, run on a fresh engine.
type TestCase struct {
	Name   string        `yaml:"name"`
	Events []TestEvent   `yaml:"events"`
	Expect []Expectation `yaml:"expect"`
}

// TestEvent is an input event at an offset from the test's start.
type TestEvent struct {
	At     model.Duration    `yaml:"at"`
	Fields map[string]string `yaml:"fields"`
}

// Expectation is the state at an offset.
type Expectation struct {
	At     model.Duration   `yaml:"at"`
	Alerts []ExpectedAlert  `yaml:"alerts"`
	Series []ExpectedSeries `yaml:"series"`
}

// ExpectedAlert is an active alert; annotations are compared only when given.
type ExpectedAlert struct {
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// ExpectedSeries is a record series (PromQL notation) and its count.
type ExpectedSeries struct {
	Series string  `yaml:"series"`
	Value  float64 `yaml:"value"`
}

// testStart is the clock origin of every test case.
var testStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// RunTests runs log rule unit-test files, reporting to out as promtool
// does. failed is true when an expectation was not met; err when a file
// could not be read or its rules not loaded.
func RunTests(files []string, out io.Writer) (failed bool, err error) {
	var errs []error
	for _, f := range files {
		fmt.Fprintf(out, "Unit Testing: %s\n", f)
		problems, ferr := runTestFile(f)
		if ferr != nil {
			fmt.Fprintf(out, "  FAILED:\n    %v\n", ferr)
			errs = append(errs, ferr)
			failed = true
			continue
		}
		if len(problems) > 0 {
			failed = true
			fmt.Fprintf(out, "  FAILED:\n")
			for _, p := range problems {
				fmt.Fprintf(out, "    %s\n", strings.ReplaceAll(p, "\n", "\n    "))
			}
			continue
		}
		fmt.Fprintf(out, "  SUCCESS\n")
	}
	return failed, errors.Join(errs...)
}

func runTestFile(path string) ([]string, error) {
	content, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var tf TestFile
	dec := yaml.NewDecoder(strings.NewReader(string(content)))
	dec.KnownFields(true)
	if err := dec.Decode(&tf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var ruleFiles []string
	for _, rf := range tf.RuleFiles {
		if !filepath.IsAbs(rf) {
			rf = filepath.Join(filepath.Dir(path), rf)
		}
		ruleFiles = append(ruleFiles, rf)
	}
	rs, err := LoadFiles(ruleFiles)
	if err != nil {
		return nil, err
	}
	var problems []string
	for i, tc := range tf.Tests {
		name := tc.Name
		if name == "" {
			name = fmt.Sprintf("#%d", i)
		}
		ps, err := runTestCase(rs, tc)
		if err != nil {
			return nil, fmt.Errorf("%s: test %s: %w", path, name, err)
		}
		for _, p := range ps {
			problems = append(problems, fmt.Sprintf("test %s: %s", name, p))
		}
	}
	return problems, nil
}

func runTestCase(rs []*Rule, tc TestCase) ([]string, error) {
	dir, err := os.MkdirTemp("", "logrules-test-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cfg := DefaultConfig(dir)
	e, err := New(cfg, Options{})
	if err != nil {
		return nil, err
	}
	// Fresh rule values per case: state must not leak between cases.
	fresh := make([]*Rule, len(rs))
	for i, r := range rs {
		c := *r
		fresh[i] = &c
	}
	e.SetRules(fresh)
	now := testStart
	e.now = func() time.Time { return now }

	events := append([]TestEvent(nil), tc.Events...)
	sort.SliceStable(events, func(i, j int) bool { return events[i].At < events[j].At })
	expects := append([]Expectation(nil), tc.Expect...)
	sort.SliceStable(expects, func(i, j int) bool { return expects[i].At < expects[j].At })

	var problems []string
	next := 0
	for _, x := range expects {
		for ; next < len(events) && events[next].At <= x.At; next++ {
			now = testStart.Add(time.Duration(events[next].At))
			b := collector.NewBatch("test")
			ev := b.Next()
			ev.Timestamp = now
			keys := make([]string, 0, len(events[next].Fields))
			for k := range events[next].Fields {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				ev.AddString(k, events[next].Fields[k])
			}
			e.Process(b)
			b.Release()
		}
		now = testStart.Add(time.Duration(x.At))
		if err := e.Tick(context.Background(), now); err != nil {
			return nil, err
		}
		ps, err := compareExpectation(e, x)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			problems = append(problems, fmt.Sprintf("at %s: %s", x.At, p))
		}
	}
	return problems, nil
}

func compareExpectation(e *Engine, x Expectation) ([]string, error) {
	var problems []string
	var got []string
	gotAnn := map[string]labels.Labels{}
	for _, a := range e.Alerts() {
		got = append(got, a.Labels.String())
		gotAnn[a.Labels.String()] = a.Annotations
	}
	var want []string
	for _, a := range x.Alerts {
		ls := labels.FromMap(a.Labels).String()
		want = append(want, ls)
		if a.Annotations != nil {
			if ann, ok := gotAnn[ls]; ok && labels.FromMap(a.Annotations).String() != ann.String() {
				problems = append(problems, fmt.Sprintf("alert %s: annotations\n  got:  %s\n  want: %s", ls, ann, labels.FromMap(a.Annotations)))
			}
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		problems = append(problems, fmt.Sprintf("alerts\n  got:  %v\n  want: %v", got, want))
	}
	series := e.Series()
	p := parser.NewParser(parser.Options{})
	for _, s := range x.Series {
		ms, err := p.ParseMetricSelector(s.Series)
		if err != nil {
			return nil, fmt.Errorf("series %q: %w", s.Series, err)
		}
		m := map[string]string{}
		for _, mt := range ms {
			if mt.Type != labels.MatchEqual {
				return nil, fmt.Errorf("series %q: only = matchers", s.Series)
			}
			m[mt.Name] = mt.Value
		}
		key := labels.FromMap(m).String()
		v, ok := series[key]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("series %s: missing (have %v)", key, series))
		case v != s.Value:
			problems = append(problems, fmt.Sprintf("series %s: got %v want %v", key, v, s.Value))
		}
	}
	return problems, nil
}
