package httpserver

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/leitstand/leitstand/internal/config"
)

// TLSConfig turns the listener into HTTPS.
type TLSConfig struct {
	// CertFile is the PEM certificate chain. Default none: plain HTTP.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of CertFile. Default none.
	KeyFile string `yaml:"key_file"`
	// ClientCAFile, when set, makes clients present a certificate signed by
	// one of these CAs (mutual TLS). Default none.
	ClientCAFile string `yaml:"client_ca_file"`
	// MinVersion is the lowest TLS version accepted: 1.2 or 1.3. Default 1.2.
	MinVersion string `yaml:"min_version"`
}

// Enabled reports whether TLS is configured.
func (c *TLSConfig) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" }

// Validate checks that the files exist and belong together.
func (c *TLSConfig) Validate() error {
	var errs config.Errors
	if !c.Enabled() {
		if c.ClientCAFile != "" {
			errs.Addf("client_ca_file", "needs cert_file and key_file: client certificates are a TLS feature")
		}
		return errs.Err()
	}
	if c.CertFile == "" || c.KeyFile == "" {
		errs.Addf("cert_file", "cert_file and key_file go together")
		return errs.Err()
	}
	if _, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile); err != nil {
		errs.Addf("cert_file", "%v", err)
	}
	if c.ClientCAFile != "" {
		if _, err := loadPool(c.ClientCAFile); err != nil {
			errs.Addf("client_ca_file", "%v", err)
		}
	}
	if _, err := tlsVersion(c.MinVersion); err != nil {
		errs.Addf("min_version", "%v", err)
	}
	return errs.Err()
}

func tlsVersion(s string) (uint16, error) {
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

// serverTLS builds the tls.Config. The certificate is read again when its
// file changes, so a rotated certificate (cert-manager, a renewed Secret)
// is served without a restart.
func (c *TLSConfig) serverTLS() (*tls.Config, error) {
	min, err := tlsVersion(c.MinVersion)
	if err != nil {
		return nil, err
	}
	r := &certReloader{certFile: c.CertFile, keyFile: c.KeyFile}
	if err := r.load(); err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: min, GetCertificate: r.get}
	if c.ClientCAFile != "" {
		pool, err := loadPool(c.ClientCAFile)
		if err != nil {
			return nil, err
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// certReloader serves the key pair from disk, looking for a newer file at
// most every reloadCheck.
type certReloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time
	checked time.Time
}

const reloadCheck = 10 * time.Second

func (r *certReloader) load() error {
	info, err := os.Stat(r.certFile)
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	r.cert, r.modTime = &cert, info.ModTime()
	return nil
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= reloadCheck {
		r.checked = now
		if info, err := os.Stat(r.certFile); err == nil && !info.ModTime().Equal(r.modTime) {
			// Keep serving the old pair if the new one is half written.
			_ = r.load()
		}
	}
	if r.cert == nil {
		return nil, errors.New("no certificate loaded")
	}
	return r.cert, nil
}
