package reliability

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The overload scenario's bounds, stated in RELIABILITY.md.
const (
	overloadMemLimit = "256MiB"    // GOMEMLIMIT of the daemon
	overloadRSSBound = 512 << 20   // RSS must stay below this
	overloadQueue    = 8192        // pipeline.queue_size
	overloadInflight = "32MiB"     // ingest.max_inflight_bytes
	overloadSpool    = "16MiB"     // spool.max_bytes (when_full: refuse)
	overloadESBytes  = 256 << 10   // bytes/s the proxy lets through to Elasticsearch
	overloadProbeMax = time.Second // /readyz and /metrics must answer within this
)

// TestOverload: Elasticsearch's intake is throttled, which makes the
// daemon's sustained capacity C; NDJSON, syslog UDP and syslog TCP clients
// then each offer 10×C. RSS must stay under the bound, every refusal must
// be a counted 429 or a counted drop, TCP must push back rather than
// lose, /readyz and /metrics must answer within a second throughout, and
// every acknowledged event must arrive once.
func TestOverload(t *testing.T) {
	suite.Require(t)
	rec := scenario(t, 30, "Overload: 10× capacity")
	dur := envDuration(t, "LEITSTAND_RELIABILITY_OVERLOAD", 20*time.Second)
	proxy := newSwitchProxy(t, strings.TrimPrefix(es.URL, "http://"), true)
	proxy.bytesPerSec.Store(overloadESBytes)
	cfg := strings.Replace(esConfig("overload", fmt.Sprintf(`  max_bytes: %s
  segment_bytes: 1MiB
  when_full: refuse
pipeline:
  queue_size: %d
ingest:
  max_inflight_bytes: %s
  queue:
    when_full: drop_newest
`, overloadSpool, overloadQueue, overloadInflight)), "@ES@", proxy.url(), 1)
	cfg = strings.Replace(cfg, "    retry_initial: 50ms\n", "    retry_initial: 50ms\n    workers: 1\n    compress: false\n", 1)
	cfg = strings.Replace(cfg, "syslog:\n  enabled: false\n", "syslog:\n  listeners:\n    - {protocol: udp, address: @SYSLOG@}\n    - {protocol: tcp, address: @SYSLOG@}\n", 1)
	d := newDaemon(t, "leitstand", cfg, daemonOptions{Env: []string{"GOMEMLIMIT=" + overloadMemLimit}})

	// Calibrate: closed-loop clients keep the daemon busy; its capacity
	// is the rate at which events leave for Elasticsearch.
	cal := newLoadGen(d, 4, 0, ndjsonBatches("ovc", "reliability", 100)).start()
	time.Sleep(5 * time.Second)
	m0, _ := d.metrics()
	t0 := time.Now()
	time.Sleep(10 * time.Second)
	m1, _ := d.metrics()
	capacity := (sum(m1, "leitstand_spool_delivered_events_total") - sum(m0, "leitstand_spool_delivered_events_total")) / time.Since(t0).Seconds()
	close(cal.halt)
	cal.wg.Wait()
	if capacity < 50 {
		t.Fatalf("calibration measured a capacity of %.0f events/s; the throttle or Elasticsearch is broken", capacity)
	}
	offered := 10 * capacity
	t.Logf("capacity %.0f events/s; offering %.0f events/s over NDJSON, again over syslog UDP and again over syslog TCP for %s", capacity, offered, dur)

	before, _ := d.metrics()
	udpDrops0 := udpSocketDrops(t, d.syslog)
	stop := make(chan struct{})
	var wg sync.WaitGroup

	// Responsiveness: /readyz and /metrics every 200 ms, each within 1 s.
	var probes, slowProbes atomic.Int64
	var worstProbe atomic.Int64
	probeClient := &http.Client{Timeout: overloadProbeMax, Transport: newTransport()}
	for _, path := range []string{"/readyz", "/metrics"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				start := time.Now()
				resp, err := probeClient.Get(d.url + path)
				took := time.Since(start)
				probes.Add(1)
				if err != nil {
					slowProbes.Add(1)
					t.Errorf("%s did not answer within %s: %v", path, overloadProbeMax, err)
					continue
				}
				resp.Body.Close()
				if took > time.Duration(worstProbe.Load()) {
					worstProbe.Store(int64(took))
				}
			}
		}()
	}
	// RSS from /proc every 100 ms.
	var peakRSS atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if rss, err := d.rssBytes(); err == nil && rss > peakRSS.Load() {
				peakRSS.Store(rss)
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	// NDJSON: open loop, 8 senders, 100 events a request, no retries.
	const senders, perRequest = 8, 100
	var ndjson openLoop
	mk := ndjsonBatches("ov", "reliability", perRequest)
	for c := 0; c < senders; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ndjson.run(d, c, offered/senders/perRequest, mk, stop)
		}()
	}
	// Syslog over UDP: open loop, RFC 5424 datagrams.
	var udpSent atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		udpSent.Store(blastUDP(t, d.syslog, offered, stop))
	}()
	// Syslog over TCP: one connection, octet-counted frames at the same
	// rate; the daemon pushes back (when_full: block) and the sender's
	// writes wait.
	var tcpSent atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		tcpSent.Store(blastTCP(t, d.syslog, offered, stop))
	}()

	time.Sleep(dur)
	close(stop)
	wg.Wait()
	time.Sleep(2 * time.Second) // datagrams in the socket buffer are read
	after, err := d.metrics()
	if err != nil {
		t.Fatalf("/metrics after the overload: %v", err)
	}
	if !d.alive() {
		t.Fatal("the daemon died under overload")
	}
	delta := func(name string, labels ...string) float64 {
		return sum(after, name, labels...) - sum(before, name, labels...)
	}

	// Reconcile HTTP: every answer the clients got is counted by code.
	for _, code := range []int{200, 429, 503} {
		got := ndjson.count(code)
		counted := delta("leitstand_http_requests_total", `handler="ingest"`, fmt.Sprintf(`code="%d"`, code))
		if float64(got) != counted {
			t.Errorf("clients got %d answers %d, leitstand_http_requests_total counts %.0f", got, code, counted)
		}
	}
	if ndjson.count(429) == 0 {
		t.Errorf("no 429 at 10× capacity (answers %v)", ndjson.summary())
	}
	refusedEvents := delta("leitstand_events_refused_total", `component="ingest"`)
	if want := float64(ndjson.count(429) * perRequest); refusedEvents != want {
		t.Errorf("leitstand_events_refused_total{component=\"ingest\"} grew by %.0f, the 429s refused %.0f events", refusedEvents, want)
	}
	// Reconcile UDP: every datagram is received by leitstand or dropped by
	// the kernel (counted by the socket), and every received one is
	// accepted or dropped with a reason.
	udpDrops := udpSocketDrops(t, d.syslog) - udpDrops0
	received := delta("leitstand_events_received_total", `component="syslog_udp"`)
	accepted := delta("leitstand_events_accepted_total", `component="syslog_udp"`)
	dropped := delta("leitstand_events_dropped_total", `component="syslog_udp"`)
	kernelCounted := delta("leitstand_syslog_kernel_drops_total")
	if float64(udpSent.Load()) != received+float64(udpDrops) {
		t.Errorf("UDP: sent %d, leitstand received %.0f and the socket dropped %d (together %.0f)", udpSent.Load(), received, udpDrops, received+float64(udpDrops))
	}
	// Datagrams the pipeline accepted but its sink (the full spool)
	// refused are lost too, and must be counted as such.
	droppedLate := delta("leitstand_events_dropped_total", `component="syslog_udp"`, `reason="sink_refused"`)
	if received != accepted+dropped-droppedLate {
		t.Errorf("UDP: received %.0f, accepted %.0f + dropped on receipt %.0f = %.0f", received, accepted, dropped-droppedLate, accepted+dropped-droppedLate)
	}
	if dropped+float64(udpDrops) == 0 {
		t.Errorf("no UDP datagram dropped at 10× capacity")
	}
	if peakRSS.Load() >= overloadRSSBound {
		t.Errorf("peak RSS %d MiB, bound %d MiB", peakRSS.Load()>>20, overloadRSSBound>>20)
	}

	// Afterwards: the throttle goes, the spool drains, every acknowledged
	// NDJSON event is in Elasticsearch once.
	proxy.bytesPerSec.Store(0)
	if lag, ok := d.waitMetric(3*time.Minute, func(v float64) bool { return v == 0 }, "leitstand_spool_sink_lag_records", `sink="elasticsearch"`); !ok {
		t.Errorf("the spool did not drain within 3m after the overload (lag %.0f records)", lag)
	}
	sent, acked := ndjson.ledger()
	_, calAcked := cal.ledger()
	for k, v := range calAcked {
		acked[k] = v
		sent[k] = v
	}
	// Reconcile TCP: every frame written was read (nothing dropped on
	// receipt: the receiver blocks instead), and what the full spool
	// refused after acceptance is counted.
	tcpReceived, _ := d.waitMetric(time.Minute, func(v float64) bool {
		return v-sum(before, "leitstand_events_received_total", `component="syslog_tcp"`) == float64(tcpSent.Load())
	},
		"leitstand_events_received_total", `component="syslog_tcp"`)
	tcpReceived -= sum(before, "leitstand_events_received_total", `component="syslog_tcp"`)
	after, _ = d.metrics()
	tcpAccepted := delta("leitstand_events_accepted_total", `component="syslog_tcp"`)
	tcpDropped := delta("leitstand_events_dropped_total", `component="syslog_tcp"`)
	tcpDroppedLate := delta("leitstand_events_dropped_total", `component="syslog_tcp"`, `reason="sink_refused"`)
	if tcpReceived != float64(tcpSent.Load()) {
		t.Errorf("TCP: %d frames written, leitstand received %.0f", tcpSent.Load(), tcpReceived)
	}
	if tcpDropped != tcpDroppedLate || tcpAccepted != tcpReceived {
		t.Errorf("TCP: received %.0f, accepted %.0f, dropped %.0f (%.0f after acceptance): a TCP listener must push back, not drop on receipt", tcpReceived, tcpAccepted, tcpDropped, tcpDroppedLate)
	}
	if tcpSent.Load() == 0 {
		t.Error("TCP: no frame written")
	}
	c, syslogDocs := reconcileWhere(t, "logs-*-overload", sent, acked, 3*time.Minute, func(m string) bool {
		return strings.Contains(m, "udp datagram") || strings.Contains(m, "tcp frame")
	})
	rec.counts(c)
	stored := map[string]int{}
	for m, n := range syslogDocs {
		kind := "udp"
		if strings.Contains(m, "tcp frame") {
			kind = "tcp"
		}
		stored[kind] += n
		if n > 1 {
			t.Errorf("%q stored %d times", m, n)
		}
	}
	udpStored := stored["udp"]
	if float64(udpStored) != accepted-droppedLate {
		t.Errorf("UDP: %d datagrams in Elasticsearch, but %.0f accepted − %.0f dropped after acceptance = %.0f", udpStored, accepted, droppedLate, accepted-droppedLate)
	}
	if float64(stored["tcp"]) != tcpAccepted-tcpDroppedLate {
		t.Errorf("TCP: %d frames in Elasticsearch, but %.0f accepted − %.0f dropped after acceptance = %.0f", stored["tcp"], tcpAccepted, tcpDroppedLate, tcpAccepted-tcpDroppedLate)
	}
	rec.Load = fmt.Sprintf("capacity C = %.0f events/s (delivery to Elasticsearch throttled to %d KiB/s, measured over 10 s); offered 10×C = %.0f events/s over NDJSON (%d open-loop senders, %d events/request, no retries), another %.0f datagrams/s over syslog UDP and another %.0f frames/s over one syslog TCP connection, for %s",
		capacity, overloadESBytes>>10, offered, senders, perRequest, offered, offered, dur)
	rec.Faults = fmt.Sprintf("bounds: GOMEMLIMIT=%s, pipeline.queue_size %d, ingest.max_inflight_bytes %s, ingest.queue.when_full drop_newest, spool.max_bytes %s with when_full refuse; RSS bound %d MiB",
		overloadMemLimit, overloadQueue, overloadInflight, overloadSpool, overloadRSSBound>>20)
	rec.note("peak RSS %d MiB (bound %d MiB)", peakRSS.Load()>>20, overloadRSSBound>>20)
	rec.note("NDJSON answers %s; leitstand_http_requests_total{handler=\"ingest\"} agrees per code; %.0f events refused counted", ndjson.summary(), refusedEvents)
	rec.note("UDP: %d datagrams sent = %.0f received + %d dropped by the kernel (leitstand_syslog_kernel_drops_total +%.0f); received = %.0f accepted + %.0f dropped on receipt; %.0f dropped after acceptance (spool full, reason sink_refused); %d stored in Elasticsearch",
		udpSent.Load(), received, udpDrops, kernelCounted, accepted, dropped-droppedLate, droppedLate, udpStored)
	pace := "the daemon read as fast as it was offered"
	if rate := float64(tcpSent.Load()) / dur.Seconds(); rate < 0.95*offered {
		pace = "the daemon pushed back"
	}
	rec.note("TCP: %d frames written (%.0f/s of %.0f/s offered: %s) = %.0f received = %.0f accepted; %.0f dropped after acceptance (spool full, reason sink_refused); %d stored in Elasticsearch",
		tcpSent.Load(), float64(tcpSent.Load())/dur.Seconds(), offered, pace, tcpReceived, tcpAccepted, tcpDroppedLate, stored["tcp"])
	rec.note("%d probes of /readyz and /metrics, %d over %s, slowest %s", probes.Load(), slowProbes.Load(), overloadProbeMax, time.Duration(worstProbe.Load()).Round(time.Millisecond))
	if code := d.stop(); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}

// openLoop sends requests at a fixed rate whatever the answers are, and
// counts them.
type openLoop struct {
	mu       sync.Mutex
	statuses map[int]int
	errs     int
	sent     map[string]string
	acked    map[string]string
}

func (o *openLoop) run(d *daemon, c int, perSec float64, mk func(c, seq int) batch, stop <-chan struct{}) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: newTransport()}
	every := time.Duration(float64(time.Second) / perSec)
	next := time.Now()
	for seq := 0; ; seq++ {
		next = next.Add(every)
		select {
		case <-stop:
			return
		case <-time.After(time.Until(next)):
		}
		b := mk(c, seq)
		code, _, err := post(context.Background(), client, d.url+b.path, b.ctype, b.body, b.header)
		o.mu.Lock()
		if o.statuses == nil {
			o.statuses, o.sent, o.acked = map[int]int{}, map[string]string{}, map[string]string{}
		}
		for i, m := range b.messages {
			o.sent[m] = b.ids[i]
		}
		if err != nil {
			o.errs++
		} else {
			o.statuses[code]++
			if code == http.StatusOK {
				for i, m := range b.messages {
					o.acked[m] = b.ids[i]
				}
			}
		}
		o.mu.Unlock()
	}
}

func (o *openLoop) count(code int) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.statuses[code]
}

func (o *openLoop) summary() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return fmt.Sprintf("%v, %d transport errors", o.statuses, o.errs)
}

func (o *openLoop) ledger() (sent, acked map[string]string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	sent, acked = map[string]string{}, map[string]string{}
	for k, v := range o.sent {
		sent[k] = v
	}
	for k, v := range o.acked {
		acked[k] = v
	}
	return sent, acked
}

// pace calls send(n) for n = 0, 1, … at perSec, in bursts of a
// millisecond's worth, until stop, and returns how many went out. send
// reports false to have n tried again in the next burst, and an error to
// end the loop.
func pace(perSec float64, stop <-chan struct{}, send func(n int64) (bool, error)) int64 {
	var n int64
	start := time.Now()
	for {
		for due := int64(time.Since(start).Seconds() * perSec); n < due; n++ {
			select {
			case <-stop:
				return n
			default:
			}
			ok, err := send(n)
			if err != nil {
				return n
			}
			if !ok {
				break
			}
		}
		select {
		case <-stop:
			return n
		case <-time.After(time.Millisecond):
		}
	}
}

// blastUDP sends RFC 5424 datagrams at perSec until stop and returns how
// many it sent.
func blastUDP(t testing.TB, addr string, perSec float64, stop <-chan struct{}) int64 {
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Error(err)
		return 0
	}
	defer conn.Close()
	return pace(perSec, stop, func(n int64) (bool, error) {
		msg := fmt.Sprintf("<134>1 %s loadgen app %d - - udp datagram %d", time.Now().UTC().Format(time.RFC3339Nano), os.Getpid(), n)
		// ECONNREFUSED from an earlier ICMP: this datagram was not sent,
		// so it does not count; try again later.
		_, err := conn.Write([]byte(msg))
		return err == nil, nil
	})
}

// blastTCP writes octet-counted RFC 5424 frames to addr at perSec until
// stop and returns how many were written whole. A write that waits
// (backpressure) is resumed, never cut: a frame once begun is finished,
// within tcpFinishGrace after stop.
func blastTCP(t testing.TB, addr string, perSec float64, stop <-chan struct{}) int64 {
	const tcpFinishGrace = 30 * time.Second
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		return 0
	}
	defer conn.Close()
	return pace(perSec, stop, func(n int64) (bool, error) {
		msg := fmt.Sprintf("<134>1 %s loadgen app %d - - tcp frame %d", time.Now().UTC().Format(time.RFC3339Nano), os.Getpid(), n)
		frame := []byte(strconv.Itoa(len(msg)) + " " + msg)
		var stopped time.Time
		for len(frame) > 0 {
			_ = conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			k, err := conn.Write(frame)
			frame = frame[k:]
			if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("TCP: %v after %d frames", err, n)
				return false, err
			}
			select {
			case <-stop:
				if stopped.IsZero() {
					stopped = time.Now()
				}
				if len(frame) > 0 && time.Since(stopped) > tcpFinishGrace {
					t.Errorf("TCP: the daemon read nothing for %s after the load stopped; frame %d left half written", tcpFinishGrace, n)
					return false, errors.New("frame left half written")
				}
			default:
			}
		}
		return true, nil
	})
}

// udpSocketDrops reads the drops column of the UDP socket bound to addr
// from /proc/net/udp: datagrams the kernel discarded because the socket's
// buffer was full.
func udpSocketDrops(t testing.TB, addr string) int64 {
	t.Helper()
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 13 {
			continue
		}
		_, lp, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		if p, err := strconv.ParseInt(lp, 16, 32); err != nil || int(p) != port {
			continue
		}
		drops, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
		total += drops
	}
	return total
}
