package httpserver

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
)

func TestLifecycle(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	never := New(cfg, http.NotFoundHandler(), log)
	if err := never.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown without start: %v", err)
	}

	arrived, release := make(chan struct{}), make(chan struct{})
	s := New(cfg, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(arrived)
		<-release // a request still running when the shutdown starts
		io.WriteString(w, "done")
	}), log)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := make(chan string)
	go func() {
		resp, err := http.Get("http://" + s.Addr().String())
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-arrived
	stopped := make(chan error)
	go func() { stopped <- s.Shutdown(context.Background()) }()
	close(release)
	if body := <-got; body != "done" {
		t.Fatalf("a request in flight was cut off by the shutdown: %q", body)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
	if _, err := http.Get("http://" + s.Addr().String()); err == nil {
		t.Fatal("still serving after shutdown")
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:8080": true, "localhost:80": true, "127.1.2.3:1": true,
		"0.0.0.0:8080": false, ":8080": false, "10.0.0.1:80": false, "[::]:80": false, "example.org:80": false, "bad": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
