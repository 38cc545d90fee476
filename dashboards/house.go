//lint:file-ignore SA1019 The SDK marks the classic dashboard model deprecated in favour of dashboardv2, but Grafana's file provisioning reads the classic JSON, so the classic builder is the one that produces files Grafana loads.

package dashboards

import (
	"errors"
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// The data source every panel and query uses: the dashboard variable, so one
// set of files works against leitstand (the provisioned default) or any
// other Prometheus-compatible source an operator picks.
const (
	datasourceVar = "datasource"
	// DatasourceUID is the uid (and name) of the data source that
	// deploy/grafana/provisioning/datasources/leitstand.yaml provisions; the
	// data-source variable selects it by default.
	DatasourceUID = "leitstand"
)

var datasourceRef = common.DataSourceRef{Type: ptr("prometheus"), Uid: ptr("${" + datasourceVar + "}")}

// Grid geometry: Grafana's grid is 24 columns wide.
const gridWidth = 24

// board is one dashboard as the files in this package describe it.
type board struct {
	uid         string
	title       string
	description string
	tags        []string
	from        string // start of the default time range, e.g. "now-12h"
	vars        []variable
	rows        []row
}

// variable is a query variable over label values, always multi-select with
// an "All" option whose value is allValue (a regexp: ".+" or ".*").
type variable struct {
	name, label, description string
	query                    string // label_values(...)
	allValue                 string
}

// row is a collapsible row. num fixes the panel ids of the row: the row is
// num*100 and its panels num*100+1, +2, ... so adding a row or appending a
// panel to a row never renumbers any other panel (links with viewPanel=ID
// keep working).
type row struct {
	num       uint32
	title     string
	collapsed bool
	panels    []*panel
}

type panelKind string

const (
	kindTimeseries panelKind = "timeseries"
	kindStat       panelKind = "stat"
	kindTable      panelKind = "table"
)

// panel is one visualisation. Constructors set the house defaults; the
// chained setters change what a panel needs changed.
type panel struct {
	kind        panelKind
	title       string
	description string
	unit        string
	queries     []query
	w, h        uint32
	min, max    *float64
	decimals    *float64
	steps       []dashboard.Threshold // nil: no thresholds drawn or coloured
	stacked     bool
	mappings    []dashboard.ValueMapping
	textMode    common.BigValueTextMode
}

// query is one PromQL target.
type query struct {
	expr   string
	legend string
}

func q(expr, legend string) query { return query{expr: expr, legend: legend} }

func timeseriesPanel(title, unit, description string, queries ...query) *panel {
	return &panel{kind: kindTimeseries, title: title, unit: unit, description: description, queries: queries, w: 12, h: 8}
}

func statPanel(title, unit, description string, queries ...query) *panel {
	return &panel{kind: kindStat, title: title, unit: unit, description: description, queries: queries, w: 4, h: 4}
}

func tablePanel(title, unit, description string, queries ...query) *panel {
	return &panel{kind: kindTable, title: title, unit: unit, description: description, queries: queries, w: 24, h: 8}
}

func (p *panel) size(w, h uint32) *panel { p.w, p.h = w, h; return p }
func (p *panel) stack() *panel           { p.stacked = true; return p }
func (p *panel) decimal(n float64) *panel {
	p.decimals = &n
	return p
}

func (p *panel) bounds(min, max float64) *panel {
	p.min, p.max = &min, &max
	return p
}

// above colours values green, orange from warn and red from crit: for
// utilisation, saturation and errors, where more is worse.
func (p *panel) above(warn, crit float64) *panel {
	p.steps = []dashboard.Threshold{{Color: "green"}, {Value: &warn, Color: "orange"}, {Value: &crit, Color: "red"}}
	return p
}

// below colours values red, orange from crit and green from ok: for hit
// ratios and headroom, where less is worse.
func (p *panel) below(crit, ok float64) *panel {
	p.steps = []dashboard.Threshold{{Color: "red"}, {Value: &crit, Color: "orange"}, {Value: &ok, Color: "green"}}
	return p
}

// redBelow colours values red below v and green from v on (a forecast of
// free space that goes negative, an up metric that is not 1).
func (p *panel) redBelow(v float64) *panel {
	p.steps = []dashboard.Threshold{{Color: "red"}, {Value: &v, Color: "green"}}
	return p
}

// redFrom colours values green below v and red from v on (anything counted
// at all is bad: deadlocks, members down).
func (p *panel) redFrom(v float64) *panel {
	p.steps = []dashboard.Threshold{{Color: "green"}, {Value: &v, Color: "red"}}
	return p
}

// valueText maps exact values to text and colour (1 → UP, green).
func (p *panel) valueText(pairs ...string) *panel {
	opts := map[string]dashboard.ValueMappingResult{}
	for i := 0; i+2 < len(pairs); i += 3 {
		idx := int32(len(opts))
		opts[pairs[i]] = dashboard.ValueMappingResult{Text: ptr(pairs[i+1]), Color: ptr(pairs[i+2]), Index: &idx}
	}
	p.mappings = append(p.mappings, dashboard.ValueMapping{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: opts}})
	return p
}

// showNames makes a stat panel show the series names instead of values (the
// current primary, say).
func (p *panel) showNames() *panel { p.textMode = common.BigValueTextModeName; return p }

// build turns the description into the SDK's classic dashboard model.
func (b *board) build() (*dashboard.Dashboard, error) {
	if b.uid == "" || b.title == "" || b.description == "" {
		return nil, fmt.Errorf("dashboard %q: uid, title and description are required", b.title)
	}
	db := dashboard.NewDashboardBuilder(b.title).
		Uid(b.uid).
		Description(b.description).
		Tags(b.tags).
		Time(b.from, "now").
		Refresh("1m").
		Timezone("browser").
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Link(dashboard.NewDashboardLinkBuilder("leitstand").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{"leitstand"}).
			AsDropdown(true).
			KeepTime(true).
			IncludeVars(false).
			TargetBlank(false).
			Icon("external link").
			Tooltip("").
			Url("")).
		WithVariable(dashboard.NewDatasourceVariableBuilder(datasourceVar).
			Label("Data source").
			Description("Prometheus-compatible data source; leitstand's own query API by default.").
			Type("prometheus").
			Current(dashboard.VariableOption{
				Text:  dashboard.StringOrArrayOfString{String: ptr(DatasourceUID)},
				Value: dashboard.StringOrArrayOfString{String: ptr(DatasourceUID)},
			}))
	for _, v := range b.vars {
		if v.allValue == "" || v.description == "" {
			return nil, fmt.Errorf("dashboard %q: variable %s needs an all value and a description", b.uid, v.name)
		}
		db.WithVariable(dashboard.NewQueryVariableBuilder(v.name).
			Label(v.label).
			Description(v.description).
			Datasource(datasourceRef).
			Query(dashboard.StringOrMap{String: ptr(v.query)}).
			Definition(v.query).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Sort(dashboard.VariableSortAlphabeticalAsc).
			Multi(true).
			IncludeAll(true).
			AllValue(v.allValue).
			Current(dashboard.VariableOption{
				Text:  dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
				Value: dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
			}))
	}
	d, err := db.Build()
	if err != nil {
		return nil, fmt.Errorf("dashboard %s: %w", b.uid, err)
	}

	var errs []error
	var y uint32
	seen := map[uint32]bool{}
	for _, r := range b.rows {
		if r.num == 0 || seen[r.num] {
			errs = append(errs, fmt.Errorf("dashboard %s: row %q: row numbers must be unique and non-zero", b.uid, r.title))
			continue
		}
		seen[r.num] = true
		if len(r.panels) >= 100 {
			errs = append(errs, fmt.Errorf("dashboard %s: row %q: at most 99 panels per row", b.uid, r.title))
			continue
		}
		rp := dashboard.NewRowPanel()
		rp.Title = ptr(r.title)
		rp.Id = r.num * 100
		rp.Collapsed = r.collapsed
		rp.GridPos = &dashboard.GridPos{X: 0, Y: y, W: gridWidth, H: 1}
		y++

		// Panels flow left to right and wrap at the grid's width.
		var x, rowHeight uint32
		var panels []dashboard.Panel
		for i, p := range r.panels {
			if x+p.w > gridWidth {
				x, y = 0, y+rowHeight
				rowHeight = 0
			}
			built, err := p.build(r.num*100+uint32(i)+1, dashboard.GridPos{X: x, Y: y, W: p.w, H: p.h})
			if err != nil {
				errs = append(errs, fmt.Errorf("dashboard %s: row %q: %w", b.uid, r.title, err))
				continue
			}
			panels = append(panels, built)
			x += p.w
			rowHeight = max(rowHeight, p.h)
		}
		if r.collapsed {
			// A collapsed row carries its panels inside itself, positioned
			// where they will open; the next row follows right under it.
			rp.Panels = panels
			y = rp.GridPos.Y + 1
			d.Panels = append(d.Panels, dashboard.PanelOrRowPanel{RowPanel: rp})
			continue
		}
		// An open row's panels follow it on the dashboard's own list:
		// Grafana drops panels nested inside a row that is not collapsed.
		y += rowHeight
		d.Panels = append(d.Panels, dashboard.PanelOrRowPanel{RowPanel: rp})
		for i := range panels {
			d.Panels = append(d.Panels, dashboard.PanelOrRowPanel{Panel: &panels[i]})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &d, nil
}

// build builds one panel with the house defaults.
func (p *panel) build(id uint32, pos dashboard.GridPos) (dashboard.Panel, error) {
	switch {
	case p.title == "":
		return dashboard.Panel{}, fmt.Errorf("panel %d: no title", id)
	case p.description == "":
		return dashboard.Panel{}, fmt.Errorf("panel %q: no description", p.title)
	case p.unit == "":
		return dashboard.Panel{}, fmt.Errorf("panel %q: no unit", p.title)
	case len(p.queries) == 0 || len(p.queries) > 26:
		return dashboard.Panel{}, fmt.Errorf("panel %q: needs 1 to 26 queries", p.title)
	case p.w == 0 || p.w > gridWidth || p.h == 0:
		return dashboard.Panel{}, fmt.Errorf("panel %q: size %dx%d does not fit the grid", p.title, p.w, p.h)
	}
	targets := make([]cog.Builder[variants.Dataquery], len(p.queries))
	for i, qu := range p.queries {
		if strings.TrimSpace(qu.expr) == "" {
			return dashboard.Panel{}, fmt.Errorf("panel %q: query %d is empty", p.title, i)
		}
		t := prometheus.NewDataqueryBuilder().
			Datasource(datasourceRef).
			RefId(string(rune('A' + i))).
			Expr(qu.expr).
			LegendFormat(qu.legend).
			EditorMode(prometheus.QueryEditorModeCode)
		if p.kind == kindTimeseries {
			t.Range()
		} else {
			// Stats and tables show the latest value: one instant query
			// instead of a range Grafana would reduce.
			t.Instant()
		}
		if p.kind == kindTable {
			t.Format(prometheus.PromQueryFormatTable)
		}
		targets[i] = t
	}
	thresholds := dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute)
	if p.steps != nil {
		thresholds.Steps(p.steps)
	} else {
		// Without meaningful thresholds, one neutral step: Grafana's own
		// default (red from 80) would paint ordinary values as alarms.
		thresholds.Steps([]dashboard.Threshold{{Color: "text"}})
	}

	var built dashboard.Panel
	var err error
	switch p.kind {
	case kindTimeseries:
		b := timeseries.NewPanelBuilder().
			Id(id).Title(p.title).Description(p.description).
			Datasource(datasourceRef).GridPos(pos).Targets(targets).
			Unit(p.unit).Thresholds(thresholds).
			Legend(common.NewVizLegendOptionsBuilder().
				ShowLegend(true).
				DisplayMode(common.LegendDisplayModeTable).
				Placement(common.LegendPlacementBottom).
				Calcs([]string{"lastNotNull", "max"})).
			Tooltip(common.NewVizTooltipOptionsBuilder().
				Mode(common.TooltipDisplayModeMulti).
				Sort(common.SortOrderDescending)).
			DrawStyle(common.GraphDrawStyleLine).
			LineWidth(1).
			FillOpacity(10).
			ShowPoints(common.VisibilityModeNever).
			SpanNulls(common.BoolOrFloat64{Bool: ptr(false)})
		if p.steps != nil {
			b.ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed))
		} else {
			b.ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeOff))
		}
		if p.stacked {
			b.Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal).Group("A")).FillOpacity(40)
		}
		if p.min != nil {
			b.Min(*p.min).Max(*p.max)
		}
		if p.decimals != nil {
			b.Decimals(*p.decimals)
		}
		if p.mappings != nil {
			b.Mappings(p.mappings)
		}
		built, err = b.Build()
	case kindStat:
		colorMode := common.BigValueColorModeValue
		if p.steps == nil && p.mappings == nil {
			colorMode = common.BigValueColorModeNone
		}
		textMode := p.textMode
		if textMode == "" {
			textMode = common.BigValueTextModeAuto
		}
		b := stat.NewPanelBuilder().
			Id(id).Title(p.title).Description(p.description).
			Datasource(datasourceRef).GridPos(pos).Targets(targets).
			Unit(p.unit).Thresholds(thresholds).
			ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false)).
			ColorMode(colorMode).
			GraphMode(common.BigValueGraphModeNone).
			TextMode(textMode).
			JustifyMode(common.BigValueJustifyModeAuto).
			Orientation(common.VizOrientationAuto)
		if p.min != nil {
			b.Min(*p.min).Max(*p.max)
		}
		if p.decimals != nil {
			b.Decimals(*p.decimals)
		}
		if p.mappings != nil {
			b.Mappings(p.mappings)
		}
		built, err = b.Build()
	case kindTable:
		b := table.NewPanelBuilder().
			Id(id).Title(p.title).Description(p.description).
			Datasource(datasourceRef).GridPos(pos).Targets(targets).
			Unit(p.unit).Thresholds(thresholds).
			ShowHeader(true).
			// The footer's reducer is a required field of the schema: left
			// out, the SDK writes null and its own strict decoder refuses it.
			Footer(common.NewTableFooterOptionsBuilder().Show(false).Reducer([]string{"sum"}).CountRows(false)).
			// One row per series: the instant results of every query side
			// by side, without the timestamp column.
			WithTransformation(dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}}).
			WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
				"excludeByName": map[string]any{"Time": true},
			}})
		if p.decimals != nil {
			b.Decimals(*p.decimals)
		}
		built, err = b.Build()
	default:
		err = fmt.Errorf("unknown panel kind %q", p.kind)
	}
	if err != nil {
		return dashboard.Panel{}, fmt.Errorf("panel %q: %w", p.title, err)
	}
	return built, nil
}

func ptr[T any](v T) *T { return &v }

// selector returns a function that writes a metric selector carrying the
// dashboard's variable matchers plus any extra ones:
//
//	n := selector(`instance=~"$instance"`)
//	n("node_load1")                 // node_load1{instance=~"$instance"}
//	n("node_cpu_seconds_total", `mode="idle"`)
func selector(matchers ...string) func(metric string, extra ...string) string {
	return func(metric string, extra ...string) string {
		all := append(append([]string{}, matchers...), extra...)
		return metric + "{" + strings.Join(all, ",") + "}"
	}
}

// rate is rate() over Grafana's $__rate_interval, which is at least four
// scrape intervals and so never leaves a window with a single sample.
func rate(sel string) string { return "rate(" + sel + "[$__rate_interval])" }

// avgFromHistogram is the mean of a histogram or summary over the rate
// interval, grouped by the given labels: rate(sum) / rate(count).
func avgFromHistogram(n func(string, ...string) string, metric, by string) string {
	return fmt.Sprintf("sum by (%[3]s) (%[1]s) / sum by (%[3]s) (%[2]s)",
		rate(n(metric+"_sum")), rate(n(metric+"_count")), by)
}

// quantileFromHistogram is histogram_quantile over the rate interval,
// grouped by the given labels.
func quantileFromHistogram(phi string, n func(string, ...string) string, metric, by string) string {
	le := "le"
	if by != "" {
		le = by + ", le"
	}
	return fmt.Sprintf("histogram_quantile(%s, sum by (%s) (%s))", phi, le, rate(n(metric+"_bucket")))
}
