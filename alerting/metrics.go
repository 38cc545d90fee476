package alerting

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	sent        prometheus.Counter
	notifSent   *prometheus.CounterVec
	errors      *prometheus.CounterVec
	dropped     prometheus.Counter
	unowned     prometheus.Counter
	queueLength prometheus.GaugeFunc
	alerts      *prometheus.Desc
	searches    *prometheus.CounterVec
}

func newMetrics(r *Router) *metrics {
	m := &metrics{
		sent: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "leitstand", Name: "alerts_sent_total",
			Help: "Role-labelled alerts (firing and resolved, resends included) delivered to at least one Alertmanager."}),
		notifSent: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "leitstand", Name: "notifications_sent_total",
			Help: "Alerts accepted by each Alertmanager."}, []string{"alertmanager"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "leitstand", Name: "notifications_errors_total",
			Help: "Alerts an Alertmanager did not accept after all retries."}, []string{"alertmanager"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "leitstand", Name: "notifications_dropped_total",
			Help: "Alerts dropped because the send queue was full or leitstand stopped before sending them."}),
		unowned: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "leitstand", Name: "alerts_unowned_total",
			Help: "Alerts no role owns, routed to the default role."}),
		queueLength: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "leitstand", Name: "notifications_queue_length",
			Help: "Alerts waiting to be sent."}, func() float64 { return float64(r.queueLen()) }),
		alerts: prometheus.NewDesc("leitstand_alerts", "Alerts per role, state and severity: pending (the rule's condition holds, its for: has not passed), firing, and resolved in the last 15m.",
			[]string{"role", "state", "severity"}, nil),
		searches: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "leitstand", Name: "event_searches_total",
			Help: "Event searches of the role-scoped API by result: ok, unauthorized, forbidden, bad_request, too_large, " +
				"unavailable (Elasticsearch unreachable or overloaded), timeout, error (Elasticsearch failed), not_configured, canceled."},
			[]string{"result"}),
	}
	// Present at 0 from the start, so rate() and alerts on them work.
	for _, res := range []string{"ok", "forbidden", "unavailable", "timeout", "error"} {
		m.searches.WithLabelValues(res)
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.sent.Describe(ch)
	m.notifSent.Describe(ch)
	m.errors.Describe(ch)
	m.dropped.Describe(ch)
	m.unowned.Describe(ch)
	m.queueLength.Describe(ch)
	m.searches.Describe(ch)
	ch <- m.alerts
}

type alertsCollector struct {
	m *metrics
	r *Router
}

func (c alertsCollector) Describe(ch chan<- *prometheus.Desc) { c.m.Describe(ch) }

func (c alertsCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	m.sent.Collect(ch)
	m.notifSent.Collect(ch)
	m.errors.Collect(ch)
	m.dropped.Collect(ch)
	m.unowned.Collect(ch)
	m.queueLength.Collect(ch)
	m.searches.Collect(ch)
	for k, n := range c.r.alertCounts() {
		ch <- prometheus.MustNewConstMetric(m.alerts, prometheus.GaugeValue, float64(n), k.role, k.state, k.severity)
	}
}
