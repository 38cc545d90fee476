package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/leitstand/leitstand/alerting"
	"github.com/leitstand/leitstand/anonymize"
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
	"github.com/leitstand/leitstand/internal/config"
	"github.com/leitstand/leitstand/rules"
	"github.com/leitstand/leitstand/rules/logrules"
)

// Config is leitstand's whole configuration: one YAML file whose sections
// are the components' own configs.
type Config struct {
	// Role is what this process is: "aggregator" (the default: receivers,
	// rules, alerting, Elasticsearch) or "agent" (the node agent of the
	// DaemonSet: pod logs in, anonymized, forwarded to the aggregators; no
	// rules, no TSDB, nothing kept on the node). The role chooses the
	// defaults the rest of the file is read over.
	Role string `yaml:"role"`
	// Log configures the daemon's own log.
	Log LogConfig `yaml:"log"`
	// ShutdownTimeout bounds draining on SIGTERM: receivers stop, queues
	// drain, sinks flush. Default 30s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// HTTP is the one HTTP listener.
	HTTP httpserver.Config `yaml:"http"`
	// Pipeline sizes the queue between receivers and sinks.
	Pipeline pipeline.Config `yaml:"pipeline"`
	// Ingest is the NDJSON intake at /v1/ingest.
	Ingest httpin.Config `yaml:"ingest"`
	// Syslog is the syslog receiver (UDP, TCP, TLS, Unix datagram).
	Syslog syslog.Config `yaml:"syslog"`
	// Sentry takes Sentry SDK envelopes at /api/<project>/envelope/.
	Sentry sentry.Config `yaml:"sentry"`
	// Podlog tails the kubelet's pod log files (/var/log/pods). On by
	// default for the agent; an aggregator may run it too (a single node).
	Podlog podlog.Config `yaml:"podlog"`
	// Anonymize is the stage every event passes before any sink.
	Anonymize anonymize.Config `yaml:"anonymize"`
	// Rules evaluates Prometheus rule files over the embedded TSDB or a
	// remote Prometheus, and serves the Prometheus query API.
	Rules rules.Config `yaml:"rules"`
	// LogRules evaluates the `log:` rules of the rule files in the stream.
	LogRules logrules.Config `yaml:"log_rules"`
	// Alerting labels alerts with their owning roles, sends them to
	// Alertmanager and serves the role-scoped API.
	Alerting alerting.Config `yaml:"alerting"`
	// Spool is the durable queue in front of the sinks that talk to peers
	// (Elasticsearch); it is used when one of them is enabled.
	Spool spool.Config `yaml:"spool"`
	// Sinks are where events go.
	Sinks SinksConfig `yaml:"sinks"`
}

// LogConfig configures the daemon's own log, JSON lines on stderr.
type LogConfig struct {
	// Level is debug, info, warn or error. Default info. Event contents are
	// never logged at info or above.
	Level string `yaml:"level"`
}

// SinksConfig lists the sinks.
type SinksConfig struct {
	// File writes NDJSON files under the data directory.
	File file.Config `yaml:"file"`
	// Elasticsearch indexes events, behind the spool.
	Elasticsearch elasticsearch.Config `yaml:"elasticsearch"`
	// Forward sends events to the aggregators' intake: the agent's sink,
	// used with role: agent only.
	Forward forward.Config `yaml:"forward"`
}

// Roles of a leitstand process.
const (
	RoleAggregator = "aggregator"
	RoleAgent      = "agent"
)

func (c *Config) agent() bool { return c.Role == RoleAgent }

// allLoopback reports whether every network listener stays on loopback
// (unix sockets are local too); only then may the embedded default's
// well-known Sentry key exist.
func (c *Config) allLoopback() bool {
	if !httpserver.IsLoopback(c.HTTP.Listen) {
		return false
	}
	if c.Syslog.Enabled {
		for _, l := range c.Syslog.Listeners {
			if l.Protocol != "unix" && !httpserver.IsLoopback(l.Address) {
				return false
			}
		}
	}
	return true
}

// spooled reports whether any sink sits behind the spool.
func (c *Config) spooled() bool { return c.Sinks.Elasticsearch.Enabled }

// DefaultConfig is the embedded default: everything on loopback, events to
// files under dataDir.
func DefaultConfig(dataDir string) Config {
	c := Config{
		Role:            RoleAggregator,
		Log:             LogConfig{Level: "info"},
		ShutdownTimeout: 30 * time.Second,
		HTTP:            httpserver.DefaultConfig(),
		Pipeline:        pipeline.DefaultConfig(),
		Ingest:          httpin.DefaultConfig(),
		Syslog:          syslog.DefaultConfig(),
		Sentry:          sentry.DefaultConfig(),
		Podlog:          podlog.DefaultConfig(),
		Anonymize:       anonymize.DefaultConfig(),
		Rules:           rules.DefaultConfig(dataDir),
		LogRules:        logrules.DefaultConfig(dataDir),
		Alerting:        alerting.DefaultConfig(),
		Spool:           spool.DefaultConfig(),
		Sinks:           SinksConfig{File: file.DefaultConfig(), Elasticsearch: elasticsearch.DefaultConfig(), Forward: forward.DefaultConfig()},
	}
	c.Sinks.File.Dir = filepath.Join(dataDir, "events")
	c.Spool.Dir = filepath.Join(dataDir, "spool")
	c.Podlog.StateDir = filepath.Join(dataDir, "podlog")
	return c
}

// AgentDefaultConfig is what role: agent starts from: pod logs in, the
// forward sink out, every listener but probes and metrics off.
func AgentDefaultConfig(dataDir string) Config {
	c := DefaultConfig(dataDir)
	c.Role = RoleAgent
	c.Podlog.Enabled = true
	c.Ingest.Enabled = false
	c.Syslog.Enabled = false
	c.Sentry.Enabled = false
	c.Sinks.File.Enabled = false
	// Each batch waits for the aggregator's acknowledgement, so a worker
	// per batch in flight keeps the receiver's window open; a small queue
	// keeps the node's memory small (the files are the buffer).
	c.Pipeline.Workers = max(c.Pipeline.Workers, c.Podlog.MaxInflightBatches)
	c.Pipeline.QueueSize = 4096
	return c
}

// LoadConfig reads the file at path over the defaults (no path: the embedded
// default) and validates the result. Every problem is returned at once, each
// with file, line and key path.
func LoadConfig(path, dataDir string) (Config, error) {
	cfg := DefaultConfig(dataDir)
	if path == "" {
		return cfg, errors.Join(cfg.Validate(), checkRuleFiles(cfg.Rules.RuleFiles))
	}
	src, err := config.LoadFile(path, &cfg)
	if err == nil || isFieldErrors(err) {
		if cfg.agent() {
			// The role picks the defaults: read the file again over the
			// agent's.
			cfg = AgentDefaultConfig(dataDir)
			src, err = config.LoadFile(path, &cfg)
		}
	}
	if err != nil && !isFieldErrors(err) {
		return cfg, fmt.Errorf("reading config: %w", err)
	}
	// Validate even after decode errors, so one run shows every problem;
	// keys that failed to decode are not reported twice.
	err = src.Annotate(dropRepeats(err, cfg.Validate()))
	// Rule files report their own file, line and column.
	return cfg, errors.Join(err, checkRuleFiles(cfg.Rules.RuleFiles))
}

// checkRuleFiles validates the rule files the config names.
func checkRuleFiles(patterns []string) error {
	if len(patterns) == 0 {
		return nil
	}
	files, err := rules.ExpandRuleFiles(patterns)
	if err != nil {
		return err
	}
	return errors.Join(rules.CheckRuleFiles(files), logrules.CheckFiles(patterns))
}

func isFieldErrors(err error) bool {
	for _, e := range config.Flatten(err) {
		var fe *config.FieldError
		if !errors.As(e, &fe) {
			return false
		}
	}
	return true
}

// dropRepeats joins decode errors with validation errors about other keys.
func dropRepeats(decodeErr, validateErr error) error {
	bad := map[string]bool{}
	out := config.Flatten(decodeErr)
	for _, e := range out {
		var fe *config.FieldError
		if errors.As(e, &fe) {
			bad[fe.Path] = true
		}
	}
	for _, e := range config.Flatten(validateErr) {
		var fe *config.FieldError
		if errors.As(e, &fe) && bad[fe.Path] {
			continue
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// Validate checks every section and the rules that span sections.
func (c *Config) Validate() error {
	var errs config.Errors
	if _, err := parseLevel(c.Log.Level); err != nil {
		errs.Addf("log.level", "%v", err)
	}
	if c.ShutdownTimeout < time.Second {
		errs.Addf("shutdown_timeout", "must be at least 1s, got %s", c.ShutdownTimeout)
	}
	errs.Nest("http", c.HTTP.Validate())
	errs.Nest("pipeline", c.Pipeline.Validate())
	errs.Nest("ingest", c.Ingest.Validate())
	errs.Nest("syslog", c.Syslog.Validate())
	errs.Nest("sentry", c.Sentry.Validate())
	errs.Nest("podlog", c.Podlog.Validate())
	errs.Nest("anonymize", c.Anonymize.Validate())
	errs.Nest("rules", c.Rules.Validate())
	errs.Nest("log_rules", c.LogRules.Validate())
	errs.Nest("alerting", c.Alerting.Validate())
	errs.Nest("sinks.file", c.Sinks.File.Validate())
	errs.Nest("sinks.elasticsearch", c.Sinks.Elasticsearch.Validate())
	if c.spooled() {
		errs.Nest("spool", c.Spool.Validate())
	}
	switch c.Role {
	case RoleAgent:
		c.validateAgent(&errs)
	case RoleAggregator:
		if !reflect.DeepEqual(c.Sinks.Forward, forward.DefaultConfig()) {
			errs.Addf("sinks.forward", "is the node agent's sink; set role: agent to use it")
		}
		if !c.Sinks.File.Enabled && !c.Sinks.Elasticsearch.Enabled {
			errs.Addf("sinks", "no sink is enabled; events would have nowhere to go")
		}
	default:
		errs.Addf("role", "must be %q or %q, got %q", RoleAggregator, RoleAgent, c.Role)
	}
	// A listener that leaves loopback must not take events from anyone.
	if _, _, err := net.SplitHostPort(c.HTTP.Listen); err == nil && c.Ingest.Enabled &&
		!httpserver.IsLoopback(c.HTTP.Listen) && !c.Ingest.HasAuth() && c.HTTP.TLS.ClientCAFile == "" {
		errs.Addf("http.listen", "%q is not a loopback address, so ingest.auth must list tokens, or http.tls.client_ca_file require client certificates (or set ingest.enabled: false)", c.HTTP.Listen)
	}
	return errs.Err()
}

// validateAgent checks what the agent role rules out: events leave the
// node only through the aggregators, and rules run there, not on every node.
func (c *Config) validateAgent(errs *config.Errors) {
	errs.Nest("sinks.forward", c.Sinks.Forward.Validate())
	if c.Sinks.Elasticsearch.Enabled {
		errs.Addf("sinks.elasticsearch.enabled", "an agent forwards to the aggregators, which write to Elasticsearch; remove it or set role: aggregator")
	}
	if len(c.Rules.RuleFiles) > 0 {
		errs.Addf("rules.rule_files", "an agent evaluates no rules; rule files belong in the aggregators' config")
	}
	if alertingConfigured(c.Alerting) {
		errs.Addf("alerting", "an agent sends no alerts; the role registry belongs in the aggregators' config")
	}
	if c.Podlog.Enabled && c.Pipeline.Workers < c.Podlog.MaxInflightBatches {
		errs.Addf("pipeline.workers", "must be at least podlog.max_inflight_batches (%d): every batch in flight holds a worker while it waits for the aggregator, got %d",
			c.Podlog.MaxInflightBatches, c.Pipeline.Workers)
	}
	if !c.Podlog.Enabled && !c.Ingest.Enabled && !c.Syslog.Enabled && !c.Sentry.Enabled {
		errs.Addf("podlog.enabled", "an agent with no receiver forwards nothing")
	}
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil || strings.ContainsAny(s, "+-") {
		return 0, fmt.Errorf("must be debug, info, warn or error, got %q", s)
	}
	return l, nil
}

// Summary is the one line `leitstand check` prints for a good config.
func (c *Config) Summary() string {
	var parts []string
	parts = append(parts, c.Role+", http on "+c.HTTP.Listen)
	if c.Podlog.Enabled {
		parts = append(parts, "pod logs from "+strings.Join(c.Podlog.Roots, ", "))
	}
	if c.Ingest.Enabled {
		auth := "no auth (loopback)"
		if c.Ingest.HasAuth() {
			auth = "bearer tokens"
		}
		parts = append(parts, "ingest "+httpin.Path+" with "+auth)
	}
	if c.Syslog.Enabled {
		parts = append(parts, "syslog "+c.Syslog.Describe())
	}
	if c.Sentry.Enabled {
		parts = append(parts, fmt.Sprintf("sentry with %d project(s)", len(c.Sentry.Projects)))
	}
	if n := len(c.Rules.RuleFiles); n > 0 {
		parts = append(parts, fmt.Sprintf("rules: %d rule file pattern(s), %s datasource", n, c.Rules.Datasource))
	}
	var sinks []string
	if c.Sinks.File.Enabled {
		sinks = append(sinks, "file ("+c.Sinks.File.Dir+")")
	}
	if c.agent() {
		sinks = append(sinks, "forward ("+strings.Join(c.Sinks.Forward.URLs, ", ")+")")
	}
	if c.Sinks.Elasticsearch.Enabled {
		sinks = append(sinks, "elasticsearch ("+strings.Join(c.Sinks.Elasticsearch.URLs, ", ")+") behind the spool ("+c.Spool.Dir+")")
	}
	parts = append(parts, "sinks: "+strings.Join(sinks, ", "))
	return strings.Join(parts, "; ")
}
