package syslog

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/collector/telemetry"
	"github.com/prometheus/client_golang/prometheus"
)

// benchMessage returns an RFC 5424 message of exactly size bytes, with
// structured data, as a web service behind rsyslog sends them; i varies the
// text.
func benchMessage(i, size int) []byte {
	head := fmt.Sprintf(`<165>1 2026-11-22T08:15:%02d.%06dZ web-01.example.org shop-api 12345 ID47 [req@32473 id="%08d" status="200"] GET /api/v1/items/%d returned 200 in 12ms `, i%60, i%1000000, i%100000000, i%100000)
	if len(head) > size {
		panic("size too small")
	}
	return append([]byte(head), bytes.Repeat([]byte{'x'}, size-len(head))...)
}

// octetStream returns n octet-counted frames of size-byte messages.
func octetStream(n, size int) []byte {
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		m := benchMessage(i, size)
		b.WriteString(strconv.Itoa(len(m)))
		b.WriteByte(' ')
		b.Write(m)
	}
	return b.Bytes()
}

// BenchmarkParse measures framing, parsing and building the ECS event of
// 200-byte RFC 5424 messages, without sockets: with the fast path, and with
// go-syslog alone for comparison (the reason the fast path exists).
func BenchmarkParse(b *testing.B) {
	b.Run("fast", func(b *testing.B) { benchParse(b, false) })
	b.Run("go-syslog", func(b *testing.B) { benchParse(b, true) })
}

func benchParse(b *testing.B, goSyslogOnly bool) {
	const n = 1000
	stream := octetStream(n, 200)
	l := &listener{r: &Receiver{cfg: DefaultConfig()}, cfg: DefaultConfig().Listeners[1]}
	s := l.newBatcher()
	s.dec.p.noFast = goSyslogOnly
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := framer{max: 64 << 10}
		batch := collector.NewBatch("bench")
		p := stream
		for {
			fr, k, ok := f.next(p, false)
			p = p[k:]
			if ok {
				s.dec.add(batch, fr, "192.0.2.1")
			} else if k == 0 {
				break
			}
		}
		if batch.Len() != n {
			b.Fatalf("%d events, want %d", batch.Len(), n)
		}
		batch.Release()
	}
	b.StopTimer()
	reportRates(b, float64(b.N)*n, float64(b.N)*float64(len(stream)))
}

func reportRates(b *testing.B, events, bytes float64) {
	sec := b.Elapsed().Seconds()
	b.ReportMetric(events/sec, "events/s")
	b.ReportMetric(bytes/sec/(1<<20), "MiB/s")
}

// discard is an Enqueuer that counts and releases batches: the receiver's
// work without any pipeline or sink work.
type discard struct {
	events atomic.Int64
	done   chan struct{}
	want   int64
	mu     sync.Mutex
}

func (d *discard) Enqueue(_ context.Context, b *collector.Batch, _ pipeline.Policy) error {
	n := d.events.Add(int64(b.Len()))
	b.Release()
	d.mu.Lock()
	if d.want > 0 && n >= d.want && d.done != nil {
		close(d.done)
		d.done = nil
	}
	d.mu.Unlock()
	return nil
}

func (d *discard) expect(total int64) chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.want = total
	d.done = make(chan struct{})
	if d.events.Load() >= total {
		close(d.done)
		d.done = nil
		c := make(chan struct{})
		close(c)
		return c
	}
	return d.done
}

// BenchmarkTCPOctetCounted is the benchmark: 200-byte RFC 5424
// messages, octet-counted over loopback TCP, framed, parsed and built into
// events, no sink work. The generator runs in processes of its own (one per
// connection), so the CPU figures are the receiver's alone: cpu-s/Mevent
// and MiB/cpu-s hold up on a machine shared with other work, where the
// wall-clock MiB/s does not.
func BenchmarkTCPOctetCounted(b *testing.B) {
	for _, conns := range []int{1, 2} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) { benchTCP(b, conns, 200) })
	}
}

func benchTCP(b *testing.B, conns, size int) {
	const chunkFrames = 5000 // the generator sends whole chunks
	frameLen := len(octetStream(1, size))
	d := &discard{}
	cfg := testConfig(ProtoTCP)
	reg := prometheus.NewRegistry()
	r, err := New(cfg, d, telemetry.New(reg), reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer r.Shutdown(context.Background())
	addr := r.Addrs()[0].String()

	perConn := (b.N + conns*chunkFrames - 1) / (conns * chunkFrames) * chunkFrames
	total := int64(perConn * conns)
	done := d.expect(total)
	b.SetBytes(int64(frameLen))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := selfCPU()
	start := time.Now()
	errs := make(chan error, conns)
	for i := 0; i < conns; i++ {
		go func() { errs <- generateErr(addr, perConn, size) }()
	}
	for i := 0; i < conns; i++ {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("only %d of %d events arrived", d.events.Load(), total)
	}
	elapsed := time.Since(start)
	cpu := selfCPU() - cpu0
	b.StopTimer()
	bytes := float64(total) * float64(frameLen)
	b.ReportMetric(float64(total)/elapsed.Seconds(), "events/s")
	b.ReportMetric(bytes/elapsed.Seconds()/(1<<20), "MiB/s")
	b.ReportMetric(cpu.Seconds()/(float64(total)/1e6), "cpu-s/Mevent")
	b.ReportMetric(bytes/cpu.Seconds()/(1<<20), "MiB/cpu-s")
}

func rusageSeconds(ru syscall.Rusage) float64 {
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}
