package sentry

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Item types counted by name; others count as "other", so a client cannot
// grow the label set.
// The sets map to their own (static) strings: a label value must not be a
// view into a request body, which is reused once the request is done.
var knownItemTypes = set("event", "transaction", "attachment", "session", "sessions",
	"client_report", "log", "span", "check_in", "profile",
	"profile_chunk", "replay_event", "replay_recording", "replay_video",
	"user_report", "feedback", "statsd", "metric_buckets", "otel_log",
	"otel_span", "trace_metric", "raw_security", "nel", "unreal_report",
	"form_data")

func set(names ...string) map[string]string {
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[n] = n
	}
	return m
}

// Discard reasons and categories of client reports counted by name.
var (
	knownReasons = set("queue_overflow", "cache_overflow", "buffer_overflow", "ratelimit_backoff",
		"network_error", "sample_rate", "before_send", "event_processor",
		"send_error", "internal_sdk_error", "insufficient_data", "backpressure",
		"no_parent_span", "ignored")
	knownDiscardCategories = set("default", "error", "transaction", "span", "log_item", "log_byte",
		"monitor", "attachment", "session", "profile", "profile_chunk",
		"replay", "feedback", "security", "user_report_v2")
)

// Item outcomes.
const (
	outIndexed     = "indexed"     // normalised into events and handed to the pipeline
	outNotIndexed  = "not_indexed" // counted (and held for forwarding), not stored
	outMetrics     = "metrics"     // sessions and client reports: turned into metrics
	outRateLimited = "rate_limited"
	outRefused     = "refused" // the envelope as a whole was refused
)

// metrics are the receiver's own families, leitstand_sentry_*.
type metrics struct {
	requests  *prometheus.CounterVec
	items     *prometheus.CounterVec
	sessions  *prometheus.CounterVec
	discarded *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "leitstand", Subsystem: "sentry", Name: "requests_total",
			Help: "Sentry requests by endpoint (envelope, store, preflight) and outcome (accepted, rate_limited, queue_full, unauthorized, forbidden, bad_request, too_large, …)."},
			[]string{"endpoint", "outcome"}),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "leitstand", Subsystem: "sentry", Name: "items_total",
			Help: "Envelope items by type and outcome (indexed, not_indexed, metrics, rate_limited, refused); log and span containers count their records."},
			[]string{"type", "outcome"}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "leitstand", Subsystem: "sentry", Name: "sessions_total",
			Help: "Release-health session updates reported by SDKs, by project and status (ok, exited, errored, crashed, abnormal)."},
			[]string{"project", "status"}),
		discarded: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "leitstand", Subsystem: "sentry", Name: "client_discarded_events_total",
			Help: "Events SDKs report (client reports) to have discarded before sending, by project, category and reason."},
			[]string{"project", "category", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.items, m.sessions, m.discarded)
	}
	return m
}

func itemTypeLabel(t string) string {
	if c, ok := knownItemTypes[t]; ok {
		return c
	}
	return "other"
}

func (m *metrics) countItems(typ, outcome string, n int) {
	if n > 0 {
		m.items.WithLabelValues(itemTypeLabel(typ), outcome).Add(float64(n))
	}
}

func (m *metrics) countSessions(project string, counts [numSessionStatus]int) {
	for i, c := range counts {
		if c > 0 {
			m.sessions.WithLabelValues(project, sessionStatuses[i]).Add(float64(c))
		}
	}
}

func (m *metrics) countDiscarded(project string, ds []discard) {
	for _, d := range ds {
		cat, ok := knownDiscardCategories[d.category]
		if !ok {
			cat = "other"
		}
		reason, ok := knownReasons[d.reason]
		if !ok {
			reason = "other"
		}
		m.discarded.WithLabelValues(project, cat, reason).Add(float64(d.quantity))
	}
}
