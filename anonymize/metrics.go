package anonymize

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the anonymizer's self-telemetry, updated once per batch.
type metrics struct {
	detections *prometheus.CounterVec
	cells      [][]prometheus.Counter // by type and method, resolved once
	types      []string
	events     prometheus.Counter
	bytes      prometheus.Counter
	duration   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, types []string) *metrics {
	m := &metrics{
		detections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leitstand_anonymize_detections_total",
			Help: "Values scrubbed from events, by detector (or field rule type) and method.",
		}, []string{"detector", "method"}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leitstand_anonymize_events_total",
			Help: "Events the anonymizer processed.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leitstand_anonymize_bytes_total",
			Help: "Bytes of string and raw JSON fields the anonymizer scanned.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "leitstand_anonymize_batch_duration_seconds",
			Help:    "Time to anonymize one batch.",
			Buckets: prometheus.ExponentialBuckets(1e-5, 4, 10),
		}),
		types: types,
	}
	if reg != nil {
		m.detections = register(reg, m.detections)
		m.events = register(reg, m.events)
		m.bytes = register(reg, m.bytes)
		m.duration = register(reg, m.duration)
	}
	m.cells = make([][]prometheus.Counter, len(types))
	for t := range m.cells {
		m.cells[t] = make([]prometheus.Counter, numMethods)
	}
	return m
}

// prepare resolves the series of a type and method that can occur, so they
// are exported from the start and flush does not look them up.
func (m *metrics) prepare(t int, meth method) {
	if m.cells[t][meth] == nil {
		m.cells[t][meth] = m.detections.WithLabelValues(m.types[t], methodNames[meth])
	}
}

// register registers c, or returns the collector already registered in its
// place (a second anonymizer on the same registry shares the series).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

// flush adds a batch's counts and clears them.
func (m *metrics) flush(sc *scanner, events, bytes int, took time.Duration) {
	m.events.Add(float64(events))
	m.bytes.Add(float64(bytes))
	m.duration.Observe(took.Seconds())
	for t, row := range sc.batch {
		for meth, n := range row {
			if n == 0 {
				continue
			}
			c := m.cells[t][meth]
			if c == nil {
				// resolving is safe concurrently; racing writers store the same counter
				c = m.detections.WithLabelValues(m.types[t], methodNames[meth])
			}
			c.Add(float64(n))
			row[meth] = 0
		}
	}
}
