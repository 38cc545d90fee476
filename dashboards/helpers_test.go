package dashboards

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

// The tests read the rendered JSON, the artifact Grafana loads, through the
// small model below rather than through the SDK's types: what is checked is
// what ships.

type jsonDashboard struct {
	UID         string      `json:"uid"`
	Title       string      `json:"title"`
	Description string      `json:"description"`
	Panels      []jsonPanel `json:"panels"`
	Templating  struct {
		List []jsonVariable `json:"list"`
	} `json:"templating"`
}

type jsonVariable struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Query    any    `json:"query"`
	AllValue string `json:"allValue"`
	Current  struct {
		Value any `json:"value"`
	} `json:"current"`
}

type jsonPanel struct {
	ID          int    `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Collapsed   bool   `json:"collapsed"`
	GridPos     struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Datasource *jsonDatasource `json:"datasource"`
	Panels     []jsonPanel     `json:"panels"`
	Targets    []jsonTarget    `json:"targets"`
	Options    struct {
		Legend *struct {
			ShowLegend  bool   `json:"showLegend"`
			DisplayMode string `json:"displayMode"`
		} `json:"legend"`
		Tooltip *struct {
			Mode string `json:"mode"`
		} `json:"tooltip"`
	} `json:"options"`
	FieldConfig struct {
		Defaults struct {
			Unit       string `json:"unit"`
			Thresholds *struct {
				Steps []struct {
					Color string   `json:"color"`
					Value *float64 `json:"value"`
				} `json:"steps"`
			} `json:"thresholds"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
}

type jsonDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type jsonTarget struct {
	RefID        string          `json:"refId"`
	Expr         string          `json:"expr"`
	LegendFormat string          `json:"legendFormat"`
	Instant      bool            `json:"instant"`
	Datasource   *jsonDatasource `json:"datasource"`
}

// rendered builds every dashboard and returns its JSON and the JSON read
// back into the test model.
type renderedDashboard struct {
	d    *Dashboard
	json []byte
	m    jsonDashboard
}

func renderAll(t testing.TB) []renderedDashboard {
	t.Helper()
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	var out []renderedDashboard
	for _, d := range all {
		data, err := d.JSON()
		if err != nil {
			t.Fatal(err)
		}
		var m jsonDashboard
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("%s: %v", d.UID, err)
		}
		out = append(out, renderedDashboard{d: d, json: data, m: m})
	}
	return out
}

// panelRef is one visualisation panel with where it sits.
type panelRef struct {
	board string
	row   string
	p     jsonPanel
}

// panels lists every non-row panel, those inside collapsed rows included.
func (r renderedDashboard) panels() []panelRef {
	var out []panelRef
	row := ""
	for _, p := range r.m.Panels {
		if p.Type == "row" {
			row = p.Title
			for _, inner := range p.Panels {
				out = append(out, panelRef{board: r.m.UID, row: row, p: inner})
			}
			continue
		}
		out = append(out, panelRef{board: r.m.UID, row: row, p: p})
	}
	return out
}

// queryRef is one PromQL target of one panel.
type queryRef struct {
	panelRef
	t jsonTarget
}

func (q queryRef) String() string {
	return fmt.Sprintf("%s / %s / %q %s", q.board, q.row, q.p.Title, q.t.RefID)
}

func (r renderedDashboard) queries() []queryRef {
	var out []queryRef
	for _, p := range r.panels() {
		for _, t := range p.p.Targets {
			out = append(out, queryRef{panelRef: p, t: t})
		}
	}
	return out
}

var varRef = regexp.MustCompile(`\$\{?(\w+)\}?`)

// expand replaces Grafana's variables in expr as Grafana would with the
// dashboard's defaults: template variables by their "All" value and the
// built-in intervals by the given durations.
func (r renderedDashboard) expand(expr string, intervals map[string]string) (string, error) {
	all := map[string]string{}
	for _, v := range r.m.Templating.List {
		all[v.Name] = v.AllValue
	}
	var missing []string
	out := varRef.ReplaceAllStringFunc(expr, func(m string) string {
		name := varRef.FindStringSubmatch(m)[1]
		if d, ok := intervals[name]; ok {
			return d
		}
		if v, ok := all[name]; ok && v != "" {
			return v
		}
		missing = append(missing, m)
		return m
	})
	if missing != nil {
		return "", fmt.Errorf("unknown variables %v in %q", missing, expr)
	}
	return out, nil
}

// staticIntervals stand in for Grafana's interval variables when an
// expression is only parsed.
var staticIntervals = map[string]string{"__rate_interval": "1m", "__interval": "15s", "__range": "6h"}

var promqlParser = parser.NewParser(parser.Options{})

func parseExpr(s string) (parser.Expr, error) { return promqlParser.ParseExpr(s) }

// metricNames returns the metric names an expression reads, sorted.
func metricNames(expr parser.Expr) []string {
	set := map[string]bool{}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == "__name__" {
					name = m.Value
				}
			}
			if name != "" {
				set[name] = true
			}
		}
		return nil
	})
	return sortedKeys(set)
}

// labelsUsed returns the label names an expression matches, groups or
// joins on (the metric name aside), sorted.
func labelsUsed(expr parser.Expr) []string {
	set := map[string]bool{}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			for _, m := range n.LabelMatchers {
				if m.Name != "__name__" {
					set[m.Name] = true
				}
			}
		case *parser.AggregateExpr:
			for _, l := range n.Grouping {
				set[l] = true
			}
		case *parser.BinaryExpr:
			if n.VectorMatching != nil {
				for _, l := range n.VectorMatching.MatchingLabels {
					set[l] = true
				}
				for _, l := range n.VectorMatching.Include {
					set[l] = true
				}
			}
		}
		return nil
	})
	return sortedKeys(set)
}

var legendLabel = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)

// legendLabels returns the labels a legend format refers to.
func legendLabels(legend string) []string {
	set := map[string]bool{}
	for _, m := range legendLabel.FindAllStringSubmatch(legend, -1) {
		set[m[1]] = true
	}
	return sortedKeys(set)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// family maps a series name to the metric family that exports it: the
// _bucket, _sum and _count series of histograms and summaries belong to
// the family without the suffix.
func family(name string, families map[string]bool) (string, bool) {
	if families[name] {
		return name, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && families[base] {
			return base, true
		}
	}
	return "", false
}

// outputLabels works out which labels the series an expression returns
// carry, as far as the expression alone says: nil means "whatever labels
// the selected series have" (a plain selector or rate passes them through).
func outputLabels(e parser.Expr) map[string]bool {
	switch n := e.(type) {
	case *parser.ParenExpr:
		return outputLabels(n.Expr)
	case *parser.StepInvariantExpr:
		return outputLabels(n.Expr)
	case *parser.UnaryExpr:
		return outputLabels(n.Expr)
	case *parser.NumberLiteral, *parser.StringLiteral:
		return map[string]bool{}
	case *parser.AggregateExpr:
		switch n.Op {
		case parser.TOPK, parser.BOTTOMK, parser.LIMITK, parser.LIMIT_RATIO:
			return outputLabels(n.Expr)
		}
		inner := outputLabels(n.Expr)
		if n.Without {
			if inner == nil {
				return nil
			}
			out := map[string]bool{}
			for l := range inner {
				if !slices.Contains(n.Grouping, l) {
					out[l] = true
				}
			}
			return out
		}
		out := map[string]bool{}
		for _, l := range n.Grouping {
			out[l] = true
		}
		return out
	case *parser.Call:
		switch n.Func.Name {
		case "vector", "scalar", "time":
			return map[string]bool{}
		case "histogram_quantile":
			inner := outputLabels(n.Args[1])
			if inner != nil {
				delete(inner, "le")
			}
			return inner
		}
		for _, a := range n.Args {
			if a.Type() == parser.ValueTypeVector || a.Type() == parser.ValueTypeMatrix {
				return outputLabels(a)
			}
		}
		return nil
	case *parser.SubqueryExpr:
		return outputLabels(n.Expr)
	case *parser.BinaryExpr:
		lhs, rhs := outputLabels(n.LHS), outputLabels(n.RHS)
		if n.LHS.Type() == parser.ValueTypeScalar {
			return rhs
		}
		if n.RHS.Type() == parser.ValueTypeScalar {
			return lhs
		}
		switch n.Op {
		case parser.LAND, parser.LUNLESS:
			return lhs
		case parser.LOR:
			if lhs == nil || rhs == nil {
				return nil
			}
			return union(lhs, rhs)
		}
		vm := n.VectorMatching
		if vm == nil {
			return lhs
		}
		switch vm.Card {
		case parser.CardOneToOne:
			if vm.On {
				out := map[string]bool{}
				for _, l := range vm.MatchingLabels {
					out[l] = true
				}
				return out
			}
			if lhs == nil {
				return nil
			}
			out := map[string]bool{}
			for l := range lhs {
				if !slices.Contains(vm.MatchingLabels, l) {
					out[l] = true
				}
			}
			return out
		case parser.CardManyToOne:
			if lhs == nil {
				return nil
			}
			return union(lhs, setOf(vm.Include))
		case parser.CardOneToMany:
			if rhs == nil {
				return nil
			}
			return union(rhs, setOf(vm.Include))
		}
		return nil
	}
	return nil
}

func setOf(ls []string) map[string]bool {
	out := map[string]bool{}
	for _, l := range ls {
		out[l] = true
	}
	return out
}

func union(a, b map[string]bool) map[string]bool {
	out := map[string]bool{}
	for l := range a {
		out[l] = true
	}
	for l := range b {
		out[l] = true
	}
	return out
}
