package sentry

// Benchmarks: go test -run '^$' -bench . -benchmem -cpu 1 ./collector/sentry/
//
// Each request is the real sentry-go error envelope of the samples (a 2.3 KB
// event and a 35-byte attachment), sent as sentry-go sends it (no
// compression) and gzip-compressed (as sentry-python does), through the
// handler: auth, decompression, envelope parsing, normalisation to ECS,
// the anonymizer's scrub and the pipeline's normalisation of every event,
// as pipeline.process runs them (without its queue and goroutine hop, so
// the figure is per core). "Naive" runs the same requests through a
// baseline that decodes each item with encoding/json into map[string]any
// and walks it, with the same anonymizer after it, in the same run so the
// ratio holds on a noisy machine. "ParseOnly" leaves the scrub out, to show
// what the receiver itself costs.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leitstand/leitstand/anonymize"
	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/collector/telemetry"
)

// stageSubmitter runs the pipeline's processing synchronously.
type stageSubmitter struct {
	stages []collector.Stage
	events int
}

func (s *stageSubmitter) Submit(_ context.Context, b *collector.Batch, _ pipeline.Policy) error {
	for _, st := range s.stages {
		st.Process(b)
	}
	ingested := b.Ingested()
	for i := range b.Events {
		e := &b.Events[i]
		e.Add(collector.FieldIngested, collector.KindString, ingested)
		e.Normalize()
	}
	s.events += b.Len()
	return nil
}

// discardWriter is a ResponseWriter that keeps the status only.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }

func benchReceiver(b *testing.B, scrub bool) (*Receiver, *stageSubmitter) {
	reg := prometheus.NewRegistry()
	sub := &stageSubmitter{}
	if scrub {
		anon, err := anonymize.New(anonymize.DefaultConfig(), b.TempDir(), reg)
		if err != nil {
			b.Fatal(err)
		}
		sub.stages = []collector.Stage{anon}
	}
	r, err := New(testConfig(), sub, telemetry.New(reg), reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	return r, sub
}

func gzipped(p []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(p)
	zw.Close()
	return buf.Bytes()
}

// benchRequests sends body through handle b.N times and reports events/s.
func benchRequests(b *testing.B, body []byte, encoding string, handle func(http.ResponseWriter, *http.Request), sub *stageSubmitter) {
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:8080/api/42/envelope/", nil)
	req.SetPathValue("project_id", "42")
	req.Header.Set("X-Sentry-Auth", "Sentry sentry_version=7, sentry_client=sentry.go/0.50.0, sentry_key="+testKey)
	req.Header.Set("Content-Type", "application/x-sentry-envelope")
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	rd := bytes.NewReader(body)
	w := &discardWriter{h: http.Header{}}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		rd.Reset(body)
		req.Body = io.NopCloser(rd)
		req.ContentLength = int64(len(body))
		clear(w.h)
		w.status = 0
		handle(w, req)
		if w.status != http.StatusOK {
			b.Fatalf("status %d: %s", w.status, w.h.Get("X-Sentry-Error"))
		}
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	if sub.events != b.N {
		b.Fatalf("%d events for %d requests", sub.events, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	// The process's CPU time per event: on a shared machine, wall time
	// counts the time other processes had the core, CPU time does not.
	// events/cpu-s is the per-core rate (run with -cpu 1).
	b.ReportMetric(float64(b.N)/cpu.Seconds(), "events/cpu-s")
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkGoErrorEnvelope(b *testing.B) {
	body := readSample(b, "go-req-001.envelope")
	for _, enc := range []struct{ name, encoding string }{{"identity", ""}, {"gzip", "gzip"}} {
		payload := body
		if enc.encoding == "gzip" {
			payload = gzipped(body)
		}
		b.Run("Ours/"+enc.name, func(b *testing.B) {
			r, sub := benchReceiver(b, true)
			benchRequests(b, payload, enc.encoding, r.serveEnvelope, sub)
		})
		b.Run("Naive/"+enc.name, func(b *testing.B) {
			r, sub := benchReceiver(b, true)
			benchRequests(b, payload, enc.encoding, naiveHandler(r), sub)
		})
	}
	b.Run("ParseOnly/Ours", func(b *testing.B) {
		r, sub := benchReceiver(b, false)
		benchRequests(b, body, "", r.serveEnvelope, sub)
	})
	b.Run("ParseOnly/Naive", func(b *testing.B) {
		r, sub := benchReceiver(b, false)
		benchRequests(b, body, "", naiveHandler(r), sub)
	})
}

// naiveHandler is the baseline: the same auth and body reading, then
// encoding/json into map[string]any and a walk that builds the same
// fields, then the same Submit.
func naiveHandler(r *Receiver) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, req *http.Request) {
		rq, ok := r.begin(w, req, "envelope")
		if !ok {
			return
		}
		buf, reserved, ok := r.readBody(w, req, rq)
		if !ok {
			return
		}
		defer r.inflight.Release(reserved)
		b := collector.NewBatch("sentry")
		defer b.Release()
		b.Keep(buf)
		if err := naiveEnvelope(*buf, rq.ki.project, b); err != nil {
			r.refuse(w, "envelope", "bad_request", http.StatusBadRequest, err.Error())
			return
		}
		if err := r.next.Submit(context.Background(), b, r.cfg.Queue); err != nil {
			r.refuse(w, "envelope", "queue_full", http.StatusTooManyRequests, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, response{ID: b.Events[0].ID})
	}
}

func naiveEnvelope(body []byte, p *project, b *collector.Batch) error {
	lines := bytes.SplitN(body, []byte("\n"), 2)
	var header map[string]any
	if err := json.Unmarshal(lines[0], &header); err != nil {
		return err
	}
	rest := lines[1]
	for len(bytes.TrimSpace(rest)) > 0 {
		line, after, _ := bytes.Cut(rest, []byte("\n"))
		var ih map[string]any
		if err := json.Unmarshal(line, &ih); err != nil {
			return err
		}
		n := len(after)
		if l, ok := ih["length"].(float64); ok {
			n = int(l)
		} else if i := bytes.IndexByte(after, '\n'); i >= 0 {
			n = i
		}
		payload := after[:n]
		rest = bytes.TrimPrefix(after[n:], []byte("\n"))
		if ih["type"] != "event" {
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal(payload, &ev); err != nil {
			return err
		}
		naiveEvent(ev, p, b.Next())
	}
	return nil
}

func naiveEvent(ev map[string]any, p *project, e *collector.Event) {
	s := func(v any) string {
		switch t := v.(type) {
		case string:
			return t
		case nil:
			return ""
		}
		out, _ := json.Marshal(v)
		return string(out)
	}
	raw := func(key string, v any) {
		if v == nil {
			return
		}
		out, _ := json.Marshal(v)
		e.Add(key, collector.KindRaw, string(out))
	}
	add := func(key string, v any) {
		if str := s(v); str != "" {
			e.Add(key, collector.KindString, str)
		}
	}
	e.ID = s(ev["event_id"])
	e.Timestamp, _ = time.Parse(time.RFC3339Nano, s(ev["timestamp"]))
	add(fEventID, ev["event_id"])
	add(collector.FieldLevel, ev["level"])
	add(fPlatform, ev["platform"])
	add(fServiceVersion, ev["release"])
	add(fServiceEnv, ev["environment"])
	add(collector.FieldHostName, ev["server_name"])
	if sdk, ok := ev["sdk"].(map[string]any); ok {
		add(fSDKName, sdk["name"])
		add(fSDKVersion, sdk["version"])
	}
	if tags, ok := ev["tags"].(map[string]any); ok {
		for k, v := range tags {
			add("labels."+strings.ReplaceAll(k, ".", "_"), v)
		}
	}
	if u, ok := ev["user"].(map[string]any); ok {
		add(fUserID, u["id"])
		add(fUserEmail, u["email"])
		add(fUserName, u["username"])
		add(fSourceIP, u["ip_address"])
	}
	if r, ok := ev["request"].(map[string]any); ok {
		url := s(r["url"])
		if q := s(r["query_string"]); q != "" {
			add(fURLQuery, q)
			url += "?" + q
		}
		add(fURLFull, url)
		add(fMethod, r["method"])
		add(fReqBody, r["data"])
		add(fReqCookies, r["cookies"])
		raw(fReqHeaders, r["headers"])
		raw(fReqEnv, r["env"])
		if h, ok := r["headers"].(map[string]any); ok {
			add(fUserAgent, h["User-Agent"])
		}
	}
	if c, ok := ev["contexts"].(map[string]any); ok {
		if tr, ok := c["trace"].(map[string]any); ok {
			add(fTraceID, tr["trace_id"])
			add(fSpanID, tr["span_id"])
		}
		raw(fContexts, c)
	}
	raw(fBreadcrumbs, ev["breadcrumbs"])
	var group strings.Builder
	if exc, ok := ev["exception"].([]any); ok && len(exc) > 0 {
		raw(fException, exc)
		last, _ := exc[len(exc)-1].(map[string]any)
		typ, val := s(last["type"]), s(last["value"])
		add(fErrType, typ)
		add(fErrMessage, val)
		add(collector.FieldMessage, typ+": "+val)
		var st strings.Builder
		st.WriteString(typ + ": " + val)
		group.WriteString(typ)
		if stk, ok := last["stacktrace"].(map[string]any); ok {
			frames, _ := stk["frames"].([]any)
			for i := len(frames) - 1; i >= 0; i-- {
				fr, _ := frames[i].(map[string]any)
				fmt.Fprintf(&st, "\n    at %s.%s (%s:%v)", s(fr["module"]), s(fr["function"]), s(fr["abs_path"]), fr["lineno"])
				if fr["in_app"] == true {
					group.WriteString(s(fr["module"]) + "|" + s(fr["function"]))
				}
			}
		}
		add(fErrStack, st.String())
	}
	keys := make([]string, 0, len(ev))
	for k := range ev {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	add(fErrGroup, fmt.Sprintf("%x", group.String()))
	e.Add(collector.FieldDataset, collector.KindString, dsError)
	e.Add(collector.FieldReceiver, collector.KindString, "sentry")
	e.Add(fProject, collector.KindString, p.idStr)
	e.Add(collector.FieldService, collector.KindString, p.service)
	e.Add(collector.FieldTenant, collector.KindString, p.tenant)
}
