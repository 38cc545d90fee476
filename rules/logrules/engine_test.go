package logrules

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/notifier"
	"github.com/prometheus/prometheus/storage"

	"github.com/leitstand/leitstand/collector"
)

type sample struct {
	ls labels.Labels
	t  int64
	v  float64
}

// memStorage is an AppendableV2 that keeps committed samples.
type memStorage struct {
	mu      sync.Mutex
	samples []sample
}

type memAppender struct {
	s       *memStorage
	pending []sample
}

func (m *memStorage) AppenderV2(context.Context) storage.AppenderV2 { return &memAppender{s: m} }

func (a *memAppender) Append(_ storage.SeriesRef, ls labels.Labels, _, t int64, v float64, _ *histogram.Histogram, _ *histogram.FloatHistogram, _ storage.AppendV2Options) (storage.SeriesRef, error) {
	a.pending = append(a.pending, sample{ls, t, v})
	return 0, nil
}
func (a *memAppender) Commit() error {
	a.s.mu.Lock()
	a.s.samples = append(a.s.samples, a.pending...)
	a.s.mu.Unlock()
	return nil
}
func (a *memAppender) Rollback() error { return nil }

type memNotifier struct {
	mu     sync.Mutex
	alerts []*notifier.Alert
}

func (n *memNotifier) Send(as ...*notifier.Alert) {
	n.mu.Lock()
	n.alerts = append(n.alerts, as...)
	n.mu.Unlock()
}

func (n *memNotifier) take() []*notifier.Alert {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := n.alerts
	n.alerts = nil
	return out
}

var t0 = time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)

type harness struct {
	e     *Engine
	store *memStorage
	notes *memNotifier
	now   time.Time
}

func newHarness(t *testing.T, dir string, yml string) *harness {
	t.Helper()
	h := &harness{store: &memStorage{}, notes: &memNotifier{}, now: t0}
	cfg := DefaultConfig(dir)
	cfg.MaxSeriesPerRule = 3
	e, err := New(cfg, Options{Appendable: h.store, Notifier: h.notes})
	if err != nil {
		t.Fatal(err)
	}
	e.now = func() time.Time { return h.now }
	rs, err := Parse("test.yml", []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	e.SetRules(rs)
	h.e = e
	return h
}

func (h *harness) feed(evs ...*collector.Event) {
	b := collector.NewBatch("test")
	for _, e := range evs {
		*b.Next() = e.Clone()
	}
	h.e.Process(b)
	b.Release()
}

const recordRules = `
groups:
  - name: g
    rules:
      - log: '{event.dataset="syslog"} |= "Failed password"'
        record: log:failed_logins:count
        by: [host.name]
        labels: {team: sec}
`

func TestRecord(t *testing.T) {
	h := newHarness(t, t.TempDir(), recordRules)
	h.feed(ev("Failed password for root", "event.dataset", "syslog", "host.name", "a"),
		ev("Failed password for bob", "event.dataset", "syslog", "host.name", "a"),
		ev("Failed password for bob", "event.dataset", "syslog", "host.name", "b"),
		ev("Accepted password", "event.dataset", "syslog", "host.name", "a"),
		ev("Failed password", "event.dataset", "nginx", "host.name", "a"),
		ev("Failed password", "event.dataset", "syslog", "host.name", "self", "leitstand.receiver", "leitstand"))
	if err := h.e.Tick(context.Background(), t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	zeros := map[string]int{}
	for _, s := range h.store.samples {
		if s.v == 0 {
			// The zero sample of a new series, at its first match.
			zeros[s.ls.String()]++
			if s.t != t0.UnixMilli() || got[s.ls.String()] != 0 {
				t.Errorf("zero sample of %s at %d after %v", s.ls, s.t, got[s.ls.String()])
			}
			continue
		}
		got[s.ls.String()] = s.v
		if s.t != t0.Add(time.Minute).UnixMilli() {
			t.Errorf("timestamp %d", s.t)
		}
	}
	if len(zeros) != 2 || zeros[`{__name__="log:failed_logins:count", host_name="a", team="sec"}`] != 1 {
		t.Errorf("zero samples: %v, want one per new series", zeros)
	}
	want := map[string]float64{
		`{__name__="log:failed_logins:count", host_name="a", team="sec"}`: 2,
		`{__name__="log:failed_logins:count", host_name="b", team="sec"}`: 1,
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %v want %v (all: %v)", k, got[k], v, got)
		}
	}
	// Cardinality cap (3 in the harness): the 4th and 5th host are dropped.
	for _, host := range []string{"c", "d", "e"} {
		h.feed(ev("Failed password", "event.dataset", "syslog", "host.name", host))
	}
	if n := len(h.e.Series()); n != 3 {
		t.Errorf("series after cap: %d", n)
	}
}

const alertRules = `
groups:
  - name: g
    rules:
      - log: '{event.dataset="syslog"} |= "Failed password" |~ "for (invalid user )?root"'
        alert: RootLoginFailed
        by: [host.name]
        throttle: 10m
        resolve_after: 15m
        labels: {severity: page, host: '{{ .Field "host.name" }}'}
        annotations: {summary: 'failed root login on {{ .Field "host.name" }} from {{ .Field "source.ip" }}'}
`

func TestAlertThrottleResolve(t *testing.T) {
	h := newHarness(t, t.TempDir(), alertRules)
	root := func(host string) *collector.Event {
		return ev("Failed password for root from x", "event.dataset", "syslog", "host.name", host, "source.ip", "10.0.0.x")
	}
	h.feed(root("a"), root("a"), ev("Failed password for bob", "event.dataset", "syslog", "host.name", "a"))
	sent := h.notes.take()
	if len(sent) != 1 {
		t.Fatalf("sent %d alerts, want 1 (throttled)", len(sent))
	}
	a := sent[0]
	if a.Name() != "RootLoginFailed" || a.Labels.Get("host_name") != "a" || a.Labels.Get("severity") != "page" || a.Labels.Get("host") != "a" {
		t.Errorf("labels %s", a.Labels)
	}
	if s := a.Annotations.Get("summary"); s != "failed root login on a from 10.0.0.x" {
		t.Errorf("summary %q", s)
	}
	if al := h.e.Alerts(); len(al) != 1 || al[0].Value != 2 {
		t.Fatalf("api alerts %v", al)
	}
	h.now = t0.Add(5 * time.Minute)
	h.feed(root("a"))
	if n := len(h.notes.take()); n != 0 {
		t.Errorf("within throttle: sent %d", n)
	}
	h.now = t0.Add(11 * time.Minute)
	h.feed(root("a"))
	if n := len(h.notes.take()); n != 1 {
		t.Errorf("after throttle: sent %d, want 1", n)
	}
	// Quiet for less than resolve_after: still firing, and sent again
	// (resend delay 1m), with an EndsAt still ahead.
	now := t0.Add(20 * time.Minute)
	_ = h.e.Tick(context.Background(), now)
	if re := h.notes.take(); len(re) != 1 || !re[0].EndsAt.After(now) || len(h.e.Alerts()) != 1 {
		t.Errorf("resolved too early, or not resent: %v", re)
	}
	_ = h.e.Tick(context.Background(), t0.Add(26*time.Minute))
	res := h.notes.take()
	if len(res) != 1 || !res[0].EndsAt.Equal(t0.Add(26*time.Minute)) || len(h.e.Alerts()) != 0 {
		t.Fatalf("resolve: %v, alerts %v", res, h.e.Alerts())
	}
	// A new match opens a new alert at once.
	h.now = t0.Add(30 * time.Minute)
	h.feed(root("a"))
	if n := len(h.notes.take()); n != 1 {
		t.Errorf("new alert after resolve: sent %d", n)
	}
}

// TestFiringAlertsAreResent checks a firing log alert goes to the notifier
// again every resend delay, whatever the throttle, so an Alertmanager that
// missed it learns of it, and that resending stops when it resolves.
func TestFiringAlertsAreResent(t *testing.T) {
	h := newHarness(t, t.TempDir(), alertRules)
	h.feed(ev("Failed password for root from x", "event.dataset", "syslog", "host.name", "a"))
	if n := len(h.notes.take()); n != 1 {
		t.Fatalf("sent %d, want 1", n)
	}
	resends := 0
	for m := 1; m <= 14; m++ {
		now := t0.Add(time.Duration(m)*time.Minute + time.Second)
		_ = h.e.Tick(context.Background(), now)
		for _, a := range h.notes.take() {
			if a.Name() != "RootLoginFailed" || !a.EndsAt.After(now.Add(3*time.Minute)) {
				t.Errorf("minute %d: %s ends %s", m, a.Labels, a.EndsAt)
			}
			resends++
		}
	}
	if resends != 14 {
		t.Errorf("%d resends in 14 minutes of firing, want one a minute", resends)
	}
	// resolve_after is 15m: resolved once, then nothing more.
	_ = h.e.Tick(context.Background(), t0.Add(16*time.Minute))
	if res := h.notes.take(); len(res) != 1 || res[0].EndsAt.After(t0.Add(16*time.Minute)) {
		t.Fatalf("resolve: %v", res)
	}
	_ = h.e.Tick(context.Background(), t0.Add(18*time.Minute))
	if n := len(h.notes.take()); n != 0 {
		t.Errorf("%d notifications after the resolve", n)
	}
}

const newValueRules = `
groups:
  - name: g
    rules:
      - log: '{event.dataset="sentry.error", service.name=~"api|web"}'
        alert: NewErrorKind
        new_value: error.grouping_key
        by: [service.name]
        lookback: 1d
        resolve_after: 1h
`

func TestNewValueAndState(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, newValueRules)
	se := func(svc, key string) *collector.Event {
		return ev("boom", "event.dataset", "sentry.error", "service.name", svc, "error.grouping_key", key)
	}
	h.feed(se("api", "k1"), se("api", "k1"), se("web", "k1"), se("db", "k9"))
	sent := h.notes.take()
	if len(sent) != 2 {
		t.Fatalf("sent %d, want 2 (api/k1, web/k1)", len(sent))
	}
	if sent[0].Labels.Get("error_grouping_key") != "k1" {
		t.Errorf("labels %s", sent[0].Labels)
	}
	// Persist, restart with a fresh engine: k1 is still known.
	if err := h.e.SaveState(); err != nil {
		t.Fatal(err)
	}
	h2 := newHarness(t, dir, newValueRules)
	if err := h2.e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h2.e.Shutdown(context.Background())
	h2.now = t0.Add(2 * time.Hour)
	h2.feed(se("api", "k1"), se("api", "k2"))
	sent = h2.notes.take()
	if len(sent) != 1 || sent[0].Labels.Get("error_grouping_key") != "k2" {
		t.Fatalf("after restart: %v", sent[0].Labels)
	}
	// Restored alerts resolve after their quiet period.
	_ = h2.e.Tick(context.Background(), t0.Add(2*time.Hour))
	if res := h2.notes.take(); len(res) != 2 {
		t.Errorf("resolved %d restored alerts, want 2", len(res))
	}
	// Beyond the look-back a value is new again.
	h2.now = t0.Add(50 * time.Hour)
	_ = h2.e.Tick(context.Background(), h2.now)
	h2.notes.take()
	h2.feed(se("api", "k1"))
	if n := len(h2.notes.take()); n != 1 {
		t.Errorf("after look-back: sent %d", n)
	}
}

func TestRecordStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, recordRules)
	if err := h.e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.feed(ev("Failed password", "event.dataset", "syslog", "host.name", "a"))
	if err := h.e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	h2 := newHarness(t, dir, recordRules)
	if err := h2.e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h2.feed(ev("Failed password", "event.dataset", "syslog", "host.name", "a"))
	if err := h2.e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for k, v := range h2.e.Series() {
		if v != 2 {
			t.Errorf("%s = %v, want 2 (counter continued)", k, v)
		}
	}
}

func TestLifecycle(t *testing.T) {
	e, err := New(DefaultConfig(t.TempDir()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := e.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := e.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := e.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if err := e.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadFilesAndReloadKeepState(t *testing.T) {
	e, err := New(DefaultConfig(t.TempDir()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.LoadFiles([]string{"testdata/*.rules.yml"}); err == nil {
		t.Fatal("bad file accepted")
	}
	if err := e.LoadFiles([]string{"testdata/log.rules.yml"}); err != nil {
		t.Fatal(err)
	}
	b := collector.NewBatch("t")
	*b.Next() = ev("Failed password for root", "event.dataset", "syslog", "host.name", "h").Clone()
	e.Process(b)
	b.Release()
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if len(e.Rules()) != 3 || len(e.Series()) != 1 || len(e.Alerts()) != 1 {
		t.Fatalf("after reload: %d rules, %v series, %d alerts", len(e.Rules()), e.Series(), len(e.Alerts()))
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{}
	err := c.Validate()
	for _, k := range []string{"state_dir", "interval", "throttle", "max_series_per_rule", "max_values_per_rule"} {
		if err == nil || !strings.Contains(err.Error(), k+":") {
			t.Errorf("missing %s in %v", k, err)
		}
	}
	d := DefaultConfig("/data")
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestAlertRefreshAfterThrottledMatches(t *testing.T) {
	h := newHarness(t, t.TempDir(), alertRules)
	root := ev("Failed password for root", "event.dataset", "syslog", "host.name", "a")
	h.feed(root)
	h.now = t0.Add(9 * time.Minute)
	h.feed(root)
	if n := len(h.notes.take()); n != 1 {
		t.Fatalf("sent %d, want 1", n)
	}
	_ = h.e.Tick(context.Background(), t0.Add(10*time.Minute))
	got := h.notes.take()
	if len(got) != 1 || !got[0].EndsAt.Equal(t0.Add(25*time.Minute)) {
		t.Fatalf("refresh: %v", got)
	}
	_ = h.e.Tick(context.Background(), t0.Add(24*time.Minute))
	if res := h.notes.take(); len(res) != 1 || !res[0].EndsAt.Equal(t0.Add(24*time.Minute)) {
		t.Fatalf("resolve 15m after the last match: %v", res)
	}
}

func TestProcessConcurrent(t *testing.T) {
	h := newHarness(t, t.TempDir(), recordRules+strings.TrimPrefix(alertRules, "\ngroups:\n  - name: g\n    rules:\n"))
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				h.feed(ev("Failed password for root", "event.dataset", "syslog", "host.name", "a"))
			}
		}()
	}
	wg.Wait()
	if got := h.e.Series()[`{__name__="log:failed_logins:count", host_name="a", team="sec"}`]; got != 400 {
		t.Errorf("count %v, want 400 (%v)", got, h.e.Series())
	}
	if al := h.e.Alerts(); len(al) != 1 || al[0].Value != 400 {
		t.Errorf("alerts %v", al)
	}
}

func TestRestartKeepsNewerCounts(t *testing.T) {
	h := newHarness(t, t.TempDir(), recordRules)
	ctx := context.Background()
	f := func() { h.feed(ev("Failed password", "event.dataset", "syslog", "host.name", "a")) }
	if err := h.e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	f()
	if err := h.e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	f() // the pipeline may still run while the loop is stopped
	if err := h.e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for k, v := range h.e.Series() {
		if v != 2 {
			t.Errorf("%s = %v, want 2", k, v)
		}
	}
}

func TestStateKeepsInvalidUTF8Keys(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, alertRules)
	root := ev("Failed password for root", "event.dataset", "syslog", "host.name", "\xff\xfe")
	h.feed(root)
	if err := h.e.SaveState(); err != nil {
		t.Fatal(err)
	}
	h2 := newHarness(t, dir, alertRules)
	if err := h2.e.restoreState(); err != nil {
		t.Fatal(err)
	}
	h2.now = t0.Add(time.Minute)
	h2.feed(root)
	if n := len(h2.notes.take()); n != 0 || len(h2.e.Alerts()) != 1 {
		t.Errorf("restored group not recognised: sent %d, %d alerts", n, len(h2.e.Alerts()))
	}
}

// TestRecordNewSeriesStartsAtZero: a new series gets one zero sample at its
// first match, so increase() sees its first burst; later ticks and series
// restored from state get none.
func TestRecordNewSeriesStartsAtZero(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, recordRules)
	if err := h.e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.now = t0.Add(10 * time.Second)
	for range 5 {
		h.feed(ev("Failed password", "event.dataset", "syslog", "host.name", "a"))
	}
	for _, at := range []time.Duration{15 * time.Second, 30 * time.Second} {
		if err := h.e.Tick(context.Background(), t0.Add(at)); err != nil {
			t.Fatal(err)
		}
	}
	want := []sample{{v: 0, t: t0.Add(10 * time.Second).UnixMilli()}, {v: 5, t: t0.Add(15 * time.Second).UnixMilli()}, {v: 5, t: t0.Add(30 * time.Second).UnixMilli()}}
	checkSamples(t, h.store.samples, want)
	if err := h.e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	h2 := newHarness(t, dir, recordRules)
	if err := h2.e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h2.e.Shutdown(context.Background())
	h2.now = t0.Add(40 * time.Second)
	h2.feed(ev("Failed password", "event.dataset", "syslog", "host.name", "a"))
	if err := h2.e.Tick(context.Background(), t0.Add(45*time.Second)); err != nil {
		t.Fatal(err)
	}
	checkSamples(t, h2.store.samples, []sample{{v: 6, t: t0.Add(45 * time.Second).UnixMilli()}})
}

// TestRecordZeroSampleAgainAfterRollback: when the append of a tick is
// rolled back, the zero sample is appended by the next tick.
func TestRecordZeroSampleAgainAfterRollback(t *testing.T) {
	h := newHarness(t, t.TempDir(), recordRules)
	failing := &failingStorage{memStorage: h.store, fail: true}
	h.e.opts.Appendable = failing
	h.feed(ev("Failed password", "event.dataset", "syslog", "host.name", "a"))
	if err := h.e.Tick(context.Background(), t0.Add(15*time.Second)); err == nil {
		t.Fatal("want the append error")
	}
	failing.fail = false
	if err := h.e.Tick(context.Background(), t0.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	checkSamples(t, h.store.samples, []sample{{v: 0, t: t0.UnixMilli()}, {v: 1, t: t0.Add(30 * time.Second).UnixMilli()}})
}

type failingStorage struct {
	*memStorage
	fail bool
}

func (f *failingStorage) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return &failingAppender{AppenderV2: f.memStorage.AppenderV2(ctx), fail: f.fail}
}

type failingAppender struct {
	storage.AppenderV2
	fail bool
}

func (a *failingAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, o storage.AppendV2Options) (storage.SeriesRef, error) {
	if a.fail && v != 0 {
		return 0, errors.New("disk full")
	}
	return a.AppenderV2.Append(ref, ls, st, t, v, h, fh, o)
}

func checkSamples(t *testing.T, got, want []sample) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i].t == want[i].t && got[i].v == want[i].v
	}
	if !ok {
		t.Errorf("samples:\n got %v\nwant %v (values and times)", got, want)
	}
}

// TestRecordSeriesExpireWhenIdle: a series without a match for
// idle_timeout is dropped with a staleness marker and frees its place
// under the cap; a group that comes back starts again from 0.
func TestRecordSeriesExpireWhenIdle(t *testing.T) {
	h := newHarness(t, t.TempDir(), recordRules) // cap 3, idle_timeout 1h
	feed := func(at time.Duration, hosts ...string) {
		h.now = t0.Add(at)
		for _, host := range hosts {
			h.feed(ev("Failed password", "event.dataset", "syslog", "host.name", host))
		}
	}
	tick := func(at time.Duration) {
		t.Helper()
		if err := h.e.Tick(context.Background(), t0.Add(at)); err != nil {
			t.Fatal(err)
		}
	}
	feed(0, "a", "b", "c", "d") // d: over the cap
	tick(30 * time.Minute)
	feed(40*time.Minute, "a")
	tick(time.Hour) // b and c idle for 1h; a for 20m
	if got := testutil.ToFloat64(h.e.m.expired.WithLabelValues("series")); got != 2 {
		t.Errorf("expired series: %v, want 2", got)
	}
	feed(time.Hour, "d") // room again under the cap
	if got := testutil.ToFloat64(h.e.m.dropped.WithLabelValues("record")); got != 1 {
		t.Errorf("dropped: %v, want 1 (only d's first match, while the cap was full)", got)
	}
	tick(time.Hour + 15*time.Second)

	byHost := map[string][]sample{}
	for _, s := range h.store.samples {
		byHost[s.ls.Get("host_name")] = append(byHost[s.ls.Get("host_name")], s)
	}
	at := func(d time.Duration) int64 { return t0.Add(d).UnixMilli() }
	checkSamples(t, byHost["a"], []sample{{t: at(0), v: 0}, {t: at(30 * time.Minute), v: 1}, {t: at(time.Hour), v: 2}, {t: at(time.Hour + 15*time.Second), v: 2}})
	checkSamples(t, byHost["d"], []sample{{t: at(time.Hour), v: 0}, {t: at(time.Hour + 15*time.Second), v: 1}})
	for _, host := range []string{"b", "c"} {
		s := byHost[host]
		if len(s) != 3 || s[1].v != 1 || s[2].t != at(time.Hour) || !value.IsStaleNaN(s[2].v) {
			t.Errorf("host %s: %v, want 0, 1 and a staleness marker at the 1h tick", host, s)
		}
	}
	if got := h.e.Series(); len(got) != 2 {
		t.Errorf("series left: %v, want a and d", got)
	}
}

// TestIdleSeriesSurviveRestartWithTheirLastMatch: the time of the latest
// match is part of the state, so a restart does not make an idle series
// young again.
func TestIdleSeriesSurviveRestartWithTheirLastMatch(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, recordRules)
	if err := h.e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.feed(ev("Failed password", "event.dataset", "syslog", "host.name", "a"))
	if err := h.e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	h2 := newHarness(t, dir, recordRules)
	h2.now = t0.Add(50 * time.Minute)
	if err := h2.e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h2.e.Shutdown(context.Background())
	if err := h2.e.Tick(context.Background(), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := h2.e.Series(); len(got) != 0 {
		t.Errorf("series %v still there 1h after its only match", got)
	}
}

// TestStateOfRemovedRulesExpires: the state of a rule that left the rule
// files comes back with the rule within idle_timeout (across a restart
// too), and is dropped from the state file after it.
func TestStateOfRemovedRulesExpires(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, recordRules)
	if err := h.e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.feed(ev("Failed password", "event.dataset", "syslog", "host.name", "a"))
	h.e.SetRules(nil) // the rule is removed on a reload
	if err := h.e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Restarted 30m later without the rule, then it is put back.
	h2 := newHarness(t, dir, "")
	h2.now = t0.Add(30 * time.Minute)
	if err := h2.e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	rs, err := Parse("test.yml", []byte(recordRules))
	if err != nil {
		t.Fatal(err)
	}
	h2.e.SetRules(rs)
	h2.feed(ev("Failed password", "event.dataset", "syslog", "host.name", "a"))
	if got := h2.e.Series(); len(got) != 1 || got[`{__name__="log:failed_logins:count", host_name="a", team="sec"}`] != 2 {
		t.Errorf("series %v: want the count continued at 2", got)
	}
	// Removed again, and saved after idle_timeout: gone from the file.
	h2.e.SetRules(nil)
	h2.now = t0.Add(30*time.Minute + time.Hour)
	if err := h2.e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(h2.e.m.expired.WithLabelValues("rule_state")); got != 1 {
		t.Errorf("expired rule state: %v, want 1", got)
	}
	h3 := newHarness(t, dir, recordRules)
	if err := h3.e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h3.e.Shutdown(context.Background())
	if got := h3.e.Series(); len(got) != 0 {
		t.Errorf("series %v restored from state that should have expired", got)
	}
}

// TestWatchReloadsChangedRuleFiles: with a watch interval, an edited rule
// file replaces the running log rules without SIGHUP (as the PromQL rules
// of the same file are reloaded), a broken edit keeps them, and state of
// unchanged rules stays.
func TestWatchReloadsChangedRuleFiles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "log.rules.yml")
	write := func(content string) { // atomically, or the watcher may read half a file
		t.Helper()
		if err := os.WriteFile(file+".tmp", []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			t.Fatal(err)
		}
	}
	write(recordRules)
	e, err := New(DefaultConfig(dir), Options{WatchInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.LoadFiles([]string{filepath.Join(dir, "*.yml")}); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	h := &harness{e: e}
	h.feed(ev("Failed password", "event.dataset", "syslog", "host.name", "a"))

	names := func() string {
		var out []string
		for _, r := range e.Rules() {
			out = append(out, r.Name)
		}
		return strings.Join(out, ",")
	}
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for names() != want {
			if time.Now().After(deadline) {
				t.Fatalf("rules %q, want %q", names(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	write(recordRules + alertRules[len("\ngroups:\n"):])
	waitFor("log:failed_logins:count,RootLoginFailed")
	if got := e.Series(); got[`{__name__="log:failed_logins:count", host_name="a", team="sec"}`] != 1 {
		t.Errorf("series after the reload: %v, want the count kept", got)
	}

	write("groups: [ broken")
	deadline := time.Now().Add(5 * time.Second)
	for { // until the watcher has read the broken content
		e.loadMu.Lock()
		seen := e.filesHash == hashRuleFiles(e.patterns)
		e.loadMu.Unlock()
		if seen {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher did not look at the broken file within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := names(); got != "log:failed_logins:count,RootLoginFailed" {
		t.Errorf("a broken file replaced the rules: %q", got)
	}
	write(recordRules)
	waitFor("log:failed_logins:count")
}

// TestCountsAfterACrashNeverGoBelowTheTSDB: the state file is written every
// state_interval; after a crash its counts can be older than the samples in
// the TSDB. The counts of every append are saved before its commit, so the
// restored counter never goes down (which PromQL would take for a reset and
// count whole again in increase()).
func TestCountsAfterACrashNeverGoBelowTheTSDB(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, recordRules) // not started: nothing saves at the end
	for range 3 {
		h.feed(ev("Failed password", "event.dataset", "syslog", "host.name", "a"))
	}
	if err := h.e.SaveState(); err != nil { // the periodic save, at 3
		t.Fatal(err)
	}
	for range 2 {
		h.feed(ev("Failed password", "event.dataset", "syslog", "host.name", "a"))
	}
	if err := h.e.Tick(context.Background(), t0.Add(15*time.Second)); err != nil { // 5 in the TSDB
		t.Fatal(err)
	}
	h.feed(ev("Failed password", "event.dataset", "syslog", "host.name", "a")) // 6, appended nowhere
	// Crash.

	h2 := newHarness(t, dir, recordRules)
	if err := h2.e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h2.e.Shutdown(context.Background())
	key := `{__name__="log:failed_logins:count", host_name="a", team="sec"}`
	if got := h2.e.Series()[key]; got != 5 {
		t.Errorf("restored count %v, want 5 as last appended (the state file says 3)", got)
	}
	// A clean shutdown after the append: the state file is the newer one.
	if err := h2.e.Tick(context.Background(), t0.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	h2.feed(ev("Failed password", "event.dataset", "syslog", "host.name", "a"))
	if err := h2.e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	h3 := newHarness(t, dir, recordRules)
	if err := h3.e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h3.e.Shutdown(context.Background())
	if got := h3.e.Series()[key]; got != 6 {
		t.Errorf("restored count %v after a clean shutdown, want 6", got)
	}
}

// TestCountsFileNotRewrittenWhenUnchanged: ticks without new matches do
// not write (and fsync) the counts file again.
func TestCountsFileNotRewrittenWhenUnchanged(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, recordRules)
	h.feed(ev("Failed password", "event.dataset", "syslog", "host.name", "a"),
		ev("Failed password", "event.dataset", "syslog", "host.name", "b"))
	path := filepath.Join(h.e.cfg.StateDir, countsFile)
	if err := h.e.Tick(context.Background(), t0.Add(15*time.Second)); err != nil {
		t.Fatal(err)
	}
	first, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, t0, t0); err != nil { // a marker a rewrite would replace
		t.Fatal(err)
	}
	if err := h.e.Tick(context.Background(), t0.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || !st.ModTime().Equal(t0) || st.Size() != first.Size() {
		t.Errorf("counts file rewritten without a change (%v)", err)
	}
	h.feed(ev("Failed password", "event.dataset", "syslog", "host.name", "a"))
	if err := h.e.Tick(context.Background(), t0.Add(45*time.Second)); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.ModTime().Equal(t0) {
		t.Errorf("counts file not rewritten after a change (%v)", err)
	}
}
