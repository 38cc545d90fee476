package syslog

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/leitstand/leitstand/internal/peers"
)

// TestMillionFromRsyslog sends 1,000,000 messages through a real rsyslog
// (imtcp in, omfwd octet-counted TCP out) to the receiver, the pipeline and
// the file sink, and finds every one of them in the files exactly once.
// Under the race detector it sends 100,000.
func TestMillionFromRsyslog(t *testing.T) {
	peers.Slow(t)
	total := 1_000_000
	if raceEnabled {
		total = 100_000
	}
	ctx := testCtx(t, 5*time.Minute)
	h := startHarness(t, testConfig(ProtoTCP))
	in, err := peers.FreeTCPPort()
	if err != nil {
		t.Fatal(err)
	}
	// A ruleset queue with big batches, as rsyslog is tuned for
	// throughput; the default queue settings lose nothing either, only
	// take longer.
	conf := fmt.Sprintf(`
ruleset(name="fwd" queue.type="LinkedList" queue.size="200000" queue.dequeueBatchSize="1024") {
  action(type="omfwd" target="127.0.0.1" port="%s" protocol="tcp" TCP_Framing="octet-counted"
         template="RSYSLOG_SyslogProtocol23Format")
}
input(type="imtcp" address="127.0.0.1" port="%d" ruleset="fwd")
`, h.port(0), in)
	rs, err := peers.StartRsyslog(ctx, peers.RsyslogOptions{Modules: []string{"imtcp"}, Config: conf, ListenTCP: []int{in}})
	peers.Check(t, err)
	peers.Cleanup(t, rs)

	start := time.Now()
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(in)))
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(c, 256<<10)
	for i := 0; i < total; i++ {
		fmt.Fprintf(w, "<14>1 2026-11-22T08:15:00.%06dZ gen-01 loadgen %d - [seq@32473 n=\"%d\"] seq=%07d the quick brown fox jumps over the lazy dog\n", i%1000000, 1000+i%50000, i, i)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	sent := time.Since(start)

	got := h.waitCount(total, 150*time.Second)
	elapsed := time.Since(start)
	if got != total {
		t.Fatalf("%d of %d messages arrived within %s (rsyslog log:\n%s)", got, total, elapsed.Round(time.Millisecond), rs.LogTail(20))
	}
	t.Logf("%d messages: written to rsyslog in %s, all in the file sink after %s (%.0f events/s end to end)", total,
		sent.Round(time.Millisecond), elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds())
	time.Sleep(500 * time.Millisecond) // anything late would be a duplicate

	seen := make([]bool, total)
	lines, dups := 0, 0
	key := []byte("seq=")
	h.eachLine(func(line []byte) {
		lines++
		i := bytes.Index(line, key)
		if i < 0 || i+11 > len(line) {
			t.Fatalf("event without seq: %s", line)
		}
		n, err := strconv.Atoi(string(line[i+4 : i+11]))
		if err != nil || n < 0 || n >= total {
			t.Fatalf("bad seq in %s", line)
		}
		if seen[n] {
			dups++
		}
		seen[n] = true
	})
	missing := 0
	for _, ok := range seen {
		if !ok {
			missing++
		}
	}
	if lines != total || dups != 0 || missing != 0 {
		t.Fatalf("%d events, %d duplicates, %d missing", lines, dups, missing)
	}
	for _, reason := range []string{"queue_full", "shutting_down", "shutdown_timeout"} {
		if n := h.metric("leitstand_events_dropped_total", "component", "syslog_tcp", "reason", reason); n != 0 {
			t.Errorf("%v events dropped (%s)", n, reason)
		}
	}
	if n := h.metric("leitstand_syslog_parse_failures_total"); n != 0 {
		t.Errorf("%v parse failures", n)
	}
}
