package logrules

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/notifier"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/rules"
)

// Options are the engine's collaborators, supplied by the wiring.
type Options struct {
	// Logger; default: discard.
	Logger *slog.Logger
	// Registerer takes the leitstand_log_rules_* metrics; nil: unregistered.
	Registerer prometheus.Registerer
	// Appendable receives the record rules' series ((*rules.Engine).Appendable()).
	// Nil: record rules count but append nothing.
	Appendable storage.AppendableV2
	// Notifier receives alerts (the PromQL engine's notifier); nil: alerts
	// are only listed by Alerts.
	Notifier rules.Notifier
	// WatchInterval is how often the rule files of the last LoadFiles are
	// checked for changes while the engine runs; they are reloaded when
	// one changed. Pass the rules section's watch_interval, so that an
	// edited rule file changes its PromQL and its log rules together.
	// 0: no watching (Reload, on SIGHUP, still works).
	WatchInterval time.Duration
	// ResendDelay is how often a firing log alert is sent again while it
	// stays firing, so an Alertmanager that was down, or restarted without
	// its state, learns of it (Prometheus' resend_delay: pass the rules
	// section's). 0: one minute.
	ResendDelay time.Duration
}

// Engine evaluates log rules on the events of every batch. It implements
// collector.Stage (Process is safe for concurrent batches) and
// collector.Component (Start runs the append/resolve loop and restores
// state; Shutdown writes state; both may be called repeatedly).
type Engine struct {
	cfg  Config
	opts Options
	log  *slog.Logger
	m    *metrics
	// now is the clock of matching and ticking; tests drive it.
	now func() time.Time

	set atomic.Pointer[ruleSet]

	loadMu   sync.Mutex // LoadFiles, Reload, state restore and save
	patterns []string
	// filesHash is the content of the rule files as last loaded (or last
	// found broken), for the watcher.
	filesHash [sha256.Size]byte
	restored  map[string]*ruleSnapshot // state read at Start for rules not (yet) loaded
	// countsLast is what countsFile holds (nil: not written yet, or
	// unknown after a failed write); once written it is written even when
	// no series is left, so it never outlives them.
	countsMu   sync.Mutex
	countsLast []byte

	runMu   sync.Mutex
	started bool // state restored
	cancel  context.CancelFunc
	done    chan struct{}
	scratch sync.Pool
}

// New builds an engine from a validated config. No rules are loaded and
// nothing runs until LoadFiles and Start.
func New(cfg Config, opts Options) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("log rules: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, opts: opts, log: opts.Logger, m: m, now: time.Now}
	e.set.Store(compile(nil))
	return e, nil
}

// Name implements collector.Stage.
func (e *Engine) Name() string { return "log_rules" }

// LoadFiles reads the log rules of the rule files (globs allowed) and
// replaces the running set; state of rules that are unchanged is kept. On
// error the running set stays as it was.
func (e *Engine) LoadFiles(patterns []string) error {
	hash := hashRuleFiles(patterns)
	rs, err := LoadFiles(patterns)
	e.loadMu.Lock()
	defer e.loadMu.Unlock()
	// Remembered even when broken: the watcher does not retry the same
	// broken content every tick.
	e.filesHash = hash
	if err != nil {
		return err
	}
	e.patterns = append([]string(nil), patterns...)
	e.install(rs)
	return nil
}

// hashRuleFiles hashes the names and contents of the files patterns
// expand to (an unreadable file or glob counts as empty).
func hashRuleFiles(patterns []string) [sha256.Size]byte {
	h := sha256.New()
	files, err := rules.ExpandRuleFiles(patterns)
	if err != nil {
		fmt.Fprintf(h, "error %v\x00", err)
	}
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00", f)
		if b, err := os.ReadFile(f); err == nil {
			h.Write(b)
		}
		h.Write([]byte{0})
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// watchFiles reloads when the rule files of the last LoadFiles changed.
func (e *Engine) watchFiles() {
	e.loadMu.Lock()
	p, last := e.patterns, e.filesHash
	e.loadMu.Unlock()
	if p == nil || hashRuleFiles(p) == last {
		return
	}
	if err := e.LoadFiles(p); err != nil {
		e.log.Error("rule files changed but their log rules cannot be loaded; the previous log rules stay active", "err", err)
		return
	}
	e.log.Info("log rules reloaded: rule files changed", "rules", len(e.set.Load().rules))
}

// Reload re-reads the files of the last LoadFiles (on SIGHUP).
func (e *Engine) Reload() error {
	e.loadMu.Lock()
	p := e.patterns
	e.loadMu.Unlock()
	return e.LoadFiles(p)
}

// SetRules replaces the running set with parsed rules (tests, RunTests).
func (e *Engine) SetRules(rs []*Rule) {
	e.loadMu.Lock()
	defer e.loadMu.Unlock()
	e.install(rs)
}

// Rules returns the loaded rules.
func (e *Engine) Rules() []*Rule {
	set := e.set.Load()
	out := make([]*Rule, len(set.rules))
	for i, s := range set.rules {
		out[i] = s.rule
	}
	return out
}

// install compiles rs, moving the state of rules with the same ID over.
// Called with loadMu held.
func (e *Engine) install(rs []*Rule) {
	next := compile(rs)
	old := e.set.Load()
	byID := map[string]*ruleState{}
	for _, s := range old.rules {
		byID[s.rule.ID()] = s
	}
	now := e.now()
	for _, s := range next.rules {
		if prev := byID[s.rule.ID()]; prev != nil {
			prev.mu.Lock()
			s.series, s.alerts, s.seen = prev.series, prev.alerts, prev.seen
			prev.mu.Unlock()
			delete(byID, s.rule.ID())
		} else if snap := e.restored[s.rule.ID()]; snap != nil {
			s.restore(snap, now)
			delete(e.restored, s.rule.ID())
		}
	}
	// Rules that left the set keep their state for idle_timeout, should
	// they come back (a file put back, an edit undone).
	for id, s := range byID {
		if e.restored == nil {
			e.restored = map[string]*ruleSnapshot{}
		}
		snap := s.snapshot()
		snap.Unloaded = now
		e.restored[id] = snap
	}
	e.set.Store(next)
	e.m.rules.Set(float64(len(rs)))
}

// ruleSet is a compiled set of rules: immutable after compile, swapped
// atomically on reload.
type ruleSet struct {
	rules []*ruleState
	// ac finds the rules' required literals in one scan; litRules maps a
	// literal's id to the rules that require it.
	ac       *matcher
	litRules [][]int32
	// Rules without a required literal, by their event.dataset equality
	// value ("" key: rules that match any dataset).
	byDataset map[string][]int32
	anyData   []int32
}

func compile(rs []*Rule) *ruleSet {
	set := &ruleSet{byDataset: map[string][]int32{}}
	var lits []string
	litID := map[string]int32{}
	for i, r := range rs {
		set.rules = append(set.rules, newRuleState(r))
		idx := int32(i)
		if lit := r.Selector.requiredLiteral(); lit != "" {
			id, ok := litID[lit]
			if !ok {
				id = int32(len(lits))
				litID[lit] = id
				lits = append(lits, lit)
				set.litRules = append(set.litRules, nil)
			}
			set.litRules[id] = append(set.litRules[id], idx)
			continue
		}
		if ds, ok := r.Selector.equalValue(collector.FieldDataset); ok {
			set.byDataset[ds] = append(set.byDataset[ds], idx)
		} else {
			set.anyData = append(set.anyData, idx)
		}
	}
	if len(lits) > 0 {
		set.ac = newMatcher(lits)
	}
	return set
}

// scratch marks the rules already looked at for the current event.
type scratch struct {
	mark  []uint32
	epoch uint32
}

func (e *Engine) getScratch(n int) *scratch {
	sc, _ := e.scratch.Get().(*scratch)
	if sc == nil {
		sc = &scratch{}
	}
	if len(sc.mark) < n {
		sc.mark = make([]uint32, n)
		sc.epoch = 0
	}
	return sc
}

// Process implements collector.Stage: every event is offered to the rules
// whose prefilter it passes. Events are read, never changed.
func (e *Engine) Process(b *collector.Batch) {
	set := e.set.Load()
	if len(set.rules) == 0 || len(b.Events) == 0 {
		return
	}
	sc := e.getScratch(len(set.rules))
	defer e.scratch.Put(sc)
	now := e.now()
	var skipped, matched int
	for i := range b.Events {
		ev := &b.Events[i]
		if e.isSelf(ev) {
			skipped++
			continue
		}
		sc.epoch++
		if sc.epoch == 0 { // wrapped: old marks could collide
			clear(sc.mark)
			sc.epoch = 1
		}
		matched += e.evalEvent(set, sc, ev, now)
	}
	e.m.events.Add(float64(len(b.Events) - skipped))
	if skipped > 0 {
		e.m.skippedSelf.Add(float64(skipped))
	}
	if matched > 0 {
		e.m.matches.Add(float64(matched))
	}
}

func (e *Engine) isSelf(ev *collector.Event) bool {
	if len(e.cfg.SelfReceivers) == 0 {
		return false
	}
	r, ok := ev.Get(collector.FieldReceiver)
	if !ok {
		return false
	}
	for _, s := range e.cfg.SelfReceivers {
		if r == s {
			return true
		}
	}
	return false
}

func (e *Engine) evalEvent(set *ruleSet, sc *scratch, ev *collector.Event, now time.Time) int {
	matched := 0
	check := func(ri int32) {
		if sc.mark[ri] == sc.epoch {
			return
		}
		sc.mark[ri] = sc.epoch
		s := set.rules[ri]
		if s.rule.Selector.Matches(ev) {
			matched++
			e.apply(s, ev, now)
		}
	}
	for _, ri := range set.anyData {
		check(ri)
	}
	if len(set.byDataset) > 0 {
		ds, _ := ev.Get(collector.FieldDataset)
		for _, ri := range set.byDataset[ds] {
			check(ri)
		}
	}
	if m := set.ac; m != nil {
		text := ev.Message()
		st := int32(0)
		for i := 0; i < len(text); i++ {
			st = m.next[st+int32(m.classes[text[i]])]
			if st < 0 {
				st &^= outFlag
				for _, id := range m.out[st/int32(m.width)] {
					for _, ri := range set.litRules[id] {
						check(ri)
					}
				}
			}
		}
	}
	return matched
}

// ruleState is a rule and what it has counted, raised and seen.
type ruleState struct {
	rule *Rule
	// staticLabels are the rule's labels for record series (templates see
	// no event there).
	staticLabels map[string]string

	mu     sync.Mutex
	series map[string]*series     // record
	alerts map[string]*alertState // alert, new_value
	seen   map[string]time.Time   // new_value
}

type series struct {
	labels labels.Labels
	count  float64
	// created is the time of the series' first match, last that of its
	// latest (idle_timeout counts from it); appended is set once a sample
	// of it went to the TSDB (restored series count as appended).
	created, last time.Time
	appended      bool
}

type alertState struct {
	labels      labels.Labels
	annotations labels.Labels
	activeAt    time.Time
	lastMatch   time.Time
	lastSent    time.Time
	// lastNotified is the last time the alert went to the notifier, a
	// resend included (lastSent is for the throttle and ignores resends).
	lastNotified time.Time
	count        float64
}

func newRuleState(r *Rule) *ruleState {
	s := &ruleState{rule: r, series: map[string]*series{}, alerts: map[string]*alertState{}, seen: map[string]time.Time{}}
	if r.Kind == KindRecord && len(r.labelTmpl) > 0 {
		s.staticLabels = render(r.labelTmpl, templateData{})
	}
	return s
}

func render(ts map[string]*template.Template, d templateData) map[string]string {
	out := make(map[string]string, len(ts))
	for k, t := range ts {
		var b strings.Builder
		if err := t.Execute(&b, d); err != nil {
			out[k] = "template error: " + err.Error()
			continue
		}
		out[k] = b.String()
	}
	return out
}

// groupKey joins the values of the group-by fields.
func groupKey(by []string, ev *collector.Event) string {
	switch len(by) {
	case 0:
		return ""
	case 1:
		v, _ := ev.Get(by[0])
		return strings.Clone(v)
	}
	var b strings.Builder
	for i, f := range by {
		if i > 0 {
			b.WriteByte(0) // JSON-safe, unlike 0xff: keys are persisted
		}
		v, _ := ev.Get(f)
		b.WriteString(v)
	}
	return b.String()
}

func (e *Engine) byLabels(b *labels.Builder, r *Rule, ev *collector.Event) {
	for _, f := range r.By {
		v, _ := ev.Get(f)
		b.Set(LabelName(f), strings.Clone(v))
	}
}

func (e *Engine) apply(s *ruleState, ev *collector.Event, now time.Time) {
	r := s.rule
	switch r.Kind {
	case KindRecord:
		key := groupKey(r.By, ev)
		s.mu.Lock()
		se := s.series[key]
		if se == nil {
			if len(s.series) >= e.cfg.MaxSeriesPerRule {
				s.mu.Unlock()
				e.m.dropped.WithLabelValues(string(r.Kind)).Inc()
				return
			}
			b := labels.NewBuilder(labels.EmptyLabels())
			for k, v := range s.staticLabels {
				b.Set(k, v)
			}
			e.byLabels(b, r, ev)
			b.Set(model.MetricNameLabel, r.Name)
			se = &series{labels: b.Labels(), created: now}
			s.series[key] = se
		}
		se.count++
		se.last = now
		s.mu.Unlock()
	case KindAlert:
		key := groupKey(r.By, ev)
		s.mu.Lock()
		a := e.raise(s, key, ev, now, nil)
		s.mu.Unlock()
		if a != nil {
			e.send(a)
		}
	case KindNewValue:
		v, ok := ev.Get(r.Field)
		if !ok || v == "" {
			return
		}
		key := groupKey(r.By, ev) + "\x01" + v
		s.mu.Lock()
		last, seen := s.seen[key]
		if !seen && len(s.seen) >= e.cfg.MaxValuesPerRule {
			s.mu.Unlock()
			e.m.dropped.WithLabelValues(string(r.Kind)).Inc()
			return
		}
		s.seen[strings.Clone(key)] = now
		var a *notifier.Alert
		if !seen || now.Sub(last) > e.lookback(r) {
			a = e.raise(s, key, ev, now, &labels.Label{Name: LabelName(r.Field), Value: strings.Clone(v)})
		}
		s.mu.Unlock()
		if a != nil {
			e.send(a)
		}
	}
}

// raise records a match of an alert group and returns the notification to
// send, if the throttle allows one. Called with s.mu held.
func (e *Engine) raise(s *ruleState, key string, ev *collector.Event, now time.Time, extra *labels.Label) *notifier.Alert {
	r := s.rule
	a := s.alerts[key]
	if a == nil {
		if len(s.alerts) >= e.cfg.MaxSeriesPerRule {
			e.m.dropped.WithLabelValues(string(r.Kind)).Inc()
			return nil
		}
		b := labels.NewBuilder(labels.EmptyLabels())
		e.byLabels(b, r, ev)
		if extra != nil {
			b.Set(extra.Name, extra.Value)
		}
		d := templateData{ev: ev, Labels: b.Labels().Map(), Value: 1}
		for k, v := range render(r.labelTmpl, d) {
			b.Set(k, v)
		}
		b.Set(labels.AlertName, r.Name)
		a = &alertState{labels: b.Labels(), activeAt: now}
		a.annotations = labels.FromMap(render(r.annTmpl, d))
		s.alerts[strings.Clone(key)] = a
	}
	if r.Kind == KindAlert || a.count == 0 {
		a.lastMatch = now
	}
	a.count++
	if !a.lastSent.IsZero() && now.Sub(a.lastSent) < e.throttle(r) {
		return nil
	}
	a.lastSent, a.lastNotified = now, now
	return &notifier.Alert{
		Labels: a.labels, Annotations: a.annotations, StartsAt: a.activeAt,
		EndsAt: e.endsAt(r, now),
	}
}

// endsAt is the EndsAt of a firing notification sent at now: past the
// moment the alert resolves by itself, and, as Prometheus does, at least
// four resends ahead, so Alertmanager keeps it firing between resends but
// resolves it if leitstand is gone.
func (e *Engine) endsAt(r *Rule, now time.Time) time.Time {
	return now.Add(max(e.resolveAfter(r), e.throttle(r), 4*e.resendDelay()))
}

func (e *Engine) resendDelay() time.Duration {
	if e.opts.ResendDelay > 0 {
		return e.opts.ResendDelay
	}
	return time.Minute
}

func (e *Engine) throttle(r *Rule) time.Duration {
	if r.Throttle > 0 {
		return r.Throttle
	}
	return time.Duration(e.cfg.Throttle)
}

func (e *Engine) resolveAfter(r *Rule) time.Duration {
	if r.ResolveAfter > 0 {
		return r.ResolveAfter
	}
	return time.Duration(e.cfg.ResolveAfter)
}

func (e *Engine) lookback(r *Rule) time.Duration {
	if r.Lookback > 0 {
		return r.Lookback
	}
	return time.Duration(e.cfg.Lookback)
}

func (e *Engine) send(as ...*notifier.Alert) {
	if len(as) == 0 {
		return
	}
	e.m.notifications.Add(float64(len(as)))
	if e.opts.Notifier != nil {
		e.opts.Notifier.Send(as...)
	}
}

// Tick appends the record rules' counts at now, resolves quiet alerts and
// forgets values older than their look-back. The loop started by Start
// calls it every interval; RunTests drives it directly.
func (e *Engine) Tick(ctx context.Context, now time.Time) error {
	set := e.set.Load()
	var (
		resolved []*notifier.Alert // resolved, and firing ones refreshed
		app      storage.AppenderV2
		appended int
		expired  int
		// zeroed are the series that got their zero sample in this
		// append; they get it again if the append is rolled back.
		zeroed []*series
		// counts are the series as appended, written before the commit.
		counts = map[string][]seriesSnapshot{}
	)
	if e.opts.Appendable != nil {
		app = e.opts.Appendable.AppenderV2(ctx)
	}
	ts := now.UnixMilli()
	idle := time.Duration(e.cfg.IdleTimeout)
	staleNaN := math.Float64frombits(value.StaleNaN)
	var errs []error
	for _, s := range set.rules {
		r := s.rule
		s.mu.Lock()
		for k, se := range s.series {
			if now.Sub(se.last) < idle {
				continue
			}
			// Idle: the group went away. Dropping it frees its place under
			// the cap; a staleness marker ends it in the TSDB at once, as
			// for a vanished scrape target (best effort: without it the
			// series just ages out of PromQL's look-back). A later match
			// starts it again from 0, which increase() takes as a reset.
			delete(s.series, k)
			expired++
			if app != nil && se.appended {
				if _, err := app.Append(0, se.labels, 0, ts, staleNaN, nil, nil, storage.AppendV2Options{}); err == nil {
					appended++
				}
			}
		}
		if app != nil {
			for _, se := range s.series {
				if !se.appended {
					// A new series starts from 0 at its first match, as
					// Prometheus' created-timestamp zero ingestion does:
					// without it increase() and rate() cannot see the first
					// burst of a new group (one sample, no increase), so a
					// threshold on failed logins from a new host would never
					// fire. Best effort: a refused zero sample (the series
					// has later samples from an earlier life) is left out.
					se.appended = true
					zeroed = append(zeroed, se)
					if zt := min(se.created.UnixMilli(), ts-1); !se.created.IsZero() {
						if _, err := app.Append(0, se.labels, 0, zt, 0, nil, nil, storage.AppendV2Options{}); err == nil {
							appended++
						}
					}
				}
				if _, err := app.Append(0, se.labels, 0, ts, se.count, nil, nil, storage.AppendV2Options{}); err != nil {
					errs = append(errs, err)
					continue
				}
				appended++
			}
			if len(s.series) > 0 {
				counts[r.ID()] = s.seriesSnapshots()
			}
		}
		quiet, throttle := e.resolveAfter(r), e.throttle(r)
		for k, a := range s.alerts {
			switch {
			case now.Sub(a.lastMatch) >= quiet:
				resolved = append(resolved, &notifier.Alert{Labels: a.labels, Annotations: a.annotations, StartsAt: a.activeAt, EndsAt: now})
				delete(s.alerts, k)
			case a.lastMatch.After(a.lastSent) && now.Sub(a.lastSent) >= throttle:
				// Matches came in while throttled and none since the window
				// ended: refresh the alert so a receiver that honours EndsAt
				// does not resolve it before we do.
				a.lastSent, a.lastNotified = now, now
				resolved = append(resolved, &notifier.Alert{Labels: a.labels, Annotations: a.annotations, StartsAt: a.activeAt, EndsAt: e.endsAt(r, now)})
			case now.Sub(a.lastNotified) >= e.resendDelay():
				// Still firing: send it again, as the PromQL rules do, so
				// an Alertmanager that missed it (down, restarted) gets it.
				// The router does not keep what it failed to deliver.
				a.lastNotified = now
				resolved = append(resolved, &notifier.Alert{Labels: a.labels, Annotations: a.annotations, StartsAt: a.activeAt, EndsAt: e.endsAt(r, now)})
			}
		}
		lb := e.lookback(r)
		for k, t := range s.seen {
			if now.Sub(t) > lb {
				delete(s.seen, k)
			}
		}
		s.mu.Unlock()
	}
	if app != nil {
		if len(errs) == 0 {
			e.saveCounts(counts)
		}
		if len(errs) > 0 {
			errs = append(errs, app.Rollback())
			appended = 0
		} else if err := app.Commit(); err != nil {
			errs = append(errs, err)
			appended = 0
		}
		if appended == 0 && len(zeroed) > 0 {
			e.unzero(set, zeroed)
		}
	}
	e.m.appended.Add(float64(appended))
	if expired > 0 {
		e.m.expired.WithLabelValues("series").Add(float64(expired))
	}
	e.send(resolved...)
	if err := errors.Join(errs...); err != nil {
		e.m.appendErrors.Inc()
		return fmt.Errorf("log rules: append: %w", err)
	}
	return nil
}

// unzero marks series whose zero sample was rolled back as not appended,
// so the next Tick appends it again.
func (e *Engine) unzero(set *ruleSet, zeroed []*series) {
	z := make(map[*series]bool, len(zeroed))
	for _, se := range zeroed {
		z[se] = true
	}
	for _, s := range set.rules {
		s.mu.Lock()
		for _, se := range s.series {
			if z[se] {
				se.appended = false
			}
		}
		s.mu.Unlock()
	}
}

// Alerts lists the active alerts for /api/v1/alerts; pass it to
// (*rules.Engine).AddAlertSource.
func (e *Engine) Alerts() []*promrules.Alert {
	var out []*promrules.Alert
	for _, s := range e.set.Load().rules {
		s.mu.Lock()
		for _, a := range s.alerts {
			out = append(out, &promrules.Alert{
				State: promrules.StateFiring, Labels: a.labels, Annotations: a.annotations,
				Value: a.count, ActiveAt: a.activeAt, FiredAt: a.activeAt, LastSentAt: a.lastSent,
				ValidUntil: a.lastMatch.Add(e.resolveAfter(s.rule)),
			})
		}
		s.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].Labels, out[j].Labels) < 0 })
	return out
}

// Series returns the current count of every record series (tests, RunTests).
func (e *Engine) Series() map[string]float64 {
	out := map[string]float64{}
	for _, s := range e.set.Load().rules {
		s.mu.Lock()
		for _, se := range s.series {
			out[se.labels.String()] = se.count
		}
		s.mu.Unlock()
	}
	return out
}

// Start restores state and runs the append/resolve/save loop on a context
// of its own. Starting a running engine is a no-op.
func (e *Engine) Start(context.Context) error {
	e.runMu.Lock()
	defer e.runMu.Unlock()
	if e.cancel != nil {
		return nil
	}
	// State is read at the first Start only: after a Shutdown the counters
	// in memory are newer than the file (Process keeps counting while the
	// loop is stopped).
	if !e.started {
		e.started = true
		if err := e.restoreState(); err != nil {
			e.log.Warn("log rules: state not restored", "err", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan struct{})
	go e.loop(ctx, e.done)
	return nil
}

func (e *Engine) loop(ctx context.Context, done chan struct{}) {
	defer close(done)
	tick := time.NewTicker(time.Duration(e.cfg.Interval))
	defer tick.Stop()
	save := time.NewTicker(time.Duration(e.cfg.StateInterval))
	defer save.Stop()
	var watch <-chan time.Time
	if e.opts.WatchInterval > 0 {
		w := time.NewTicker(e.opts.WatchInterval)
		defer w.Stop()
		watch = w.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-watch:
			e.watchFiles()
		case <-tick.C:
			if err := e.Tick(ctx, e.now()); err != nil && !errors.Is(err, rules.ErrNotRunning) {
				e.log.Warn("log rules: tick", "err", err)
			}
		case <-save.C:
			if err := e.SaveState(); err != nil {
				e.log.Warn("log rules: state not saved", "err", err)
			}
		}
	}
}

// Shutdown stops the loop and writes the state. Safe without Start and
// when called twice.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.runMu.Lock()
	defer e.runMu.Unlock()
	if e.cancel == nil {
		return nil
	}
	e.cancel()
	select {
	case <-e.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	e.cancel, e.done = nil, nil
	return e.SaveState()
}

type metrics struct {
	rules         prometheus.Gauge
	events        prometheus.Counter
	skippedSelf   prometheus.Counter
	matches       prometheus.Counter
	dropped       *prometheus.CounterVec
	expired       *prometheus.CounterVec
	notifications prometheus.Counter
	appended      prometheus.Counter
	appendErrors  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		rules:         prometheus.NewGauge(prometheus.GaugeOpts{Name: "leitstand_log_rules_loaded", Help: "Log rules loaded."}),
		events:        prometheus.NewCounter(prometheus.CounterOpts{Name: "leitstand_log_rules_events_total", Help: "Events offered to the log rules."}),
		skippedSelf:   prometheus.NewCounter(prometheus.CounterOpts{Name: "leitstand_log_rules_self_events_skipped_total", Help: "Events leitstand wrote about itself, never offered to log rules."}),
		matches:       prometheus.NewCounter(prometheus.CounterOpts{Name: "leitstand_log_rules_matches_total", Help: "Rule matches of events."}),
		dropped:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leitstand_log_rules_dropped_total", Help: "Matches not kept because a rule reached its series, alert group or seen-set cap."}, []string{"kind"}),
		expired:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leitstand_log_rules_expired_total", Help: "Record series dropped after idle_timeout without a match (what=series), and state of rules no longer loaded dropped after idle_timeout (what=rule_state)."}, []string{"what"}),
		notifications: prometheus.NewCounter(prometheus.CounterOpts{Name: "leitstand_log_rules_notifications_total", Help: "Alert notifications (firing and resolved) sent by log rules."}),
		appended:      prometheus.NewCounter(prometheus.CounterOpts{Name: "leitstand_log_rules_samples_appended_total", Help: "Samples of record rules appended to the TSDB."}),
		appendErrors:  prometheus.NewCounter(prometheus.CounterOpts{Name: "leitstand_log_rules_append_errors_total", Help: "Failed appends of record rule samples."}),
	}
	// Every known label value exists from the start at 0, so a dashboard
	// shows "0 dropped" rather than "No data", and increase() sees the
	// first drop.
	for _, k := range []Kind{KindRecord, KindAlert, KindNewValue} {
		m.dropped.WithLabelValues(string(k))
	}
	for _, what := range []string{"series", "rule_state"} {
		m.expired.WithLabelValues(what)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.rules, m.events, m.skippedSelf, m.matches, m.dropped, m.expired, m.notifications, m.appended, m.appendErrors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("log rules: metrics: %w", err)
			}
		}
	}
	return m, nil
}

var (
	_ collector.Stage     = (*Engine)(nil)
	_ collector.Component = (*Engine)(nil)
)
