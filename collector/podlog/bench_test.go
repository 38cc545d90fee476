package podlog

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/httpin"
)

// benchFile writes n CRI lines of about 180 bytes to dir/0.log.
func benchFile(b *testing.B, dir string, n, seed int) string {
	b.Helper()
	var buf bytes.Buffer
	ts := time.Date(2026, 11, 22, 8, 0, 0, seed, time.UTC)
	for i := 0; i < n; i++ {
		buf.WriteString(ts.Add(time.Duration(i) * time.Microsecond).Format(time.RFC3339Nano))
		buf.WriteString(" stdout F ")
		buf.WriteString(strconv.Itoa(i))
		buf.WriteString(" GET /api/v1/orders?page=2 status=200 took=12ms bytes=5120 cache=miss the quick brown fox jumps over the lazy dog and on and on and on\n")
	}
	path := filepath.Join(dir, "0.log")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkReadCRI measures the receiver's own work: reading a file,
// splitting and decoding CRI lines and building events.
func BenchmarkReadCRI(b *testing.B) {
	path := benchFile(b, b.TempDir(), 100_000, 0)
	cfg := DefaultConfig()
	r := &Receiver{cfg: cfg}
	f := &family{r: r, key: "ns_pod_uid/c/0.log", base: "0.log", livePath: path,
		pod: podDir{Namespace: "ns", Pod: "pod", UID: "uid"}, container: "c"}
	r.node = "node-1"
	f.static = r.staticFields(f)
	src, file, err := openSource(path, false)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	rd := &reader{f: f, src: src, file: file, rec: &record{}, id: "0123456789abcdef", format: formatCRI}
	buf := make([]byte, cfg.ReadBufferBytes)
	lines, read := 0, int64(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		batch := collector.NewBatch("podlog")
		rd.batchBytes = 0
		eof, n, err := rd.fill(batch, buf, false, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		lines += batch.Len()
		read += int64(n)
		batch.Release()
		if eof {
			rd.cur = cursor{}
		}
	}
	b.ReportMetric(float64(lines)/b.Elapsed().Seconds(), "lines/s")
	b.ReportMetric(float64(read)/b.Elapsed().Seconds()/(1<<20), "MiB/s")
}

// BenchmarkTailAndForward runs the whole agent in this process (receiver,
// pipeline with the anonymizer, forward sink with zstd) against an
// aggregator that only counts the lines it is sent, and reports lines per
// second and per CPU-second of the process (the counting aggregator's
// share is small). agentbench measures the agent as a process of its own.
func BenchmarkTailAndForward(b *testing.B) {
	const pods = 10
	per := max(b.N/pods, 1000)
	total := int64(per * pods)
	var got atomic.Int64
	dec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	defer dec.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		plain, err := dec.DecodeAll(body, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n := 0
		for _, line := range bytes.Split(plain, []byte{'\n'}) {
			if len(line) > 0 {
				n++
			}
		}
		got.Add(int64(n))
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"accepted":`+strconv.Itoa(n)+`}`)
	}))
	defer srv.Close()

	tmp := b.TempDir()
	root := filepath.Join(tmp, "pods")
	for p := 0; p < pods; p++ {
		dir := filepath.Join(root, "bench_pod"+strconv.Itoa(p)+"_uid-"+strconv.Itoa(p), "app")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		benchFile(b, dir, per, p)
	}
	cfg, fc := agentConfigs(root, filepath.Join(tmp, "state"), srv.URL+httpin.Path)
	b.ResetTimer()
	cpu0 := processCPU()
	start := time.Now()
	agent, err := buildAgent(cfg, fc, tmp)
	if err != nil {
		b.Fatal(err)
	}
	for got.Load() < total {
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	b.StopTimer()
	agent.stop(b)
	b.ReportMetric(float64(total)/elapsed.Seconds(), "lines/s")
	b.ReportMetric(float64(total)/cpu.Seconds(), "lines/CPU-s")
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkParseDocker decodes json-file lines as Docker writes them: the
// log text with a few escapes (quotes, a tab, the newline), stream, time.
func BenchmarkParseDocker(b *testing.B) {
	var lines [][]byte
	size := 0
	for i := 0; i < 1000; i++ {
		l := []byte(`{"log":"` + strconv.Itoa(i) + ` GET /api/v1/orders?page=2 status=200 took=12ms\tbytes=5120 cache=miss msg=\"the quick brown fox\" jumps over the lazy dog \u00e4\n","stream":"stdout","time":"2026-11-22T08:15:00.123456789Z"}`)
		lines = append(lines, l)
		size += len(l)
	}
	var pl physLine
	scratch := make([]byte, 0, 4096)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, l := range lines {
			scratch = parseDocker(l, &pl, scratch[:0])
		}
	}
	b.ReportMetric(float64(b.N)*float64(len(lines))/b.Elapsed().Seconds(), "lines/s")
}
