package syslog

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/collector/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(generatorEnv); spec != "" {
		// The benchmark's load generator, in a process of its own.
		if err := runGenerator(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

func newReceiver(t *testing.T, cfg Config) *Receiver {
	t.Helper()
	reg := prometheus.NewRegistry()
	r, err := New(cfg, &discard{}, telemetry.New(reg), reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	t.Run("shutdown without start, twice", func(t *testing.T) {
		r := newReceiver(t, testConfig(ProtoUDP, ProtoTCP))
		if err := r.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if err := r.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if err := r.Start(ctx); err == nil {
			t.Fatal("start after shutdown succeeded")
		}
	})
	t.Run("start, shutdown, start again", func(t *testing.T) {
		r := newReceiver(t, testConfig(ProtoUDP, ProtoTCP))
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := r.Start(ctx); err == nil {
			t.Fatal("second start succeeded")
		}
		if err := r.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if err := r.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if err := r.Start(ctx); err == nil {
			t.Fatal("start after shutdown succeeded")
		}
	})
	t.Run("a port in use fails the start and nothing stays bound", func(t *testing.T) {
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		free, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		udpAddr := free.LocalAddr().String()
		free.Close()
		cfg := testConfig(ProtoUDP, ProtoTCP)
		cfg.Listeners[0].Address = udpAddr
		cfg.Listeners[1].Address = busy.Addr().String()
		r := newReceiver(t, cfg)
		err = r.Start(ctx)
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("start on a busy port: %v", err)
		}
		again, err := net.ListenPacket("udp", udpAddr)
		if err != nil {
			t.Fatalf("the udp port stayed bound after the failed start: %v", err)
		}
		again.Close()
		if err := r.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		cfg := testConfig(ProtoTCP)
		cfg.Enabled = false
		r := newReceiver(t, cfg)
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if len(r.Addrs()) != 0 {
			t.Fatal("a disabled receiver listens")
		}
		if err := r.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// dial opens a TCP connection to listener i.
func dial(t testing.TB, h *harness, i int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", h.addr(i).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func write(t testing.TB, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

// marker returns a valid octet-counted RFC 5424 frame whose message is m.
func markerFrame(m string) string {
	return octet(`<14>1 2026-11-22T08:15:00Z host app 1 - - ` + m)
}

func TestEventFields(t *testing.T) {
	h := startHarness(t, testConfig(ProtoTCP))
	c := dial(t, h, 0)
	write(t, c, octet(`<165>1 2026-11-22T08:15:00.123456+01:00 web-01.example.org shop-api 12345 ID47 [exampleSDID@32473 iut="3" eventSource="App\"lication"][meta@1 seq="7"] `+"\ufeff"+`GET /items returned 200`))
	write(t, c, octet(`<13>1 - - - - - - no header fields`))
	write(t, c, "<30>Nov 22 08:15:00 db-01 postgres[811]: checkpoint complete\n")
	write(t, c, "this is no syslog at all\n")
	write(t, c, octet(`<13>1 2026-11-22T08:15:00Z host app worker-3 - - procid is not a number`))
	h.waitEvents(5, 10*time.Second)

	ev := h.waitFor("GET /items", time.Second)
	expect(t, ev, map[string]any{
		"@timestamp":                        "2026-11-22T07:15:00.123456000Z",
		"message":                           "GET /items returned 200",
		"host.hostname":                     "web-01.example.org",
		"process.name":                      "shop-api",
		"process.pid":                       12345,
		"log.syslog.msgid":                  "ID47",
		"log.syslog.priority":               165,
		"log.syslog.facility.code":          20,
		"log.syslog.facility.name":          "local4",
		"log.syslog.severity.code":          5,
		"log.syslog.severity.name":          "Notice",
		"log.level":                         "notice",
		"log.syslog.version":                "1",
		"log.syslog.structured_data":        map[string]any{"exampleSDID@32473": map[string]any{"iut": "3", "eventSource": `App"lication`}, "meta@1": map[string]any{"seq": "7"}},
		"event.dataset":                     "syslog",
		"leitstand.receiver":                "syslog",
		"network.transport":                 "tcp",
		"source.ip":                         "127.0.0.1",
		"tags":                              nil,
		"error":                             nil,
		"log.syslog.structured_data.x":      nil,
		"event.created":                     field(ev, "event.ingested"),
		"log.syslog.procid":                 nil,
		"log.syslog.facility.code.notthere": nil,
	})
	ev = h.waitFor("no header fields", time.Second)
	expect(t, ev, map[string]any{"host": nil, "process": nil, "log.syslog.msgid": nil, "log.syslog.structured_data": nil, "log.syslog.severity.code": 5, "@timestamp": field(ev, "event.created")})
	ev = h.waitFor("checkpoint complete", time.Second)
	expect(t, ev, map[string]any{"host.hostname": "db-01", "process.name": "postgres", "process.pid": 811, "log.syslog.severity.name": "Informational", "log.syslog.facility.name": "daemon", "log.syslog.version": nil})
	ev = h.waitFor("no syslog at all", time.Second)
	expect(t, ev, map[string]any{"message": "this is no syslog at all", "tags": []any{TagParseFailure}, "log.syslog": nil})
	if m, _ := field(ev, "error.message").(string); m == "" {
		t.Errorf("parse failure without error.message: %s", mustJSON(ev))
	}
	ev = h.waitFor("procid is not a number", time.Second)
	expect(t, ev, map[string]any{"log.syslog.procid": "worker-3", "process.pid": nil})
	if got := h.metric("leitstand_syslog_parse_failures_total", "protocol", "tcp"); got != 1 {
		t.Errorf("parse failures: %v, want 1", got)
	}
	if got := h.metric("leitstand_events_accepted_total", "component", "syslog_tcp"); got != 5 {
		t.Errorf("accepted: %v, want 5", got)
	}
}

func TestBadInput(t *testing.T) {
	newH := func(t *testing.T) *harness {
		cfg := testConfig(ProtoTCP)
		cfg.Listeners[0].ReadTimeout = 500 * time.Millisecond
		return startHarness(t, cfg)
	}
	// stillServing proves the receiver takes a valid message on a fresh
	// connection.
	stillServing := func(t *testing.T, h *harness, name string) {
		t.Helper()
		c := dial(t, h, 0)
		write(t, c, markerFrame("fresh-connection-"+name))
		h.waitFor("fresh-connection-"+name, 10*time.Second)
	}

	t.Run("random bytes", func(t *testing.T) {
		h := newH(t)
		c := dial(t, h, 0)
		write(t, c, markerFrame("before-random"))
		junk := make([]byte, 256<<10)
		rand.New(rand.NewSource(7)).Read(junk)
		if _, err := c.Write(junk); err != nil {
			t.Fatal(err)
		}
		write(t, c, "\n"+markerFrame("after-random"))
		h.waitFor("after-random", 10*time.Second)
		stillServing(t, h, "random")
		if n := h.metric("leitstand_syslog_resyncs_total", "protocol", "tcp"); n < 1 {
			t.Errorf("resyncs: %v", n)
		}
		framing := 0
		for _, ev := range h.events() {
			if hasTag(ev, TagFramingError) {
				framing++
			}
		}
		if framing == 0 {
			t.Error("no event keeps the skipped bytes")
		}
	})

	t.Run("wrong octet count", func(t *testing.T) {
		h := newH(t)
		c := dial(t, h, 0)
		msg := `<13>1 - h a - - - this message is longer than its count says`
		write(t, c, fmt.Sprintf("%d %s", len(msg)-20, msg))
		write(t, c, markerFrame("after-short-count"))
		long := `<13>1 - h a - - - short`
		write(t, c, fmt.Sprintf("%d %s", len(long)+5, long))
		write(t, c, markerFrame("swallowed-by-long-count"))
		write(t, c, markerFrame("after-long-count"))
		h.waitFor("after-short-count", 10*time.Second)
		h.waitFor("after-long-count", 10*time.Second)
		stillServing(t, h, "count")
		if n := h.metric("leitstand_syslog_resyncs_total", "protocol", "tcp"); n < 2 {
			t.Errorf("resyncs: %v, want 2", n)
		}
	})

	t.Run("10 MB frame", func(t *testing.T) {
		h := newH(t)
		c := dial(t, h, 0)
		const size = 10 << 20
		head := "<13>1 - h a - - - big:"
		write(t, c, fmt.Sprintf("%d %s", size, head))
		chunk := bytes.Repeat([]byte{'b'}, 1<<20)
		left := size - len(head)
		for left > 0 {
			n := min(left, len(chunk))
			if _, err := c.Write(chunk[:n]); err != nil {
				t.Fatal(err)
			}
			left -= n
		}
		write(t, c, markerFrame("after-10mb-octet"))
		// The same as one LF-terminated line.
		write(t, c, "<13>"+strings.Repeat("L", size)+"\n")
		write(t, c, "<13>Nov 22 08:15:00 host app: after-10mb-line\n")
		h.waitFor("after-10mb-octet", 20*time.Second)
		h.waitFor("after-10mb-line", 20*time.Second)
		stillServing(t, h, "10mb")
		cut := 0
		for _, ev := range h.events() {
			if hasTag(ev, TagTruncated) {
				cut++
				if m, _ := ev["message"].(string); len(m) > 64<<10 {
					t.Errorf("truncated message has %d bytes", len(m))
				}
			}
		}
		if cut != 2 {
			t.Errorf("%d truncated events, want 2", cut)
		}
		if n := h.metric("leitstand_syslog_truncated_total", "protocol", "tcp"); n != 2 {
			t.Errorf("truncations: %v, want 2", n)
		}
		if n := h.metric("leitstand_syslog_discarded_bytes_total", "protocol", "tcp"); n < 2*(size-(64<<10)) {
			t.Errorf("discarded bytes: %v, want at least %d", n, 2*(size-(64<<10)))
		}
	})

	t.Run("half a frame, then a stall", func(t *testing.T) {
		h := newH(t)
		c := dial(t, h, 0)
		write(t, c, "200 <13>1 - h a - - - half a fra")
		other := dial(t, h, 0)
		write(t, other, markerFrame("while-the-other-stalls"))
		h.waitFor("while-the-other-stalls", 10*time.Second)
		// The stalled connection is closed after read_timeout...
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("stalled connection: read %v, want EOF", err)
		}
		if n := h.waitMetric(1, 5*time.Second, "leitstand_syslog_connections_closed_total", "protocol", "tcp", "reason", "read_timeout"); n != 1 {
			t.Errorf("read timeouts: %v", n)
		}
		// ...and its half frame is kept, flagged.
		ev := h.waitFor("half a fra", 5*time.Second)
		if !hasTag(ev, TagIncomplete) {
			t.Errorf("half frame not tagged: %s", mustJSON(ev))
		}
		write(t, other, markerFrame("after-the-stall"))
		h.waitFor("after-the-stall", 10*time.Second)
	})

	t.Run("invalid UTF-8", func(t *testing.T) {
		h := newH(t)
		c := dial(t, h, 0)
		write(t, c, markerFrame("bad \xff\xfe bytes"))
		write(t, c, octet("<13>1 - h a - - [x@1 k=\"\xc3\x28\"] bad bytes in structured data"))
		ev := h.waitFor("bad \ufffd\ufffd bytes", 10*time.Second)
		if !hasTag(ev, TagInvalidUTF8) {
			t.Errorf("not tagged: %s", mustJSON(ev))
		}
		ev = h.waitFor("bad bytes in structured data", 10*time.Second)
		if !hasTag(ev, TagInvalidUTF8) || !hasTag(ev, TagParseFailure) {
			t.Errorf("not tagged: %s", mustJSON(ev))
		}
		if n := h.metric("leitstand_syslog_invalid_utf8_total", "protocol", "tcp"); n != 2 {
			t.Errorf("invalid UTF-8: %v, want 2", n)
		}
		stillServing(t, h, "utf8")
	})
}

// raiseFileLimit lifts the soft limit on open files to the hard limit.
func raiseFileLimit(t *testing.T, need uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= need {
		return
	}
	old := lim
	lim.Cur = min(lim.Max, need)
	if lim.Cur < need && lim.Max < need {
		lim.Max, lim.Cur = need, need // root may raise the hard limit too
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("need %d open files, limit is %d: %v", need, old.Cur, err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

func TestFiveThousandIdleConnections(t *testing.T) {
	const clients, limit = 5000, 1000
	raiseFileLimit(t, 2*clients+limit+200)
	cfg := testConfig(ProtoTCP)
	cfg.Listeners[0].MaxConnections = limit
	cfg.Listeners[0].IdleTimeout = 5 * time.Minute
	h := startHarness(t, cfg)
	conns := make([]net.Conn, 0, clients)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < clients; i++ {
		c, err := net.Dial("tcp", h.addr(0).String())
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
		if open := h.metric("leitstand_syslog_connections_open", "protocol", "tcp"); open > limit {
			t.Fatalf("%v connections open, limit %d", open, limit)
		}
	}
	refused := func() float64 {
		return h.metric("leitstand_syslog_connections_rejected_total", "protocol", "tcp", "reason", "max_connections") +
			h.metric("leitstand_syslog_connections_closed_total", "protocol", "tcp", "reason", "evicted")
	}
	deadline := time.Now().Add(20 * time.Second)
	for refused() < clients-limit && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := refused(); got != clients-limit {
		t.Errorf("refused or evicted %v connections, want %d", got, clients-limit)
	}
	if open := h.metric("leitstand_syslog_connections_open", "protocol", "tcp"); open != limit {
		t.Errorf("%v connections open, want %d", open, limit)
	}
	// A connection the receiver kept still delivers.
	var kept net.Conn
	for i := len(conns) - 1; i >= 0 && kept == nil; i-- {
		_ = conns[i].SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		if _, err := conns[i].Read(make([]byte, 1)); err != nil && isTimeout(err) {
			kept = conns[i]
		}
	}
	if kept == nil {
		t.Fatal("no client connection is open")
	}
	write(t, kept, markerFrame("from-a-kept-connection"))
	h.waitFor("from-a-kept-connection", 10*time.Second)
	// A new sender gets in by replacing a connection idle for a second.
	time.Sleep(evictableIdle + 100*time.Millisecond)
	c := dial(t, h, 0)
	write(t, c, markerFrame("from-a-new-connection"))
	h.waitFor("from-a-new-connection", 10*time.Second)
	if open := h.metric("leitstand_syslog_connections_open", "protocol", "tcp"); open > limit {
		t.Errorf("%v connections open, limit %d", open, limit)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	if open := waitGauge(h, 1, 20*time.Second); open > 1 {
		t.Errorf("%v connections still open after the clients left", open)
	}
}

// waitGauge waits until the open-connections gauge is at most want.
func waitGauge(h *harness, want float64, timeout time.Duration) float64 {
	deadline := time.Now().Add(timeout)
	for {
		v := h.metric("leitstand_syslog_connections_open", "protocol", "tcp")
		if v <= want || time.Now().After(deadline) {
			return v
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestUDP(t *testing.T) {
	cfg := testConfig(ProtoUDP, ProtoUDP)
	cfg.MaxMessageBytes = 1024
	cfg.Listeners[1].AllowedSources = []string{"10.0.0.0/8"}
	h := startHarness(t, cfg)
	u, err := net.Dial("udp", h.addr(0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	send := func(s string) {
		t.Helper()
		if _, err := io.WriteString(u, s); err != nil {
			t.Fatal(err)
		}
	}
	send(`<134>1 2026-11-22T08:15:00Z lb-01 haproxy 77 - [conn@1 backend="web"] udp five four two four` + "\n")
	send("<38>Nov 22 08:15:00 gw sshd[9]: udp three one six four")
	send("<13>" + strings.Repeat("u", 2000) + " too long")
	junk := make([]byte, 900)
	rand.New(rand.NewSource(3)).Read(junk)
	if _, err := u.Write(junk); err != nil {
		t.Fatal(err)
	}
	send(`<14>1 - - - - - - udp-after-junk`)

	ev := h.waitFor("udp five four two four", 10*time.Second)
	expect(t, ev, map[string]any{"host.hostname": "lb-01", "process.name": "haproxy", "process.pid": 77, "log.syslog.facility.name": "local0",
		"log.syslog.severity.name": "Informational", "log.syslog.structured_data.conn@1.backend": "web", "network.transport": "udp", "source.ip": "127.0.0.1"})
	ev = h.waitFor("udp three one six four", 10*time.Second)
	expect(t, ev, map[string]any{"host.hostname": "gw", "process.name": "sshd", "process.pid": 9, "log.syslog.facility.name": "auth"})
	h.waitFor("udp-after-junk", 10*time.Second)
	if n := h.metric("leitstand_syslog_truncated_total", "protocol", "udp"); n != 1 {
		t.Errorf("truncated: %v, want 1", n)
	}

	// The second listener only takes 10.0.0.0/8.
	other, err := net.Dial("udp", h.addr(1).String())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	io.WriteString(other, "<13>1 - - - - - - not-allowed-datagram")
	if n := h.waitMetric(1, 5*time.Second, "leitstand_syslog_not_allowed_total", "protocol", "udp"); n != 1 {
		t.Errorf("not allowed: %v, want 1", n)
	}
	if n := h.metric("leitstand_events_dropped_total", "component", "syslog_udp", "reason", "not_allowed"); n != 1 {
		t.Errorf("dropped not_allowed: %v, want 1", n)
	}
}

func TestTCPAllowedSources(t *testing.T) {
	cfg := testConfig(ProtoTCP)
	cfg.Listeners[0].AllowedSources = []string{"192.0.2.0/24"}
	h := startHarness(t, cfg)
	c := dial(t, h, 0)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("connection from outside allowed_sources: read %v, want EOF", err)
	}
	if n := h.metric("leitstand_syslog_connections_rejected_total", "protocol", "tcp", "reason", "not_allowed"); n != 1 {
		t.Errorf("rejected not_allowed: %v, want 1", n)
	}
}

func TestShutdownFlushesPartialBatches(t *testing.T) {
	cfg := testConfig(ProtoTCP, ProtoUDP)
	cfg.BatchLinger = 10 * time.Second // only Shutdown can hand these on
	cfg.BatchEvents = 1000
	h := startHarness(t, cfg)
	c := dial(t, h, 0)
	for i := 0; i < 10; i++ {
		write(t, c, markerFrame(fmt.Sprintf("tcp-pending-%d", i)))
	}
	u, err := net.Dial("udp", h.addr(1).String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for i := 0; i < 10; i++ {
		io.WriteString(u, fmt.Sprintf("<13>1 - - - - - - udp-pending-%d", i))
	}
	time.Sleep(200 * time.Millisecond)
	if n := h.count(); n != 0 {
		t.Fatalf("%d events went out before the batch was full or lingered", n)
	}
	if err := h.r.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := h.waitCount(20, 10*time.Second); n != 20 {
		t.Fatalf("%d events after shutdown, want 20", n)
	}
	if n := h.metric("leitstand_syslog_connections_closed_total", "protocol", "tcp", "reason", "shutdown"); n != 1 {
		t.Errorf("closed on shutdown: %v, want 1", n)
	}
}

// gate is an Enqueuer that holds every batch until opened, then discards.
type gate struct {
	open   chan struct{}
	events chan int
}

func (g *gate) Enqueue(_ context.Context, b *collector.Batch, _ pipeline.Policy) error {
	<-g.open
	g.events <- b.Len()
	b.Release()
	return nil
}

// startGatedUDP starts a UDP receiver with one reader, a 4 KiB socket
// buffer and one-event batches whose pipeline waits at g until g.open is
// closed, so datagrams pile up in the kernel; u sends to it.
func startGatedUDP(t *testing.T) (g *gate, u net.Conn, reg *prometheus.Registry) {
	t.Helper()
	cfg := testConfig(ProtoUDP)
	cfg.BatchEvents = 1
	cfg.Listeners[0].Readers = 1
	cfg.Listeners[0].SocketBufferBytes = 4096
	reg = prometheus.NewRegistry()
	g = &gate{open: make(chan struct{}), events: make(chan int, 100000)}
	r, err := New(cfg, g, telemetry.New(reg), reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Shutdown(context.Background()) })
	u, err = net.Dial("udp", r.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return g, u, reg
}

func TestUDPKernelDropsAreCounted(t *testing.T) {
	g, u, reg := startGatedUDP(t)
	msg := "<13>1 - - - - - - " + strings.Repeat("d", 200)
	io.WriteString(u, msg) // the reader takes it and waits at the gate
	time.Sleep(100 * time.Millisecond)
	for i := 0; i < 2000; i++ {
		io.WriteString(u, msg) // the small socket buffer overflows
	}
	close(g.open)
	time.Sleep(100 * time.Millisecond)
	io.WriteString(u, msg) // carries the kernel's drop count
	h := &harness{t: t, reg: reg}
	if n := h.waitMetric(1, 5*time.Second, "leitstand_syslog_kernel_drops_total", "protocol", "udp"); n < 1000 {
		t.Errorf("kernel drops counted: %v, want most of 2000", n)
	}
}

// TestUDPKernelDropsCountedWithoutALaterDatagram checks the drops of a
// burst are counted even when no datagram follows to carry the count, and
// that received + dropped is everything sent.
func TestUDPKernelDropsCountedWithoutALaterDatagram(t *testing.T) {
	g, u, reg := startGatedUDP(t)
	msg := "<13>1 - - - - - - " + strings.Repeat("d", 200)
	const sent = 2001
	for i := 0; i < sent; i++ {
		io.WriteString(u, msg) // the first waits at the gate; the buffer overflows
		if i == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	close(g.open)
	h := &harness{t: t, reg: reg}
	h.waitMetric(1000, 5*time.Second, "leitstand_syslog_kernel_drops_total", "protocol", "udp")
	received := 0
	for quiet := time.After(3 * time.Second); ; {
		select {
		case n := <-g.events:
			received += n
			continue
		case <-quiet:
		}
		break
	}
	drops := h.waitMetric(float64(sent-received), 3*time.Second, "leitstand_syslog_kernel_drops_total", "protocol", "udp")
	if received+int(drops) != sent {
		t.Errorf("received %d + kernel drops counted %v != %d sent", received, drops, sent)
	}
}

func TestManyTinyFramesInOneRead(t *testing.T) {
	h := startHarness(t, testConfig(ProtoTCP))
	c := dial(t, h, 0)
	var b strings.Builder
	const n = 5000 // far more than 4 × batch_events in one read
	for i := 0; i < n; i++ {
		b.WriteString(octet(fmt.Sprintf("<13>1 - - - - - - t%d", i)))
	}
	write(t, c, b.String()) // and then the sender falls silent
	if got := h.waitCount(n, 5*time.Second); got != n {
		t.Fatalf("%d of %d events arrived while the sender was silent", got, n)
	}
}

// A busy stream whose reads always end inside a frame is not a stalled
// frame: read_timeout bounds one frame, not the connection.
func TestSteadyStreamOutlivesReadTimeout(t *testing.T) {
	cfg := testConfig(ProtoTCP)
	cfg.Listeners[0].ReadTimeout = 200 * time.Millisecond
	h := startHarness(t, cfg)
	c := dial(t, h, 0)
	var b strings.Builder
	const n = 400
	for i := 0; i < n; i++ {
		b.WriteString(markerFrame(fmt.Sprintf("steady-%04d", i)))
	}
	stream := b.String()
	// About 1.5s of writes, each ending in the middle of a frame.
	step := len(stream)/150 + 1
	for off := 0; off < len(stream); off += step {
		write(t, c, stream[off:min(off+step, len(stream))])
		time.Sleep(10 * time.Millisecond)
	}
	if got := h.waitCount(n, 10*time.Second); got != n {
		t.Fatalf("%d of %d events", got, n)
	}
	if r := h.metric("leitstand_syslog_connections_closed_total", "protocol", "tcp", "reason", "read_timeout"); r != 0 {
		t.Errorf("a busy connection was closed for read_timeout")
	}
}

// TestDropsSinceIgnoresOlderReadings checks a datagram's older drop count,
// read after SO_MEMINFO's newer one, neither counts nor lowers the base
// (the bench saw the metric 31,082 above /proc/net/udp before this).
func TestDropsSinceIgnoresOlderReadings(t *testing.T) {
	last, total := uint32(0), 0
	for _, reading := range []uint32{100, 100, 90, 95, 150, 120, 150, 151} {
		var d uint32
		d, last = dropsSince(last, reading)
		total += int(d)
	}
	if total != 151 || last != 151 {
		t.Errorf("counted %d, base %d; want 151 each", total, last)
	}
	// Wrap-around of the kernel's 32-bit counter still counts forward.
	if d, next := dropsSince(1<<32-10, 5); d != 15 || next != 5 {
		t.Errorf("across the wrap: %d, %d", d, next)
	}
}
