package rules

import (
	"context"
	"math"
	"os"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// selfMetricsLoop appends a snapshot of the process' own metrics every
// interval, so leitstand's rules and dashboards can use them without
// anything scraping leitstand.
func (e *Engine) selfMetricsLoop(r *running) {
	instance := e.cfg.SelfMetrics.Instance
	if instance == "" {
		instance, _ = os.Hostname()
	}
	t := time.NewTicker(e.cfg.SelfMetrics.Interval)
	defer t.Stop()
	app := r.apps[SourceSelf]
	for {
		gs := []gatherer{e.opts.Gatherer, r.reg}
		if err := appendGathered(r.ctx, app, gs, e.cfg.SelfMetrics.Job, instance, time.Now()); err != nil {
			e.m.selfFailures.Inc()
			e.log.Warn("appending leitstand's own metrics failed", "err", err)
		}
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// gatherer is prometheus.Gatherer without the import cycle of naming it.
type gatherer interface {
	Gather() ([]*dto.MetricFamily, error)
}

// appendGathered appends one snapshot of every gatherer's metrics at ts,
// with job and instance labels, classic histograms and summaries expanded
// the way the text exposition format writes them.
func appendGathered(ctx context.Context, a storage.AppendableV2, gs []gatherer, job, instance string, ts time.Time) error {
	app := a.AppenderV2(ctx)
	t := ts.UnixMilli()
	b := labels.NewScratchBuilder(8)
	add := func(name string, m *dto.Metric, extraName, extraValue string, v float64) {
		b.Reset()
		b.Add(model.MetricNameLabel, name)
		for _, lp := range m.GetLabel() {
			if lp.GetName() == "job" || lp.GetName() == "instance" {
				// Keep the target's own labels, as honor_labels: false does.
				b.Add("exported_"+lp.GetName(), lp.GetValue())
				continue
			}
			b.Add(lp.GetName(), lp.GetValue())
		}
		if extraName != "" {
			b.Add(extraName, extraValue)
		}
		b.Add("job", job)
		b.Add("instance", instance)
		b.Sort()
		// Out-of-order and duplicate samples of one snapshot are not worth
		// failing the others for; the counting appender counts them.
		_, _ = app.Append(0, b.Labels(), 0, t, v, nil, nil, storage.AppendV2Options{MetricFamilyName: name})
	}
	var firstErr error
	seen := map[string]bool{}
	for _, g := range gs {
		if g == nil {
			continue
		}
		mfs, err := g.Gather()
		if err != nil && firstErr == nil {
			firstErr = err // partial results are still appended
		}
		for _, mf := range mfs {
			name := mf.GetName()
			if seen[name] {
				continue // the wiring may expose one registry through both
			}
			seen[name] = true
			for _, m := range mf.GetMetric() {
				switch mf.GetType() {
				case dto.MetricType_COUNTER:
					add(name, m, "", "", m.GetCounter().GetValue())
				case dto.MetricType_GAUGE:
					add(name, m, "", "", m.GetGauge().GetValue())
				case dto.MetricType_UNTYPED:
					add(name, m, "", "", m.GetUntyped().GetValue())
				case dto.MetricType_SUMMARY:
					s := m.GetSummary()
					for _, q := range s.GetQuantile() {
						add(name, m, "quantile", formatFloat(q.GetQuantile()), q.GetValue())
					}
					add(name+"_sum", m, "", "", s.GetSampleSum())
					add(name+"_count", m, "", "", float64(s.GetSampleCount()))
				case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
					h := m.GetHistogram()
					inf := false
					for _, bk := range h.GetBucket() {
						if math.IsInf(bk.GetUpperBound(), 1) {
							inf = true
						}
						add(name+"_bucket", m, "le", formatFloat(bk.GetUpperBound()), float64(bk.GetCumulativeCount()))
					}
					if !inf {
						add(name+"_bucket", m, "le", "+Inf", float64(h.GetSampleCount()))
					}
					add(name+"_sum", m, "", "", h.GetSampleSum())
					add(name+"_count", m, "", "", float64(h.GetSampleCount()))
				}
			}
		}
	}
	if err := app.Commit(); err != nil {
		return err
	}
	return firstErr
}

// formatFloat writes le and quantile values as Prometheus' scrape does
// ("1.0", "+Inf"), so self-metrics and scraped series look the same.
func formatFloat(f float64) string { return labels.FormatOpenMetricsFloat(f) }
