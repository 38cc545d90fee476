package tlsconf

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/leitstand/leitstand/internal/config"
	"github.com/leitstand/leitstand/internal/tlsconf/tlstest"
)

// files writes name into dir and returns its path.
func file(t *testing.T, dir, name string, data []byte) string {
	return tlstest.WriteFile(t, filepath.Join(dir, name), data)
}

// serve accepts TLS connections on loopback with tc and completes their
// handshakes; it returns the address.
func serve(t *testing.T, tc *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					_, _ = c.Read(make([]byte, 1)) // until the client closes
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// servedSerial dials addr and returns the serial of the certificate served.
func servedSerial(t *testing.T, addr string, client *tls.Config) int64 {
	t.Helper()
	c, err := tls.Dial("tcp", addr, client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestReloadsChangedKeyPair(t *testing.T) {
	dir, ca := t.TempDir(), tlstest.NewCA(t)
	first := ca.Server(t)
	cfg := Default()
	cfg.CertFile, cfg.KeyFile = file(t, dir, "tls.crt", first.CertPEM), file(t, dir, "tls.key", first.KeyPEM)
	tc, err := cfg.ServerTLS(nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, tc)
	client := &tls.Config{RootCAs: ca.Pool}
	if got := servedSerial(t, addr, client); got != first.Serial {
		t.Fatalf("served serial %d, want %d", got, first.Serial)
	}

	// Half a rotation: the new certificate with the old key does not load,
	// so the old pair is still served.
	second := ca.Server(t)
	file(t, dir, "tls.crt", second.CertPEM)
	if got := servedSerial(t, addr, client); got != first.Serial {
		t.Fatalf("during the rotation served serial %d, want the old %d", got, first.Serial)
	}
	file(t, dir, "tls.key", second.KeyPEM)
	if got := servedSerial(t, addr, client); got != second.Serial {
		t.Fatalf("after the rotation served serial %d, want %d", got, second.Serial)
	}

	// Files gone (a Secret being remounted): the last pair stays.
	os.Remove(cfg.CertFile)
	if got := servedSerial(t, addr, client); got != second.Serial {
		t.Fatalf("without files served serial %d, want %d", got, second.Serial)
	}
}

func TestRefusesOldTLSAndUnknownClients(t *testing.T) {
	dir, ca := t.TempDir(), tlstest.NewCA(t)
	server := ca.Server(t)
	cfg := Default()
	cfg.CertFile, cfg.KeyFile = file(t, dir, "tls.crt", server.CertPEM), file(t, dir, "tls.key", server.KeyPEM)
	cfg.ClientCAFile = file(t, dir, "ca.crt", ca.PEM)
	tc, err := cfg.ServerTLS(nil)
	if err != nil {
		t.Fatal(err)
	}
	if tc.MinVersion < tls.VersionTLS12 || tc.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatalf("MinVersion %x, ClientAuth %v", tc.MinVersion, tc.ClientAuth)
	}
	addr := serve(t, tc)
	good := &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{ca.Client(t).TLS(t)}}
	servedSerial(t, addr, good)

	old := good.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if c, err := tls.Dial("tcp", addr, old); err == nil {
		c.Close()
		t.Error("a TLS 1.1 client was served")
	}
	anonymous := &tls.Config{RootCAs: ca.Pool}
	if err := dialAndRead(addr, anonymous); err == nil {
		t.Error("a client without a certificate was served")
	}
}

// dialAndRead reports the error of the handshake, which TLS 1.3 reports to
// a refused client only on its first read.
func dialAndRead(addr string, cfg *tls.Config) error {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	return err
}

func TestValidate(t *testing.T) {
	dir, ca := t.TempDir(), tlstest.NewCA(t)
	server := ca.Server(t)
	certFile, keyFile := file(t, dir, "tls.crt", server.CertPEM), file(t, dir, "tls.key", server.KeyPEM)
	caFile := file(t, dir, "ca.crt", ca.PEM)
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name     string
		cfg      Config
		required bool
		want     []string // key paths with an error
	}{
		{name: "empty, optional", cfg: Default()},
		{name: "empty, required", cfg: Default(), required: true, want: []string{"cert_file", "key_file"}},
		{name: "client CA without certificate", cfg: Config{ClientCAFile: caFile}, want: []string{"client_ca_file"}},
		{name: "certificate without key", cfg: Config{CertFile: certFile}, want: []string{"key_file"}},
		{name: "key without certificate", cfg: Config{KeyFile: keyFile}, want: []string{"cert_file"}},
		{name: "good", cfg: Config{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile, MinVersion: "1.3"}, required: true},
		{name: "missing files", cfg: Config{CertFile: missing, KeyFile: missing, ClientCAFile: missing}, want: []string{"cert_file", "client_ca_file"}},
		{name: "CA file without PEM", cfg: Config{CertFile: certFile, KeyFile: keyFile, ClientCAFile: keyFile}, want: []string{"client_ca_file"}},
		{name: "key of another certificate", cfg: Config{CertFile: certFile, KeyFile: caFile}, want: []string{"cert_file"}},
		{name: "TLS 1.1", cfg: Config{CertFile: certFile, KeyFile: keyFile, MinVersion: "1.1"}, want: []string{"min_version"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.required {
				err = tc.cfg.ValidateRequired("for protocol tls")
			}
			var got []string
			for _, e := range config.Flatten(err) {
				var fe *config.FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("%v is not a field error", e)
				}
				got = append(got, fe.Path)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("errors at %q, want %q: %v", got, tc.want, err)
			}
			if err == nil && tc.cfg.Enabled() {
				if _, err := tc.cfg.ServerTLS(nil); err != nil {
					t.Errorf("valid, but ServerTLS: %v", err)
				}
			}
		})
	}
}
