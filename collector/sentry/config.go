package sentry

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/internal/config"
)

// DevKey is the public key of project 1 in the embedded default. It exists
// only while every listener is on loopback (Config.Loopback); New removes
// it otherwise, whatever the file says.
const DevKey = "dev"

// DevProject is the project the embedded default's DevKey belongs to.
const DevProject = 1

// Config of the Sentry receiver: the `sentry` section of the daemon's
// config.
type Config struct {
	// Enabled serves /api/<project>/envelope/ and /api/<project>/store/.
	// Default true.
	Enabled bool `yaml:"enabled"`
	// MaxBodyBytes limits a request body as it arrives, compressed or not.
	// Default 20MiB.
	MaxBodyBytes config.ByteSize `yaml:"max_body_bytes"`
	// MaxDecompressedBytes limits a body after decompression. A body that
	// unpacks to more is refused with 413 the moment the limit is passed,
	// so a decompression bomb is never unpacked. Default 50MiB.
	MaxDecompressedBytes config.ByteSize `yaml:"max_decompressed_bytes"`
	// MaxEventBytes limits one JSON item (an event, a transaction, a log or
	// span container, a check-in) as Relay's max_event_size does;
	// attachments are bounded by max_decompressed_bytes only. Default 1MiB.
	MaxEventBytes config.ByteSize `yaml:"max_event_bytes"`
	// MaxItems limits the items of one envelope, records inside log and
	// span containers and spans inside transactions included. Default 1000.
	MaxItems int `yaml:"max_items"`
	// MaxInflightBytes bounds the request bodies held in memory at once; a
	// request that would pass it waits like a full queue, then gets 429.
	// A body counts with its decompressed limit until it is read. Default
	// 256MiB.
	MaxInflightBytes config.ByteSize `yaml:"max_inflight_bytes"`
	// Queue is the policy when the pipeline is full. Default block with a
	// 5s block_timeout, then 429.
	Queue pipeline.Policy `yaml:"queue"`
	// RetryAfter is what a 429 for a full pipeline tells SDKs to wait. SDKs
	// drop (not keep) what they would have sent meanwhile, so keep it short.
	// Default 1s.
	RetryAfter time.Duration `yaml:"retry_after"`
	// Projects maps DSN project ids to keys, service and tenant. Default:
	// project 1 with the key "dev" (loopback only, see DevKey). A list in
	// the config file replaces the default.
	Projects []Project `yaml:"projects"`
	// Forward sends the scrubbed events on to an upstream Sentry (or Relay).
	// Default off.
	Forward ForwardConfig `yaml:"forward"`

	// Loopback is set by the wiring, never by the file: true only while
	// every listener of the daemon is on a loopback address. DevKey is
	// accepted only then. Default false.
	Loopback bool `yaml:"-"`
}

// Project is one Sentry project: the number in a DSN's path.
type Project struct {
	// ID is the project id of the DSN (http://KEY@host/ID). Required.
	ID uint64 `yaml:"id"`
	// Service is service.name of the project's events. Default
	// "sentry-<id>".
	Service string `yaml:"service"`
	// Tenant is leitstand.tenant of the project's events. Default none.
	Tenant string `yaml:"tenant"`
	// Keys are the public keys SDKs may use for the project. At least one.
	Keys []Key `yaml:"keys"`
	// AllowedOrigins lists the origins (scheme://host[:port]) browser SDKs
	// may send from; "*" allows any. Requests without an Origin header
	// (server SDKs) are not affected. Default none: browsers are refused.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// ForwardDSN sends this project's events to another upstream project
	// than forward.dsn. Default: forward.dsn.
	ForwardDSN config.Secret `yaml:"forward_dsn"`
}

// Key is one public key (the user part of a DSN).
type Key struct {
	// PublicKey is the key; prefer ${ENV} or public_key_file. One of the
	// two is required.
	PublicKey config.Secret `yaml:"public_key"`
	// PublicKeyFile names a file holding the key. Default none.
	PublicKeyFile string `yaml:"public_key_file"`
	// RateLimits maps a Sentry data category to a limit for this key:
	// error (event items: errors and messages), transaction, span,
	// log_item (one per log record, as the item's item_count says),
	// monitor (check-ins), attachment,
	// session, profile, replay, feedback. Over the limit, items of the
	// category are refused and the SDK is told to back off with
	// X-Sentry-Rate-Limits. Default none.
	RateLimits map[string]RateLimit `yaml:"rate_limits"`
}

// RateLimit is a token bucket.
type RateLimit struct {
	// PerSecond is the sustained rate, in items per second (0.5 is one
	// every two seconds). Required, above 0.
	PerSecond float64 `yaml:"per_second"`
	// Burst is how many items may arrive at once. Default: per_second
	// rounded up, at least 1.
	Burst int `yaml:"burst"`
}

// ForwardConfig is the optional Relay-like upstream.
type ForwardConfig struct {
	// Enabled forwards scrubbed events. Default false.
	Enabled bool `yaml:"enabled"`
	// DSN of the upstream project (http[s]://KEY@host[:port][/path]/ID).
	// Required when enabled, unless every project sets forward_dsn.
	DSN config.Secret `yaml:"dsn"`
	// DSNFile names a file holding the DSN. Default none.
	DSNFile string `yaml:"dsn_file"`
	// QueueEnvelopes bounds the envelopes waiting to be sent; when full,
	// new ones are dropped and counted. Default 1000.
	QueueEnvelopes int `yaml:"queue_envelopes"`
	// Workers is how many envelopes are sent at once. Default 2.
	Workers int `yaml:"workers"`
	// Timeout bounds one upstream request. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxRetries is how often a failed envelope (network error, 5xx, 429)
	// is tried again before it is dropped and counted. Default 5.
	MaxRetries int `yaml:"max_retries"`
	// RetryBackoff is the wait before the first retry; it doubles up to
	// 1m. An upstream's Retry-After wins when longer. Default 1s.
	RetryBackoff time.Duration `yaml:"retry_backoff"`
}

// DefaultConfig returns the receiver's defaults: the embedded default's
// project 1 with the key "dev".
func DefaultConfig() Config {
	return Config{
		Enabled:              true,
		MaxBodyBytes:         20 << 20,
		MaxDecompressedBytes: 50 << 20,
		MaxEventBytes:        1 << 20,
		MaxItems:             1000,
		MaxInflightBytes:     256 << 20,
		Queue:                pipeline.Policy{WhenFull: pipeline.Block, BlockTimeout: 5 * time.Second},
		RetryAfter:           time.Second,
		Projects:             []Project{{ID: DevProject, Service: "dev", Keys: []Key{{PublicKey: DevKey}}}},
		Forward:              DefaultForwardConfig(),
	}
}

// DefaultForwardConfig returns the forwarding defaults (off).
func DefaultForwardConfig() ForwardConfig {
	return ForwardConfig{QueueEnvelopes: 1000, Workers: 2, Timeout: 10 * time.Second, MaxRetries: 5, RetryBackoff: time.Second}
}

// Categories a rate limit may name.
var rateCategories = []string{"error", "transaction", "span", "log_item", "monitor", "attachment", "session", "profile", "replay", "feedback"}

// Validate reports every problem at once, with key paths relative to the
// sentry section. It reads key and DSN files.
func (c *Config) Validate() error {
	var errs config.Errors
	if !c.Enabled {
		return nil
	}
	if c.MaxBodyBytes < 1024 || c.MaxBodyBytes > 1<<30 {
		errs.Addf("max_body_bytes", "must be between 1KiB and 1GiB, got %s", c.MaxBodyBytes)
	}
	if c.MaxDecompressedBytes < c.MaxBodyBytes || c.MaxDecompressedBytes > 1<<30 {
		errs.Addf("max_decompressed_bytes", "must be between max_body_bytes (%s) and 1GiB, got %s", c.MaxBodyBytes, c.MaxDecompressedBytes)
	}
	if c.MaxEventBytes < 1024 || c.MaxEventBytes > c.MaxDecompressedBytes {
		errs.Addf("max_event_bytes", "must be between 1KiB and max_decompressed_bytes (%s), got %s", c.MaxDecompressedBytes, c.MaxEventBytes)
	}
	if c.MaxItems < 1 || c.MaxItems > 100000 {
		errs.Addf("max_items", "must be between 1 and 100000, got %d", c.MaxItems)
	}
	if c.MaxInflightBytes < c.MaxDecompressedBytes {
		errs.Addf("max_inflight_bytes", "must be at least max_decompressed_bytes (%s), got %s", c.MaxDecompressedBytes, c.MaxInflightBytes)
	}
	if c.RetryAfter < time.Second || c.RetryAfter > time.Hour {
		errs.Addf("retry_after", "must be between 1s and 1h, got %s", c.RetryAfter)
	}
	errs.Nest("queue", c.Queue.Validate())
	ids := map[uint64]int{}
	keys := map[string]string{}
	everyProjectForwards := len(c.Projects) > 0
	for i := range c.Projects {
		p := &c.Projects[i]
		path := fmt.Sprintf("projects[%d]", i)
		if p.ID == 0 {
			errs.Addf(path+".id", "must be a positive number (the last part of the DSN's path)")
		} else if j, dup := ids[p.ID]; dup {
			errs.Addf(path+".id", "project %d is already defined at projects[%d]", p.ID, j)
		} else {
			ids[p.ID] = i
		}
		if len(p.Service) > 128 || strings.ContainsAny(p.Service, "\x00\n\r") {
			errs.Addf(path+".service", "must be at most 128 characters on one line")
		}
		if len(p.Tenant) > 128 || strings.ContainsAny(p.Tenant, "\x00\n\r") {
			errs.Addf(path+".tenant", "must be at most 128 characters on one line")
		}
		if len(p.Keys) == 0 {
			errs.Addf(path+".keys", "a project needs at least one key")
		}
		for j := range p.Keys {
			k := &p.Keys[j]
			kpath := fmt.Sprintf("%s.keys[%d]", path, j)
			pub, err := k.resolve()
			switch {
			case err != nil:
				errs.Addf(kpath, "%v", err)
			case !validPublicKey(pub):
				errs.Addf(kpath+".public_key", "must be 1 to 128 letters, digits, '-' and '_'")
			default:
				if other, dup := keys[pub]; dup {
					errs.Addf(kpath+".public_key", "the same key is already used at %s", other)
				} else {
					keys[pub] = kpath
				}
			}
			for cat, rl := range k.RateLimits {
				rpath := kpath + ".rate_limits." + cat
				if !knownCategory(cat) {
					errs.Addf(rpath, "unknown category %q (want one of %s)", cat, strings.Join(rateCategories, ", "))
				}
				if !(rl.PerSecond > 0) || rl.PerSecond > 1e9 {
					errs.Addf(rpath+".per_second", "must be above 0 (and at most 1e9), got %v", rl.PerSecond)
				}
				if rl.Burst < 0 || rl.Burst > 1e9 {
					errs.Addf(rpath+".burst", "must be between 0 and 1e9, got %d", rl.Burst)
				}
			}
		}
		for j, o := range p.AllowedOrigins {
			if err := checkOrigin(o); err != nil {
				errs.Addf(fmt.Sprintf("%s.allowed_origins[%d]", path, j), "%v", err)
			}
		}
		if p.ForwardDSN != "" {
			if _, err := parseDSN(p.ForwardDSN.Reveal()); err != nil {
				errs.Addf(path+".forward_dsn", "%v", err)
			}
		} else {
			everyProjectForwards = false
		}
	}
	errs.Nest("forward", c.Forward.validate(everyProjectForwards))
	return errs.Err()
}

func (f *ForwardConfig) validate(everyProjectForwards bool) error {
	var errs config.Errors
	if !f.Enabled {
		return nil
	}
	dsn, err := f.resolve()
	switch {
	case err != nil:
		errs.Addf("dsn_file", "%v", err)
	case dsn == "" && !everyProjectForwards:
		errs.Addf("dsn", "required when forwarding is enabled (or set forward_dsn on every project)")
	case dsn != "":
		if _, err := parseDSN(dsn); err != nil {
			errs.Addf("dsn", "%v", err)
		}
	}
	if f.QueueEnvelopes < 1 || f.QueueEnvelopes > 1000000 {
		errs.Addf("queue_envelopes", "must be between 1 and 1000000, got %d", f.QueueEnvelopes)
	}
	if f.Workers < 1 || f.Workers > 64 {
		errs.Addf("workers", "must be between 1 and 64, got %d", f.Workers)
	}
	if f.Timeout <= 0 {
		errs.Addf("timeout", "must be positive, got %s", f.Timeout)
	}
	if f.MaxRetries < 0 || f.MaxRetries > 100 {
		errs.Addf("max_retries", "must be between 0 and 100, got %d", f.MaxRetries)
	}
	if f.RetryBackoff <= 0 {
		errs.Addf("retry_backoff", "must be positive, got %s", f.RetryBackoff)
	}
	return errs.Err()
}

// resolve returns the forwarding DSN from dsn or dsn_file.
func (f *ForwardConfig) resolve() (string, error) {
	if f.DSNFile != "" {
		if f.DSN != "" {
			return "", fmt.Errorf("set dsn or dsn_file, not both")
		}
		s, err := config.ReadSecretFile(f.DSNFile)
		return s.Reveal(), err
	}
	return f.DSN.Reveal(), nil
}

// resolve returns the key from public_key or public_key_file.
func (k *Key) resolve() (string, error) {
	switch {
	case k.PublicKey != "" && k.PublicKeyFile != "":
		return "", fmt.Errorf("set public_key or public_key_file, not both")
	case k.PublicKeyFile != "":
		s, err := config.ReadSecretFile(k.PublicKeyFile)
		if err != nil {
			return "", fmt.Errorf("public_key_file: %v", err)
		}
		return s.Reveal(), nil
	case k.PublicKey == "":
		return "", fmt.Errorf("public_key or public_key_file is required")
	}
	return k.PublicKey.Reveal(), nil
}

func validPublicKey(k string) bool {
	if k == "" || len(k) > 128 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func knownCategory(c string) bool {
	for _, k := range rateCategories {
		if k == c {
			return true
		}
	}
	return false
}

// checkOrigin accepts "*" and scheme://host[:port].
func checkOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("%q is not an origin: want \"*\" or scheme://host[:port], as browsers send it", o)
	}
	return nil
}

// UsesDevKey reports whether some project lists DevKey, for the wiring's
// start-up message.
func (c *Config) UsesDevKey() bool {
	for _, p := range c.Projects {
		for _, k := range p.Keys {
			if k.PublicKeyFile == "" && k.PublicKey.Reveal() == DevKey {
				return true
			}
		}
	}
	return false
}

// DevDSN returns the DSN of the embedded default's dev key for a listener
// on listen ("http://dev@127.0.0.1:8080/1"), or "" when the key is not in
// effect (not configured, or Loopback is false).
func (c *Config) DevDSN(listen string) string {
	if !c.Enabled || !c.Loopback || !c.UsesDevKey() {
		return ""
	}
	project := uint64(0)
	for _, p := range c.Projects {
		for _, k := range p.Keys {
			if k.PublicKeyFile == "" && k.PublicKey.Reveal() == DevKey {
				project = p.ID
			}
		}
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	return "http://" + DevKey + "@" + net.JoinHostPort(host, port) + "/" + strconv.FormatUint(project, 10)
}

var _ config.Validator = (*Config)(nil)
