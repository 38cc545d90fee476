// Package tlsconf is the server-side TLS section that every listener of
// leitstand shares (the HTTP listener, syslog's tls listeners): its YAML
// keys, their validation, and the *tls.Config built from them, which
// serves a rotated certificate without a restart. It owns no socket and
// nothing of the client side (the forward sink has its own).
package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/leitstand/leitstand/internal/config"
)

// Config is the server TLS section of a listener.
type Config struct {
	// CertFile is the PEM certificate chain. Default none.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of CertFile. Default none.
	KeyFile string `yaml:"key_file"`
	// ClientCAFile, when set, makes every client present a certificate
	// signed by one of these CAs (mutual TLS). Default none.
	ClientCAFile string `yaml:"client_ca_file"`
	// MinVersion is the lowest TLS version accepted: 1.2 or 1.3. Default 1.2.
	MinVersion string `yaml:"min_version"`
}

// Default is the section's defaults; listeners embed it in theirs.
func Default() Config { return Config{MinVersion: "1.2"} }

// Enabled reports whether a certificate is configured.
func (c *Config) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" }

// Validate checks a section that may stay empty (the listener then runs
// without TLS): that the files load and belong together.
func (c *Config) Validate() error { return c.validate("") }

// ValidateRequired checks a section that must hold a certificate; why ends
// the message about a missing file, e.g. "for protocol tls".
func (c *Config) ValidateRequired(why string) error { return c.validate(why) }

func (c *Config) validate(required string) error {
	var errs config.Errors
	if !c.Enabled() && required == "" {
		if c.ClientCAFile != "" {
			errs.Addf("client_ca_file", "needs cert_file and key_file: client certificates are a TLS feature")
		}
		return errs.Err()
	}
	if c.CertFile == "" {
		errs.Addf("cert_file", "must be set %s", orDefault(required, "with key_file"))
	}
	if c.KeyFile == "" {
		errs.Addf("key_file", "must be set %s", orDefault(required, "with cert_file"))
	}
	if c.CertFile != "" && c.KeyFile != "" {
		if _, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile); err != nil {
			errs.Addf("cert_file", "does not load with key_file: %v", err)
		}
	}
	if c.ClientCAFile != "" {
		if _, err := loadPool(c.ClientCAFile); err != nil {
			errs.Addf("client_ca_file", "%v", err)
		}
	}
	if _, err := version(c.MinVersion); err != nil {
		errs.Addf("min_version", "%v", err)
	}
	return errs.Err()
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// version maps min_version to the crypto/tls constant. Nothing below 1.2
// is offered: 1.0 and 1.1 are deprecated (RFC 8996).
func version(s string) (uint16, error) {
	switch s {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("must be 1.2 or 1.3, got %q", s)
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// ServerTLS builds the listener's tls.Config. The key pair is read again
// when its files change, so a rotated certificate (cert-manager, a renewed
// Kubernetes Secret) is served to the next connection without a restart;
// a client CA file is read once. log, if not nil, hears of each reload.
func (c *Config) ServerTLS(log *slog.Logger) (*tls.Config, error) {
	minVersion, err := version(c.MinVersion)
	if err != nil {
		return nil, err
	}
	r := &reloader{certFile: c.CertFile, keyFile: c.KeyFile, log: log}
	if err := r.load(r.stamp()); err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: minVersion, GetCertificate: r.get}
	if c.ClientCAFile != "" {
		pool, err := loadPool(c.ClientCAFile)
		if err != nil {
			return nil, err
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// reloader serves the key pair from disk. Each handshake looks at both
// files (two stat calls, microseconds against the handshake's
// public-key operations) and reads them again only when one changed since
// the last attempt, so a broken pair is not parsed on every handshake.
type reloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu    sync.Mutex
	cert  *tls.Certificate
	tried stamp
}

// stamp identifies the versions of both files. A replacement by rename or
// by a Secret's symlink swap is a different file even within one mtime
// tick; an edit in place changes the time or the size.
type stamp [2]os.FileInfo

func (r *reloader) stamp() stamp {
	var s stamp
	s[0], _ = os.Stat(r.certFile)
	s[1], _ = os.Stat(r.keyFile)
	return s
}

func (s stamp) equal(o stamp) bool {
	for i := range s {
		a, b := s[i], o[i]
		if a == nil || b == nil {
			if a != b {
				return false
			}
			continue
		}
		if !os.SameFile(a, b) || !a.ModTime().Equal(b.ModTime()) || a.Size() != b.Size() {
			return false
		}
	}
	return true
}

func (r *reloader) load(s stamp) error {
	r.tried = s
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	r.cert = &cert
	return nil
}

func (r *reloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s := r.stamp()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !s.equal(r.tried) {
		// A pair half written (the certificate new, the key still old)
		// does not load: the old one is served until the next change.
		if err := r.load(s); err != nil {
			r.logf(slog.LevelWarn, "TLS certificate changed but does not load; serving the previous one", "error", err)
		} else {
			r.logf(slog.LevelInfo, "TLS certificate reloaded")
		}
	}
	if r.cert == nil {
		return nil, errors.New("no certificate loaded")
	}
	return r.cert, nil
}

func (r *reloader) logf(level slog.Level, msg string, args ...any) {
	if r.log != nil {
		r.log.Log(context.Background(), level, msg, append([]any{"cert_file", r.certFile}, args...)...)
	}
}
