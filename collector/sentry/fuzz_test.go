package sentry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/collector/telemetry"
)

// checkingSubmitter checks every event the receiver hands on: after the
// pipeline's Normalize it must encode to valid JSON, its raw fields must be
// JSON and its numbers JSON numbers.
// The receiver answers 503 when Submit fails, which the fuzz target
// reports with this error.
type checkingSubmitter struct{}

func (checkingSubmitter) Submit(_ context.Context, b *collector.Batch, _ pipeline.Policy) error {
	for i := range b.Events {
		e := &b.Events[i]
		for _, f := range e.Fields {
			switch f.Kind {
			case collector.KindRaw:
				if !json.Valid([]byte(f.Str)) || strings.ContainsAny(f.Str, "\n\r") {
					return fmt.Errorf("raw field %s is not one line of JSON: %q", f.Key, f.Str)
				}
			case collector.KindNumber:
				var n json.Number
				if err := json.Unmarshal([]byte(f.Str), &n); err != nil {
					return fmt.Errorf("number field %s is %q", f.Key, f.Str)
				}
			}
			if f.Key == "" || strings.HasPrefix(f.Key, ".") || strings.HasSuffix(f.Key, ".") || strings.Contains(f.Key, "..") {
				return fmt.Errorf("field key %q", f.Key)
			}
		}
		e.Normalize()
		out := e.AppendJSON(nil)
		if !json.Valid(out) {
			return fmt.Errorf("event encodes to invalid JSON: %s", out)
		}
	}
	return nil
}

var (
	fuzzOnce sync.Once
	fuzzRecv *Receiver
	fuzzLog  bytes.Buffer
)

// FuzzEnvelope: whatever an SDK or an attacker sends as an envelope, the
// receiver answers 200 or a 4xx with a reason, never panics, and hands on
// only events that encode to valid JSON.
func FuzzEnvelope(f *testing.F) {
	for _, seed := range []string{
		"{}\n",
		"{}\n{\"type\":\"event\"}\n{}\n",
		"{\"event_id\":\"0123456789abcdef0123456789abcdef\"}\n{\"type\":\"event\",\"length\":2}\n{}\n",
		"{}\n{\"type\":\"event\"}\n{\"exception\":{\"values\":[{\"type\":\"E\",\"value\":\"v\",\"stacktrace\":{\"frames\":[{\"function\":\"f\",\"in_app\":true}]}}]},\"fingerprint\":[\"{{ default }}\",\"x\"]}\n",
		"{}\n{\"type\":\"transaction\"}\n{\"type\":\"transaction\",\"spans\":[{\"span_id\":\"a\",\"start_timestamp\":1,\"timestamp\":2}],\"start_timestamp\":\"2026-01-01T00:00:00\",\"timestamp\":1.5}\n",
		"{}\n{\"type\":\"log\"}\n{\"items\":[{\"body\":\"b\",\"attributes\":{\"k\":{\"value\":[1,{\"a\":null}],\"type\":\"array\"},\"\\u00e4\":\"x\"}}]}\n",
		"{}\n{\"type\":\"span\"}\n{\"span_id\":\"s\"}\n",
		"{}\n{\"type\":\"event\"}\n{\"tags\":[[\"a.b\",\"c\"],[\"x\"]],\"request\":{\"query_string\":[[\"a\",\"1\"]],\"headers\":[[\"User-Agent\",\"u\"]],\"cookies\":{\"a\":\"b\"}},\"user\":{\"geo\":{\"city\":\"x\"},\"id\":7}}\n",
		"{}\n{\"type\":\"event\"}\n{\"message\":\"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\ud83d\\ude00 \\udc00\",\"extra\":{ \"spaced\" : [ 1 , 2 ] }}\n",
		"{}\n{\"type\":\"check_in\"}\n{\"check_in_id\":\"0123456789abcdef0123456789abcdef\",\"status\":\"error\",\"duration\":1e3}\n",
		"{}\n{\"type\":\"sessions\"}\n{\"aggregates\":[{\"exited\":2,\"crashed\":-1}]}\n{\"type\":\"client_report\"}\n{\"discarded_events\":[{\"reason\":\"x\",\"category\":\"y\",\"quantity\":3}]}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzOnce.Do(func() {
			reg := prometheus.NewRegistry()
			cfg := testConfig()
			cfg.MaxItems = 200
			var err error
			fuzzRecv, err = New(cfg, checkingSubmitter{}, telemetry.New(reg), reg, slog.New(slog.NewTextHandler(&fuzzLog, nil)))
			if err != nil {
				t.Fatal(err)
			}
		})
		r := fuzzRecv
		fuzzLog.Reset()
		b := collector.NewBatch("sentry")
		defer b.Release()
		n := &normalizer{}
		w := &discardWriter{h: http.Header{}}
		rq := &request{endpoint: "envelope", p: r.projects[testProject], key: testKey, ki: r.keys[testKey]}
		r.envelope(w, rq, body, b, n)
		switch {
		case w.status == http.StatusOK:
		case w.status >= 400 && w.status < 500:
			if w.h.Get("X-Sentry-Error") == "" {
				t.Fatalf("%d without a reason", w.status)
			}
		default:
			t.Fatalf("status %d for %q: %s", w.status, body, fuzzLog.String())
		}
	})
}
