package httpserver

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/leitstand/leitstand/internal/tlsconf"
	"github.com/leitstand/leitstand/internal/tlsconf/tlstest"
)

func write(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	return tlstest.WriteFile(t, filepath.Join(dir, name), data)
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	server := ca.Server(t)
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.TLS = tlsconf.Config{CertFile: write(t, dir, "s.crt", server.CertPEM), KeyFile: write(t, dir, "s.key", server.KeyPEM),
		ClientCAFile: write(t, dir, "ca.crt", ca.PEM), MinVersion: "1.2"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s := New(cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	url := "https://" + s.Addr().String()

	anonymous := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}}
	if _, err := anonymous.Get(url); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{ca.Client(t).TLS(t)}}}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "leaf" {
		t.Fatalf("got %q", body)
	}
}

func TestTLSConfigValidate(t *testing.T) {
	dir := t.TempDir()
	for name, c := range map[string]tlsconf.Config{
		"ca without cert":  {ClientCAFile: "x"},
		"cert without key": {CertFile: "x"},
		"missing files":    {CertFile: filepath.Join(dir, "no.crt"), KeyFile: filepath.Join(dir, "no.key")},
		"bad version":      {CertFile: "x", KeyFile: "y", MinVersion: "1.0"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestTLSRefusesOldVersionsAndReloads: a TLS 1.1 client gets no answer, and
// a key pair replaced on disk is what the next connection is shown.
func TestTLSRefusesOldVersionsAndReloads(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	first := ca.Server(t)
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.TLS.CertFile, cfg.TLS.KeyFile = write(t, dir, "s.crt", first.CertPEM), write(t, dir, "s.key", first.KeyPEM)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s := New(cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	url := "https://" + s.Addr().String()
	get := func(tc *tls.Config) (int64, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
		resp, err := c.Get(url)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64(), nil
	}

	if _, err := get(&tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("a TLS 1.1 client was served")
	}
	if serial, err := get(&tls.Config{RootCAs: ca.Pool}); err != nil || serial != first.Serial {
		t.Fatalf("serial %d, %v; want %d", serial, err, first.Serial)
	}
	second := ca.Server(t)
	write(t, dir, "s.key", second.KeyPEM)
	write(t, dir, "s.crt", second.CertPEM)
	if serial, err := get(&tls.Config{RootCAs: ca.Pool}); err != nil || serial != second.Serial {
		t.Fatalf("after the rotation serial %d, %v; want %d", serial, err, second.Serial)
	}
}
