// Package pipeline moves batches from receivers through the processing
// stages (the anonymizer first) to every sink, through one bounded queue.
//
// The queue is bounded in events, not batches, so memory stays bounded
// whatever the batch sizes. A batch holds its places from the moment it is
// queued until every sink has accepted it, so the bound covers events being
// processed too. What happens when the queue is full is the source's policy:
// acknowledging sources wait (and tell their sender to back off when the wait
// runs out), fire-and-forget sources drop the newest and count it.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/telemetry"
	"github.com/leitstand/leitstand/internal/config"
	"golang.org/x/sync/semaphore"
)

// Config sizes the pipeline.
type Config struct {
	// QueueSize is the most events held between receivers and sinks, queued
	// or in processing. Default 16384: a queued syslog event holds about
	// 1.7 KiB of heap, so a full queue is some 30 MiB of heap (85 MiB peak
	// RSS on the TCP benchmark, against 205 MiB at 65536, at the same CPU
	// per event; bench/README.md "Memory").
	QueueSize int `yaml:"queue_size"`
	// Workers is how many batches are processed at once. Default: the
	// number of CPUs.
	Workers int `yaml:"workers"`
}

// DefaultConfig returns the pipeline's defaults.
func DefaultConfig() Config {
	return Config{QueueSize: 16384, Workers: runtime.GOMAXPROCS(0)}
}

// Validate checks the sizes.
func (c *Config) Validate() error {
	var errs config.Errors
	if c.QueueSize < 1 {
		errs.Addf("queue_size", "must be at least 1, got %d", c.QueueSize)
	}
	if c.Workers < 1 || c.Workers > 1024 {
		errs.Addf("workers", "must be between 1 and 1024, got %d", c.Workers)
	}
	return errs.Err()
}

// When-full policies.
const (
	// Block makes the sender wait for room, up to BlockTimeout.
	Block = "block"
	// DropNewest refuses the incoming batch at once.
	DropNewest = "drop_newest"
)

// Policy is a source's answer to a full queue.
type Policy struct {
	// WhenFull is block (acknowledging sources: the sender waits) or
	// drop_newest (the incoming batch is refused at once and counted).
	WhenFull string `yaml:"when_full"`
	// BlockTimeout is how long a blocked sender waits before it is refused
	// (HTTP 429 with Retry-After). 0 waits as long as it takes.
	BlockTimeout time.Duration `yaml:"block_timeout"`
}

// Validate checks the policy.
func (p *Policy) Validate() error {
	var errs config.Errors
	if p.WhenFull != Block && p.WhenFull != DropNewest {
		errs.Addf("when_full", "must be %q or %q, got %q", Block, DropNewest, p.WhenFull)
	}
	if p.BlockTimeout < 0 {
		errs.Addf("block_timeout", "must not be negative, got %s", p.BlockTimeout)
	}
	return errs.Err()
}

// Pipeline is the bounded queue, the stage workers and the fan-out.
type Pipeline struct {
	cfg    Config
	stages []collector.Stage
	sinks  []collector.Sink
	log    *slog.Logger

	slots *semaphore.Weighted
	queue chan *work

	mu     sync.RWMutex // guards closed against sends on queue
	closed bool

	runCtx    context.Context // sinks' context; cancelled when a drain runs out of time
	cancelRun context.CancelFunc
	workers   sync.WaitGroup
	started   bool

	depth     *gaugeCounter
	sinkStats []sinkStats
	metrics   *telemetry.Metrics
}

type sinkStats struct {
	c        *telemetry.Component
	duration interface{ Observe(float64) }
}

// work is one queued batch and how to tell its source the outcome.
type work struct {
	batch  *collector.Batch
	events int64 // counted into the depth at enqueue; stages may change the batch's length
	slots  int64
	done   chan error // nil for fire-and-forget batches, which the pipeline releases
}

// New builds a pipeline that runs stages in order and then hands each batch
// to every sink.
func New(cfg Config, stages []collector.Stage, sinks []collector.Sink, m *telemetry.Metrics, log *slog.Logger) *Pipeline {
	runCtx, cancel := context.WithCancel(context.Background())
	p := &Pipeline{
		cfg: cfg, stages: stages, sinks: sinks, log: log,
		slots: semaphore.NewWeighted(int64(cfg.QueueSize)),
		// Every queued batch holds at least one slot, so a channel as long as
		// the queue never blocks a sender that got its slots.
		queue:     make(chan *work, cfg.QueueSize),
		runCtx:    runCtx,
		cancelRun: cancel,
		depth:     &gaugeCounter{g: m.QueueDepth.WithLabelValues("pipeline")},
		metrics:   m,
	}
	m.QueueCapacity.WithLabelValues("pipeline").Set(float64(cfg.QueueSize))
	for _, s := range sinks {
		p.sinkStats = append(p.sinkStats, sinkStats{c: m.Component(s.Name()), duration: m.SinkDuration.WithLabelValues(s.Name())})
	}
	return p
}

// Start starts the workers.
func (p *Pipeline) Start(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.closed {
		return errors.New("pipeline: already started")
	}
	p.started = true
	for i := 0; i < p.cfg.Workers; i++ {
		p.workers.Add(1)
		go p.work()
	}
	return nil
}

// Shutdown stops taking batches and waits until every queued batch has been
// through the sinks, or ctx ends; then in-flight sink calls are cancelled.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.queue)
	}
	started := p.started
	p.mu.Unlock()
	if !started {
		// No worker will ever take what was queued before Start: refuse it,
		// or its senders would wait forever.
		for w := range p.queue {
			p.finish(w, collector.ErrClosed)
		}
		p.cancelRun()
		return nil
	}
	drained := make(chan struct{})
	go func() { p.workers.Wait(); close(drained) }()
	select {
	case <-drained:
		p.cancelRun()
		return nil
	case <-ctx.Done():
		left := p.depth.value()
		if left == 0 {
			// Everything went through; the workers are only leaving. The
			// select picks at random when both are ready.
			<-drained
			p.cancelRun()
			return nil
		}
		p.cancelRun()
		return fmt.Errorf("pipeline: %d events not yet through the sinks when the shutdown deadline passed", left)
	}
}

// Ready reports whether the pipeline takes batches.
func (p *Pipeline) Ready() error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return collector.ErrClosed
	}
	return nil
}

// Submit queues b and waits until every sink has accepted it (nil), a sink
// failed (its error), or the policy refused it (ErrQueueFull, ErrClosed).
// The caller keeps ownership of b and may reuse it when Submit returns.
func (p *Pipeline) Submit(ctx context.Context, b *collector.Batch, pol Policy) error {
	w := &work{batch: b, done: make(chan error, 1)}
	if err := p.enqueue(ctx, w, pol); err != nil {
		return err
	}
	// Wait for the outcome even if ctx ends (a client hung up): the batch is
	// in the pipeline's hands until then, and returning would let the caller
	// reuse memory the sinks are reading. Sinks bound their own time.
	return <-w.done
}

// Enqueue queues b without waiting for the sinks; the pipeline releases b
// when done. On error (ErrQueueFull, ErrClosed) the caller still owns b.
func (p *Pipeline) Enqueue(ctx context.Context, b *collector.Batch, pol Policy) error {
	return p.enqueue(ctx, &work{batch: b}, pol)
}

func (p *Pipeline) enqueue(ctx context.Context, w *work, pol Policy) error {
	n := int64(w.batch.Len())
	if n == 0 {
		if w.done != nil {
			w.done <- nil
		} else {
			w.batch.Release()
		}
		return nil
	}
	w.events = n
	// A batch larger than the whole queue takes all of it rather than
	// waiting forever for room that can never exist.
	w.slots = min(n, int64(p.cfg.QueueSize))
	if err := p.acquire(ctx, w.slots, pol); err != nil {
		return err
	}
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		p.slots.Release(w.slots)
		return collector.ErrClosed
	}
	p.depth.add(n)
	p.queue <- w
	p.mu.RUnlock()
	return nil
}

func (p *Pipeline) acquire(ctx context.Context, n int64, pol Policy) error {
	if p.slots.TryAcquire(n) {
		return nil
	}
	if pol.WhenFull == DropNewest {
		return collector.ErrQueueFull
	}
	if err := p.Ready(); err != nil {
		return err
	}
	if pol.BlockTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, pol.BlockTimeout)
		defer cancel()
	}
	if err := p.slots.Acquire(ctx, n); err != nil {
		return collector.ErrQueueFull
	}
	return nil
}

func (p *Pipeline) work() {
	defer p.workers.Done()
	for w := range p.queue {
		err := p.process(w.batch)
		if err != nil && w.done == nil {
			// Nobody sends these again. The source counted them accepted,
			// so they are counted dropped for it too (reason
			// sink_refused): a UDP receiver's received = accepted +
			// dropped on receipt, and accepted = stored + sink_refused.
			p.metrics.Component(sourceName(w.batch)).Dropped("sink_refused", w.batch.Len())
			p.log.Warn("batch from a fire-and-forget source failed in a sink; its events are lost", "source", w.batch.Source, "events", w.batch.Len(), "err", err)
		}
		p.finish(w, err)
	}
}

// sourceName is the component a batch's events are counted for.
func sourceName(b *collector.Batch) string {
	if b.Source == "" {
		return "unknown"
	}
	return b.Source
}

// finish gives the batch's places back and then tells its sender the
// outcome (or releases a fire-and-forget batch). Places go back first: a
// sender whose Submit has returned must find them free again.
func (p *Pipeline) finish(w *work, err error) {
	p.depth.add(-w.events)
	p.slots.Release(w.slots)
	if w.done != nil {
		w.done <- err
		return
	}
	w.batch.Release()
}

// process runs the stages, normalizes each event and hands the batch to
// every sink in turn. It returns the sinks' errors joined; a failing sink
// does not keep the others from their copy.
func (p *Pipeline) process(b *collector.Batch) error {
	for _, s := range p.stages {
		s.Process(b)
	}
	ingested := b.Ingested()
	for i := range b.Events {
		e := &b.Events[i]
		e.Add(collector.FieldIngested, collector.KindString, ingested)
		e.Normalize()
	}
	var errs []error
	for i, s := range p.sinks {
		start := time.Now()
		err := s.Consume(p.runCtx, b)
		st := p.sinkStats[i]
		st.duration.Observe(time.Since(start).Seconds())
		if err != nil {
			st.c.Failed("error", b.Len())
			errs = append(errs, fmt.Errorf("sink %s: %w", s.Name(), err))
			continue
		}
		st.c.Sent(b.Len())
	}
	return errors.Join(errs...)
}

// gaugeCounter keeps an exact count next to the gauge, for the shutdown
// message.
type gaugeCounter struct {
	mu sync.Mutex
	n  int64
	g  interface{ Set(float64) }
}

func (c *gaugeCounter) add(d int64) {
	c.mu.Lock()
	c.n += d
	c.g.Set(float64(c.n))
	c.mu.Unlock()
}

func (c *gaugeCounter) value() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

var _ collector.Component = (*Pipeline)(nil)
