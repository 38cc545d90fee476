package elasticsearch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/leitstand/leitstand/collector"
)

// cpuSelf is this process's user+system CPU time.
func cpuSelf() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuGroup sums the user+system CPU time of every process in a process
// group (a peer started by internal/peers: the node's JVMs), from /proc.
func cpuGroup(pgid int) time.Duration {
	if pgid == 0 {
		return 0
	}
	ticks := int64(0)
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range dirs {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// Fields after the command, which is in parentheses and may hold spaces.
		i := strings.LastIndexByte(string(data), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		// f[0] is field 3 (state); pgrp is field 5, utime 14, stime 15.
		if len(f) < 13 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

// benchMessage is the message of benchmark event seq, long enough that the
// event's JSON document is about size bytes.
func benchMessage(seq, size int) string {
	msg := "bench event " + strconv.Itoa(seq) + " "
	if pad := size - 160 - len(msg); pad > 0 {
		msg += padding[:min(pad, len(padding))]
	}
	return msg
}

// benchBatch builds events shaped like what rsyslog's template writes in
// BenchmarkVsRsyslog: @timestamp, message, event.dataset, log.level,
// host.name.
func benchBatch(first, n, size int, dataset, idPrefix string) *collector.Batch {
	b := collector.NewBatch("bench")
	now := time.Now()
	for i := 0; i < n; i++ {
		seq := first + i
		e := b.Next()
		e.Timestamp = now
		e.ID = idPrefix + "-" + strconv.Itoa(seq)
		e.AddString(collector.FieldDataset, dataset)
		e.AddString(collector.FieldHostName, "bench-host")
		e.AddString(collector.FieldLevel, "info")
		e.AddString(collector.FieldMessage, benchMessage(seq, size))
		e.Normalize()
	}
	return b
}

// benchRun keeps the ids of repeated benchmark runs (-count) apart, so
// that none of them measures 409s.
var benchRun atomic.Int64

// warmUp sends events the node indexes before a measurement, so the
// JVM's compiler and the node's caches are warm: a cold node is several
// times slower for its first hundred thousand documents.
func warmUp(b *testing.B, s *Sink, size int) {
	for i := 0; i < 50; i++ {
		bt := benchBatch(i*2000, 2000, size, "bench.warmup", "w"+strconv.Itoa(size))
		err := s.Consume(context.Background(), bt)
		bt.Release()
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBulk measures sustained throughput into the real node, one op
// per event, through Consume in batches of 2000 as the spool delivers
// them, with the default config (4 workers, gzip), after 100,000 warm-up
// events. It reports events/s,
// leitstand's CPU seconds per 100k events (getrusage: the whole test
// process, so an upper bound), and, for a node this package started, the
// node's CPU seconds per 100k events and leitstand's share of it.
//
//	go test -run '^$' -bench Bulk -benchtime 200000x ./collector/sink/elasticsearch/
func BenchmarkBulk(b *testing.B) {
	for _, size := range []int{200, 2048} {
		b.Run(strconv.Itoa(size)+"B", func(b *testing.B) { benchBulk(b, size, DefaultConfig().Workers, 2000) })
	}
}

// BenchmarkBulkTuning runs BenchmarkBulk's 200-byte case with other worker
// counts and spool batch sizes, to choose the defaults.
func BenchmarkBulkTuning(b *testing.B) {
	for _, workers := range []int{1, 2, 4, 8} {
		for _, batch := range []int{2000, 5000} {
			b.Run(fmt.Sprintf("workers=%d/batch=%d", workers, batch), func(b *testing.B) { benchBulk(b, 200, workers, batch) })
		}
	}
}

func benchBulk(b *testing.B, size, workers, per int) {
	suite.Require(b)
	cfg := testConfig(b, shared.URL)
	cfg.Workers = workers
	s, _, _ := startSink(b, cfg)
	waitReady(b, s, time.Minute)
	warmUp(b, s, size)

	var batches []*collector.Batch
	prefix := fmt.Sprintf("b%d-%d", size, benchRun.Add(1))
	for n := 0; n < b.N; n += per {
		batches = append(batches, benchBatch(n, min(per, b.N-n), size, "bench", prefix))
	}
	defer func() {
		for _, bt := range batches {
			bt.Release()
		}
	}()
	// Check the size the events really have.
	doc := batches[0].Events[0].AppendJSON(nil)
	b.SetBytes(int64(len(doc)))

	pgid := 0
	if !shared.External {
		pgid = shared.PID()
	}
	b.ResetTimer()
	cpu0, es0, t0 := cpuSelf(), cpuGroup(pgid), time.Now()
	for _, bt := range batches {
		if err := s.Consume(context.Background(), bt); err != nil {
			b.Fatal(err)
		}
	}
	wall, cpu, esCPU := time.Since(t0), cpuSelf()-cpu0, cpuGroup(pgid)-es0
	b.StopTimer()

	b.ReportMetric(float64(b.N)/wall.Seconds(), "events/s")
	b.ReportMetric(cpu.Seconds()*1e5/float64(b.N), "cpu-s/100k")
	if pgid != 0 && esCPU > 0 {
		b.ReportMetric(esCPU.Seconds()*1e5/float64(b.N), "es-cpu-s/100k")
		b.ReportMetric(100*cpu.Seconds()/esCPU.Seconds(), "cpu-%-of-es")
	}
	b.ReportMetric(float64(len(doc)), "doc-bytes")
}
