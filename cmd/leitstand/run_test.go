package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestReadyzTurnsUnreadyWhenStopping(t *testing.T) {
	cfg := DefaultConfig(t.TempDir())
	cfg.HTTP.Listen = "127.0.0.1:0"
	d, err := build(cfg, t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	get := func() (int, map[string]any) {
		rec := httptest.NewRecorder()
		d.readyz(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		var body map[string]any
		json.Unmarshal(rec.Body.Bytes(), &body)
		return rec.Code, body
	}
	if code, body := get(); code != 200 || body["status"] != "ready" {
		t.Fatalf("running: %d %v", code, body)
	}
	if err := d.stop(cfg.ShutdownTimeout); err != nil {
		t.Fatal(err)
	}
	if code, body := get(); code != http.StatusServiceUnavailable || body["status"] != "shutting down" {
		t.Fatalf("stopped: %d %v", code, body)
	}
}

func TestStartFailsCleanlyWhenThePortIsTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg := DefaultConfig(t.TempDir())
	cfg.HTTP.Listen = l.Addr().String()
	d, err := build(cfg, t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.start(); err == nil {
		d.stop(cfg.ShutdownTimeout)
		t.Fatal("start succeeded on a port in use")
	}
	if len(d.started) != 0 {
		t.Fatalf("components left running after a failed start: %v", d.started)
	}
}
