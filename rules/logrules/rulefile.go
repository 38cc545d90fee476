package logrules

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/rules"
)

// Kind is what a log rule does with the events it matches.
type Kind string

const (
	// KindRecord counts matches into a series (`record: name`).
	KindRecord Kind = "record"
	// KindAlert raises one alert per group of matching events (`alert: Name`).
	KindAlert Kind = "alert"
	// KindNewValue raises an alert when a field's value is new
	// (`alert: Name` with `new_value: field`).
	KindNewValue Kind = "new_value"
)

// Rule is one log rule as written in a rule file:
//
//   - log: '{event.dataset="syslog"} |= "Failed password" |~ "user root"'
//     alert: RootLoginFailed        # or record: log:failed_logins:count
//     by: [host.name]               # group-by fields (labels host_name, …)
//     new_value: error.grouping_key # new_value kind only
//     throttle: 10m                 # alert kinds: at most one notification per window
//     resolve_after: 15m            # alert kinds: resolved after this quiet period
//     lookback: 30d                 # new_value: how long a value counts as seen
//     labels: {severity: page}      # templated: {{ .Field "host.name" }}
//     annotations: {summary: '...'}
type Rule struct {
	File  string
	Line  int
	Group string

	Name     string
	Kind     Kind
	Source   string // the log: text
	Selector *Selector
	By       []string
	// Field is the new_value field.
	Field string
	// Zero durations take the config defaults.
	Throttle     time.Duration
	ResolveAfter time.Duration
	Lookback     time.Duration
	Labels       map[string]string
	Annotations  map[string]string

	labelTmpl map[string]*template.Template
	annTmpl   map[string]*template.Template
	id        string
}

// ID identifies the rule's state across reloads and restarts: it changes
// when what the rule matches or groups by changes, so stale counters and
// seen-sets are not carried over to a different rule.
func (r *Rule) ID() string {
	if r.id == "" {
		h := sha256.New()
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00%s", r.Group, r.Name, r.Kind, r.Source, strings.Join(r.By, "\x01"), r.Field)
		r.id = r.Group + "/" + r.Name + "/" + hex.EncodeToString(h.Sum(nil)[:6])
	}
	return r.id
}

var ruleKeys = map[string]bool{
	rules.LogRuleKey: true, "record": true, "alert": true, "new_value": true, "by": true,
	"throttle": true, "resolve_after": true, "lookback": true, "labels": true, "annotations": true,
}

// ParseFile reads the log rules of one rule file (items of a group's rules
// with a log: key); PromQL rules beside them are left to the rules package.
func ParseFile(path string) ([]*Rule, error) {
	content, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, content)
}

// Parse reads the log rules of rule file content; every problem is
// reported with file:line, all at once.
func Parse(file string, content []byte) ([]*Rule, error) {
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
	var (
		out  []*Rule
		errs []error
	)
	bad := func(n *yaml.Node, format string, args ...any) {
		errs = append(errs, &rules.RuleFileError{File: file, Line: n.Line, Column: n.Column, Err: fmt.Errorf(format, args...)})
	}
	groups := mapValue(doc.Content[0], "groups")
	if groups == nil || groups.Kind != yaml.SequenceNode {
		return nil, nil
	}
	names := map[string]map[string]bool{}
	for _, g := range groups.Content {
		if g.Kind != yaml.MappingNode {
			continue
		}
		group := ""
		if n := mapValue(g, "name"); n != nil {
			group = n.Value
		}
		items := mapValue(g, "rules")
		if items == nil || items.Kind != yaml.SequenceNode {
			continue
		}
		for _, item := range items.Content {
			if item.Kind != yaml.MappingNode || mapValue(item, rules.LogRuleKey) == nil {
				continue
			}
			r, ok := parseRule(file, group, item, bad)
			if !ok {
				continue
			}
			key := string(r.Kind) + "\x00" + r.Name + "\x00" + r.Source
			if names[group] == nil {
				names[group] = map[string]bool{}
			}
			if names[group][key] {
				bad(item, "log rule %s %q with this selector is defined twice in group %q", r.Kind, r.Name, group)
				continue
			}
			names[group][key] = true
			r.ID() // computed once here, so later readers only read it
			out = append(out, r)
		}
	}
	return out, errors.Join(errs...)
}

func parseRule(file, group string, item *yaml.Node, bad func(*yaml.Node, string, ...any)) (*Rule, bool) {
	r := &Rule{File: file, Line: item.Line, Group: group}
	ok := true
	fail := func(n *yaml.Node, format string, args ...any) {
		bad(n, format, args...)
		ok = false
	}
	var record, alert, newValue *yaml.Node
	for i := 0; i+1 < len(item.Content); i += 2 {
		k, v := item.Content[i], item.Content[i+1]
		if !ruleKeys[k.Value] {
			fail(k, "log rule: unknown key %q (want one of log, record, alert, new_value, by, throttle, resolve_after, lookback, labels, annotations)", k.Value)
			continue
		}
		switch k.Value {
		case rules.LogRuleKey:
			r.Source = v.Value
			sel, err := ParseSelector(v.Value)
			if err != nil {
				fail(v, "log: %v", err)
				continue
			}
			r.Selector = sel
		case "record":
			record = v
		case "alert":
			alert = v
		case "new_value":
			newValue = v
			r.Field = v.Value
		case "by":
			if err := v.Decode(&r.By); err != nil {
				fail(v, "by: want a list of field names")
			}
		case "throttle", "resolve_after", "lookback":
			d, err := model.ParseDuration(v.Value)
			if err != nil || d <= 0 {
				fail(v, "%s: want a positive duration such as 10m, got %q", k.Value, v.Value)
				continue
			}
			switch k.Value {
			case "throttle":
				r.Throttle = time.Duration(d)
			case "resolve_after":
				r.ResolveAfter = time.Duration(d)
			default:
				r.Lookback = time.Duration(d)
			}
		case "labels", "annotations":
			var m map[string]string
			if err := v.Decode(&m); err != nil {
				fail(v, "%s: want a map of strings", k.Value)
				continue
			}
			tm := map[string]*template.Template{}
			for name, text := range m {
				t, err := template.New(name).Option("missingkey=zero").Parse(text)
				if err != nil {
					fail(v, "%s.%s: %v", k.Value, name, err)
					continue
				}
				tm[name] = t
			}
			if k.Value == "labels" {
				r.Labels, r.labelTmpl = m, tm
			} else {
				r.Annotations, r.annTmpl = m, tm
			}
		}
	}
	switch {
	case record != nil && alert != nil:
		fail(item, "log rule: give record or alert, not both")
	case record != nil:
		r.Kind, r.Name = KindRecord, record.Value
		if !model.UTF8Validation.IsValidMetricName(r.Name) || strings.ContainsAny(r.Name, " {}\"") {
			fail(record, "record: %q is not a valid metric name", r.Name)
		}
		if newValue != nil {
			fail(newValue, "new_value: only with alert")
		}
		if r.Throttle != 0 || r.ResolveAfter != 0 || r.Lookback != 0 || r.Annotations != nil {
			fail(item, "log rule %s: throttle, resolve_after, lookback and annotations are for alerts", r.Name)
		}
	case alert != nil:
		r.Kind, r.Name = KindAlert, alert.Value
		if r.Name == "" {
			fail(alert, "alert: empty name")
		}
		if newValue != nil {
			r.Kind = KindNewValue
			if r.Field == "" {
				fail(newValue, "new_value: want a field name")
			}
		} else if r.Lookback != 0 {
			fail(item, "log rule %s: lookback is for new_value rules", r.Name)
		}
	default:
		fail(item, "log rule: want record: NAME or alert: NAME beside log:")
	}
	if r.Source == "" && ok {
		fail(item, "log: empty selector")
	}
	for _, f := range r.By {
		if f == "" {
			fail(item, "by: empty field name")
		}
	}
	return r, ok
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// LoadFiles expands globs (as the PromQL loader does) and parses the log
// rules of every file.
func LoadFiles(patterns []string) ([]*Rule, error) {
	files, err := rules.ExpandRuleFiles(patterns)
	if err != nil {
		return nil, err
	}
	var (
		out  []*Rule
		errs []error
	)
	for _, f := range files {
		rs, err := ParseFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, rs...)
	}
	return out, errors.Join(errs...)
}

// CheckFiles checks the log rules of rule files (for `leitstand rules
// check`); errors carry file:line:column.
func CheckFiles(patterns []string) error {
	_, err := LoadFiles(patterns)
	return err
}

// LabelName turns a field name into the label name of derived series and
// alerts: dots and other characters PromQL would need quoted become "_"
// (host.name → host_name), so queries need no quoting.
func LabelName(field string) string {
	if model.LegacyValidation.IsValidLabelName(field) {
		return field
	}
	b := []byte(field)
	for i, c := range b {
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' && i > 0) {
			b[i] = '_'
		}
	}
	return string(b)
}

// templateData is what label and annotation templates see: the event's
// (anonymized) fields through .Field, the group-by labels and the count.
type templateData struct {
	ev     *collector.Event
	Labels map[string]string
	Value  float64
}

// Field returns the event's value of a field ("" when unset).
func (d templateData) Field(name string) string {
	if d.ev == nil {
		return ""
	}
	v, _ := d.ev.Get(name)
	return v
}
