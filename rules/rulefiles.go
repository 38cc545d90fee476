package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

// LogRuleKey marks a rule item as a log rule: the PromQL loader skips every
// item of a group's rules that has this key (the log rule engine reads them
// from the same files), keeping the line numbers of everything else.
const LogRuleKey = "log"

// RuleFileError is a problem in a rule file, with its position when known.
type RuleFileError struct {
	File   string
	Line   int // 0 when unknown
	Column int // 0 when unknown
	Err    error
}

func (e *RuleFileError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *RuleFileError) Unwrap() error { return e.Err }

// newParser is the PromQL parser of rule files and queries: Prometheus'
// defaults (no experimental functions).
func newParser() parser.Parser { return parser.NewParser(parser.Options{}) }

// ExpandRuleFiles resolves globs to the files they match, sorted and without
// duplicates. A pattern without glob characters must name an existing file;
// a glob may match nothing.
func ExpandRuleFiles(patterns []string) ([]string, error) {
	var (
		out  []string
		errs []error
		seen = map[string]bool{}
	)
	for _, p := range patterns {
		var matches []string
		if strings.ContainsAny(p, "*?[") {
			m, err := filepath.Glob(p)
			if err != nil {
				errs = append(errs, fmt.Errorf("rule file glob %q: %w", p, err))
				continue
			}
			matches = m
		} else {
			if _, err := os.Stat(p); err != nil {
				errs = append(errs, &RuleFileError{File: p, Err: errors.Unwrap(err)})
				continue
			}
			matches = []string{p}
		}
		sort.Strings(matches)
		for _, m := range matches {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	return out, errors.Join(errs...)
}

// CheckRuleFiles validates rule files (paths or globs) as leitstand loads
// them and returns every problem at once, each a *RuleFileError with the
// file and, where the problem has one, its line and column.
func CheckRuleFiles(paths []string) error {
	files, err := ExpandRuleFiles(paths)
	errs := []error{err}
	p := newParser()
	for _, f := range files {
		_, ferrs := parseRuleFile(f, p)
		errs = append(errs, ferrs...)
	}
	return errors.Join(errs...)
}

// parseRuleFile reads and validates one rule file, without its log rules.
func parseRuleFile(file string, p parser.Parser) (*rulefmt.RuleGroups, []error) {
	content, err := os.ReadFile(file)
	if err != nil {
		return nil, []error{&RuleFileError{File: file, Err: errors.Unwrap(err)}}
	}
	content, err = stripLogRules(content)
	if err != nil {
		return nil, []error{positioned(file, err, nil)}
	}
	groups, errs := rulefmt.Parse(content, false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
	if len(errs) == 0 {
		return groups, nil
	}
	idx := indexRules(content)
	var out []error
	for _, e := range errs {
		for _, one := range splitYAMLErrors(e) {
			out = append(out, positioned(file, one, idx))
		}
	}
	return nil, out
}

var (
	posPrefix  = regexp.MustCompile(`^(\d+):(\d+): (?:\d+:\d+: )?`)
	yamlLine   = regexp.MustCompile(`^yaml: line (\d+): `)
	yamlDetail = regexp.MustCompile(`^\s*line (\d+): `)
)

// splitYAMLErrors turns a yaml "unmarshal errors" list into one error per
// line.
func splitYAMLErrors(err error) []error {
	msg := err.Error()
	if !strings.HasPrefix(msg, "yaml: unmarshal errors:\n") {
		return []error{err}
	}
	var out []error
	for _, l := range strings.Split(msg, "\n")[1:] {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, errors.New(l))
		}
	}
	return out
}

// positioned wraps a rulefmt or yaml error as a RuleFileError, moving the
// position the message starts with into Line and Column, or finding the
// rule's line when rulefmt names only the group and rule.
func positioned(file string, err error, idx *ruleIndex) error {
	msg := err.Error()
	fe := &RuleFileError{File: file}
	switch {
	case posPrefix.MatchString(msg):
		m := posPrefix.FindStringSubmatch(msg)
		fe.Line, _ = strconv.Atoi(m[1])
		fe.Column, _ = strconv.Atoi(m[2])
		if fe.Line == 0 {
			fe.Column = 0
		}
		msg = msg[len(m[0]):]
	case yamlLine.MatchString(msg):
		m := yamlLine.FindStringSubmatch(msg)
		fe.Line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	case yamlDetail.MatchString(msg):
		m := yamlDetail.FindStringSubmatch(msg)
		fe.Line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	if fe.Line == 0 && idx != nil {
		var re *rulefmt.Error
		if errors.As(err, &re) {
			fe.Line = idx.line(re.Group, re.Rule-1)
		} else if m := repeatedGroup.FindStringSubmatch(msg); m != nil && len(idx.groups[m[1]]) > 1 {
			fe.Line = idx.groups[m[1]][1]
		}
	}
	fe.Err = errors.New(msg)
	return fe
}

var repeatedGroup = regexp.MustCompile(`^groupname: "(.*)" is repeated`)

// ruleIndex knows the lines of groups and of their rules, by group name.
type ruleIndex struct {
	groups map[string][]int // every group of that name
	rules  map[string][]int // the rules of the first group of that name
}

func (ri ruleIndex) line(group string, rule int) int {
	lines := ri.rules[group]
	if rule < 0 || rule >= len(lines) {
		return 0
	}
	return lines[rule]
}

func indexRules(content []byte) *ruleIndex {
	var doc yaml.Node
	if yaml.Unmarshal(content, &doc) != nil || len(doc.Content) == 0 {
		return nil
	}
	idx := &ruleIndex{groups: map[string][]int{}, rules: map[string][]int{}}
	for _, g := range mapValue(doc.Content[0], "groups").children() {
		name := mapValue(g, "name")
		if name == nil {
			continue
		}
		idx.groups[name.Value] = append(idx.groups[name.Value], g.Line)
		if len(idx.groups[name.Value]) > 1 {
			continue
		}
		for _, r := range mapValue(g, "rules").children() {
			idx.rules[name.Value] = append(idx.rules[name.Value], r.Line)
		}
	}
	return idx
}

type node yaml.Node

func (n *node) children() []*yaml.Node {
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	return n.Content
}

// mapValue returns the value of key in a mapping node, or nil.
func mapValue(m *yaml.Node, key string) *node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return (*node)(m.Content[i+1])
		}
	}
	return nil
}

// stripLogRules removes the rule items that carry LogRuleKey. Block-style
// items are blanked line by line, so every other line keeps its number for
// error messages; flow-style files are re-encoded.
func stripLogRules(content []byte) ([]byte, error) {
	if !bytes.Contains(content, []byte(LogRuleKey)) {
		return content, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(content, &doc); err != nil {
		if errors.Is(err, io.EOF) {
			return content, nil
		}
		return nil, err
	}
	if len(doc.Content) == 0 {
		return content, nil
	}
	var (
		blank  [][2]int // line ranges, 1-based, inclusive
		reflow bool
	)
	starts := allLines(doc.Content[0])
	for _, g := range mapValue(doc.Content[0], "groups").children() {
		rules := mapValue(g, "rules")
		var keep []*yaml.Node
		for _, r := range rules.children() {
			if mapValue(r, LogRuleKey) == nil {
				keep = append(keep, r)
				continue
			}
			if r.Style&yaml.FlowStyle != 0 || rules.Style&yaml.FlowStyle != 0 {
				reflow = true
			}
			end := lastLine(r)
			next := 0
			for _, l := range starts {
				if l > end {
					next = l
					break
				}
			}
			blank = append(blank, [2]int{r.Line, next - 1})
		}
		if rules != nil {
			rules.Content = keep
		}
	}
	if len(blank) == 0 {
		return content, nil
	}
	if reflow {
		return yaml.Marshal(&doc)
	}
	lines := bytes.Split(content, []byte("\n"))
	for _, b := range blank {
		hi := b[1]
		if hi < b[0] || hi > len(lines) {
			hi = len(lines)
		}
		for l := b[0]; l <= hi; l++ {
			lines[l-1] = nil
		}
	}
	return bytes.Join(lines, []byte("\n")), nil
}

// allLines returns the sorted start lines of every node under n.
func allLines(n *yaml.Node) []int {
	var out []int
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		out = append(out, n.Line)
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
	sort.Ints(out)
	return out
}

// lastLine is the largest start line in n's subtree.
func lastLine(n *yaml.Node) int {
	l := n.Line
	for _, c := range n.Content {
		l = max(l, lastLine(c))
	}
	return l
}

// fileLoader is the rule manager's GroupLoader: rulefmt without log rules.
type fileLoader struct {
	parser parser.Parser
}

func (fl fileLoader) Load(identifier string, _ bool, _ model.ValidationScheme) (*rulefmt.RuleGroups, []error) {
	return parseRuleFile(identifier, fl.parser)
}

func (fl fileLoader) Parse(query string) (parser.Expr, error) { return fl.parser.ParseExpr(query) }
