package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leitstand/leitstand/collector"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// recordingSink keeps what it accepted; fail makes it refuse while set.
type recordingSink struct {
	name string
	mu   sync.Mutex
	ids  []string
	msgs []string
	fail error
	got  chan struct{} // signalled after each accepted batch
}

func newRecordingSink(name string) *recordingSink {
	return &recordingSink{name: name, got: make(chan struct{}, 1024)}
}

func (r *recordingSink) Name() string                   { return r.name }
func (r *recordingSink) Start(context.Context) error    { return nil }
func (r *recordingSink) Shutdown(context.Context) error { return nil }
func (r *recordingSink) Consume(_ context.Context, b *collector.Batch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	for i := range b.Events {
		// Clone: the batch's memory is reused once Consume returns.
		r.ids = append(r.ids, strings.Clone(b.Events[i].ID))
		r.msgs = append(r.msgs, strings.Clone(b.Events[i].Message()))
	}
	select {
	case r.got <- struct{}{}:
	default:
	}
	return nil
}

func (r *recordingSink) setFail(err error) {
	r.mu.Lock()
	r.fail = err
	r.mu.Unlock()
}

func (r *recordingSink) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// waitFor polls until the sink holds n events.
func (r *recordingSink) waitFor(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("sink %s has %d events after 10s, want %d", r.name, r.count(), n)
		}
		select {
		case <-r.got:
		case <-time.After(10 * time.Millisecond):
		}
	}
	if c := r.count(); c != n {
		t.Fatalf("sink %s has %d events, want exactly %d", r.name, c, n)
	}
}

func testConfig(dir string) Config {
	c := DefaultConfig()
	c.Dir = dir
	c.SegmentBytes = 64 << 10
	c.MaxBytes = 16 << 20
	c.SyncInterval = time.Millisecond
	c.RetryInitial = 5 * time.Millisecond
	c.RetryMax = 20 * time.Millisecond
	c.CursorSyncInterval = 10 * time.Millisecond
	return c
}

func open(t *testing.T, cfg Config, sinks ...collector.Sink) (*Spool, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s := New(cfg, sinks, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, reg
}

// batch makes n events with messages prefix-0 … prefix-(n-1).
func batch(prefix string, n int) *collector.Batch {
	b := collector.NewBatch("test")
	for i := 0; i < n; i++ {
		e := b.Next()
		e.Timestamp = time.Unix(1764000000, int64(i)).UTC()
		e.AddString("message", prefix+"-"+strconv.Itoa(i))
		e.Add("n", collector.KindNumber, strconv.Itoa(i))
		e.Add("tags", collector.KindRaw, `["a"]`)
	}
	return b
}

func appendBatch(t *testing.T, s *Spool, prefix string, n int) {
	t.Helper()
	b := batch(prefix, n)
	defer b.Release()
	if err := s.Consume(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

func TestEventsComeBackExactlyWithStableIDs(t *testing.T) {
	sink := &fieldSink{}
	s, _ := open(t, testConfig(t.TempDir()), sink)
	b := batch("m", 3)
	b.Events[1].ID = "source-id"
	if err := s.Consume(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	want := make([]string, 3)
	for i := range b.Events {
		want[i] = fmt.Sprintf("%s|%s", b.Events[i].Timestamp.Format(time.RFC3339Nano), b.Events[i].AppendJSON(nil))
	}
	b.Release()
	deadline := time.Now().Add(5 * time.Second)
	for sink.len() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	s.Shutdown(context.Background())
	if sink.len() != 3 {
		t.Fatalf("delivered %d events, want 3", sink.len())
	}
	for i := range want {
		if sink.docs[i] != want[i] {
			t.Errorf("event %d changed on its way through the spool:\n got %s\nwant %s", i, sink.docs[i], want[i])
		}
	}
	if sink.ids[1] != "source-id" {
		t.Errorf("an event's own id was replaced: %q", sink.ids[1])
	}
	if sink.ids[0] != s.id+"-1-0" || sink.ids[2] != s.id+"-1-2" {
		t.Errorf("position ids: %v (spool id %s)", sink.ids, s.id)
	}
}

// fieldSink keeps each event's timestamp and encoding.
type fieldSink struct {
	mu   sync.Mutex
	docs []string
	ids  []string
}

func (f *fieldSink) Name() string                   { return "fields" }
func (f *fieldSink) Start(context.Context) error    { return nil }
func (f *fieldSink) Shutdown(context.Context) error { return nil }
func (f *fieldSink) Consume(_ context.Context, b *collector.Batch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range b.Events {
		e := &b.Events[i]
		f.docs = append(f.docs, fmt.Sprintf("%s|%s", e.Timestamp.UTC().Format(time.RFC3339Nano), e.AppendJSON(nil)))
		f.ids = append(f.ids, strings.Clone(e.ID))
	}
	return nil
}
func (f *fieldSink) len() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.docs) }

func TestSinksAreIndependentAndRetried(t *testing.T) {
	good, flaky := newRecordingSink("good"), newRecordingSink("flaky")
	flaky.setFail(errors.New("peer down"))
	s, reg := open(t, testConfig(t.TempDir()), good, flaky)
	defer s.Shutdown(context.Background())
	for i := 0; i < 20; i++ {
		appendBatch(t, s, fmt.Sprintf("b%d", i), 50)
	}
	good.waitFor(t, 1000)
	if flaky.count() != 0 {
		t.Fatal("a failing sink accepted events")
	}
	if lag := gaugeWithLabel(t, reg, "leitstand_spool_sink_lag_records", "flaky"); lag != 20 {
		t.Fatalf("lag of the failing sink = %v records, want 20", lag)
	}
	if age := testutil.ToFloat64(gaugeCollector(t, reg, "leitstand_spool_oldest_record_age_seconds")); age <= 0 {
		t.Fatalf("oldest record age = %v while a sink is behind", age)
	}
	flaky.setFail(nil)
	flaky.waitFor(t, 1000)
	// Order is kept.
	flaky.mu.Lock()
	defer flaky.mu.Unlock()
	if flaky.msgs[0] != "b0-0" || flaky.msgs[999] != "b19-49" {
		t.Fatalf("order lost: first %s last %s", flaky.msgs[0], flaky.msgs[999])
	}
}

func TestRestartResumesFromTheCursors(t *testing.T) {
	dir := t.TempDir()
	sink := newRecordingSink("es")
	s, _ := open(t, testConfig(dir), sink)
	appendBatch(t, s, "first", 100)
	sink.waitFor(t, 100)
	sink.setFail(errors.New("down"))
	appendBatch(t, s, "second", 100)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	sink2 := newRecordingSink("es")
	s2, _ := open(t, testConfig(dir), sink2)
	defer s2.Shutdown(context.Background())
	sink2.waitFor(t, 100)
	sink2.mu.Lock()
	defer sink2.mu.Unlock()
	if sink2.msgs[0] != "second-0" {
		t.Fatalf("after the restart the sink got %s first; delivered records came again", sink2.msgs[0])
	}
}

// TestReplayAfterCrashKeepsIDs copies the spool directory while running,
// before the cursor is saved, which is what a crash leaves behind: the
// records come again, with the same ids.
func TestReplayAfterCrashKeepsIDs(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.CursorSyncInterval = time.Hour
	sink := newRecordingSink("es")
	s, _ := open(t, cfg, sink)
	appendBatch(t, s, "x", 10)
	sink.waitFor(t, 10)
	crashed := t.TempDir()
	copyDir(t, dir, crashed)
	s.Shutdown(context.Background())

	again := newRecordingSink("es")
	s2, _ := open(t, testConfig(crashed), again)
	defer s2.Shutdown(context.Background())
	again.waitFor(t, 10)
	if fmt.Sprint(again.ids) != fmt.Sprint(sink.ids) {
		t.Fatalf("ids changed on replay:\n%v\n%v", again.ids, sink.ids)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o750)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o640)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestTornTailIsCutAndCounted(t *testing.T) {
	dir := t.TempDir()
	sink := newRecordingSink("es")
	sink.setFail(errors.New("down"))
	s, _ := open(t, testConfig(dir), sink)
	appendBatch(t, s, "kept", 5)
	appendBatch(t, s, "torn", 5)
	s.Shutdown(context.Background())

	// Tear the last record: keep its header and half its payload.
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	sort.Strings(segs)
	var last string
	for _, p := range segs {
		if info, _ := os.Stat(p); info.Size() > 0 {
			last = p
		}
	}
	data, _ := os.ReadFile(last)
	n, _, _ := recordHeader(data)
	second := headerSize + n
	torn := len(data) - (len(data)-second)/2
	if err := os.WriteFile(last, data[:torn], 0o640); err != nil {
		t.Fatal(err)
	}

	sink2 := newRecordingSink("es")
	s2, reg := open(t, testConfig(dir), sink2)
	defer s2.Shutdown(context.Background())
	sink2.waitFor(t, 5)
	if got := testutil.ToFloat64(s2.m.tornBytes); got != float64(torn-second) {
		t.Fatalf("torn bytes = %v, want %d", got, torn-second)
	}
	_ = reg
	// New appends after the cut are read normally.
	appendBatch(t, s2, "after", 3)
	sink2.waitFor(t, 8)
}

func TestWhenFull(t *testing.T) {
	for _, policy := range []string{Refuse, Block, DropOldest} {
		t.Run(policy, func(t *testing.T) {
			cfg := testConfig(t.TempDir())
			cfg.MaxBytes = 2 * cfg.SegmentBytes
			cfg.WhenFull = policy
			cfg.BlockTimeout = 30 * time.Millisecond
			sink := newRecordingSink("down")
			sink.setFail(errors.New("down"))
			s, _ := open(t, cfg, sink)
			defer s.Shutdown(context.Background())
			var err error
			appended := 0
			for i := 0; i < 200 && err == nil; i++ {
				b := batch(fmt.Sprintf("b%d", i), 20)
				err = s.Consume(context.Background(), b)
				b.Release()
				if err == nil {
					appended++
				}
			}
			switch policy {
			case Refuse, Block:
				if !errors.Is(err, collector.ErrQueueFull) {
					t.Fatalf("a full spool answered %v, want ErrQueueFull", err)
				}
				if got := testutil.ToFloat64(s.m.refused); got != 20 {
					t.Fatalf("refused events = %v, want 20", got)
				}
			case DropOldest:
				if err != nil {
					t.Fatalf("drop_oldest refused: %v", err)
				}
				if testutil.ToFloat64(s.m.droppedRecords) == 0 {
					t.Fatal("no dropped records counted")
				}
				// What is left is delivered once the sink is back, newest included.
				sink.setFail(nil)
				deadline := time.Now().Add(5 * time.Second)
				for {
					sink.mu.Lock()
					n := len(sink.msgs)
					last := ""
					if n > 0 {
						last = sink.msgs[n-1]
					}
					sink.mu.Unlock()
					if last == "b199-19" {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("the newest event never arrived; last %q", last)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			s.mu.Lock()
			total := s.total
			s.mu.Unlock()
			if total > int64(cfg.MaxBytes) {
				t.Fatalf("spool holds %d bytes, over its cap of %d", total, cfg.MaxBytes)
			}
		})
	}
}

// TestFullIsLoggedOnceAndNamed: a spool at its cap answers ErrSpoolFull
// (which is an ErrQueueFull), logs one warning when it starts refusing,
// however many batches it refuses, and one line when it accepts again.
func TestFullIsLoggedOnceAndNamed(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.MaxBytes = 2 * cfg.SegmentBytes
	cfg.WhenFull = Refuse
	sink := newRecordingSink("down")
	sink.setFail(errors.New("down"))
	var logBuf syncBuf
	s := New(cfg, []collector.Sink{sink}, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(&logBuf, nil)))
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	refusals := 0
	for i := 0; i < 300 && refusals < 5; i++ {
		b := batch(fmt.Sprintf("b%d", i), 20)
		err := s.Consume(context.Background(), b)
		b.Release()
		if err != nil {
			if !errors.Is(err, collector.ErrSpoolFull) || !errors.Is(err, collector.ErrQueueFull) {
				t.Fatalf("a full spool answered %v, want ErrSpoolFull wrapping ErrQueueFull", err)
			}
			refusals++
		}
	}
	if refusals < 5 {
		t.Fatal("the spool never filled")
	}
	if n := strings.Count(logBuf.String(), "spool full: refusing"); n != 1 {
		t.Fatalf("%d 'spool full' lines for %d refusals, want 1:\n%s", n, refusals, logBuf.String())
	}
	sink.setFail(nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		b := batch("after", 1)
		err := s.Consume(context.Background(), b)
		b.Release()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refused after the sink recovered: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logBuf.String(), "spool has room again") || !strings.Contains(logBuf.String(), "events_refused=100") {
		t.Fatalf("no line saying the spool accepts again, with the count refused:\n%s", logBuf.String())
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestDeliveredSegmentsAreDeleted(t *testing.T) {
	dir := t.TempDir()
	sink := newRecordingSink("es")
	s, _ := open(t, testConfig(dir), sink)
	for i := 0; i < 40; i++ {
		appendBatch(t, s, "x", 50)
	}
	sink.waitFor(t, 2000)
	deadline := time.Now().Add(5 * time.Second)
	for {
		segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
		if len(segs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d segments left after everything was delivered", len(segs))
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.Shutdown(context.Background())
}

func TestGroupCommitSharesFsyncs(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.SyncInterval = 5 * time.Millisecond
	s, reg := open(t, cfg)
	defer s.Shutdown(context.Background())
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				b := batch("x", 10)
				if err := s.Consume(context.Background(), b); err != nil {
					t.Error(err)
				}
				b.Release()
			}
		}()
	}
	wg.Wait()
	syncs := histogramCount(t, reg, "leitstand_spool_fsync_duration_seconds")
	if syncs == 0 || syncs >= 160 {
		t.Fatalf("%d fsyncs for 160 concurrent appends; group commit should share them", syncs)
	}
	t.Logf("160 appends, %d fsyncs", syncs)
}

func TestLifecycle(t *testing.T) {
	s := New(testConfig(t.TempDir()), nil, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown without start: %v", err)
	}
	s2, _ := open(t, testConfig(t.TempDir()))
	if err := s2.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s2.Shutdown(context.Background()); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
	b := batch("x", 1)
	defer b.Release()
	if err := s2.Consume(context.Background(), b); !errors.Is(err, collector.ErrClosed) {
		t.Fatalf("append after shutdown: %v", err)
	}
}

func gaugeWithLabel(t *testing.T, reg *prometheus.Registry, name, sink string) float64 {
	t.Helper()
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.Metric {
				for _, l := range m.Label {
					if l.GetValue() == sink {
						return m.Gauge.GetValue()
					}
				}
			}
		}
	}
	t.Fatalf("no %s{sink=%q}", name, sink)
	return 0
}

func gaugeCollector(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name {
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
			g.Set(mf.Metric[0].Gauge.GetValue())
			return g
		}
	}
	t.Fatalf("no %s", name)
	return nil
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.Metric[0].Histogram.GetSampleCount()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}
