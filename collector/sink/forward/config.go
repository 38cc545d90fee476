package forward

import (
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/leitstand/leitstand/internal/config"
)

// Compression methods for request bodies.
const (
	CompressZstd = "zstd"
	CompressGzip = "gzip"
	CompressNone = "none"
)

// DefaultURL is the intake of an aggregator on the same machine: the
// embedded default, where one process is agent and aggregator at once.
const DefaultURL = "http://127.0.0.1:8080/v1/ingest"

// Config of the forward sink: the `sinks.forward` section of an agent.
type Config struct {
	// URLs are the aggregators' NDJSON intake endpoints (…/v1/ingest). The
	// sink sends to one at a time and moves on to the next when it fails
	// (connection refused, timeout, 5xx, 429). Default
	// ["http://127.0.0.1:8080/v1/ingest"].
	URLs []string `yaml:"urls"`
	// Token is the bearer token the aggregators expect; use ${ENV}.
	// Default none.
	Token config.Secret `yaml:"token"`
	// TokenFile names a file holding the bearer token (a mounted Kubernetes
	// secret). It is read at start and again after a 401, so a rotated
	// secret is picked up without a restart. Default none.
	TokenFile string `yaml:"token_file"`
	// Compression of request bodies: zstd, gzip or none. Default zstd.
	Compression string `yaml:"compression"`
	// RequestTimeout bounds one HTTP request, connecting included.
	// Default 10s.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// BatchTimeout bounds the time one batch may take, retries and
	// fail-over included. When it runs out the batch fails and its source
	// sends it again later (the node agent re-reads it from its files);
	// nothing is dropped. Default 30s.
	BatchTimeout time.Duration `yaml:"batch_timeout"`
	// MinBackoff is the first wait between retries; it doubles up to
	// MaxBackoff, with jitter. A Retry-After from the aggregator lengthens
	// the wait (up to MaxBackoff). Default 100ms.
	MinBackoff time.Duration `yaml:"min_backoff"`
	// MaxBackoff caps the wait between retries. Default 5s.
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// MaxRequestBytes is the most uncompressed body bytes sent in one
	// request; bigger batches are split. Keep it below the aggregators'
	// ingest.max_body_bytes (a 413 also splits). Default 8MiB.
	MaxRequestBytes config.ByteSize `yaml:"max_request_bytes"`
	// TLS configures HTTPS to the aggregators. Default: the system roots,
	// no client certificate.
	TLS TLSConfig `yaml:"tls"`
}

// TLSConfig configures the client side of HTTPS.
type TLSConfig struct {
	// CAFile is a PEM bundle of the authorities that sign the aggregators'
	// certificates, used instead of the system roots. Default none.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate for mutual TLS.
	// Default none.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the client certificate's private key. Default none.
	KeyFile string `yaml:"key_file"`
	// ServerName overrides the name checked in the aggregators'
	// certificates. Default: the host of each URL.
	ServerName string `yaml:"server_name"`
}

// DefaultConfig returns the forward sink's defaults.
func DefaultConfig() Config {
	return Config{
		URLs:            []string{DefaultURL},
		Compression:     CompressZstd,
		RequestTimeout:  10 * time.Second,
		BatchTimeout:    30 * time.Second,
		MinBackoff:      100 * time.Millisecond,
		MaxBackoff:      5 * time.Second,
		MaxRequestBytes: 8 << 20,
	}
}

// Validate checks the settings, including that the files it names are
// readable.
func (c *Config) Validate() error {
	var errs config.Errors
	if len(c.URLs) == 0 {
		errs.Addf("urls", "must name at least one aggregator intake URL")
	}
	for i, raw := range c.URLs {
		path := fmt.Sprintf("urls[%d]", i)
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			errs.Addf(path, "is not a URL: %v", err)
		case u.Scheme != "http" && u.Scheme != "https":
			errs.Addf(path, "must start with http:// or https://, got %q", raw)
		case u.Host == "":
			errs.Addf(path, "has no host: %q", raw)
		case u.User != nil:
			errs.Addf(path, "must not carry credentials; use token or token_file")
		}
	}
	if c.Token != "" && c.TokenFile != "" {
		errs.Addf("token_file", "set either token or token_file, not both")
	}
	if c.Token != "" && len(c.Token) < 16 {
		errs.Addf("token", "is shorter than 16 characters; the aggregators refuse such tokens")
	}
	if c.TokenFile != "" {
		if _, err := config.ReadSecretFile(c.TokenFile); err != nil {
			errs.Addf("token_file", "%v", err)
		}
	}
	switch c.Compression {
	case CompressZstd, CompressGzip, CompressNone:
	default:
		errs.Addf("compression", "must be %q, %q or %q, got %q", CompressZstd, CompressGzip, CompressNone, c.Compression)
	}
	if c.RequestTimeout < 100*time.Millisecond {
		errs.Addf("request_timeout", "must be at least 100ms, got %s", c.RequestTimeout)
	}
	if c.BatchTimeout < c.RequestTimeout {
		errs.Addf("batch_timeout", "must be at least request_timeout (%s), got %s", c.RequestTimeout, c.BatchTimeout)
	}
	if c.MinBackoff < time.Millisecond {
		errs.Addf("min_backoff", "must be at least 1ms, got %s", c.MinBackoff)
	}
	if c.MaxBackoff < c.MinBackoff {
		errs.Addf("max_backoff", "must be at least min_backoff (%s), got %s", c.MinBackoff, c.MaxBackoff)
	}
	if c.MaxRequestBytes < 64<<10 || c.MaxRequestBytes > 1<<30 {
		errs.Addf("max_request_bytes", "must be between 64KiB and 1GiB, got %s", c.MaxRequestBytes)
	}
	tlsFiles := []struct{ key, path string }{{"tls.ca_file", c.TLS.CAFile}, {"tls.cert_file", c.TLS.CertFile}, {"tls.key_file", c.TLS.KeyFile}}
	for _, f := range tlsFiles {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs.Addf(f.key, "%v", err)
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs.Addf("tls", "cert_file and key_file go together")
	}
	return errs.Err()
}

var _ config.Validator = (*Config)(nil)
