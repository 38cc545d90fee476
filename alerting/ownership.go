package alerting

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	yaml "go.yaml.in/yaml/v3" // rulefmt's RuleNode holds this package's yaml.Node

	"github.com/leitstand/leitstand/rules"
	"github.com/leitstand/leitstand/rules/logrules"
)

// UnownedRule is an alerting rule whose alerts no role can own: every one
// of them would go to the default role.
type UnownedRule struct {
	File string
	Line int
	// Kind is "alert" (PromQL) or "log alert".
	Kind string
	Name string
	// DefaultRole gets the rule's alerts.
	DefaultRole string
}

// String is the warning `leitstand check` prints, e.g.
// `rules/node.yml:12: alert NodeDown: no role owns it (it goes to the default role "platform-ops")`.
func (u UnownedRule) String() string {
	return fmt.Sprintf("%s:%d: %s %s: no role owns it (it goes to the default role %q)", u.File, u.Line, u.Kind, u.Name, u.DefaultRole)
}

// UnownedRules reads the rule files (paths or globs, as rules.rule_files)
// and returns, in file and line order, every alerting rule (PromQL alert
// rules and log alert rules) that no role can own for any label set its
// static labels allow (PossibleOwners). Labels a PromQL rule does not set
// come from the series and may take any value; a log rule's alerts carry
// exactly its by fields, its labels and alertname, so a role matching a
// label the log rule never sets owns it only if the matcher accepts "".
// Labels with template actions count as any value. A rule whose own role
// label names a role is owned by it, as Router.Label does.
//
// It validates c first. Warnings are for people: `leitstand check` prints
// them and still succeeds. The error reports unreadable files; rule syntax
// is CheckRuleFiles' job, and a file it would refuse is skipped here with
// its error.
func (c *Config) UnownedRules(ruleFiles []string) ([]UnownedRule, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if len(c.Roles) == 0 || len(ruleFiles) == 0 {
		return nil, nil // no registry: alerting is off, nothing to own
	}
	files, err := rules.ExpandRuleFiles(ruleFiles)
	errs := []error{err}
	var out []UnownedRule
	for _, f := range files {
		prom, err := c.unownedPromQL(f)
		errs = append(errs, err)
		out = append(out, prom...)
		logs, err := logrules.ParseFile(f)
		errs = append(errs, err)
		for _, r := range logs {
			if r.Kind == logrules.KindRecord {
				continue
			}
			if !c.logRuleOwned(r) {
				out = append(out, UnownedRule{File: r.File, Line: r.Line, Kind: "log alert", Name: r.Name, DefaultRole: c.DefaultRole})
			}
		}
	}
	// Files in order, and within a file by line (PromQL and log rules mix).
	slices.SortStableFunc(out, func(a, b UnownedRule) int {
		return cmp.Or(strings.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
	return out, errors.Join(errs...)
}

// staticOnly drops labels whose value is a template: those are known only
// when the alert fires.
func staticOnly(ls map[string]string, into map[string]string) {
	for k, v := range ls {
		if !strings.Contains(v, "{{") {
			into[k] = v
		}
	}
}

// owned reports whether an alert with these static labels can have an
// owner.
func (c *Config) owned(static map[string]string) bool {
	if r := static[RoleLabel]; r != "" && c.role(r) != nil {
		return true
	}
	return len(c.PossibleOwners(static)) > 0
}

func (c *Config) logRuleOwned(r *logrules.Rule) bool {
	static := map[string]string{}
	dynamic := map[string]bool{}
	for _, f := range r.By {
		dynamic[logrules.LabelName(f)] = true
	}
	if r.Kind == logrules.KindNewValue {
		dynamic[logrules.LabelName(r.Field)] = true
	}
	for k, v := range r.Labels {
		if strings.Contains(v, "{{") {
			dynamic[k] = true
		}
	}
	staticOnly(r.Labels, static)
	static[labels.AlertName] = r.Name
	// Every label the rule does not produce is absent: "" to matchers.
	for i := range c.Roles {
		for _, m := range c.Roles[i].matchers {
			if _, set := static[m.Name]; !set && !dynamic[m.Name] {
				static[m.Name] = ""
			}
		}
	}
	return c.owned(static)
}

// unownedPromQL walks one file's PromQL alert rules with rulefmt's node
// types, which keep each rule's line; items with a log: key belong to
// the log rules.
func (c *Config) unownedPromQL(file string) ([]UnownedRule, error) {
	content, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(content, &doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, &rules.RuleFileError{File: file, Err: err}
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, nil
	}
	var out []UnownedRule
	var errs []error
	for _, g := range seqItems(yamlValue(doc.Content[0], "groups")) {
		var groupLabels map[string]string
		if n := yamlValue(g, "labels"); n != nil {
			if err := n.Decode(&groupLabels); err != nil {
				errs = append(errs, &rules.RuleFileError{File: file, Line: n.Line, Err: err})
				continue
			}
		}
		for _, item := range seqItems(yamlValue(g, "rules")) {
			if yamlValue(item, rules.LogRuleKey) != nil {
				continue
			}
			var rn rulefmt.RuleNode
			if err := item.Decode(&rn); err != nil {
				errs = append(errs, &rules.RuleFileError{File: file, Line: item.Line, Err: err})
				continue
			}
			if rn.Alert.Value == "" {
				continue // a recording rule
			}
			// Prometheus: the rule's labels override the group's.
			static := map[string]string{}
			staticOnly(groupLabels, static)
			staticOnly(rn.Labels, static)
			for k, v := range rn.Labels {
				if strings.Contains(v, "{{") {
					delete(static, k)
				}
			}
			static[labels.AlertName] = rn.Alert.Value
			if !c.owned(static) {
				out = append(out, UnownedRule{File: file, Line: rn.Alert.Line, Kind: "alert", Name: rn.Alert.Value, DefaultRole: c.DefaultRole})
			}
		}
	}
	return out, errors.Join(errs...)
}

func yamlValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func seqItems(n *yaml.Node) []*yaml.Node {
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	return n.Content
}
