// Package syslog is leitstand's syslog receiver: UDP, TCP, TLS (RFC 5425)
// and a Unix datagram socket, RFC 5424 and RFC 3164 (with the variants real
// devices send), mapped to ECS fields (log.syslog.*, host.hostname,
// process.*, source.ip).
//
// It owns the sockets, the framing of streams (octet counting and LF,
// detected per frame, with resynchronisation after garbage), parsing and
// the limits that keep a hostile or broken sender from holding memory or
// connections. It hands batches to the pipeline and knows nothing of what
// happens to them there. Nothing a sender wrote is dropped silently: a frame
// that does not parse becomes an event with its raw text and a tag, and
// every loss (UDP queue full, kernel drops, over-long remainders) is
// counted.
//
// The hot path (octet-counted RFC 5424) uses a framer and a strict RFC 5424
// parser of its own that allocate nothing per message and whose strings
// point into the read buffer, which the batch then owns; go-syslog
// (github.com/leodido/go-syslog/v4) parses everything else: RFC 3164 and
// its Cisco IOS variants, and whatever the strict parser declines, with
// best effort for broken messages. A fuzz test holds the two parsers to
// the same results.
//
// Peers' addresses are personal data: they go into events (source.ip, for
// the anonymizer to truncate) and into debug logs only; info logs carry
// counts.
package syslog

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/collector/telemetry"
	"github.com/prometheus/client_golang/prometheus"
)

// Enqueuer is the part of the pipeline the receiver needs
// (*pipeline.Pipeline has it). Enqueue takes ownership of b on success; on
// error (collector.ErrQueueFull, collector.ErrClosed) the caller still owns
// it.
type Enqueuer interface {
	Enqueue(ctx context.Context, b *collector.Batch, pol pipeline.Policy) error
}

// drainGrace is how long Shutdown keeps reading what senders had already
// written into the sockets before it closes them.
const drainGrace = 200 * time.Millisecond

// Receiver is the syslog receiver, a collector.Component.
type Receiver struct {
	cfg  Config
	next Enqueuer
	log  *slog.Logger
	m    *metrics
	lis  []*listener

	// ctx is what blocked Enqueue calls wait on; Shutdown cancels it when
	// its deadline passes.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	started  bool
	stopped  bool
	stopAt   atomic.Int64 // unix nanos of the drain deadline; 0 while running
	workers  sync.WaitGroup
	shutOnce sync.Once
	shutErr  error
}

// New builds the receiver; Start binds the sockets. reg takes the
// receiver's own metrics (leitstand_syslog_*), m the event counters shared
// with the other components.
func New(cfg Config, next Enqueuer, m *telemetry.Metrics, reg prometheus.Registerer, log *slog.Logger) (*Receiver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("syslog: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Receiver{cfg: cfg, next: next, log: log, m: newMetrics(reg), ctx: ctx, cancel: cancel}
	if !cfg.Enabled {
		return r, nil
	}
	for i := range cfg.Listeners {
		lc := cfg.Listeners[i]
		l := &listener{r: r, cfg: lc, policy: lc.policy(), pm: r.m.protocol(lc.Protocol), c: m.Component("syslog_" + lc.Protocol)}
		l.allowed, _ = parseSources(lc.AllowedSources)
		if lc.Protocol == ProtoTLS {
			tc, err := lc.TLS.ServerTLS(log)
			if err != nil {
				cancel()
				return nil, fmt.Errorf("syslog: listeners[%d].tls: %w", i, err)
			}
			l.tls = tc
		}
		r.lis = append(r.lis, l)
	}
	return r, nil
}

// Start binds every listener's socket (a port in use fails the start, and
// nothing stays bound) and starts reading.
func (r *Receiver) Start(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || r.stopped {
		return errors.New("syslog: already started")
	}
	for i, l := range r.lis {
		if err := l.bind(); err != nil {
			for _, b := range r.lis[:i] {
				b.closeSocket()
			}
			return fmt.Errorf("syslog: %s listener on %s: %w", l.cfg.Protocol, l.cfg.Address, err)
		}
	}
	r.started = true
	for _, l := range r.lis {
		l.run()
		r.log.Info("syslog listening", "protocol", l.cfg.Protocol, "address", l.addr().String())
	}
	return nil
}

// Addrs returns the bound address of each listener, in config order (for
// tests that listen on port 0). It is empty before Start.
func (r *Receiver) Addrs() []net.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started {
		return nil
	}
	out := make([]net.Addr, len(r.lis))
	for i, l := range r.lis {
		out[i] = l.addr()
	}
	return out
}

// Shutdown stops accepting, reads for a short grace what senders had
// already sent, hands every partial batch to the pipeline and closes all
// sockets. If ctx ends while batches wait for room in the pipeline, they
// are dropped and counted. Safe without Start and when called twice.
func (r *Receiver) Shutdown(ctx context.Context) error {
	r.shutOnce.Do(func() {
		r.mu.Lock()
		r.stopped = true
		started := r.started
		r.mu.Unlock()
		if !started {
			r.cancel()
			return
		}
		r.stopAt.Store(time.Now().Add(drainGrace).UnixNano())
		for _, l := range r.lis {
			l.stop()
		}
		done := make(chan struct{})
		go func() { r.workers.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			r.cancel() // blocked Enqueues give up; their batches are counted as dropped
			<-done
			r.shutErr = fmt.Errorf("syslog: shutdown deadline passed while batches waited for the pipeline: %w", ctx.Err())
		}
		r.cancel()
		for _, l := range r.lis {
			l.closeSocket()
		}
	})
	return r.shutErr
}

// stopping reports whether Shutdown has begun, and its drain deadline.
func (r *Receiver) stopping() (time.Time, bool) {
	ns := r.stopAt.Load()
	if ns == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

// listener is one configured socket.
type listener struct {
	r       *Receiver
	cfg     Listener
	policy  pipeline.Policy
	pm      *protoMetrics
	c       *telemetry.Component
	allowed []netip.Prefix
	tls     *tls.Config

	// After bind: ln and conns for a stream listener, pcs for a datagram
	// listener (one socket per reader for udp, sharing the port).
	ln    net.Listener
	conns *connSet
	pcs   []net.PacketConn
	drops []uint32 // last kernel drop count seen per socket
}

func (l *listener) addr() net.Addr {
	if l.ln != nil {
		return l.ln.Addr()
	}
	if len(l.pcs) > 0 {
		return l.pcs[0].LocalAddr()
	}
	return nil
}

// allows reports whether a sender may send; an empty list allows everyone.
func (l *listener) allows(a netip.Addr) bool {
	if len(l.allowed) == 0 {
		return true
	}
	a = a.Unmap()
	for _, p := range l.allowed {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (l *listener) bind() error {
	if l.cfg.datagram() {
		return l.bindDatagram()
	}
	return l.bindStream()
}

func (l *listener) run() {
	if l.cfg.datagram() {
		l.runDatagram()
		return
	}
	l.runStream()
}

func (l *listener) stop() {
	if l.cfg.datagram() {
		l.stopDatagram()
		return
	}
	l.stopStream()
}

func (l *listener) closeSocket() {
	if l.ln != nil {
		_ = l.ln.Close()
	}
	for _, pc := range l.pcs {
		_ = pc.Close()
	}
	if l.cfg.Protocol == ProtoUnix && len(l.pcs) > 0 {
		l.removeSocketFile()
	}
}

// batcher collects the events of one connection or datagram reader and
// hands them to the pipeline by size and linger time.
type batcher struct {
	l     *listener
	b     *collector.Batch
	dec   decoder
	start time.Time // when the current batch got its first event
}

func (l *listener) newBatcher() batcher {
	transport := l.cfg.Protocol
	switch transport {
	case ProtoTLS:
		transport = "tcp"
	case ProtoUnix:
		transport = ""
	}
	return batcher{l: l, dec: decoder{p: newParser(l.r.cfg.RFC3164), transport: transport}}
}

// batch returns the batch to add to, starting one if needed.
func (s *batcher) batch() *collector.Batch {
	if s.b == nil {
		s.b = collector.NewBatch("syslog_" + s.l.cfg.Protocol)
		s.start = s.b.Received
	}
	return s.b
}

// full reports whether the batch should go now.
func (s *batcher) full() bool {
	return s.b != nil && s.b.Len() >= s.l.r.cfg.BatchEvents
}

// lingerDeadline is when a partial batch must go; zero with no batch.
func (s *batcher) lingerDeadline() time.Time {
	if s.b == nil || s.b.Len() == 0 {
		return time.Time{}
	}
	return s.start.Add(s.l.r.cfg.BatchLinger)
}

// flush hands the batch to the pipeline (waiting as the policy says) and
// counts what happened to it. The caller must have tied every buffer the
// events point into to the batch.
func (s *batcher) flush() {
	b := s.b
	s.b = nil
	s.publishCounts()
	if b == nil {
		return
	}
	n := b.Len()
	if n == 0 {
		b.Release()
		return
	}
	s.l.c.Received(n)
	switch err := s.l.r.next.Enqueue(s.l.r.ctx, b, s.l.policy); {
	case err == nil:
		s.l.c.Accepted(n)
	case errors.Is(err, collector.ErrClosed):
		s.l.c.Dropped("shutting_down", n)
		b.Release()
	case s.l.r.ctx.Err() != nil:
		s.l.c.Dropped("shutdown_timeout", n)
		b.Release()
	default:
		s.l.c.Dropped("queue_full", n)
		b.Release()
	}
}

// publishCounts moves the decoder's counts into the metrics.
func (s *batcher) publishCounts() {
	n := &s.dec.n
	pm := s.l.pm
	if n.bytes > 0 {
		s.l.c.BytesReceived(n.bytes)
	}
	add := func(c prometheus.Counter, v int) {
		if v > 0 {
			c.Add(float64(v))
		}
	}
	add(pm.parseFailures, n.parseFailures)
	add(pm.resyncs, n.resyncs)
	add(pm.truncated, n.truncated)
	add(pm.incomplete, n.incomplete)
	add(pm.invalidUTF8, n.invalidUTF8)
	if n.discardedBytes > 0 {
		pm.discarded.Add(float64(n.discardedBytes))
	}
	*n = counts{}
}

// metrics are the receiver's own metric families.
type metrics struct {
	parseFailures, resyncs, truncated, incomplete, invalidUTF8, discarded *prometheus.CounterVec
	kernelDrops, notAllowed                                               *prometheus.CounterVec
	connsOpen                                                             *prometheus.GaugeVec
	connsAccepted, connsRejected, connsClosed                             *prometheus.CounterVec

	mu     sync.Mutex
	protos map[string]*protoMetrics
}

func newMetrics(reg prometheus.Registerer) *metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "leitstand", Subsystem: "syslog", Name: name, Help: help}, labels)
		reg.MustRegister(c)
		return c
	}
	m := &metrics{
		parseFailures: counter("parse_failures_total", "Messages that did not parse; kept with their raw text and tag syslog_parse_failure.", "protocol"),
		resyncs:       counter("resyncs_total", "Framing errors after which the stream was searched for the next frame; the skipped bytes are kept as an event tagged syslog_framing_error.", "protocol"),
		truncated:     counter("truncated_total", "Messages longer than max_message_bytes, cut and tagged syslog_truncated.", "protocol"),
		incomplete:    counter("incomplete_frames_total", "Frames cut short by the end, a stall or the shutdown of their connection, kept and tagged syslog_incomplete_frame.", "protocol"),
		invalidUTF8:   counter("invalid_utf8_total", "Messages with bytes that are not UTF-8, stored with U+FFFD in their place and tagged syslog_invalid_utf8.", "protocol"),
		discarded:     counter("discarded_bytes_total", "Bytes of over-long frames beyond max_message_bytes, read and thrown away.", "protocol"),
		kernelDrops:   counter("kernel_drops_total", "Datagrams the kernel dropped because the socket buffer was full (SO_RXQ_OVFL).", "protocol"),
		notAllowed:    counter("not_allowed_total", "Datagrams and connections refused because their source is not in allowed_sources.", "protocol"),
		connsAccepted: counter("connections_accepted_total", "Stream connections accepted.", "protocol"),
		connsRejected: counter("connections_rejected_total", "Stream connections closed at once, by reason (max_connections, not_allowed, tls_handshake).", "protocol", "reason"),
		connsClosed:   counter("connections_closed_total", "Stream connections closed after serving, by reason (eof, idle_timeout, read_timeout, evicted, error, shutdown).", "protocol", "reason"),
		connsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "leitstand", Subsystem: "syslog", Name: "connections_open",
			Help: "Stream connections open now."}, []string{"protocol"}),
		protos: map[string]*protoMetrics{},
	}
	reg.MustRegister(m.connsOpen)
	return m
}

// protoMetrics are the metrics of one protocol, resolved once.
type protoMetrics struct {
	m                                                                     *metrics
	proto                                                                 string
	parseFailures, resyncs, truncated, incomplete, invalidUTF8, discarded prometheus.Counter
	kernelDrops, notAllowed, accepted                                     prometheus.Counter
	open                                                                  prometheus.Gauge
}

func (m *metrics) protocol(p string) *protoMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	if pm, ok := m.protos[p]; ok {
		return pm
	}
	pm := &protoMetrics{
		m: m, proto: p,
		parseFailures: m.parseFailures.WithLabelValues(p),
		resyncs:       m.resyncs.WithLabelValues(p),
		truncated:     m.truncated.WithLabelValues(p),
		incomplete:    m.incomplete.WithLabelValues(p),
		invalidUTF8:   m.invalidUTF8.WithLabelValues(p),
		discarded:     m.discarded.WithLabelValues(p),
		kernelDrops:   m.kernelDrops.WithLabelValues(p),
		notAllowed:    m.notAllowed.WithLabelValues(p),
		accepted:      m.connsAccepted.WithLabelValues(p),
		open:          m.connsOpen.WithLabelValues(p),
	}
	m.protos[p] = pm
	return pm
}

func (pm *protoMetrics) rejected(reason string) {
	pm.m.connsRejected.WithLabelValues(pm.proto, reason).Inc()
}

func (pm *protoMetrics) closed(reason string) {
	pm.m.connsClosed.WithLabelValues(pm.proto, reason).Inc()
}

var _ collector.Component = (*Receiver)(nil)
