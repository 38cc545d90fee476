package anonymize

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/leitstand/leitstand/collector"
)

// Benchmarks: go test -run XXX -bench . -benchmem ./anonymize/
//
// Each scrubs batches of events through Process, the pipeline's hot path,
// with every detector on, and reports MB/s of string field text, events/s
// and allocations per event; the Naive variants run the regexp baseline
// over the same events in the same run, so the ratio holds on a noisy
// machine.

// sparseLines are log lines with little personal data: about one value in
// twenty lines, among the trace ids, versions, durations and timestamps
// that fill real logs.
func sparseLines(n int) []string {
	r := rand.New(rand.NewPCG(1, 2))
	hex := func(k int) string {
		const h = "0123456789abcdef"
		b := make([]byte, k)
		for i := range b {
			b[i] = h[r.IntN(16)]
		}
		return string(b)
	}
	templates := []func() string{
		func() string {
			return fmt.Sprintf("2026-11-22T08:%02d:%02d.%03dZ INFO  http.server: request completed method=GET path=/api/v1/courses/%d/lessons status=200 duration=%d.%dms bytes=%d trace_id=%s span_id=%s", r.IntN(60), r.IntN(60), r.IntN(1000), r.IntN(9000), r.IntN(300), r.IntN(10), r.IntN(90000), hex(32), hex(16))
		},
		func() string {
			return fmt.Sprintf("I1122 08:%02d:%02d.%06d       1 reconciler.go:%d] \"Reconciled object\" controller=\"deployment\" namespace=\"school-%d\" name=\"moodle-web\" reconcileID=\"%s-%s-4%s-a%s-%s\" generation=%d", r.IntN(60), r.IntN(60), r.IntN(1000000), r.IntN(900), r.IntN(40), hex(8), hex(4), hex(3), hex(3), hex(12), r.IntN(50))
		},
		func() string {
			return fmt.Sprintf("level=warn ts=2026-11-22T08:15:%02d.%03dZ caller=cache.go:%d msg=\"cache miss ratio above threshold\" ratio=0.%d window=5m0s shards=%d version=v2.%d.%d", r.IntN(60), r.IntN(1000), r.IntN(400), r.IntN(100), r.IntN(64), r.IntN(20), r.IntN(10))
		},
		func() string {
			return fmt.Sprintf("Nov 22 08:15:%02d node-%d kubelet[%d]: I1122 pod_workers.go:%d] \"SyncPod\" pod=\"documents/ocr-worker-7d9f8b6c4-x%dz\" podUID=%s-%s-%s-%s-%s", r.IntN(60), r.IntN(9), 1000+r.IntN(9000), r.IntN(1200), r.IntN(10), hex(8), hex(4), hex(4), hex(4), hex(12))
		},
		func() string {
			return fmt.Sprintf("{\"level\":\"info\",\"time\":\"2026-11-22T08:15:%02dZ\",\"msg\":\"job finished\",\"job\":\"thumbnail\",\"pages\":%d,\"elapsed\":\"%d.%ds\",\"image\":\"registry.example.org/ocr@sha256:%s\"}", r.IntN(60), r.IntN(300), r.IntN(30), r.IntN(10), hex(64))
		},
	}
	pii := []func() string{
		func() string {
			return fmt.Sprintf("password reset mail sent to user%d@schule-%d.example.de", r.IntN(9999), r.IntN(99))
		},
		func() string {
			return fmt.Sprintf("upstream connect error from 203.0.113.%d:%d after 3 retries", 1+r.IntN(250), 30000+r.IntN(30000))
		},
	}
	lines := make([]string, n)
	for i := range lines {
		if r.IntN(20) == 0 {
			lines[i] = pii[r.IntN(len(pii))]()
		} else {
			lines[i] = templates[r.IntN(len(templates))]()
		}
	}
	return lines
}

// denseLines are lines full of personal data: several values in each.
func denseLines(n int) []string {
	r := rand.New(rand.NewPCG(3, 4))
	first := []string{"anna", "ben", "clara", "deniz", "emil", "fatma", "jonas", "lea", "mia", "noah"}
	last := []string{"mueller", "schmidt", "yilmaz", "nowak", "weber", "fischer", "wagner", "becker"}
	templates := []func() string{
		func() string {
			return fmt.Sprintf("order failed for %s.%s@example.com from 198.51.100.%d card 4111 1111 1111 1111 phone +49 151 %08d", first[r.IntN(10)], last[r.IntN(8)], 1+r.IntN(250), r.IntN(1e8))
		},
		func() string {
			return fmt.Sprintf("login user=%s%d ip=2001:db8:%x::%x password=%s%d token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI%dIn0.dozjgNryP4J3jVmNHl0w5N", first[r.IntN(10)], r.IntN(99), r.IntN(65535), r.IntN(65535), last[r.IntN(8)], r.IntN(999), r.IntN(1e6))
		},
		func() string {
			return fmt.Sprintf("Überweisung von %s %s, IBAN DE89 3704 0044 0532 0130 00, Rückruf unter 030 %07d, Mail %s@example.de", first[r.IntN(10)], last[r.IntN(8)], r.IntN(1e7), last[r.IntN(8)])
		},
		func() string {
			return fmt.Sprintf("GET https://app:%s%d@db.example.com/x?email=%s%%40example.org from [2001:db8::%x]:443 mac 00:1a:2b:3c:%02x:%02x", last[r.IntN(8)], r.IntN(99), first[r.IntN(10)], r.IntN(65535), r.IntN(256), r.IntN(256))
		},
	}
	lines := make([]string, n)
	for i := range lines {
		lines[i] = templates[r.IntN(len(templates))]()
	}
	return lines
}

// textEvents wraps each line as the message of a log event.
func textEvents(lines []string) []collector.Event {
	evs := make([]collector.Event, len(lines))
	for i, l := range lines {
		e := &evs[i]
		e.AddString(collector.FieldDataset, "kubernetes.container")
		e.AddString(collector.FieldLevel, "info")
		e.AddString(collector.FieldService, "moodle")
		e.AddString(collector.FieldHostName, "node-3")
		e.AddString(collector.FieldMessage, l)
	}
	return evs
}

type stage interface{ Process(*collector.Batch) }

// benchEvents runs s over batches of the template events.
func benchEvents(b *testing.B, s stage, tmpl []collector.Event) {
	const batchSize = 64
	var bytes int64
	for _, e := range tmpl {
		for _, f := range e.Fields {
			if f.Key != collector.FieldDataset {
				bytes += int64(len(f.Str))
			}
		}
	}
	batch := &collector.Batch{}
	b.SetBytes(bytes * batchSize / int64(len(tmpl)))
	b.ReportAllocs()
	b.ResetTimer()
	next := 0
	for i := 0; i < b.N; i++ {
		batch.Events = batch.Events[:0]
		batch.Arena.Reset()
		for k := 0; k < batchSize; k++ {
			e := batch.Next()
			e.Fields = append(e.Fields[:0], tmpl[next].Fields...)
			next = (next + 1) % len(tmpl)
		}
		s.Process(batch)
	}
	b.ReportMetric(float64(b.N)*batchSize/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkSparse(b *testing.B) {
	evs := textEvents(sparseLines(1024))
	b.Run("Ours", func(b *testing.B) { benchEvents(b, newTestAnonymizer(b), evs) })
	b.Run("Naive", func(b *testing.B) { benchEvents(b, newNaive(), evs) })
}

func BenchmarkDense(b *testing.B) {
	evs := textEvents(denseLines(1024))
	b.Run("Ours", func(b *testing.B) { benchEvents(b, newTestAnonymizer(b), evs) })
	b.Run("Naive", func(b *testing.B) { benchEvents(b, newNaive(), evs) })
}

func BenchmarkSentryEvent(b *testing.B) {
	evs := []collector.Event{sentryEvent(b)}
	b.Run("Ours", func(b *testing.B) { benchEvents(b, newTestAnonymizer(b), evs) })
	b.Run("Naive", func(b *testing.B) { benchEvents(b, newNaive(), evs) })
}

func BenchmarkScrubString(b *testing.B) {
	a := newTestAnonymizer(b)
	text := strings.Join(sparseLines(64), "\n")
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		a.ScrubString(text)
	}
}

// BenchmarkPathological scrubs 1 MiB of each pathological fragment
// repeated; TestPathologicalInputsStayLinear checks by counting, not by
// time, that none of them makes a scan quadratic.
func BenchmarkPathological(b *testing.B) {
	a := newTestAnonymizer(b)
	for _, frag := range pathologicalFragments {
		s := strings.Repeat(frag, (1<<20)/len(frag))
		b.Run(fmt.Sprintf("%q", frag), func(b *testing.B) {
			b.SetBytes(int64(len(s)))
			for i := 0; i < b.N; i++ {
				a.ScrubString(s)
			}
		})
	}
}
