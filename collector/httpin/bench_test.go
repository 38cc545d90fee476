package httpin

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/collector/sink/file"
	"github.com/leitstand/leitstand/collector/telemetry"
	"github.com/prometheus/client_golang/prometheus"
)

// benchBody returns n NDJSON lines of about 200 bytes each, with the mix of
// nested objects, numbers and escapes real shippers send.
func benchBody(n int) []byte {
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"@timestamp":"2026-11-22T08:15:%02d.%06dZ","message":"GET /api/v1/items/%d returned 200 in 12ms \"ok\"","log":{"level":"info"},"service":{"name":"shop-api"},"http":{"response":{"status_code":200}},"event.dataset":"app"}`+"\n", i%60, i, i)
	}
	return b.Bytes()
}

// BenchmarkIngestToFile measures the whole NDJSON path without the network:
// HTTP handler, decode, pipeline (queue, normalize), encode, file sink write.
func BenchmarkIngestToFile(b *testing.B) {
	const lines = 1000
	body := benchBody(lines)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	m := telemetry.New(reg)
	fcfg := file.DefaultConfig()
	fcfg.Dir = b.TempDir()
	fcfg.Fsync = file.FsyncNever
	fcfg.MaxFileBytes = 1 << 30
	sink := file.New(fcfg, reg, log)
	if err := sink.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer sink.Shutdown(context.Background())
	p := pipeline.New(pipeline.Config{QueueSize: 65536, Workers: runtime.GOMAXPROCS(0)}, nil, []collector.Sink{sink}, m, log)
	p.Start(context.Background())
	defer p.Shutdown(context.Background())
	h, err := New(DefaultConfig(), p, m, log)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardResponse{h: http.Header{}}
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
			w.code = 0
			h.ServeHTTP(w, req)
			if w.code != http.StatusOK {
				b.Errorf("status %d", w.code)
				return
			}
		}
	})
	b.StopTimer()
	events := float64(b.N) * lines
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(events/b.Elapsed().Seconds()/float64(runtime.GOMAXPROCS(0)), "events/s/core")
}

// discardResponse is a ResponseWriter that keeps only the status.
type discardResponse struct {
	h    http.Header
	code int
}

func (d *discardResponse) Header() http.Header         { return d.h }
func (d *discardResponse) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardResponse) WriteHeader(code int)        { d.code = code }

// BenchmarkDecodeEncode isolates the per-event work: decode a line into an
// event, normalize, encode.
func BenchmarkDecodeEncode(b *testing.B) {
	const lines = 1000
	body := benchBody(lines)
	h := &Handler{cfg: DefaultConfig()}
	out := make([]byte, 0, 1<<20)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		batch := collector.NewBatch("bench")
		h.decode(body, "", batch)
		out = out[:0]
		for j := range batch.Events {
			batch.Events[j].Normalize()
			out = append(batch.Events[j].AppendJSON(out), '\n')
		}
		batch.Release()
	}
	b.ReportMetric(float64(b.N)*lines/b.Elapsed().Seconds(), "events/s")
}
