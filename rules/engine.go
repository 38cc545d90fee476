package rules

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sort"
	"sync"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/notifier"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/leitstand/leitstand/collector"
)

// Notifier receives the alerts that leave the engine: firing alerts every
// resend_delay, resolved ones when they resolve, with Prometheus' EndsAt
// semantics (EndsAt = last evaluation + 4 × resend_delay while firing).
// Prometheus' *notifier.Manager implements it; the role router (which adds
// the role label and forwards to Alertmanager) is meant to. Send must not
// block for long: it is called from the rule evaluation loop.
type Notifier interface {
	Send(alerts ...*notifier.Alert)
}

// Options are the engine's collaborators, supplied by the wiring.
type Options struct {
	// Logger for the engine and the Prometheus parts it runs. Default: discard.
	Logger *slog.Logger
	// Registerer takes the engine's own leitstand_rule_* metrics. Nil: not
	// registered.
	Registerer prometheus.Registerer
	// Gatherer is the registry whose metrics the engine appends to the
	// TSDB every self_metrics.interval (leitstand's own /metrics). Nil:
	// nothing is appended.
	Gatherer prometheus.Gatherer
	// Notifier receives the alerts; nil keeps them in the engine only
	// (visible in /api/v1/alerts and ALERTS). SetNotifier may set it later.
	Notifier Notifier
}

// Engine runs the rule manager over the embedded TSDB or a remote
// datasource, plus the TSDB's intake (scraping, remote_write, self-metrics).
// It implements collector.Component: Start opens the TSDB and begins
// evaluating; Shutdown stops everything and closes the TSDB; both are safe
// to call repeatedly, and the engine can be started again after a Shutdown.
type Engine struct {
	cfg  Config
	opts Options
	log  *slog.Logger
	m    *metrics

	mu       sync.RWMutex
	run      *running
	notifyMu sync.RWMutex
	notifier Notifier

	sourcesMu sync.RWMutex
	sources   []AlertSource

	reloadMu sync.Mutex
	// manual is set by tests: groups are loaded but not run, and are
	// evaluated by evalAll only.
	manual bool
}

// running is what one Start built; Shutdown tears it down.
type running struct {
	ctx    context.Context
	cancel context.CancelFunc
	reg    *prometheus.Registry // Prometheus' internal metrics of this run

	db        *tsdb.DB    // embedded mode
	state     *stateStore // remote mode
	queryable storage.Queryable
	base      storage.AppendableV2
	apps      map[string]*countingAppendable
	engine    *promql.Engine
	manager   *promrules.Manager
	groups    map[string]*promrules.Group // manual mode only
	evals     int                         // manual mode: evalAll calls so far
	write     http.Handler                // remote_write receiver, nil when off
	proxy     http.Handler                // remote mode: query API of the remote
	scrape    *scraper
	rw        *remoteWriter

	filesHash [sha256.Size]byte
	wg        sync.WaitGroup
}

func (r *running) appendable(source string) storage.AppendableV2 {
	if a, ok := r.apps[source]; ok {
		return a
	}
	return r.apps[SourceLogRules]
}

// New builds an engine from a validated config. Nothing runs until Start.
func New(cfg Config, opts Options) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{cfg: cfg, opts: opts, log: opts.Logger, notifier: opts.Notifier}
	e.m = newMetrics(opts.Registerer, e)
	return e, nil
}

// Config returns the engine's config.
func (e *Engine) Config() Config { return e.cfg }

// SetNotifier replaces the alert receiver (nil: keep alerts in the engine).
func (e *Engine) SetNotifier(n Notifier) {
	e.notifyMu.Lock()
	e.notifier = n
	e.notifyMu.Unlock()
}

// Send implements notifier-side counting and hands alerts to the
// configured Notifier; it is the rule manager's sender.
func (e *Engine) send(alerts ...*notifier.Alert) {
	e.notifyMu.RLock()
	n := e.notifier
	e.notifyMu.RUnlock()
	if n == nil || len(alerts) == 0 {
		return
	}
	e.m.alertsSent.Add(float64(len(alerts)))
	n.Send(alerts...)
}

type senderFunc func(alerts ...*notifier.Alert)

func (f senderFunc) Send(alerts ...*notifier.Alert) { f(alerts...) }

func (e *Engine) current() *running {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.run
}

func (e *Engine) tsdb() *tsdb.DB {
	if r := e.current(); r != nil {
		return r.db
	}
	return nil
}

// Appendable returns the storage the log rules append their derived series
// to (counted as source log_rules). It stays valid across Start/Shutdown;
// while the engine is not running, appends fail with ErrNotRunning. In
// remote mode the samples go to remote.write_url when set.
func (e *Engine) Appendable() storage.AppendableV2 {
	return engineAppendable{e: e, source: SourceLogRules}
}

// Queryable returns the embedded TSDB for reading (ErrNotRunning while
// stopped; in remote mode only the alert state is there).
func (e *Engine) Queryable() storage.Queryable { return engineQueryable{e: e} }

// Gatherer returns the metrics of the Prometheus parts the engine runs
// (prometheus_tsdb_*, prometheus_rule_*, prometheus_engine_*,
// prometheus_sd_*, prometheus_target_*) for the current run; the wiring may
// add it to /metrics with prometheus.Gatherers.
func (e *Engine) Gatherer() prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		r := e.current()
		if r == nil {
			return nil, nil
		}
		return r.reg.Gather()
	})
}

// Start opens the TSDB (or the remote state file), loads the rule files and
// starts evaluating, scraping and appending self-metrics. A bad rule file
// fails Start with file:line errors. Work runs on a context of its own.
func (e *Engine) Start(_ context.Context) error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	if e.current() != nil {
		return nil
	}
	r, err := e.build()
	if err != nil {
		return err
	}
	files, err := e.loadable()
	if err != nil {
		e.teardown(r)
		return err
	}
	if err := e.apply(r, files); err != nil {
		e.teardown(r)
		return err
	}
	if !e.manual {
		r.wg.Go(r.manager.Run)
	}
	if r.scrape != nil {
		if err := r.scrape.start(r.ctx, &r.wg); err != nil {
			e.teardown(r)
			return err
		}
	}
	if e.cfg.SelfMetrics.Enabled && e.opts.Gatherer != nil && r.db != nil {
		r.wg.Go(func() { e.selfMetricsLoop(r) })
	}
	if e.cfg.WatchInterval > 0 && !e.manual {
		r.wg.Go(func() { e.watch(r) })
	}
	e.mu.Lock()
	e.run = r
	e.mu.Unlock()
	e.log.Info("rule engine started", "datasource", e.cfg.Datasource, "rule_files", len(files),
		"groups", len(e.RuleGroups()))
	return nil
}

// build opens storage and creates the PromQL engine and rule manager.
func (e *Engine) build() (*running, error) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{ctx: ctx, cancel: cancel, reg: prometheus.NewRegistry(), apps: map[string]*countingAppendable{}}
	logger := e.log
	var err error
	switch e.cfg.Datasource {
	case DatasourceEmbedded:
		if err = os.MkdirAll(e.cfg.TSDB.Path, 0o755); err != nil {
			cancel()
			return nil, fmt.Errorf("rules: tsdb: %w", err)
		}
		opts := tsdb.DefaultOptions()
		opts.RetentionDuration = time.Duration(e.cfg.TSDB.Retention).Milliseconds()
		opts.MaxBytes = int64(e.cfg.TSDB.RetentionSize)
		opts.OutOfOrderTimeWindow = e.cfg.TSDB.OutOfOrderWindow.Milliseconds()
		r.db, err = tsdb.Open(e.cfg.TSDB.Path, logger.With("component", "tsdb"), r.reg, opts, nil)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("rules: opening the TSDB in %s: %w", e.cfg.TSDB.Path, err)
		}
		r.queryable, r.base = r.db, r.db
	case DatasourceRemote:
		r.state, err = openStateStore(e.cfg.Remote.StateFile)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("rules: %w", err)
		}
		if e.cfg.Remote.WriteURL != "" {
			r.rw = newRemoteWriter(e.cfg.Remote, e.m, logger)
			r.wg.Go(func() { r.rw.run(ctx) })
		}
		r.queryable = r.state
		r.base = &remoteOutput{state: r.state, rw: r.rw}
		target, _ := url.Parse(e.cfg.Remote.URL)
		r.proxy = newQueryProxy(target, e.cfg.Remote)
	}
	for _, s := range []string{SourceScrape, SourceRemoteWrite, SourceSelf, SourceRules, SourceLogRules} {
		r.apps[s] = newCounting(r.base, e.m, s)
	}
	r.engine = promql.NewEngine(promql.EngineOpts{
		Logger:        logger.With("component", "query engine"),
		Reg:           r.reg,
		MaxSamples:    e.cfg.Query.MaxSamples,
		Timeout:       e.cfg.Query.Timeout,
		LookbackDelta: e.cfg.Query.LookbackDelta,
		// Prometheus turns these on unconditionally since 2.33; library
		// users get them off unless they ask.
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		NoStepSubqueryIntervalFn: func(int64) int64 {
			return e.cfg.EvaluationInterval.Milliseconds()
		},
		Parser: newParser(),
	})
	var queryFunc promrules.QueryFunc
	if e.cfg.Datasource == DatasourceRemote {
		queryFunc = newRemoteQueryFunc(e.cfg.Remote, e.m)
	} else {
		queryFunc = promrules.EngineQueryFunc(r.engine, r.queryable)
	}
	var extURL *url.URL
	if e.cfg.ExternalURL != "" {
		extURL, _ = url.Parse(e.cfg.ExternalURL)
	}
	p := newParser()
	r.manager = promrules.NewManager(&promrules.ManagerOptions{
		ExternalURL:  extURL,
		QueryFunc:    queryFunc,
		NotifyFunc:   promrules.SendAlerts(senderFunc(e.send), e.cfg.ExternalURL),
		Context:      ctx,
		AppendableV2: r.apps[SourceRules],
		Queryable:    r.queryable,
		Logger:       logger.With("component", "rule manager"),
		Registerer:   r.reg,
		// The zero values of these three are traps: Prometheus' flags
		// default to 1h, 10m and 1m.
		OutageTolerance: e.cfg.OutageTolerance,
		ForGracePeriod:  e.cfg.ForGracePeriod,
		ResendDelay:     e.cfg.ResendDelay,
		GroupLoader:     fileLoader{parser: p},
		DefaultRuleQueryOffset: func() time.Duration {
			return e.cfg.RuleQueryOffset
		},
		// Groups added by a reload restore their `for` state too.
		RestoreNewRuleGroups: true,
		Parser:               p,
	})
	if r.db != nil && e.cfg.RemoteWriteReceiver.Enabled {
		r.write = remote.NewWriteHandler(logger.With("component", "remote_write"), r.reg, r.apps[SourceRemoteWrite],
			remoteapi.MessageTypes{remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType}, false, false)
	}
	if r.db != nil && len(e.cfg.Scrape.Jobs) > 0 {
		s, err := newScraper(e.cfg.Scrape, r.apps[SourceScrape], r.reg, logger.With("component", "scrape"))
		if err != nil {
			e.teardown(r)
			return nil, fmt.Errorf("rules: scrape: %w", err)
		}
		r.scrape = s
	}
	return r, nil
}

// loadable expands and checks the rule files, returning file:line errors.
func (e *Engine) loadable() ([]string, error) {
	files, err := ExpandRuleFiles(e.cfg.RuleFiles)
	if err != nil {
		return nil, err
	}
	if err := CheckRuleFiles(files); err != nil {
		return nil, err
	}
	return files, nil
}

// apply loads files into the run's rule manager, keeping the state of
// unchanged groups and of alerts in changed ones.
func (e *Engine) apply(r *running, files []string) error {
	extLabels := labels.FromMap(e.cfg.ExternalLabels)
	var err error
	if e.manual {
		var errs []error
		r.groups, errs = r.manager.LoadGroups(e.cfg.EvaluationInterval, extLabels, e.cfg.ExternalURL, e.iterate, false, files...)
		err = errors.Join(errs...)
	} else {
		err = r.manager.Update(e.cfg.EvaluationInterval, files, extLabels, e.cfg.ExternalURL, e.iterate)
	}
	if err != nil {
		e.m.reloads.WithLabelValues("failure").Inc()
		e.m.lastReloadOK.Set(0)
		return fmt.Errorf("rules: loading rule files: %w", err)
	}
	r.filesHash = hashFiles(files)
	e.m.reloads.WithLabelValues("success").Inc()
	e.m.lastReloadOK.Set(1)
	e.m.lastReloadTime.SetToCurrentTime()
	return nil
}

// iterate evaluates one group once and records leitstand's metrics of it.
func (e *Engine) iterate(ctx context.Context, g *promrules.Group, ts time.Time) {
	start := time.Now()
	promrules.DefaultEvalIterationFunc(ctx, g, ts)
	e.m.evalDuration.WithLabelValues(g.File(), g.Name()).Observe(time.Since(start).Seconds())
	e.m.evaluations.WithLabelValues(g.File(), g.Name()).Inc()
	failed := 0
	for _, rule := range g.Rules() {
		if rule.LastError() != nil {
			failed++
		}
	}
	e.m.evalFailures.WithLabelValues(g.File(), g.Name()).Add(float64(failed))
}

// Reload reads the rule files again (SIGHUP). Unchanged groups go on as
// they were; changed ones take over the state of their alerts. On an error
// the previous rules stay active and the error says which file and line.
func (e *Engine) Reload() error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	r := e.current()
	if r == nil {
		return ErrNotRunning
	}
	files, err := e.loadable()
	if err != nil {
		e.m.reloads.WithLabelValues("failure").Inc()
		e.m.lastReloadOK.Set(0)
		return err
	}
	if err := e.apply(r, files); err != nil {
		return err
	}
	e.log.Info("rule files reloaded", "files", len(files), "groups", len(e.RuleGroups()))
	return nil
}

// watch reloads when the content of the rule files (or the set of files a
// glob matches) changes.
func (e *Engine) watch(r *running) {
	t := time.NewTicker(e.cfg.WatchInterval)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		files, err := ExpandRuleFiles(e.cfg.RuleFiles)
		if err != nil {
			continue
		}
		e.reloadMu.Lock()
		same := hashFiles(files) == r.filesHash
		e.reloadMu.Unlock()
		if same {
			continue
		}
		if err := e.Reload(); err != nil {
			e.log.Error("rule files changed but cannot be loaded; the previous rules stay active", "err", err)
			// Do not retry the same broken content every tick.
			e.reloadMu.Lock()
			r.filesHash = hashFiles(files)
			e.reloadMu.Unlock()
		}
	}
}

func hashFiles(files []string) [sha256.Size]byte {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00", f)
		if fh, err := os.Open(f); err == nil {
			_, _ = io.Copy(h, fh)
			fh.Close()
		}
		h.Write([]byte{0})
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// Shutdown stops scraping, evaluation and intake, then closes the TSDB (or
// saves the remote state). Safe without Start and when called twice.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.reloadMu.Lock()
	e.mu.Lock()
	r := e.run
	e.run = nil
	e.mu.Unlock()
	e.reloadMu.Unlock()
	if r == nil {
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- e.teardown(r) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("rules: shutdown: %w", ctx.Err())
	}
}

// teardown stops what r started, in reverse order of the data flow.
func (e *Engine) teardown(r *running) error {
	var errs []error
	if r.scrape != nil {
		r.scrape.stop()
	}
	if r.manager != nil {
		r.manager.Stop()
	}
	r.cancel()
	r.wg.Wait()
	if r.state != nil {
		if err := r.state.save(); err != nil {
			errs = append(errs, err)
		}
	}
	if r.db != nil {
		if err := r.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("rules: closing the TSDB: %w", err))
		}
	}
	return errors.Join(errs...)
}

// RuleGroups returns the loaded groups, sorted by file and name.
func (e *Engine) RuleGroups() []*promrules.Group {
	r := e.current()
	if r == nil {
		return nil
	}
	if r.groups != nil {
		out := make([]*promrules.Group, 0, len(r.groups))
		for _, g := range r.groups {
			out = append(out, g)
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i].File() != out[j].File() {
				return out[i].File() < out[j].File()
			}
			return out[i].Name() < out[j].Name()
		})
		return out
	}
	return r.manager.RuleGroups()
}

// ActiveAlerts returns the pending and firing alerts of every alerting
// rule (resolved ones kept for resending are left out).
func (e *Engine) ActiveAlerts() []*promrules.Alert {
	var out []*promrules.Alert
	for _, g := range e.RuleGroups() {
		for _, ar := range g.AlertingRules() {
			out = append(out, ar.ActiveAlerts()...)
		}
	}
	return out
}

// AlertSource lists alerts kept outside the PromQL rule manager (the log
// rules' alerts), so that /api/v1/alerts shows them beside the PromQL ones.
// It is called per request and must be cheap and safe for concurrent use.
type AlertSource func() []*promrules.Alert

// AddAlertSource adds alerts of another engine to /api/v1/alerts.
func (e *Engine) AddAlertSource(src AlertSource) {
	e.sourcesMu.Lock()
	e.sources = append(e.sources, src)
	e.sourcesMu.Unlock()
}

func (e *Engine) alertSources() []AlertSource {
	e.sourcesMu.RLock()
	defer e.sourcesMu.RUnlock()
	return append([]AlertSource(nil), e.sources...)
}

// QueryEngine returns the PromQL engine of the current run (nil when
// stopped).
func (e *Engine) QueryEngine() promql.QueryEngine {
	if r := e.current(); r != nil {
		return r.engine
	}
	return nil
}

// evalAll evaluates every group once at ts (tests, with manual set). Like
// the groups' own loop, it restores the `for` state after the second
// evaluation; only then are ALERTS and ALERTS_FOR_STATE written.
func (e *Engine) evalAll(ctx context.Context, ts time.Time) {
	r := e.current()
	if r == nil {
		return
	}
	r.evals++
	for _, g := range e.RuleGroups() {
		e.iterate(ctx, g, ts)
		if r.evals == 2 {
			g.RestoreForState(ts)
		}
	}
}

// ParseExpr parses a PromQL expression with the engine's parser settings.
func ParseExpr(s string) (parser.Expr, error) { return newParser().ParseExpr(s) }

var _ collector.Component = (*Engine)(nil)
