package rules

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/leitstand/leitstand/internal/config"
)

// Datasource modes.
const (
	// DatasourceEmbedded evaluates rules against leitstand's own TSDB, fed by
	// scraping, remote_write and self-metrics.
	DatasourceEmbedded = "embedded"
	// DatasourceRemote evaluates rules against a Prometheus-compatible query
	// API elsewhere (as vmalert does); alert state is kept in a local file.
	DatasourceRemote = "remote"
)

// Config of the rule engine, its TSDB and its intake.
type Config struct {
	// Datasource is where rule expressions are evaluated: "embedded" (the
	// local TSDB) or "remote" (a Prometheus query API, see remote). Default
	// embedded.
	Datasource string `yaml:"datasource"`
	// RuleFiles are paths or globs of rule files in Prometheus' format.
	// Default none.
	RuleFiles []string `yaml:"rule_files"`
	// EvaluationInterval is the interval of groups that set none. Default 1m.
	EvaluationInterval time.Duration `yaml:"evaluation_interval"`
	// RuleQueryOffset delays every evaluation of groups that set no
	// query_offset, to wait for late samples. Default 0.
	RuleQueryOffset time.Duration `yaml:"rule_query_offset"`
	// ExternalLabels are added to every alert (and are $externalLabels in
	// templates). Two replicas that should be de-duplicated by
	// Alertmanager must have the same ones. Default none.
	ExternalLabels map[string]string `yaml:"external_labels"`
	// ExternalURL is leitstand's address as people reach it; alerts link
	// to ExternalURL/graph?... as their generator URL. Default none.
	ExternalURL string `yaml:"external_url"`
	// OutageTolerance is how long leitstand may have been down for pending
	// alerts to keep their `for` progress over a restart. Default 1h.
	OutageTolerance time.Duration `yaml:"outage_tolerance"`
	// ForGracePeriod is the minimum `for` left to an alert restored after
	// a restart, so a restart never fires an alert at once. Default 10m.
	ForGracePeriod time.Duration `yaml:"for_grace_period"`
	// ResendDelay is how often a firing alert is sent again to the
	// notifier. Default 1m.
	ResendDelay time.Duration `yaml:"resend_delay"`
	// WatchInterval is how often rule files are checked for changes (they
	// are reloaded when one changed); 0 turns watching off (SIGHUP still
	// reloads). Default 10s.
	WatchInterval time.Duration `yaml:"watch_interval"`

	// TSDB is the embedded time series database (datasource embedded).
	TSDB TSDBConfig `yaml:"tsdb"`
	// Query bounds PromQL queries, from rules and from the HTTP API.
	Query QueryConfig `yaml:"query"`
	// Remote is the query API used with datasource remote.
	Remote RemoteConfig `yaml:"remote"`
	// Scrape pulls metrics from targets into the TSDB.
	Scrape ScrapeConfig `yaml:"scrape"`
	// RemoteWriteReceiver accepts Prometheus remote_write at /api/v1/write.
	RemoteWriteReceiver ReceiverConfig `yaml:"remote_write_receiver"`
	// SelfMetrics appends leitstand's own metrics to the TSDB.
	SelfMetrics SelfMetricsConfig `yaml:"self_metrics"`
}

// TSDBConfig configures the embedded TSDB.
type TSDBConfig struct {
	// Path is the TSDB's folder. Default DATA/tsdb.
	Path string `yaml:"path"`
	// Retention is how long samples are kept; Prometheus durations such as
	// 15d or 2w are accepted. Default 15d.
	Retention Duration `yaml:"retention"`
	// RetentionSize caps the bytes of persisted blocks; the oldest go
	// first. 0 means no cap. Default 0.
	RetentionSize config.ByteSize `yaml:"retention_size"`
	// OutOfOrderWindow accepts samples this much older than a series'
	// newest (remote_write from several senders, late scrapes). Default 0.
	OutOfOrderWindow time.Duration `yaml:"out_of_order_window"`
}

// QueryConfig bounds PromQL evaluation.
type QueryConfig struct {
	// Timeout bounds one query. Default 2m.
	Timeout time.Duration `yaml:"timeout"`
	// MaxSamples caps the samples one query may load into memory.
	// Default 50000000.
	MaxSamples int `yaml:"max_samples"`
	// LookbackDelta is how far back an instant selector looks for a
	// sample. Default 5m.
	LookbackDelta time.Duration `yaml:"lookback_delta"`
}

// RemoteConfig is the Prometheus-compatible query API of datasource remote.
type RemoteConfig struct {
	// URL is the API's base, e.g. http://prometheus:9090 (the paths
	// /api/v1/query... are appended). Default none; required with
	// datasource remote.
	URL string `yaml:"url"`
	// Timeout bounds one query. Default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// BearerTokenFile holds a token sent as "Authorization: Bearer". It is
	// read at start and on reload. Default none.
	BearerTokenFile string `yaml:"bearer_token_file"`
	// StateFile keeps the state of pending and firing alerts across
	// restarts. Default DATA/rules-state.json.
	StateFile string `yaml:"state_file"`
	// WriteURL, when set, receives the results of recording rules and the
	// ALERTS series by remote_write (e.g.
	// http://prometheus:9090/api/v1/write), so later rules can query them.
	// Default none (recording rules then only feed the local TSDB).
	WriteURL string `yaml:"write_url"`
}

// ScrapeConfig configures scraping.
type ScrapeConfig struct {
	// Interval is the scrape interval of jobs that set none. Default 1m.
	Interval time.Duration `yaml:"interval"`
	// Timeout is the scrape timeout of jobs that set none. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// Jobs are the scrape jobs. Default none.
	Jobs []ScrapeJob `yaml:"jobs"`
}

// ScrapeJob is one scrape job, a subset of Prometheus' scrape_config.
type ScrapeJob struct {
	// JobName is the job label of its series. Required.
	JobName string `yaml:"job_name"`
	// Targets are host:port pairs scraped as they are. Default none.
	Targets []string `yaml:"targets"`
	// Labels are added to the series of Targets. Default none.
	Labels map[string]string `yaml:"labels"`
	// FileSDFiles are globs of Prometheus file_sd files (JSON or YAML
	// lists of {targets, labels}); they are watched for changes.
	// Default none.
	FileSDFiles []string `yaml:"file_sd_files"`
	// FileSDRefresh is how often file_sd files are re-read besides
	// watching them. Default 5m.
	FileSDRefresh time.Duration `yaml:"file_sd_refresh"`
	// MetricsPath is the HTTP path of the metrics. Default /metrics.
	MetricsPath string `yaml:"metrics_path"`
	// Scheme is http or https. Default http.
	Scheme string `yaml:"scheme"`
	// Interval overrides scrape.interval. Default 0 (scrape.interval).
	Interval time.Duration `yaml:"interval"`
	// Timeout overrides scrape.timeout. Default 0 (scrape.timeout).
	Timeout time.Duration `yaml:"timeout"`
	// HonorLabels keeps the target's own job and instance labels.
	// Default false.
	HonorLabels bool `yaml:"honor_labels"`
}

// SetDefaults fills in a job's defaults (called by the config decoder for
// each list item).
func (j *ScrapeJob) SetDefaults() {
	j.MetricsPath = "/metrics"
	j.Scheme = "http"
	j.FileSDRefresh = 5 * time.Minute
}

// ReceiverConfig configures the remote_write receiver.
type ReceiverConfig struct {
	// Enabled serves /api/v1/write (datasource embedded only). Default true.
	Enabled bool `yaml:"enabled"`
}

// SelfMetricsConfig configures the ingestion of leitstand's own metrics.
type SelfMetricsConfig struct {
	// Enabled appends the metrics of the process' registry to the TSDB
	// every interval. Default true.
	Enabled bool `yaml:"enabled"`
	// Interval between two snapshots. Default 15s.
	Interval time.Duration `yaml:"interval"`
	// Job is the job label of the series. Default "leitstand".
	Job string `yaml:"job"`
	// Instance is the instance label of the series. Default the host name.
	Instance string `yaml:"instance"`
}

// DefaultConfig returns the embedded default with its data under dataDir.
func DefaultConfig(dataDir string) Config {
	return Config{
		Datasource:         DatasourceEmbedded,
		EvaluationInterval: time.Minute,
		OutageTolerance:    time.Hour,
		ForGracePeriod:     10 * time.Minute,
		ResendDelay:        time.Minute,
		WatchInterval:      10 * time.Second,
		TSDB: TSDBConfig{
			Path:      filepath.Join(dataDir, "tsdb"),
			Retention: Duration(15 * 24 * time.Hour),
		},
		Query: QueryConfig{
			Timeout:       2 * time.Minute,
			MaxSamples:    50_000_000,
			LookbackDelta: 5 * time.Minute,
		},
		Remote: RemoteConfig{
			Timeout:   30 * time.Second,
			StateFile: filepath.Join(dataDir, "rules-state.json"),
		},
		Scrape: ScrapeConfig{
			Interval: time.Minute,
			Timeout:  10 * time.Second,
		},
		RemoteWriteReceiver: ReceiverConfig{Enabled: true},
		SelfMetrics: SelfMetricsConfig{
			Enabled:  true,
			Interval: 15 * time.Second,
			Job:      "leitstand",
		},
	}
}

// Validate checks the config and returns every problem at once, each with
// its key path.
func (c *Config) Validate() error {
	var errs config.Errors
	switch c.Datasource {
	case DatasourceEmbedded, DatasourceRemote:
	default:
		errs.Addf("datasource", "want %q or %q, got %q", DatasourceEmbedded, DatasourceRemote, c.Datasource)
	}
	for i, f := range c.RuleFiles {
		if strings.TrimSpace(f) == "" {
			errs.Addf(fmt.Sprintf("rule_files[%d]", i), "empty path")
			continue
		}
		if _, err := filepath.Match(f, ""); err != nil {
			errs.Addf(fmt.Sprintf("rule_files[%d]", i), "bad glob %q: %v", f, err)
		}
	}
	positive := func(path string, d time.Duration) {
		if d <= 0 {
			errs.Addf(path, "must be greater than 0, got %v", d)
		}
	}
	positive("evaluation_interval", c.EvaluationInterval)
	positive("resend_delay", c.ResendDelay)
	positive("query.timeout", c.Query.Timeout)
	positive("query.lookback_delta", c.Query.LookbackDelta)
	if c.RuleQueryOffset < 0 {
		errs.Addf("rule_query_offset", "must not be negative")
	}
	if c.OutageTolerance < 0 {
		errs.Addf("outage_tolerance", "must not be negative")
	}
	if c.ForGracePeriod < 0 {
		errs.Addf("for_grace_period", "must not be negative")
	}
	if c.WatchInterval < 0 {
		errs.Addf("watch_interval", "must not be negative (0 turns watching off)")
	}
	if c.Query.MaxSamples <= 0 {
		errs.Addf("query.max_samples", "must be greater than 0")
	}
	for name, v := range c.ExternalLabels {
		if !model.LegacyValidation.IsValidLabelName(name) {
			errs.Addf("external_labels."+name, "invalid label name")
		}
		if v == "" {
			errs.Addf("external_labels."+name, "empty value")
		}
	}
	if c.ExternalURL != "" {
		if u, err := url.Parse(c.ExternalURL); err != nil || u.Scheme == "" || u.Host == "" {
			errs.Addf("external_url", "want an absolute URL such as https://leitstand.example.org, got %q", c.ExternalURL)
		}
	}

	if c.Datasource == DatasourceEmbedded || c.TSDB.Path != "" {
		if c.TSDB.Path == "" {
			errs.Addf("tsdb.path", "required with datasource embedded")
		}
		if c.TSDB.Retention <= 0 {
			errs.Addf("tsdb.retention", "must be greater than 0")
		}
		if c.TSDB.RetentionSize < 0 {
			errs.Addf("tsdb.retention_size", "must not be negative")
		}
		if c.TSDB.OutOfOrderWindow < 0 {
			errs.Addf("tsdb.out_of_order_window", "must not be negative")
		}
	}

	if c.Datasource == DatasourceRemote {
		if c.Remote.URL == "" {
			errs.Addf("remote.url", "required with datasource remote")
		}
		if c.Remote.StateFile == "" {
			errs.Addf("remote.state_file", "required with datasource remote")
		}
		positive("remote.timeout", c.Remote.Timeout)
	}
	checkURL := func(path, s string) {
		if s == "" {
			return
		}
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs.Addf(path, "want an http(s) URL, got %q", s)
		}
	}
	checkURL("remote.url", c.Remote.URL)
	checkURL("remote.write_url", c.Remote.WriteURL)

	positive("scrape.interval", c.Scrape.Interval)
	positive("scrape.timeout", c.Scrape.Timeout)
	seen := map[string]int{}
	for i, j := range c.Scrape.Jobs {
		p := fmt.Sprintf("scrape.jobs[%d]", i)
		if j.JobName == "" {
			errs.Addf(p+".job_name", "required")
		} else if first, dup := seen[j.JobName]; dup {
			errs.Addf(p+".job_name", "%q is already the name of scrape.jobs[%d]", j.JobName, first)
		} else {
			seen[j.JobName] = i
		}
		if len(j.Targets) == 0 && len(j.FileSDFiles) == 0 {
			errs.Addf(p, "needs targets or file_sd_files")
		}
		for k, t := range j.Targets {
			if _, _, err := splitHostPort(t); err != nil {
				errs.Addf(fmt.Sprintf("%s.targets[%d]", p, k), "want host:port, got %q", t)
			}
		}
		for k, f := range j.FileSDFiles {
			if _, err := filepath.Match(f, ""); err != nil || f == "" {
				errs.Addf(fmt.Sprintf("%s.file_sd_files[%d]", p, k), "bad path or glob %q", f)
			}
		}
		for name := range j.Labels {
			if !model.LegacyValidation.IsValidLabelName(name) {
				errs.Addf(p+".labels."+name, "invalid label name")
			}
		}
		if j.Scheme != "http" && j.Scheme != "https" {
			errs.Addf(p+".scheme", "want http or https, got %q", j.Scheme)
		}
		if !strings.HasPrefix(j.MetricsPath, "/") {
			errs.Addf(p+".metrics_path", "must start with /, got %q", j.MetricsPath)
		}
		if j.Interval < 0 || j.Timeout < 0 || j.FileSDRefresh < 0 {
			errs.Addf(p, "interval, timeout and file_sd_refresh must not be negative")
		}
		interval, timeout := j.Interval, j.Timeout
		if interval == 0 {
			interval = c.Scrape.Interval
		}
		if timeout == 0 {
			timeout = c.Scrape.Timeout
		}
		if timeout > interval {
			errs.Addf(p+".timeout", "scrape timeout %v is longer than the interval %v", timeout, interval)
		}
	}
	if c.SelfMetrics.Enabled {
		positive("self_metrics.interval", c.SelfMetrics.Interval)
		if c.SelfMetrics.Job == "" {
			errs.Addf("self_metrics.job", "required")
		}
	}
	return errs.Err()
}

// Duration is a time.Duration written in Prometheus' notation, which also
// knows days, weeks and years ("15d", "2w", "1y").
type Duration time.Duration

// UnmarshalYAML reads a Prometheus duration.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := model.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("want a duration such as 15d or 12h, got %q", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration in Prometheus' notation.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

func (d Duration) String() string { return model.Duration(d).String() }

var _ config.Validator = (*Config)(nil)
