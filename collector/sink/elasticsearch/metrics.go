package elasticsearch

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Label values of leitstand_elasticsearch_bulk_requests_total{outcome}.
const (
	outcomeOK         = "ok"          // every item succeeded (201, or 409 on create)
	outcomeItemErrors = "item_errors" // answered 200, some items failed
	outcomeHTTPError  = "http_error"  // answered with a non-2xx status
	outcomeNetwork    = "network"     // no answer: refused, reset, timed out
)

// Label values of leitstand_elasticsearch_retries_total{reason}.
const (
	retryRejected    = "rejected"     // item 429: the cluster's write queue was full
	retryServerError = "server_error" // item 5xx, or a retryable block
	retryRequest     = "request"      // the whole request failed
)

// Label values of leitstand_elasticsearch_dead_lettered_total{reason}.
const (
	deadInvalid   = "invalid"       // a 4xx item: mapping conflict, bad document
	deadTooLarge  = "too_large"     // larger than the cluster's http.max_content_length
	deadExhausted = "server_errors" // failed with 5xx for longer than dead_letter_after
)

type metrics struct {
	requests         *prometheus.CounterVec
	items            *prometheus.CounterVec
	retries          *prometheus.CounterVec
	deadLettered     *prometheus.CounterVec
	deadLetterFailed prometheus.Counter
	latency          prometheus.Histogram
	bytesSent        prometheus.Counter
	bytesEncoded     prometheus.Counter
	up               prometheus.Gauge
	setupFailures    prometheus.Counter
	inflight         prometheus.Gauge
	concurrency      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "leitstand", Subsystem: "elasticsearch", Name: name, Help: help}, labels)
	}
	m := &metrics{
		requests: counter("bulk_requests_total",
			"Bulk requests by outcome: ok, item_errors (some items failed), http_error (non-2xx answer), network (no answer).", "outcome"),
		items: counter("items_total",
			"Bulk items by answer: 2xx, 409 (already indexed: a replay, counted as success), 429, 4xx, 5xx.", "status"),
		retries: counter("retries_total",
			"Documents sent again, by reason: rejected (429), server_error (5xx), request (the whole request failed).", "reason"),
		deadLettered: counter("dead_lettered_total",
			"Documents written to the dead-letter index instead of their target, by reason: invalid, too_large, server_errors.", "reason"),
		deadLetterFailed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "leitstand", Subsystem: "elasticsearch", Name: "dead_letter_failures_total",
			Help: "Documents the dead-letter index refused; their batch stays in the spool and is retried."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "leitstand", Subsystem: "elasticsearch", Name: "bulk_duration_seconds",
			Help: "Time from sending a bulk request to having read its answer.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
		bytesSent: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "leitstand", Subsystem: "elasticsearch", Name: "sent_bytes_total",
			Help: "Bulk request body bytes sent, after compression."}),
		bytesEncoded: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "leitstand", Subsystem: "elasticsearch", Name: "encoded_bytes_total",
			Help: "Bulk request body bytes before compression."}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "leitstand", Subsystem: "elasticsearch", Name: "up",
			Help: "1 when the cluster answered the last request and the templates are in place, else 0."}),
		setupFailures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "leitstand", Subsystem: "elasticsearch", Name: "setup_failures_total",
			Help: "Failed attempts to check the cluster and install the templates; each is retried."}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "leitstand", Subsystem: "elasticsearch", Name: "inflight_requests",
			Help: "Bulk requests in flight."}),
		concurrency: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "leitstand", Subsystem: "elasticsearch", Name: "concurrency_limit",
			Help: "Bulk requests allowed in flight now: workers, halved on each 429 and raised again while the cluster keeps up."}),
	}
	// Make every series visible from the start, so dashboards and alerts
	// see zeros instead of nothing.
	for _, o := range []string{outcomeOK, outcomeItemErrors, outcomeHTTPError, outcomeNetwork} {
		m.requests.WithLabelValues(o)
	}
	for _, s := range []string{"2xx", "409", "429", "4xx", "5xx"} {
		m.items.WithLabelValues(s)
	}
	for _, r := range []string{retryRejected, retryServerError, retryRequest} {
		m.retries.WithLabelValues(r)
	}
	for _, r := range []string{deadInvalid, deadTooLarge, deadExhausted} {
		m.deadLettered.WithLabelValues(r)
	}
	reg.MustRegister(m.requests, m.items, m.retries, m.deadLettered, m.deadLetterFailed, m.latency,
		m.bytesSent, m.bytesEncoded, m.up, m.setupFailures, m.inflight, m.concurrency)
	return m
}

// statusClass is the items_total label of an item status.
func statusClass(status int) string {
	switch {
	case status >= 200 && status < 300:
		return "2xx"
	case status == 409:
		return "409"
	case status == 429:
		return "429"
	case status >= 500:
		return "5xx"
	default:
		return "4xx"
	}
}
