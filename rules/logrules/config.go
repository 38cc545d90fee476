package logrules

import (
	"path/filepath"
	"time"

	"github.com/leitstand/leitstand/internal/config"
	"github.com/leitstand/leitstand/rules"
)

// Config is the log rule engine's configuration (`log_rules:` in the
// daemon's config; rule files are the rules section's rule_files).
type Config struct {
	// StateDir keeps counters, throttles and seen-sets across restarts.
	// Default: DATA/logrules.
	StateDir string `yaml:"state_dir"`
	// Interval is how often record rules append their counts to the TSDB
	// and quiet alerts are resolved. Default: 15s.
	Interval rules.Duration `yaml:"interval"`
	// StateInterval is how often state is written (and at Shutdown).
	// Default: 1m.
	StateInterval rules.Duration `yaml:"state_interval"`
	// Throttle is the default notification window of alert rules: a firing
	// alert is sent again at most once per window. Default: 10m.
	Throttle rules.Duration `yaml:"throttle"`
	// ResolveAfter is the default quiet period after which an alert
	// resolves. Default: 15m.
	ResolveAfter rules.Duration `yaml:"resolve_after"`
	// Lookback is the default window of new_value rules. Default: 30d.
	Lookback rules.Duration `yaml:"lookback"`
	// IdleTimeout drops a record series that has not matched for this long
	// (a staleness marker ends it in the TSDB; a later match starts it
	// again from 0), so that a rule's series cap is not held by groups
	// that went away. The state of rules no longer in the rule files is
	// dropped from the state file after it too. Counted in
	// leitstand_log_rules_expired_total. Default: 1h.
	IdleTimeout rules.Duration `yaml:"idle_timeout"`
	// MaxSeriesPerRule caps the label sets of a record rule and the alert
	// groups of an alert rule; matches beyond it are counted in
	// leitstand_log_rules_dropped_total. Default: 1000.
	MaxSeriesPerRule int `yaml:"max_series_per_rule"`
	// MaxValuesPerRule caps a new_value rule's seen-set. Default: 100000.
	MaxValuesPerRule int `yaml:"max_values_per_rule"`
	// SelfReceivers are leitstand.receiver values of events leitstand wrote
	// about itself; they never feed rules. Default: [leitstand].
	SelfReceivers []string `yaml:"self_receivers"`
}

// DefaultConfig returns the defaults for a daemon whose data lives in dataDir.
func DefaultConfig(dataDir string) Config {
	return Config{
		StateDir:         filepath.Join(dataDir, "logrules"),
		Interval:         rules.Duration(15 * time.Second),
		StateInterval:    rules.Duration(time.Minute),
		Throttle:         rules.Duration(10 * time.Minute),
		ResolveAfter:     rules.Duration(15 * time.Minute),
		Lookback:         rules.Duration(30 * 24 * time.Hour),
		IdleTimeout:      rules.Duration(time.Hour),
		MaxSeriesPerRule: 1000,
		MaxValuesPerRule: 100000,
		SelfReceivers:    []string{"leitstand"},
	}
}

// Validate checks every setting and reports all problems at once.
func (c *Config) Validate() error {
	var errs config.Errors
	if c.StateDir == "" {
		errs.Addf("state_dir", "must be set (default DATA/logrules)")
	}
	for _, d := range []struct {
		key string
		v   rules.Duration
	}{
		{"interval", c.Interval}, {"state_interval", c.StateInterval}, {"throttle", c.Throttle},
		{"resolve_after", c.ResolveAfter}, {"lookback", c.Lookback}, {"idle_timeout", c.IdleTimeout},
	} {
		if d.v <= 0 {
			errs.Addf(d.key, "must be a positive duration, got %s", d.v)
		}
	}
	if c.IdleTimeout > 0 && c.IdleTimeout < c.Interval {
		errs.Addf("idle_timeout", "must be at least interval (%s), got %s: a series would go before its first append", c.Interval, c.IdleTimeout)
	}
	if c.MaxSeriesPerRule <= 0 {
		errs.Addf("max_series_per_rule", "must be positive, got %d", c.MaxSeriesPerRule)
	}
	if c.MaxValuesPerRule <= 0 {
		errs.Addf("max_values_per_rule", "must be positive, got %d", c.MaxValuesPerRule)
	}
	return errs.Err()
}

var _ config.Validator = (*Config)(nil)
