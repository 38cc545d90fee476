package spool

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	appendedRecords  prometheus.Counter
	appendedBytes    prometheus.Counter
	refused          prometheus.Counter
	droppedRecords   prometheus.Counter
	tornBytes        prometheus.Counter
	corruptRecords   prometheus.Counter
	writeErrors      prometheus.Counter
	fsyncDuration    prometheus.Histogram
	delivered        *prometheus.CounterVec
	deliveryFailures *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, s *Spool) *metrics {
	opts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: "leitstand", Subsystem: "spool", Name: name, Help: help}
	}
	m := &metrics{
		appendedRecords: prometheus.NewCounter(opts("appended_records_total", "Records (batches) appended.")),
		appendedBytes:   prometheus.NewCounter(opts("appended_bytes_total", "Bytes appended.")),
		refused:         prometheus.NewCounter(opts("refused_events_total", "Events refused because the spool was full (when_full block or refuse).")),
		droppedRecords:  prometheus.NewCounter(opts("dropped_records_total", "Undelivered records deleted to make room (when_full drop_oldest).")),
		tornBytes:       prometheus.NewCounter(opts("torn_bytes_total", "Bytes of torn records cut off the last segment at start-up.")),
		corruptRecords:  prometheus.NewCounter(opts("corrupt_records_total", "Records that failed their checksum when read and were skipped.")),
		writeErrors:     prometheus.NewCounter(opts("write_errors_total", "Failed writes, syncs, seals and cursor saves.")),
		fsyncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "leitstand", Subsystem: "spool", Name: "fsync_duration_seconds",
			Help: "Time one group commit's fsync took.", Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12)}),
		delivered:        prometheus.NewCounterVec(opts("delivered_events_total", "Events a sink accepted from the spool."), []string{"sink"}),
		deliveryFailures: prometheus.NewCounterVec(opts("delivery_failures_total", "Batches a sink failed to accept; each is retried."), []string{"sink"}),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "leitstand", Subsystem: "spool", Name: name, Help: help}, f)
	}
	reg.MustRegister(m.appendedRecords, m.appendedBytes, m.refused, m.droppedRecords, m.tornBytes, m.corruptRecords,
		m.writeErrors, m.fsyncDuration, m.delivered, m.deliveryFailures,
		gauge("bytes", "Bytes of all segments on disk.", func() float64 {
			s.mu.Lock()
			defer s.mu.Unlock()
			return float64(s.total)
		}),
		gauge("capacity_bytes", "The spool's size cap (max_bytes).", func() float64 { return float64(s.cfg.MaxBytes) }),
		gauge("segments", "Segment files on disk.", func() float64 {
			s.mu.Lock()
			defer s.mu.Unlock()
			return float64(len(s.segs))
		}),
		gauge("records", "Records not yet delivered to every sink.", func() float64 {
			var most uint64
			for _, lag := range s.lags() {
				most = max(most, lag)
			}
			return float64(most)
		}),
		gauge("oldest_record_age_seconds", "Age of the oldest record a sink is still trying to deliver; 0 when every sink has caught up.", func() float64 {
			var oldest time.Time
			for _, d := range s.deliverers {
				d.mu.Lock()
				if t := d.inFlight; !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
					oldest = t
				}
				d.mu.Unlock()
			}
			if oldest.IsZero() {
				return 0
			}
			return time.Since(oldest).Seconds()
		}),
		&lagCollector{s: s, desc: prometheus.NewDesc("leitstand_spool_sink_lag_records", "Records a sink has yet to receive.", []string{"sink"}, nil)},
	)
	return m
}

// lags returns, per deliverer, how many records it has yet to deliver.
func (s *Spool) lags() []uint64 {
	s.mu.Lock()
	next := s.nextSeq
	s.mu.Unlock()
	out := make([]uint64, len(s.deliverers))
	for i, d := range s.deliverers {
		d.mu.Lock()
		if d.nextSeq < next {
			out[i] = next - d.nextSeq
		}
		d.mu.Unlock()
	}
	return out
}

// lagCollector reports each sink's lag at scrape time.
type lagCollector struct {
	s    *Spool
	desc *prometheus.Desc
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	for i, lag := range c.s.lags() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(lag), c.s.deliverers[i].name)
	}
}
