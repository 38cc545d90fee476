package elasticsearch

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/leitstand/leitstand/internal/config"
)

// Target modes.
const (
	// ModeDataStream writes to data streams logs-<dataset>-<namespace>.
	ModeDataStream = "data_stream"
	// ModeIndex writes to dated indices <index_prefix>-<dataset>-YYYY.MM.DD.
	ModeIndex = "index"
)

// Config of the Elasticsearch sink.
type Config struct {
	// Enabled turns the sink on. Default false: the embedded default writes
	// files only.
	Enabled bool `yaml:"enabled"`
	// URLs are the cluster's HTTP endpoints; requests go round robin to the
	// ones that answer. Credentials do not belong in them (see username,
	// password_file, api_key_file). Default ["http://127.0.0.1:9200"].
	URLs []string `yaml:"urls"`
	// Username for HTTP basic authentication. Default none.
	Username string `yaml:"username"`
	// Password for basic authentication; write ${ENV}, not the password.
	// Default none.
	Password config.Secret `yaml:"password"`
	// PasswordFile holds the password (a mounted Kubernetes secret). It is
	// read again when it changes. Default none.
	PasswordFile string `yaml:"password_file"`
	// APIKey is the base64 "id:key" API key, sent as "Authorization: ApiKey".
	// Default none.
	APIKey config.Secret `yaml:"api_key"`
	// APIKeyFile holds the API key; read again when it changes. Default none.
	APIKeyFile string `yaml:"api_key_file"`
	// CAFile is a PEM file of the certificate authorities to trust for https
	// URLs instead of the system's. Default none (system roots).
	CAFile string `yaml:"ca_file"`

	// Mode is data_stream or index. Default data_stream.
	Mode string `yaml:"mode"`
	// Namespace is the last part of data stream names. Default "default".
	Namespace string `yaml:"namespace"`
	// IndexPrefix starts index names in mode index. Default "leitstand-events".
	IndexPrefix string `yaml:"index_prefix"`
	// DeadLetterIndex starts the names of the daily dead-letter indices
	// (<dead_letter_index>-YYYY.MM.DD). Default "leitstand-deadletter".
	DeadLetterIndex string `yaml:"dead_letter_index"`
	// InstallTemplates installs (or upgrades) leitstand's component and
	// index templates at start and after the cluster comes back. Default true.
	InstallTemplates bool `yaml:"install_templates"`
	// TemplatePriority is the priority of leitstand's index templates: above
	// Elasticsearch's built-in logs template (100), below the per-dataset
	// templates of Elastic integrations (200). Default 150.
	TemplatePriority int `yaml:"template_priority"`

	// Workers is how many bulk requests may be in flight at once. Default 4.
	Workers int `yaml:"workers"`
	// BulkMaxEvents caps the documents in one bulk request. Default 1000.
	BulkMaxEvents int `yaml:"bulk_max_events"`
	// BulkMaxBytes caps one bulk request's body before compression; a single
	// larger document is sent on its own. Default 5MiB.
	BulkMaxBytes config.ByteSize `yaml:"bulk_max_bytes"`
	// Compress gzips request bodies (at the fastest level). Default true.
	Compress bool `yaml:"compress"`
	// RequestTimeout bounds one bulk request. Default 30s.
	RequestTimeout time.Duration `yaml:"request_timeout"`

	// RetryInitial is the first wait before documents that got 429 or 5xx
	// are sent again; it doubles, with jitter, up to RetryMax. Default 100ms.
	RetryInitial time.Duration `yaml:"retry_initial"`
	// RetryMax caps the wait between two attempts. Default 5s.
	RetryMax time.Duration `yaml:"retry_max"`
	// RetryMaxAttempts is how often one batch is sent before the sink gives
	// it back to the spool, which retries it later. Default 8.
	RetryMaxAttempts int `yaml:"retry_max_attempts"`
	// DeadLetterAfter moves a document that the cluster keeps failing with a
	// server error (5xx, not 429) to the dead-letter index once it has
	// failed for this long, so one broken index cannot hold back every
	// other. 0 never gives up. Default 15m.
	DeadLetterAfter time.Duration `yaml:"dead_letter_after"`
}

// DefaultConfig returns the sink's defaults.
func DefaultConfig() Config {
	return Config{
		URLs:             []string{"http://127.0.0.1:9200"},
		Mode:             ModeDataStream,
		Namespace:        "default",
		IndexPrefix:      "leitstand-events",
		DeadLetterIndex:  "leitstand-deadletter",
		InstallTemplates: true,
		TemplatePriority: 150,
		Workers:          4,
		BulkMaxEvents:    1000,
		BulkMaxBytes:     5 << 20,
		Compress:         true,
		RequestTimeout:   30 * time.Second,
		RetryInitial:     100 * time.Millisecond,
		RetryMax:         5 * time.Second,
		RetryMaxAttempts: 8,
		DeadLetterAfter:  15 * time.Minute,
	}
}

// Validate checks the settings, including that credential and CA files are
// readable, so `leitstand check` finds a wrong path before a start does.
func (c *Config) Validate() error {
	var errs config.Errors
	if !c.Enabled {
		return nil
	}
	if len(c.URLs) == 0 {
		errs.Addf("urls", "must name at least one Elasticsearch URL")
	}
	for i, raw := range c.URLs {
		if err := checkURL(raw); err != nil {
			errs.Addf(fmt.Sprintf("urls[%d]", i), "%v", err)
		}
	}
	if c.Password != "" && c.PasswordFile != "" {
		errs.Addf("password_file", "set either password or password_file, not both")
	}
	if c.APIKey != "" && c.APIKeyFile != "" {
		errs.Addf("api_key_file", "set either api_key or api_key_file, not both")
	}
	hasPassword := c.Password != "" || c.PasswordFile != ""
	hasKey := c.APIKey != "" || c.APIKeyFile != ""
	switch {
	case c.Username != "" && !hasPassword:
		errs.Addf("username", "needs password or password_file")
	case c.Username == "" && hasPassword:
		errs.Addf("username", "must be set with a password")
	}
	if hasKey && c.Username != "" {
		key := "api_key"
		if c.APIKeyFile != "" {
			key = "api_key_file"
		}
		errs.Addf(key, "set either an API key or username and password, not both")
	}
	for _, f := range []struct{ key, path string }{{"password_file", c.PasswordFile}, {"api_key_file", c.APIKeyFile}} {
		if f.path != "" {
			if _, err := config.ReadSecretFile(f.path); err != nil {
				errs.Addf(f.key, "%v", err)
			}
		}
	}
	if c.CAFile != "" {
		if _, err := loadCAFile(c.CAFile); err != nil {
			errs.Addf("ca_file", "%v", err)
		}
	}

	switch c.Mode {
	case ModeDataStream, ModeIndex:
	default:
		errs.Addf("mode", "must be %q or %q, got %q", ModeDataStream, ModeIndex, c.Mode)
	}
	if err := checkNamePart(c.Namespace); err != nil {
		errs.Addf("namespace", "%v", err)
	}
	if err := checkIndexName(c.IndexPrefix); err != nil {
		errs.Addf("index_prefix", "%v", err)
	}
	if err := checkIndexName(c.DeadLetterIndex); err != nil {
		errs.Addf("dead_letter_index", "%v", err)
	}
	// Their index templates must not cover each other's indices, and the
	// dead-letter indices must not become data streams of the logs template.
	if c.IndexPrefix != "" && c.DeadLetterIndex != "" &&
		(strings.HasPrefix(c.DeadLetterIndex+"-", c.IndexPrefix+"-") || strings.HasPrefix(c.IndexPrefix+"-", c.DeadLetterIndex+"-")) {
		errs.Addf("dead_letter_index", "must not start with index_prefix %q or the other way round, got %q", c.IndexPrefix, c.DeadLetterIndex)
	}
	// Names under logs- belong to the logs-*-* data streams.
	if strings.HasPrefix(c.IndexPrefix+"-", "logs-") {
		errs.Addf("index_prefix", "must not be or start with \"logs-\": those names belong to the logs data streams, got %q", c.IndexPrefix)
	}
	if strings.HasPrefix(c.DeadLetterIndex+"-", "logs-") {
		errs.Addf("dead_letter_index", "must not be or start with \"logs-\": those names belong to the logs data streams, got %q", c.DeadLetterIndex)
	}
	if c.TemplatePriority < 0 || c.TemplatePriority > 1<<30 {
		errs.Addf("template_priority", "must be between 0 and 1073741824, got %d", c.TemplatePriority)
	}

	if c.Workers < 1 || c.Workers > 64 {
		errs.Addf("workers", "must be between 1 and 64, got %d", c.Workers)
	}
	if c.BulkMaxEvents < 1 || c.BulkMaxEvents > 100000 {
		errs.Addf("bulk_max_events", "must be between 1 and 100000, got %d", c.BulkMaxEvents)
	}
	if c.BulkMaxBytes < 64<<10 || c.BulkMaxBytes > 100<<20 {
		errs.Addf("bulk_max_bytes", "must be between 64KiB and 100MiB (Elasticsearch's http.max_content_length), got %s", c.BulkMaxBytes)
	}
	if c.RequestTimeout < time.Second {
		errs.Addf("request_timeout", "must be at least 1s, got %s", c.RequestTimeout)
	}
	if c.RetryInitial < time.Millisecond {
		errs.Addf("retry_initial", "must be at least 1ms, got %s", c.RetryInitial)
	}
	if c.RetryMax < c.RetryInitial {
		errs.Addf("retry_max", "must be at least retry_initial (%s), got %s", c.RetryInitial, c.RetryMax)
	}
	if c.RetryMaxAttempts < 1 || c.RetryMaxAttempts > 100 {
		errs.Addf("retry_max_attempts", "must be between 1 and 100, got %d", c.RetryMaxAttempts)
	}
	if c.DeadLetterAfter < 0 {
		errs.Addf("dead_letter_after", "must not be negative (0 never dead-letters server errors), got %s", c.DeadLetterAfter)
	}
	return errs.Err()
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("must start with http:// or https://, got %q", redactURL(raw))
	}
	if u.Host == "" {
		return fmt.Errorf("has no host: %q", redactURL(raw))
	}
	if u.User != nil {
		return fmt.Errorf("must not hold credentials; use username with password_file, or api_key_file")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("must not have a query or fragment: %q", redactURL(raw))
	}
	return nil
}

// redactURL keeps a password that was put into a URL out of error messages.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return "<unparseable URL>"
}

func loadCAFile(path string) ([]byte, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(string(pem), "-----BEGIN CERTIFICATE-----") {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pem, nil
}

// checkNamePart checks a data stream namespace by Elastic's naming rules:
// lowercase, no '-', none of \ / * ? " < > | , # : or space, at most 100 bytes.
func checkNamePart(s string) error {
	if s == "" {
		return fmt.Errorf("must not be empty")
	}
	if len(s) > 100 {
		return fmt.Errorf("must be at most 100 bytes, got %d", len(s))
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) {
			return fmt.Errorf("may hold lowercase letters, digits, '_' and '.' only, got %q", s)
		}
	}
	return nil
}

// checkIndexName checks a name that starts index names.
func checkIndexName(s string) error {
	if s == "" {
		return fmt.Errorf("must not be empty")
	}
	if len(s) > 100 {
		return fmt.Errorf("must be at most 100 bytes, got %d", len(s))
	}
	if s[0] == '_' || s[0] == '-' || s[0] == '.' || s[0] == '+' {
		return fmt.Errorf("must not start with '_', '-', '+' or '.', got %q", s)
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) && s[i] != '-' {
			return fmt.Errorf("may hold lowercase letters, digits, '_', '-' and '.' only, got %q", s)
		}
	}
	return nil
}

var _ config.Validator = (*Config)(nil)
