package sentry

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Item types counted by name; others count as "other", so a client cannot
// grow the label set.
var knownItemTypes = map[string]bool{
	"event": true, "transaction": true, "attachment": true, "session": true, "sessions": true,
	"client_report": true, "log": true, "span": true, "check_in": true, "profile": true,
	"profile_chunk": true, "replay_event": true, "replay_recording": true, "replay_video": true,
	"user_report": true, "feedback": true, "statsd": true, "metric_buckets": true, "otel_log": true,
	"otel_span": true, "trace_metric": true, "raw_security": true, "nel": true, "unreal_report": true,
	"form_data": true,
}

// Discard reasons and categories of client reports counted by name.
var (
	knownReasons = map[string]bool{
		"queue_overflow": true, "cache_overflow": true, "buffer_overflow": true, "ratelimit_backoff": true,
		"network_error": true, "sample_rate": true, "before_send": true, "event_processor": true,
		"send_error": true, "internal_sdk_error": true, "insufficient_data": true, "backpressure": true,
		"no_parent_span": true, "ignored": true,
	}
	knownDiscardCategories = map[string]bool{
		"default": true, "error": true, "transaction": true, "span": true, "log_item": true, "log_byte": true,
		"monitor": true, "attachment": true, "session": true, "profile": true, "profile_chunk": true,
		"replay": true, "feedback": true, "security": true, "user_report_v2": true,
	}
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
	if knownItemTypes[t] {
		return t
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
		cat, reason := d.category, d.reason
		if !knownDiscardCategories[cat] {
			cat = "other"
		}
		if !knownReasons[reason] {
			reason = "other"
		}
		m.discarded.WithLabelValues(project, cat, reason).Add(float64(d.quantity))
	}
}
