// Package telemetry defines leitstand's self-metrics for the event path, so
// every receiver, stage and sink counts the same things under the same names
// (the pipeline dashboard is built on exactly these). Components count per
// batch, never per event.
package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the metric families of the event path.
type Metrics struct {
	received *prometheus.CounterVec
	accepted *prometheus.CounterVec
	refused  *prometheus.CounterVec
	dropped  *prometheus.CounterVec
	sent     *prometheus.CounterVec
	failed   *prometheus.CounterVec
	bytes    *prometheus.CounterVec

	QueueDepth    *prometheus.GaugeVec
	QueueCapacity *prometheus.GaugeVec
	SinkDuration  *prometheus.HistogramVec
}

// New creates the metric families and registers them with reg.
func New(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "leitstand", Name: name, Help: help}, labels)
		reg.MustRegister(c)
		return c
	}
	m := &Metrics{
		received: counter("events_received_total", "Events a component read from its input, before any check.", "component"),
		accepted: counter("events_accepted_total", "Events a receiver accepted into the pipeline.", "component"),
		refused:  counter("events_refused_total", "Events refused with an answer to the sender (bad line, auth, queue full), by reason.", "component", "reason"),
		dropped:  counter("events_dropped_total", "Events lost without the sender being told (UDP, drop_newest, drop_oldest), by reason.", "component", "reason"),
		sent:     counter("events_sent_total", "Events a sink accepted.", "component"),
		failed:   counter("events_failed_total", "Events a sink failed to accept; the sender is told and retries.", "component", "reason"),
		bytes:    counter("bytes_received_total", "Bytes a receiver read, after decompression.", "component"),
		QueueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "leitstand", Name: "queue_depth_events",
			Help: "Events waiting in or being processed by a queue."}, []string{"queue"}),
		QueueCapacity: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "leitstand", Name: "queue_capacity_events",
			Help: "Events a queue holds at most."}, []string{"queue"}),
		SinkDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "leitstand", Name: "sink_batch_duration_seconds",
			Help:    "Time a sink took to accept one batch.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"sink"}),
	}
	reg.MustRegister(m.QueueDepth, m.QueueCapacity, m.SinkDuration)
	return m
}

// Component returns the counters of one named component.
func (m *Metrics) Component(name string) *Component {
	return &Component{
		m:        m,
		name:     name,
		received: m.received.WithLabelValues(name),
		accepted: m.accepted.WithLabelValues(name),
		sent:     m.sent.WithLabelValues(name),
		bytes:    m.bytes.WithLabelValues(name),
	}
}

// Component counts the events of one receiver, stage or sink.
type Component struct {
	m                               *Metrics
	name                            string
	received, accepted, sent, bytes prometheus.Counter
}

func (c *Component) Received(n int)      { c.received.Add(float64(n)) }
func (c *Component) Accepted(n int)      { c.accepted.Add(float64(n)) }
func (c *Component) Sent(n int)          { c.sent.Add(float64(n)) }
func (c *Component) BytesReceived(n int) { c.bytes.Add(float64(n)) }

// Refused counts events the sender was told about (a 4xx, a 429).
func (c *Component) Refused(reason string, n int) {
	c.m.refused.WithLabelValues(c.name, reason).Add(float64(n))
}

// Dropped counts events lost without telling the sender.
func (c *Component) Dropped(reason string, n int) {
	c.m.dropped.WithLabelValues(c.name, reason).Add(float64(n))
}

// Failed counts events a sink could not accept.
func (c *Component) Failed(reason string, n int) {
	c.m.failed.WithLabelValues(c.name, reason).Add(float64(n))
}
