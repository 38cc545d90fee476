package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/collector/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	block = pipeline.Policy{WhenFull: pipeline.Block}
	drop  = pipeline.Policy{WhenFull: pipeline.DropNewest}
)

// harness is a pipeline with its own metrics registry.
type harness struct {
	p   *pipeline.Pipeline
	m   *telemetry.Metrics
	reg *prometheus.Registry
}

func newHarness(t *testing.T, cfg pipeline.Config, stages []collector.Stage, sinks ...collector.Sink) *harness {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := telemetry.New(reg)
	p := pipeline.New(cfg, stages, sinks, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return &harness{p: p, m: m, reg: reg}
}

func (h *harness) start(t *testing.T) {
	t.Helper()
	if err := h.p.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	// A safety net for tests that fail half-way; Shutdown twice is allowed.
	t.Cleanup(func() { _ = h.p.Shutdown(context.Background()) })
}

func (h *harness) depth() float64 {
	return testutil.ToFloat64(h.m.QueueDepth.WithLabelValues("pipeline"))
}

// counter returns the value of a counter family's series with the given
// labels, 0 if the series does not exist.
func (h *harness) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// batch builds a batch of n events with messages prefix-0 … prefix-(n-1).
func batch(prefix string, n int) *collector.Batch {
	b := collector.NewBatch("test")
	for i := 0; i < n; i++ {
		e := b.Next()
		e.Timestamp = time.Date(2026, 11, 22, 8, 15, 0, 0, time.UTC)
		e.AddString(collector.FieldMessage, prefix+"-"+strconv.Itoa(i))
	}
	return b
}

// recordingSink counts every message it is handed; it copies what it keeps,
// as a sink must.
type recordingSink struct {
	name string

	mu      sync.Mutex
	seen    map[string]int
	events  int
	batches int
	check   func(b *collector.Batch) error // optional, runs inside Consume
}

func newRecordingSink(name string) *recordingSink {
	return &recordingSink{name: name, seen: map[string]int{}}
}

func (s *recordingSink) Name() string                   { return s.name }
func (s *recordingSink) Start(context.Context) error    { return nil }
func (s *recordingSink) Shutdown(context.Context) error { return nil }
func (s *recordingSink) Consume(_ context.Context, b *collector.Batch) error {
	var err error
	if s.check != nil {
		err = s.check(b)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches++
	for i := range b.Events {
		s.seen[strings.Clone(b.Events[i].Message())]++
		s.events++
	}
	return err
}

func (s *recordingSink) count() (events, batches int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events, s.batches
}

// gateSink holds every Consume call until the test opens the gate (or the
// pipeline cancels its sinks' context), and tells the test when a call
// comes in and how many run at once.
type gateSink struct {
	entered chan int // the size of each batch that arrives
	gate    chan struct{}

	mu          sync.Mutex
	events      int
	running     int
	maxRunning  int
	ctxCanceled int
}

func newGateSink() *gateSink {
	return &gateSink{entered: make(chan int, 100), gate: make(chan struct{})}
}

func (s *gateSink) Name() string                   { return "gate" }
func (s *gateSink) Start(context.Context) error    { return nil }
func (s *gateSink) Shutdown(context.Context) error { return nil }
func (s *gateSink) Consume(ctx context.Context, b *collector.Batch) error {
	s.mu.Lock()
	s.running++
	s.maxRunning = max(s.maxRunning, s.running)
	s.mu.Unlock()
	s.entered <- b.Len()
	var err error
	select {
	case <-s.gate:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running--
	if err != nil {
		s.ctxCanceled++
		return err
	}
	s.events += b.Len()
	return nil
}

func (s *gateSink) open() { close(s.gate) }

func (s *gateSink) stats() (events, maxRunning, ctxCanceled int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events, s.maxRunning, s.ctxCanceled
}

// waitEntered waits for the next batch to reach the gate sink.
func (s *gateSink) waitEntered(t *testing.T) int {
	t.Helper()
	select {
	case n := <-s.entered:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("no batch reached the sink")
		return 0
	}
}

// await runs fn in a goroutine and returns a channel with its result.
func await(fn func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- fn() }()
	return ch
}

// result waits for a result that must come; the bound only keeps a broken
// pipeline from hanging the test run.
func result(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return", what)
		return nil
	}
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  pipeline.Config
		want []string
	}{
		{pipeline.DefaultConfig(), nil},
		{pipeline.Config{QueueSize: 1, Workers: 1024}, nil},
		{pipeline.Config{QueueSize: 0, Workers: 1}, []string{"queue_size: must be at least 1, got 0"}},
		{pipeline.Config{QueueSize: 10, Workers: 0}, []string{"workers: must be between 1 and 1024, got 0"}},
		{pipeline.Config{QueueSize: -1, Workers: 1025}, []string{"queue_size:", "workers: must be between 1 and 1024, got 1025"}},
	} {
		err := tc.cfg.Validate()
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("%+v: unexpected error %v", tc.cfg, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%+v: no error, want %q", tc.cfg, tc.want)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %q does not contain %q", tc.cfg, err, w)
			}
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, tc := range []struct {
		pol  pipeline.Policy
		want []string
	}{
		{pipeline.Policy{WhenFull: pipeline.Block}, nil},
		{pipeline.Policy{WhenFull: pipeline.Block, BlockTimeout: time.Second}, nil},
		{pipeline.Policy{WhenFull: pipeline.DropNewest}, nil},
		{pipeline.Policy{WhenFull: "drop_oldest"}, []string{`when_full: must be "block" or "drop_newest", got "drop_oldest"`}},
		{pipeline.Policy{WhenFull: "", BlockTimeout: -time.Second}, []string{"when_full:", "block_timeout: must not be negative, got -1s"}},
	} {
		err := tc.pol.Validate()
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("%+v: unexpected error %v", tc.pol, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%+v: no error, want %q", tc.pol, tc.want)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %q does not contain %q", tc.pol, err, w)
			}
		}
	}
}

func TestConcurrentSubmitReachesEverySinkExactlyOnce(t *testing.T) {
	a, b := newRecordingSink("a"), newRecordingSink("b")
	h := newHarness(t, pipeline.Config{QueueSize: 64, Workers: 4}, nil, a, b)
	h.start(t)

	const senders, batchesEach = 16, 40
	var wg sync.WaitGroup
	errs := make(chan error, senders*batchesEach)
	want := 0
	for g := 0; g < senders; g++ {
		for i := 0; i < batchesEach; i++ {
			want += 1 + (g+i)%7
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < batchesEach; i++ {
				bt := batch(fmt.Sprintf("g%d-b%d", g, i), 1+(g+i)%7)
				if err := h.p.Submit(context.Background(), bt, block); err != nil {
					errs <- err
				}
				bt.Release()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Submit: %v", err)
	}

	for _, s := range []*recordingSink{a, b} {
		events, _ := s.count()
		if events != want {
			t.Errorf("sink %s got %d events, want %d", s.name, events, want)
		}
		s.mu.Lock()
		for g := 0; g < senders; g++ {
			for i := 0; i < batchesEach; i++ {
				for j := 0; j < 1+(g+i)%7; j++ {
					msg := fmt.Sprintf("g%d-b%d-%d", g, i, j)
					if n := s.seen[msg]; n != 1 {
						t.Errorf("sink %s saw %q %d times, want once", s.name, msg, n)
					}
				}
			}
		}
		if len(s.seen) != want {
			t.Errorf("sink %s saw %d distinct messages, want %d", s.name, len(s.seen), want)
		}
		s.mu.Unlock()
	}
	if got := h.counter(t, "leitstand_events_sent_total", map[string]string{"component": "a"}); got != float64(want) {
		t.Errorf("events_sent_total{component=a} = %v, want %d", got, want)
	}
	if d := h.depth(); d != 0 {
		t.Errorf("queue depth after all Submits returned = %v, want 0", d)
	}
}

// addStage adds a field to every event, out of key order.
type addStage struct{}

func (addStage) Name() string { return "add" }
func (addStage) Process(b *collector.Batch) {
	for i := range b.Events {
		b.Events[i].AddString("aaa.stage", "ran")
	}
}

func TestStagesNormalizeAndIngestedBeforeSinks(t *testing.T) {
	s := newRecordingSink("check")
	var checked int
	s.check = func(b *collector.Batch) error {
		want := b.Ingested()
		if want == "" {
			return errors.New("batch has no ingested time")
		}
		for i := range b.Events {
			e := &b.Events[i]
			checked++
			keys := make([]string, len(e.Fields))
			for j, f := range e.Fields {
				keys[j] = f.Key
			}
			if !slices.IsSorted(keys) {
				return fmt.Errorf("fields not in key order: %v", keys)
			}
			if len(slices.Compact(slices.Clone(keys))) != len(keys) {
				return fmt.Errorf("repeated key left: %v", keys)
			}
			if got, _ := e.Get(collector.FieldIngested); got != want {
				return fmt.Errorf("event.ingested = %q, want %q", got, want)
			}
			if got, _ := e.Get("aaa.stage"); got != "ran" {
				return fmt.Errorf("stage field = %q, want ran", got)
			}
			if got, _ := e.Get("zeta"); got != "second" {
				return fmt.Errorf("repeated key kept %q, want the last value", got)
			}
		}
		return nil
	}
	h := newHarness(t, pipeline.Config{QueueSize: 16, Workers: 2}, []collector.Stage{addStage{}}, s)
	h.start(t)

	b := collector.NewBatch("test")
	defer b.Release()
	b.Received = time.Date(2026, 11, 22, 8, 15, 0, 5, time.UTC)
	for i := 0; i < 3; i++ {
		e := b.Next()
		e.AddString("zeta", "first")
		e.AddString(collector.FieldMessage, "m"+strconv.Itoa(i))
		e.AddString(collector.FieldDataset, "app")
		e.AddString("zeta", "second")
	}
	if err := h.p.Submit(context.Background(), b, block); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if checked != 3 {
		t.Fatalf("sink checked %d events, want 3", checked)
	}
	if got, _ := b.Events[0].Get(collector.FieldIngested); got != "2026-11-22T08:15:00.000000005Z" {
		t.Fatalf("event.ingested = %q, want the batch's Received time", got)
	}
}

type failingSink struct{ err error }

func (f failingSink) Name() string                                    { return "broken" }
func (f failingSink) Start(context.Context) error                     { return nil }
func (f failingSink) Shutdown(context.Context) error                  { return nil }
func (f failingSink) Consume(context.Context, *collector.Batch) error { return f.err }

func TestFailingSinkErrorReturnedOthersStillServed(t *testing.T) {
	errDisk := errors.New("disk on fire")
	before, after := newRecordingSink("before"), newRecordingSink("after")
	h := newHarness(t, pipeline.Config{QueueSize: 16, Workers: 1}, nil, before, failingSink{errDisk}, after)
	h.start(t)

	b := batch("x", 5)
	defer b.Release()
	err := h.p.Submit(context.Background(), b, block)
	if !errors.Is(err, errDisk) {
		t.Fatalf("Submit = %v, want the sink's error", err)
	}
	if !strings.Contains(err.Error(), "sink broken") {
		t.Errorf("error %q does not name the sink", err)
	}
	for _, s := range []*recordingSink{before, after} {
		if events, batches := s.count(); events != 5 || batches != 1 {
			t.Errorf("sink %s got %d events in %d batches, want 5 in 1", s.name, events, batches)
		}
	}
	if got := h.counter(t, "leitstand_events_failed_total", map[string]string{"component": "broken", "reason": "error"}); got != 5 {
		t.Errorf("events_failed_total{component=broken} = %v, want 5", got)
	}
	if got := h.counter(t, "leitstand_events_sent_total", map[string]string{"component": "broken"}); got != 0 {
		t.Errorf("events_sent_total{component=broken} = %v, want 0", got)
	}
	if got := h.counter(t, "leitstand_events_sent_total", map[string]string{"component": "after"}); got != 5 {
		t.Errorf("events_sent_total{component=after} = %v, want 5", got)
	}
}

// TestFireAndForgetSinkFailureCountedAsDropped: a batch enqueued without
// waiting (UDP syslog) that a sink refuses is lost; it must be counted as
// dropped for its source, or the source's counters cannot be reconciled.
func TestFireAndForgetSinkFailureCountedAsDropped(t *testing.T) {
	h := newHarness(t, pipeline.Config{QueueSize: 16, Workers: 1}, nil, failingSink{collector.ErrQueueFull})
	h.start(t)
	b := batch("udp", 7)
	b.Source = "syslog_udp"
	if err := h.p.Enqueue(context.Background(), b, drop); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the drop is counted", func() bool {
		return h.counter(t, "leitstand_events_dropped_total", map[string]string{"component": "syslog_udp", "reason": "sink_refused"}) == 7
	})
	if got := h.counter(t, "leitstand_events_failed_total", map[string]string{"component": "broken"}); got != 7 {
		t.Errorf("events_failed_total{component=broken} = %v, want 7", got)
	}
}

// fillQueue submits a batch of exactly the queue's size and waits until a
// worker holds it in the gate sink, so the queue has no free place.
func fillQueue(t *testing.T, h *harness, s *gateSink, size int) (<-chan error, *collector.Batch) {
	t.Helper()
	b := batch("fill", size)
	res := await(func() error { return h.p.Submit(context.Background(), b, block) })
	if n := s.waitEntered(t); n != size {
		t.Fatalf("sink got a batch of %d, want %d", n, size)
	}
	if d := h.depth(); d != float64(size) {
		t.Fatalf("queue depth with a batch in the sink = %v, want %d", d, size)
	}
	return res, b
}

func TestQueueFullDropNewestRefusesAtOnce(t *testing.T) {
	s := newGateSink()
	h := newHarness(t, pipeline.Config{QueueSize: 4, Workers: 2}, nil, s)
	h.start(t)
	first, fb := fillQueue(t, h, s, 4)

	// The sink holds the only batch until the gate opens, so a call that
	// returns here cannot have waited for room.
	b := batch("late", 1)
	if err := h.p.Submit(context.Background(), b, drop); !errors.Is(err, collector.ErrQueueFull) {
		t.Fatalf("Submit with drop_newest on a full queue = %v, want ErrQueueFull", err)
	}
	if err := h.p.Enqueue(context.Background(), b, drop); !errors.Is(err, collector.ErrQueueFull) {
		t.Fatalf("Enqueue with drop_newest on a full queue = %v, want ErrQueueFull", err)
	}
	if b.Len() != 1 || b.Source != "test" {
		t.Fatal("a refused Enqueue released the caller's batch")
	}
	if d := h.depth(); d != 4 {
		t.Errorf("queue depth after refusals = %v, want 4", d)
	}

	s.open()
	if err := result(t, first, "Submit of the first batch"); err != nil {
		t.Fatalf("first Submit: %v", err)
	}
	fb.Release()
	// Room again: the same batch now goes through.
	if err := h.p.Submit(context.Background(), b, drop); err != nil {
		t.Fatalf("Submit after the queue emptied: %v", err)
	}
	b.Release()
	if events, _, _ := s.stats(); events != 5 {
		t.Fatalf("sink got %d events, want 5", events)
	}
}

func TestQueueFullBlockTimesOut(t *testing.T) {
	s := newGateSink()
	h := newHarness(t, pipeline.Config{QueueSize: 4, Workers: 2}, nil, s)
	h.start(t)
	first, fb := fillQueue(t, h, s, 4)

	b := batch("late", 2)
	pol := pipeline.Policy{WhenFull: pipeline.Block, BlockTimeout: 20 * time.Millisecond}
	// The gate stays shut until the call returns, so only the timeout can
	// end it.
	if err := h.p.Submit(context.Background(), b, pol); !errors.Is(err, collector.ErrQueueFull) {
		t.Fatalf("Submit with block_timeout on a full queue = %v, want ErrQueueFull", err)
	}
	// A caller that hangs up while waiting is refused the same way.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.p.Submit(ctx, b, block); !errors.Is(err, collector.ErrQueueFull) {
		t.Fatalf("Submit with a cancelled context on a full queue = %v, want ErrQueueFull", err)
	}
	if d := h.depth(); d != 4 {
		t.Errorf("queue depth after timeouts = %v, want 4", d)
	}
	s.open()
	if err := result(t, first, "first Submit"); err != nil {
		t.Fatal(err)
	}
	fb.Release()
	b.Release()
	if events, _, _ := s.stats(); events != 4 {
		t.Fatalf("sink got %d events, want only the first batch's 4", events)
	}
}

func TestQueueFullBlockWaitsForRoom(t *testing.T) {
	s := newGateSink()
	h := newHarness(t, pipeline.Config{QueueSize: 4, Workers: 2}, nil, s)
	h.start(t)
	first, fb := fillQueue(t, h, s, 4)

	b := batch("waiter", 3)
	second := await(func() error { return h.p.Submit(context.Background(), b, block) })
	select {
	case err := <-second:
		t.Fatalf("Submit on a full queue returned %v before any room was free", err)
	default:
	}
	s.open()
	if err := result(t, first, "first Submit"); err != nil {
		t.Fatal(err)
	}
	if err := result(t, second, "blocked Submit"); err != nil {
		t.Fatalf("blocked Submit: %v", err)
	}
	fb.Release()
	b.Release()
	events, maxRunning, _ := s.stats()
	if events != 7 {
		t.Errorf("sink got %d events, want 7", events)
	}
	// Two workers were free: had the waiter not waited for room, both
	// batches would have been in the sink at once.
	if maxRunning != 1 {
		t.Errorf("%d batches were in the sink at once; the waiter did not wait for room", maxRunning)
	}
	if d := h.depth(); d != 0 {
		t.Errorf("queue depth = %v, want 0", d)
	}
}

func TestBatchLargerThanQueueGoesThrough(t *testing.T) {
	s := newRecordingSink("big")
	h := newHarness(t, pipeline.Config{QueueSize: 4, Workers: 2}, nil, s)
	h.start(t)
	for _, pol := range []pipeline.Policy{block, drop} {
		b := batch("big-"+pol.WhenFull, 10)
		if err := h.p.Submit(context.Background(), b, pol); err != nil {
			t.Fatalf("Submit of 10 events into a queue of 4 (%s): %v", pol.WhenFull, err)
		}
		b.Release()
	}
	if events, batches := s.count(); events != 20 || batches != 2 {
		t.Fatalf("sink got %d events in %d batches, want 20 in 2", events, batches)
	}
	if d := h.depth(); d != 0 {
		t.Errorf("queue depth = %v, want 0", d)
	}
}

// A Submit that has returned must have given its places back: a source that
// sends one full-queue batch after another with drop_newest is never refused.
func TestSubmitReturnsItsPlacesBeforeReturning(t *testing.T) {
	s := newRecordingSink("seq")
	h := newHarness(t, pipeline.Config{QueueSize: 8, Workers: 4}, nil, s)
	h.start(t)
	for i := 0; i < 300; i++ {
		b := batch("seq", 8)
		if err := h.p.Submit(context.Background(), b, drop); err != nil {
			t.Fatalf("Submit %d into an idle pipeline: %v", i, err)
		}
		b.Release()
		if d := h.depth(); d != 0 {
			t.Fatalf("queue depth after Submit %d returned = %v, want 0", i, d)
		}
	}
}

func TestEmptyBatch(t *testing.T) {
	s := newRecordingSink("empty")
	h := newHarness(t, pipeline.Config{QueueSize: 4, Workers: 1}, nil, s)
	h.start(t)
	b := collector.NewBatch("test")
	if err := h.p.Submit(context.Background(), b, drop); err != nil {
		t.Fatalf("Submit of an empty batch: %v", err)
	}
	b.Release()
	if err := h.p.Enqueue(context.Background(), collector.NewBatch("test"), drop); err != nil {
		t.Fatalf("Enqueue of an empty batch: %v", err)
	}
	if _, batches := s.count(); batches != 0 {
		t.Fatalf("sinks got %d empty batches, want none", batches)
	}
}

func TestSubmitKeepsCallerOwnership(t *testing.T) {
	s := newRecordingSink("own")
	h := newHarness(t, pipeline.Config{QueueSize: 4, Workers: 1}, nil, s)
	h.start(t)
	b := batch("own", 3)
	defer b.Release()
	if err := h.p.Submit(context.Background(), b, block); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 3 || b.Source != "test" || b.Events[2].Message() != "own-2" {
		t.Fatalf("Submit released or changed the caller's batch: %d events, source %q", b.Len(), b.Source)
	}
}

func TestEnqueueReleasesBatch(t *testing.T) {
	s := newRecordingSink("count")
	h := newHarness(t, pipeline.Config{QueueSize: 64, Workers: 2}, nil, s)
	h.start(t)
	var batches []*collector.Batch
	for i := 0; i < 10; i++ {
		b := batch("ff"+strconv.Itoa(i), 3)
		if err := h.p.Enqueue(context.Background(), b, block); err != nil {
			t.Fatalf("Enqueue: %v", err)
		}
		batches = append(batches, b)
	}
	// Shutdown drains, and its return orders every worker's work before
	// what follows, so the batches can be looked at without a race.
	if err := h.p.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if events, n := s.count(); events != 30 || n != 10 {
		t.Fatalf("sink got %d events in %d batches, want 30 in 10", events, n)
	}
	s.mu.Lock()
	for i := 0; i < 10; i++ {
		for j := 0; j < 3; j++ {
			if msg := fmt.Sprintf("ff%d-%d", i, j); s.seen[msg] != 1 {
				t.Errorf("sink saw %q %d times, want once", msg, s.seen[msg])
			}
		}
	}
	s.mu.Unlock()
	for i, b := range batches {
		// Release empties the batch and clears its source.
		if b.Len() != 0 || b.Source != "" {
			t.Errorf("batch %d was not released: %d events, source %q", i, b.Len(), b.Source)
		}
	}
	if d := h.depth(); d != 0 {
		t.Errorf("queue depth = %v, want 0", d)
	}
}

// dropStage removes the last event of every batch, as a filter would.
type dropStage struct{}

func (dropStage) Name() string { return "drop-last" }
func (dropStage) Process(b *collector.Batch) {
	if b.Len() > 0 {
		b.Drop()
	}
}

func TestDepthReturnsToZeroWhenAStageDropsEvents(t *testing.T) {
	s := newRecordingSink("after-filter")
	h := newHarness(t, pipeline.Config{QueueSize: 16, Workers: 2}, []collector.Stage{dropStage{}}, s)
	h.start(t)
	for i := 0; i < 5; i++ {
		b := batch("f", 4)
		if err := h.p.Submit(context.Background(), b, drop); err != nil {
			t.Fatalf("Submit %d: %v", i, err)
		}
		b.Release()
	}
	if events, _ := s.count(); events != 15 {
		t.Fatalf("sink got %d events, want 15", events)
	}
	if d := h.depth(); d != 0 {
		t.Fatalf("queue depth = %v, want 0", d)
	}
	// The places must be back too: a full-queue batch is taken without waiting.
	b := batch("full", 16)
	defer b.Release()
	if err := h.p.Submit(context.Background(), b, drop); err != nil {
		t.Fatalf("Submit of a full-queue batch after filtering: %v", err)
	}
}

func TestSubmitAfterShutdown(t *testing.T) {
	s := newRecordingSink("closed")
	h := newHarness(t, pipeline.Config{QueueSize: 4, Workers: 1}, nil, s)
	h.start(t)
	if err := h.p.Ready(); err != nil {
		t.Fatalf("Ready before Shutdown: %v", err)
	}
	if err := h.p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := h.p.Ready(); !errors.Is(err, collector.ErrClosed) {
		t.Fatalf("Ready after Shutdown = %v, want ErrClosed", err)
	}
	b := batch("late", 2)
	defer b.Release()
	for _, pol := range []pipeline.Policy{block, drop} {
		if err := h.p.Submit(context.Background(), b, pol); !errors.Is(err, collector.ErrClosed) {
			t.Errorf("Submit after Shutdown (%s) = %v, want ErrClosed", pol.WhenFull, err)
		}
		if err := h.p.Enqueue(context.Background(), b, pol); !errors.Is(err, collector.ErrClosed) {
			t.Errorf("Enqueue after Shutdown (%s) = %v, want ErrClosed", pol.WhenFull, err)
		}
	}
	if b.Len() != 2 {
		t.Error("a refused Enqueue released the caller's batch")
	}
	if _, batches := s.count(); batches != 0 {
		t.Errorf("sink got %d batches after Shutdown", batches)
	}
	if d := h.depth(); d != 0 {
		t.Errorf("queue depth = %v, want 0", d)
	}
}

func TestShutdownDrainsQueuedBatches(t *testing.T) {
	s := newGateSink()
	h := newHarness(t, pipeline.Config{QueueSize: 100, Workers: 1}, nil, s)
	h.start(t)

	submitted := await(func() error {
		b := batch("acked", 5)
		defer b.Release()
		return h.p.Submit(context.Background(), b, block)
	})
	s.waitEntered(t) // the one worker is now held in the sink
	for i := 0; i < 6; i++ {
		if err := h.p.Enqueue(context.Background(), batch("queued"+strconv.Itoa(i), 5), block); err != nil {
			t.Fatalf("Enqueue: %v", err)
		}
	}
	if d := h.depth(); d != 35 {
		t.Fatalf("queue depth = %v, want 35", d)
	}

	shutdown := await(func() error { return h.p.Shutdown(context.Background()) })
	// Shutdown is under way (no new batches) while everything is still
	// queued; only then may the sink move.
	eventually(t, "Shutdown to close the pipeline", func() bool { return h.p.Ready() != nil })
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned (%v) with 35 events still queued", err)
	default:
	}
	s.open()
	if err := result(t, shutdown, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := result(t, submitted, "Submit"); err != nil {
		t.Fatalf("Submit during drain: %v", err)
	}
	if events, _, canceled := s.stats(); events != 35 || canceled != 0 {
		t.Fatalf("sink got %d events (%d calls cancelled), want all 35", events, canceled)
	}
	if d := h.depth(); d != 0 {
		t.Errorf("queue depth = %v, want 0", d)
	}
}

func TestShutdownDeadlineReportsEventsLeft(t *testing.T) {
	s := newGateSink()
	h := newHarness(t, pipeline.Config{QueueSize: 100, Workers: 1}, nil, s)
	h.start(t)
	if err := h.p.Enqueue(context.Background(), batch("held", 3), block); err != nil {
		t.Fatal(err)
	}
	s.waitEntered(t)
	if err := h.p.Enqueue(context.Background(), batch("queued", 2), block); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := h.p.Shutdown(ctx)
	if err == nil {
		t.Fatal("Shutdown with an expired deadline and 5 events in the pipeline returned nil")
	}
	if !strings.Contains(err.Error(), "5 events") {
		t.Errorf("Shutdown error %q does not say how many events were left (5)", err)
	}
	// The sinks' context is cancelled, so the held call gives up, and a
	// second Shutdown waits for the workers to finish.
	if err := h.p.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if _, _, canceled := s.stats(); canceled != 2 {
		t.Errorf("%d sink calls saw a cancelled context, want 2", canceled)
	}
	if d := h.depth(); d != 0 {
		t.Errorf("queue depth = %v, want 0", d)
	}
}

func TestShutdownExpiredDeadlineOnIdlePipeline(t *testing.T) {
	h := newHarness(t, pipeline.Config{QueueSize: 4, Workers: 4}, nil, newRecordingSink("idle"))
	h.start(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Nothing is left to drain, so the expired deadline is no failure.
	if err := h.p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown of an idle pipeline with an expired context: %v", err)
	}
}

func TestLifecycle(t *testing.T) {
	t.Run("shutdown without start, twice", func(t *testing.T) {
		h := newHarness(t, pipeline.Config{QueueSize: 4, Workers: 2}, nil, newRecordingSink("s"))
		for i := 0; i < 2; i++ {
			if err := h.p.Shutdown(context.Background()); err != nil {
				t.Fatalf("Shutdown %d without Start: %v", i+1, err)
			}
		}
		if err := h.p.Start(context.Background()); err == nil {
			t.Fatal("Start after Shutdown succeeded")
		}
		b := batch("x", 1)
		defer b.Release()
		if err := h.p.Submit(context.Background(), b, block); !errors.Is(err, collector.ErrClosed) {
			t.Fatalf("Submit after Shutdown = %v, want ErrClosed", err)
		}
	})
	t.Run("start, shutdown twice", func(t *testing.T) {
		h := newHarness(t, pipeline.Config{QueueSize: 4, Workers: 2}, nil, newRecordingSink("s"))
		if err := h.p.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := h.p.Start(context.Background()); err == nil {
			t.Fatal("second Start succeeded")
		}
		for i := 0; i < 2; i++ {
			if err := h.p.Shutdown(context.Background()); err != nil {
				t.Fatalf("Shutdown %d: %v", i+1, err)
			}
		}
	})
	t.Run("batches queued before a start that never comes", func(t *testing.T) {
		s := newRecordingSink("s")
		h := newHarness(t, pipeline.Config{QueueSize: 8, Workers: 2}, nil, s)
		acked := batch("acked", 2)
		defer acked.Release()
		submitted := await(func() error { return h.p.Submit(context.Background(), acked, block) })
		ff := batch("ff", 3)
		if err := h.p.Enqueue(context.Background(), ff, block); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the Submit to be queued", func() bool { return h.depth() == 5 })
		if err := h.p.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown without Start: %v", err)
		}
		if err := result(t, submitted, "Submit queued before Shutdown"); !errors.Is(err, collector.ErrClosed) {
			t.Fatalf("Submit queued before a Shutdown without Start = %v, want ErrClosed", err)
		}
		if ff.Len() != 0 {
			t.Error("a fire-and-forget batch the pipeline owned was not released")
		}
		if _, batches := s.count(); batches != 0 {
			t.Errorf("sink got %d batches without Start", batches)
		}
		if d := h.depth(); d != 0 {
			t.Errorf("queue depth = %v, want 0", d)
		}
	})
}

func TestQueueGauges(t *testing.T) {
	h := newHarness(t, pipeline.Config{QueueSize: 123, Workers: 1}, nil, newRecordingSink("g"))
	if got := testutil.ToFloat64(h.m.QueueCapacity.WithLabelValues("pipeline")); got != 123 {
		t.Fatalf("queue capacity = %v, want 123", got)
	}
	if d := h.depth(); d != 0 {
		t.Fatalf("queue depth of a new pipeline = %v, want 0", d)
	}
}
