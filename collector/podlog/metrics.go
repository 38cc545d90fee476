package podlog

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	bytes            prometheus.Counter
	lines            prometheus.Counter
	truncated        prometheus.Counter
	retries          prometheus.Counter
	rotations        *prometheus.CounterVec
	filesOpen        prometheus.Gauge
	checkpointWrites prometheus.Counter
	checkpointErrors prometheus.Counter
	kubeRequests     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, r *Receiver) *metrics {
	opts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: "leitstand", Subsystem: "podlog", Name: name, Help: help}
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "leitstand", Subsystem: "podlog", Name: name, Help: help}, f)
	}
	m := &metrics{
		bytes:     prometheus.NewCounter(opts("read_bytes_total", "Bytes read from container log files (decompressed), lines read again after a failure included.")),
		lines:     prometheus.NewCounter(opts("read_lines_total", "Lines read from container log files, runtime-split parts counted one by one.")),
		truncated: prometheus.NewCounter(opts("truncated_lines_total", "Lines longer than max_line_bytes, cut and flagged log.flags truncated.")),
		retries:   prometheus.NewCounter(opts("batch_retries_total", "Batches the pipeline did not acknowledge, read and sent again after a pause.")),
		rotations: prometheus.NewCounterVec(opts("rotations_total", "Rotations seen: rename (rename and create, the kubelet's way), truncate (copytruncate), delete (the file was removed while read), damaged (an unreadable compressed file)."), []string{"kind"}),
		filesOpen: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "leitstand", Subsystem: "podlog", Name: "files_tailed",
			Help: "Log files open for reading."}),
		checkpointWrites: prometheus.NewCounter(opts("checkpoint_writes_total", "Times the read positions were written to the state directory.")),
		checkpointErrors: prometheus.NewCounter(opts("checkpoint_errors_total", "Failed writes of the read positions.")),
		kubeRequests:     prometheus.NewCounterVec(opts("kubernetes_requests_total", "Pod listings asked of the Kubernetes API, by HTTP status code or error."), []string{"code"}),
	}
	for _, k := range []string{"rename", "truncate", "delete", "damaged"} {
		m.rotations.WithLabelValues(k)
	}
	reg.MustRegister(m.bytes, m.lines, m.truncated, m.retries, m.rotations, m.filesOpen, m.checkpointWrites, m.checkpointErrors, m.kubeRequests,
		gauge("checkpoint_age_seconds", "Seconds since the read positions were last written.", func() float64 {
			if st := r.stateStore(); st != nil {
				return st.age().Seconds()
			}
			return 0
		}),
		gauge("files_known", "Log files with a read position (finished ones included).", func() float64 {
			if st := r.stateStore(); st != nil {
				return float64(st.len())
			}
			return 0
		}),
		gauge("containers", "Live container log files (families of rotated files) being followed.", func() float64 {
			r.mu.Lock()
			defer r.mu.Unlock()
			return float64(len(r.families))
		}),
		gauge("unacknowledged_bytes", "Bytes in the files being read that the aggregator has not acknowledged yet: the forward lag in bytes.", func() float64 {
			r.mu.Lock()
			defer r.mu.Unlock()
			var n int64
			for _, f := range r.families {
				n += f.unacked.Load()
			}
			return float64(n)
		}),
	)
	return m
}
