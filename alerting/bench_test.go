package alerting

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/prometheus/notifier"
)

// BenchmarkSend: labelling and queueing, what the rule engine's goroutine
// pays per alert.
func BenchmarkSend(b *testing.B) {
	cfg := testConfig(b)
	cfg.Alertmanagers = []string{"http://127.0.0.1:1"}
	cfg.QueueCapacity = 1 << 20
	r, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]*notifier.Alert, 100)
	for i := range batch {
		batch[i] = alert("alertname", "PostgresDown", "service", "postgres", "namespace", "payments",
			"severity", "critical", "instance", "db-"+string(rune('a'+i%26)))
	}
	b.ResetTimer()
	for b.Loop() {
		r.Send(batch...)
		r.mu.Lock()
		r.queue = r.queue[:0]
		r.mu.Unlock()
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "alerts/s")
}

// BenchmarkDeliver: end to end to a loopback Alertmanager stand-in.
func BenchmarkDeliver(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	cfg := testConfig(b)
	cfg.Alertmanagers = []string{srv.URL, srv.URL}
	cfg.QueueCapacity = 1 << 20
	r, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	a := alert("alertname", "PaymentsSlow", "namespace", "payments", "severity", "warning")
	b.ResetTimer()
	for b.Loop() {
		r.Send(a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "alerts/s")
}

// BenchmarkSearchQuery: what the API does per search before Elasticsearch
// sees it (parameters, scope, query body).
func BenchmarkSearchQuery(b *testing.B) {
	a := &API{}
	WithEventSearch(EventSearch{Indices: []string{"logs-*-default"}})(a)
	s := a.search
	role := &Role{Name: "dev/payments", Scope: Scope{Namespaces: []string{"payments", "payments-stage"}}}
	v, _ := url.ParseQuery(`q=%22connection+refused%22+%7C+timeout&namespace=payments&from=15m&size=100`)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		p, err := s.parse(v, now)
		if err != nil {
			b.Fatal(err)
		}
		scope, err := scopeFilters(role, &p)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.query(&p, scope); err != nil {
			b.Fatal(err)
		}
	}
}
