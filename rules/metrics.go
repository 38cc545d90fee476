package rules

import (
	"github.com/prometheus/client_golang/prometheus"
	promrules "github.com/prometheus/prometheus/rules"
)

// Sources of appended samples (label source of
// leitstand_rule_samples_appended_total).
const (
	SourceScrape      = "scrape"
	SourceRemoteWrite = "remote_write"
	SourceSelf        = "self_metrics"
	SourceRules       = "rules"
	SourceLogRules    = "log_rules"
)

// metrics are the engine's own leitstand_rule_* metrics. They are created
// once per Engine and survive Start/Shutdown cycles.
type metrics struct {
	evalDuration   *prometheus.HistogramVec
	evaluations    *prometheus.CounterVec
	evalFailures   *prometheus.CounterVec
	alertsSent     prometheus.Counter
	reloads        *prometheus.CounterVec
	lastReloadOK   prometheus.Gauge
	lastReloadTime prometheus.Gauge
	appended       *prometheus.CounterVec
	appendFailed   *prometheus.CounterVec
	remoteQueries  *prometheus.CounterVec
	remoteWrite    *prometheus.CounterVec
	selfFailures   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, e *Engine) *metrics {
	const ns, sub = "leitstand", "rule"
	m := &metrics{
		evalDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name:    "group_evaluation_duration_seconds",
			Help:    "Time one evaluation of a rule group took.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}, []string{"file", "group"}),
		evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "group_evaluations_total", Help: "Evaluations of a rule group."}, []string{"file", "group"}),
		evalFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "evaluation_failures_total", Help: "Rule evaluations that failed (query error, template error, limit exceeded), by group."}, []string{"file", "group"}),
		alertsSent: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "alerts_sent_total", Help: "Alerts (firing and resolved, resends included) handed to the notifier."}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "reloads_total", Help: "Rule file reloads, by outcome (success, failure)."}, []string{"outcome"}),
		lastReloadOK: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "last_reload_successful", Help: "1 when the last load of the rule files succeeded, else 0 (the previous rules stay active)."}),
		lastReloadTime: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "last_reload_success_timestamp_seconds", Help: "When the rule files were last loaded successfully."}),
		appended: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "samples_appended_total", Help: "Samples committed to the TSDB (or the remote mode's outputs), by source."}, []string{"source"}),
		appendFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "samples_refused_total", Help: "Samples the TSDB refused (out of order, too old, duplicate), by source."}, []string{"source"}),
		remoteQueries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "remote_queries_total", Help: "Queries sent to the remote datasource, by outcome (ok, error)."}, []string{"outcome"}),
		remoteWrite: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "remote_write_samples_total", Help: "Samples of recording rules and ALERTS sent to remote.write_url, by outcome (sent, failed, dropped)."}, []string{"outcome"}),
		selfFailures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "self_metrics_failures_total", Help: "Snapshots of leitstand's own metrics that could not be gathered or appended."}),
	}
	for _, o := range []string{"success", "failure"} {
		m.reloads.WithLabelValues(o)
	}
	for _, s := range []string{SourceScrape, SourceRemoteWrite, SourceSelf, SourceRules, SourceLogRules} {
		m.appended.WithLabelValues(s)
		m.appendFailed.WithLabelValues(s)
	}
	if reg != nil {
		reg.MustRegister(m.evalDuration, m.evaluations, m.evalFailures, m.alertsSent, m.reloads,
			m.lastReloadOK, m.lastReloadTime, m.appended, m.appendFailed, m.remoteQueries, m.remoteWrite,
			m.selfFailures, &stateCollector{e: e})
	}
	return m
}

var (
	alertsDesc = prometheus.NewDesc("leitstand_rule_alerts",
		"Active alerts of PromQL alerting rules, by state (pending, firing).", []string{"state"}, nil)
	rulesDesc = prometheus.NewDesc("leitstand_rule_rules",
		"Rules loaded, by type (alerting, recording).", []string{"type"}, nil)
	lastEvalDesc = prometheus.NewDesc("leitstand_rule_group_last_evaluation_timestamp_seconds",
		"When a rule group was last evaluated.", []string{"file", "group"}, nil)
	intervalDesc = prometheus.NewDesc("leitstand_rule_group_interval_seconds",
		"The evaluation interval of a rule group.", []string{"file", "group"}, nil)
	headSeriesDesc = prometheus.NewDesc("leitstand_rule_tsdb_head_series",
		"Series in the embedded TSDB's head block.", nil, nil)
	tsdbBytesDesc = prometheus.NewDesc("leitstand_rule_tsdb_blocks_bytes",
		"Bytes of the embedded TSDB's persisted blocks.", nil, nil)
)

// stateCollector reports the engine's current rule state at scrape time.
type stateCollector struct{ e *Engine }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{alertsDesc, rulesDesc, lastEvalDesc, intervalDesc, headSeriesDesc, tsdbBytesDesc} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	var pending, firing, alerting, recording int
	for _, g := range c.e.RuleGroups() {
		for _, r := range g.Rules() {
			ar, ok := r.(*promrules.AlertingRule)
			if !ok {
				recording++
				continue
			}
			alerting++
			for _, a := range ar.ActiveAlerts() {
				switch a.State {
				case promrules.StatePending:
					pending++
				case promrules.StateFiring:
					firing++
				}
			}
		}
		if t := g.GetLastEvaluation(); !t.IsZero() {
			ch <- prometheus.MustNewConstMetric(lastEvalDesc, prometheus.GaugeValue, float64(t.UnixNano())/1e9, g.File(), g.Name())
		}
		ch <- prometheus.MustNewConstMetric(intervalDesc, prometheus.GaugeValue, g.Interval().Seconds(), g.File(), g.Name())
	}
	ch <- prometheus.MustNewConstMetric(alertsDesc, prometheus.GaugeValue, float64(pending), "pending")
	ch <- prometheus.MustNewConstMetric(alertsDesc, prometheus.GaugeValue, float64(firing), "firing")
	ch <- prometheus.MustNewConstMetric(rulesDesc, prometheus.GaugeValue, float64(alerting), "alerting")
	ch <- prometheus.MustNewConstMetric(rulesDesc, prometheus.GaugeValue, float64(recording), "recording")
	if db := c.e.tsdb(); db != nil {
		ch <- prometheus.MustNewConstMetric(headSeriesDesc, prometheus.GaugeValue, float64(db.Head().NumSeries()))
		var size int64
		for _, b := range db.Blocks() {
			size += b.Size()
		}
		ch <- prometheus.MustNewConstMetric(tsdbBytesDesc, prometheus.GaugeValue, float64(size))
	}
}
