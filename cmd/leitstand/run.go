package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/leitstand/leitstand/alerting"
	"github.com/leitstand/leitstand/anonymize"
	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/httpin"
	"github.com/leitstand/leitstand/collector/httpserver"
	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/collector/podlog"
	"github.com/leitstand/leitstand/collector/sentry"
	"github.com/leitstand/leitstand/collector/sink/elasticsearch"
	"github.com/leitstand/leitstand/collector/sink/file"
	"github.com/leitstand/leitstand/collector/sink/forward"
	"github.com/leitstand/leitstand/collector/spool"
	"github.com/leitstand/leitstand/collector/syslog"
	"github.com/leitstand/leitstand/collector/telemetry"
	"github.com/leitstand/leitstand/rules"
	"github.com/leitstand/leitstand/rules/logrules"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// run starts the daemon and blocks until SIGINT or SIGTERM has drained it.
func run(o options, stderr io.Writer) int {
	cfg, err := LoadConfig(o.configFile, o.dataDir)
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	level, _ := parseLevel(cfg.Log.Level)
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))

	d, err := build(cfg, o.dataDir, log)
	if err != nil {
		log.Error("start-up failed", "err", err)
		return 1
	}
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	if err := d.start(); err != nil {
		log.Error("start-up failed", "err", err)
		return 1
	}
	log.Info("leitstand started", "version", version, "http", d.http.Addr().String(),
		"config", o.configFile, "data", o.dataDir, "events", cfg.Sinks.File.Dir)
	if d.sentryDSN != "" {
		log.Info("Sentry SDKs on this machine can send to the embedded default's DSN", "dsn", d.sentryDSN)
	}

wait:
	for {
		select {
		case <-hup:
			// Rule files are reloaded without losing alert state; a broken
			// file keeps the rules that run.
			if d.rules == nil {
				log.Info("SIGHUP ignored: the agent has no rules to reload")
				continue
			}
			if err := errors.Join(d.rules.Reload(), d.logRules.Reload()); err != nil {
				log.Error("reload on SIGHUP failed; the previous rules stay active", "err", err)
			} else {
				log.Info("rules reloaded on SIGHUP")
			}
		case sig := <-signals:
			log.Info("stopping on signal; draining", "signal", sig.String(), "deadline", cfg.ShutdownTimeout.String())
			break wait
		case err := <-d.http.Err():
			log.Error("a component failed; stopping", "err", err)
			break wait
		}
	}
	// A second signal means "now": exit without waiting for the drain.
	go func() {
		sig := <-signals
		log.Error("second signal; exiting without finishing the drain", "signal", sig.String())
		os.Exit(1)
	}()
	if err := d.stop(cfg.ShutdownTimeout); err != nil {
		log.Error("shutdown incomplete", "err", err)
		return 1
	}
	log.Info("leitstand stopped")
	return 0
}

// daemon is the wired set of components and the order they run in.
type daemon struct {
	log   *slog.Logger
	http  *httpserver.Server
	pipe  *pipeline.Pipeline
	sinks []collector.Sink // the pipeline's sinks
	// downstream are the sinks behind the spool; they start before it and
	// stop after it.
	downstream []collector.Sink
	stopping   atomic.Bool

	rules    *rules.Engine
	logRules *logrules.Engine
	router   *alerting.Router // nil when no alerting is configured
	// search answers the role API's event search; its idle connections
	// to Elasticsearch are closed at stop.
	search *elasticsearch.SearchClient
	// sentryDSN is the embedded default's DSN, printed at start-up.
	sentryDSN string
	// receivers besides the HTTP listener; they start last and stop first.
	receivers []namedComponent

	// started lists what start has started, so stop can stop exactly that,
	// in reverse: receivers first, then the pipeline, then the sinks.
	started []namedComponent
}

type namedComponent struct {
	name string
	c    collector.Component
}

func build(cfg Config, dataDir string, log *slog.Logger) (*daemon, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "leitstand", Name: "build_info", Help: "Build information; always 1.",
			ConstLabels: prometheus.Labels{"version": version},
		}, func() float64 { return 1 }),
	)
	m := telemetry.New(reg)
	d := &daemon{log: log}

	if cfg.Sinks.File.Enabled {
		d.sinks = append(d.sinks, file.New(cfg.Sinks.File, reg, log.With("component", "file")))
	}
	if cfg.spooled() {
		// Sinks that talk to peers sit behind the spool: the pipeline's
		// acknowledgement means "on disk", and each peer is fed at its pace.
		es, err := elasticsearch.New(cfg.Sinks.Elasticsearch, reg, log.With("component", "elasticsearch"))
		if err != nil {
			return nil, err
		}
		d.downstream = append(d.downstream, es)
		d.sinks = append(d.sinks, spool.New(cfg.Spool, d.downstream, reg, log.With("component", "spool")))
	}
	if cfg.agent() {
		// The agent keeps no spool: its sources acknowledge only what the
		// aggregator acknowledged (the pod log files are the buffer).
		fwd, err := forward.New(cfg.Sinks.Forward, m, reg, log.With("component", "forward"))
		if err != nil {
			return nil, err
		}
		d.sinks = append(d.sinks, fwd)
	}
	// Every event passes the anonymizer before any sink sees it.
	anon, err := anonymize.New(cfg.Anonymize, dataDir, reg)
	if err != nil {
		return nil, err
	}
	stages := []collector.Stage{anon}
	var forwardSentry sentry.Option
	if cfg.Sentry.Enabled && cfg.Sentry.Forward.Enabled {
		// Forwarding to an upstream Sentry is a sink, so it only ever sees
		// events after the anonymizer.
		fwd, err := sentry.NewForwarder(cfg.Sentry, anon, reg, log.With("component", "sentry_forward"))
		if err != nil {
			return nil, err
		}
		d.sinks = append(d.sinks, fwd)
		forwardSentry = sentry.WithForwarder(fwd)
	}
	// The agent evaluates no rules and keeps no TSDB: that is the
	// aggregators' work, once for the whole cluster.
	var engine *rules.Engine
	var logRules *logrules.Engine
	if !cfg.agent() {
		engine, err = rules.New(cfg.Rules, rules.Options{Logger: log.With("component", "rules"), Registerer: reg, Gatherer: reg})
		if err != nil {
			return nil, err
		}
		d.rules = engine
		if alertingConfigured(cfg.Alerting) {
			router, err := alerting.New(cfg.Alerting, alerting.Options{Logger: log.With("component", "alerting"), Registerer: reg})
			if err != nil {
				return nil, err
			}
			d.router = router
			engine.SetNotifier(router)
		}
		// Log rules see events after the anonymizer, so their templates can
		// only quote anonymized fields.
		var notify rules.Notifier
		if d.router != nil {
			notify = d.router
		}
		logRules, err = logrules.New(cfg.LogRules, logrules.Options{Logger: log.With("component", "log_rules"), Registerer: reg, WatchInterval: cfg.Rules.WatchInterval, ResendDelay: cfg.Rules.ResendDelay,
			Appendable: engine.Appendable(), Notifier: notify})
		if err != nil {
			return nil, err
		}
		if err := logRules.LoadFiles(cfg.Rules.RuleFiles); err != nil {
			return nil, err
		}
		d.logRules = logRules
		engine.AddAlertSource(logRules.Alerts)
		if d.router != nil {
			// Pending alerts never reach the router; it counts them here.
			d.router.WatchRules(engine.ActiveAlerts)
		}
		stages = append(stages, logRules)
	}
	d.pipe = pipeline.New(cfg.Pipeline, stages, d.sinks, m, log.With("component", "pipeline"))

	if cfg.Podlog.Enabled {
		pl, err := podlog.New(cfg.Podlog, d.pipe, m, reg, log.With("component", "podlog"))
		if err != nil {
			return nil, err
		}
		d.receivers = append(d.receivers, namedComponent{"podlog", pl})
	}
	if cfg.Syslog.Enabled {
		sl, err := syslog.New(cfg.Syslog, d.pipe, m, reg, log.With("component", "syslog"))
		if err != nil {
			return nil, err
		}
		d.receivers = append(d.receivers, namedComponent{"syslog", sl})
	}

	mux := http.NewServeMux()
	if d.router != nil && rolesHaveTokens(cfg.Alerting) {
		// With role tokens, alerts, silences and the event search answer
		// per role; these paths are more specific than rules.APIPrefix, so
		// they win over the unscoped Prometheus view. Grafana then needs a
		// role's token too (platform-ops with scope all sees everything).
		var apiOpts []alerting.APIOption
		if cfg.Sinks.Elasticsearch.Enabled {
			sc, err := elasticsearch.NewSearchClient(cfg.Sinks.Elasticsearch)
			if err != nil {
				return nil, err
			}
			d.search = sc
			apiOpts = append(apiOpts, alerting.WithEventSearch(alerting.EventSearch{
				Transport: sc,
				Indices:   cfg.Sinks.Elasticsearch.SearchIndices(),
				Timeout:   cfg.Sinks.Elasticsearch.RequestTimeout,
			}))
		}
		api := instrument(reg, "roles_api", http.StripPrefix("/api/v1",
			d.router.NewAPI(d.router.FromRules(engine.ActiveAlerts, logRules.Alerts), apiOpts...)))
		for _, p := range []string{"/api/v1/alerts", "/api/v1/silences", "/api/v1/events/search"} {
			mux.Handle(p, api)
		}
	}
	if cfg.Sentry.Enabled {
		scfg := cfg.Sentry
		scfg.Loopback = cfg.allLoopback()
		var opts []sentry.Option
		if forwardSentry != nil {
			opts = append(opts, forwardSentry)
		}
		rcv, err := sentry.New(scfg, d.pipe, m, reg, log.With("component", "sentry"), opts...)
		if err != nil {
			return nil, err
		}
		mux.Handle("/api/{project_id}/", instrument(reg, "sentry", rcv.Handler()))
		d.receivers = append(d.receivers, namedComponent{"sentry", rcv})
		d.sentryDSN = rcv.DevDSN(cfg.HTTP.Listen)
	}
	var ingest *httpin.Handler
	if cfg.Ingest.Enabled {
		ingest, err = httpin.New(cfg.Ingest, d.pipe, m, log.With("component", "ingest"))
		if err != nil {
			return nil, err
		}
		mux.Handle(httpin.Path, instrument(reg, "ingest", ingest))
	}
	// /api/v1/ is the Prometheus query API and remote_write; it is more
	// specific than the Sentry routes, so a Sentry project cannot be
	// called "v1".
	if engine != nil {
		mux.Handle(rules.APIPrefix, instrument(reg, "prometheus_api", guardPrometheusAPI(cfg, ingest, d.router, engine.Handler())))
	}
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeStatus(w, http.StatusOK, map[string]string{"status": "alive"})
	})
	mux.HandleFunc("/readyz", d.readyz)
	d.http = httpserver.New(cfg.HTTP, mux, log.With("component", "http"))
	return d, nil
}

// instrument counts requests and their latency per handler and status code.
func instrument(reg prometheus.Registerer, handler string, h http.Handler) http.Handler {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "leitstand", Name: "http_requests_total", Help: "HTTP requests by handler and status code.",
		ConstLabels: prometheus.Labels{"handler": handler},
	}, []string{"code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "leitstand", Name: "http_request_duration_seconds", Help: "HTTP request latency by handler.",
		ConstLabels: prometheus.Labels{"handler": handler},
	}, []string{"code"})
	reg.MustRegister(requests, duration)
	return promhttp.InstrumentHandlerCounter(requests, promhttp.InstrumentHandlerDuration(duration, h))
}

// start starts sinks first and receivers last, so nothing is received that
// cannot go anywhere. A failure stops what already started.
func (d *daemon) start() error {
	order := []namedComponent{}
	for _, s := range d.downstream {
		order = append(order, namedComponent{"sink " + s.Name(), s})
	}
	for _, s := range d.sinks {
		order = append(order, namedComponent{"sink " + s.Name(), s})
	}
	if d.router != nil {
		order = append(order, namedComponent{"alerting", d.router})
	}
	if d.rules != nil {
		order = append(order, namedComponent{"rules", d.rules}, namedComponent{"log rules", d.logRules})
	}
	order = append(order, namedComponent{"pipeline", d.pipe})
	order = append(order, d.receivers...)
	order = append(order, namedComponent{"http", d.http})
	for _, nc := range order {
		if err := nc.c.Start(context.Background()); err != nil {
			stopErr := d.stop(10 * time.Second)
			return errors.Join(fmt.Errorf("starting %s: %w", nc.name, err), stopErr)
		}
		d.started = append(d.started, nc)
	}
	return nil
}

// stop marks the daemon not ready and stops the started components in
// reverse order within one deadline; errors are collected, not allowed to
// stop the loop, so every sink gets its chance to flush.
func (d *daemon) stop(timeout time.Duration) error {
	d.stopping.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var errs []error
	for i := len(d.started) - 1; i >= 0; i-- {
		nc := d.started[i]
		d.log.Info("stopping " + nc.name)
		if err := nc.c.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping %s: %w", nc.name, err))
		}
	}
	d.started = nil
	if d.search != nil {
		d.search.Close()
	}
	return errors.Join(errs...)
}

// readyz answers 503 while shutting down or while a sink or the pipeline
// is not ready, so load balancers stop sending before the process stops.
func (d *daemon) readyz(w http.ResponseWriter, _ *http.Request) {
	if d.stopping.Load() {
		writeStatus(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
		return
	}
	problems := map[string]string{}
	for _, s := range d.sinks {
		if rc, ok := s.(collector.ReadinessChecker); ok {
			if err := rc.Ready(); err != nil {
				problems["sink "+s.Name()] = err.Error()
			}
		}
	}
	if err := d.pipe.Ready(); err != nil {
		problems["pipeline"] = err.Error()
	}
	if len(problems) > 0 {
		writeStatus(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "problems": problems})
		return
	}
	writeStatus(w, http.StatusOK, map[string]string{"status": "ready"})
}

// guardPrometheusAPI lets only authenticated callers use the Prometheus
// API once the listener leaves loopback: remote_write takes an ingest
// token (it is data coming in), queries a role token whose scope is all
// (series are not split by role). Client certificates
// (http.tls.client_ca_file) authenticate as they do for the intake.
func guardPrometheusAPI(cfg Config, ingest *httpin.Handler, router *alerting.Router, h http.Handler) http.Handler {
	if httpserver.IsLoopback(cfg.HTTP.Listen) || cfg.HTTP.TLS.ClientCAFile != "" {
		return h
	}
	deny := func(w http.ResponseWriter, code int, msg string) {
		if code == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="leitstand"`)
		}
		writeStatus(w, code, map[string]string{"status": "error", "errorType": "unauthorized", "error": msg})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == rules.APIPrefix+"write" {
			if ingest == nil || !ingest.Authorized(r) {
				deny(w, http.StatusUnauthorized, "remote_write needs a bearer token from ingest.auth")
				return
			}
		} else {
			var role *alerting.Role
			if router != nil {
				role = router.Authenticate(r)
			}
			switch {
			case role == nil:
				deny(w, http.StatusUnauthorized, "the Prometheus API needs the bearer token of a role with scope all: true")
				return
			case !role.Scope.All:
				deny(w, http.StatusForbidden, "role "+role.Name+" may not query every series; the Prometheus API needs a role with scope all: true")
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// rolesHaveTokens reports whether any role can call the role-scoped API.
func rolesHaveTokens(c alerting.Config) bool {
	for _, r := range c.Roles {
		if len(r.TokenFiles) > 0 || len(r.TokenSHA256) > 0 {
			return true
		}
	}
	return false
}

// alertingConfigured reports whether alerts have anywhere to go.
func alertingConfigured(c alerting.Config) bool {
	return len(c.Alertmanagers) > 0 || len(c.Roles) > 0
}

func writeStatus(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
