package syslog

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leitstand/leitstand/internal/peers"
)

// These tests run the real senders — util-linux logger, rsyslog and
// syslog-ng, installed and started by internal/peers — against the
// receiver, and check the fields that arrive in the file sink, not only a
// count. With CI=true a missing sender is installed or the test fails.

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func hostname(t *testing.T) string {
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// sendUDP sends one datagram to 127.0.0.1:port.
func sendUDP(t *testing.T, port int, msg string) {
	t.Helper()
	c, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
}

// awaitSent waits for marker, sending again every few seconds: a relay
// that has just started may drop the first datagram (UDP into it is not
// acknowledged).
func awaitSent(t *testing.T, h *harness, marker string, send func()) map[string]any {
	t.Helper()
	send()
	deadline := time.Now().Add(30 * time.Second)
	next := time.Now().Add(3 * time.Second)
	for {
		for _, ev := range h.events() {
			if m, _ := ev["message"].(string); strings.Contains(m, marker) {
				return ev
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q did not arrive within 30s", marker)
		}
		if time.Now().After(next) {
			send()
			next = time.Now().Add(3 * time.Second)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLogger(t *testing.T) {
	peers.Require(t, peers.PeerLogger)
	ctx := testCtx(t, 2*time.Minute)
	h := startHarness(t, testConfig(ProtoUDP, ProtoTCP))
	udpPort, tcpPort := h.port(0), h.port(1)
	host := hostname(t)
	cases := []struct {
		name string
		args []string
		want map[string]any
	}{
		{"rfc5424 udp", []string{"--rfc5424", "-d", "-P", udpPort}, nil},
		{"rfc5424 tcp octet counting", []string{"--rfc5424", "-T", "--octet-count", "-P", tcpPort}, nil},
		{"rfc5424 tcp LF", []string{"--rfc5424", "-T", "-P", tcpPort}, nil},
		{"rfc3164 udp", []string{"--rfc3164", "-d", "-P", udpPort}, nil},
		{"rfc3164 tcp LF", []string{"--rfc3164", "-T", "-P", tcpPort}, nil},
		{"rfc3164 tcp octet counting", []string{"--rfc3164", "-T", "--octet-count", "-P", tcpPort}, nil},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			marker := fmt.Sprintf("logger-%d-%d", i, time.Now().UnixNano())
			rfc5424 := c.args[0] == "--rfc5424"
			args := append([]string{"-n", "127.0.0.1", "-t", "shop-api", "--id=4242", "-p", "local3.warning"}, c.args...)
			if rfc5424 {
				args = append(args, "--msgid", "ID47", "--sd-id", "order@32473", "--sd-param", `id="A-17"`, "--sd-param", `note="say \"hi\" [now\]"`)
			}
			args = append(args, marker+" with text")
			ev := awaitSent(t, h, marker, func() {
				if _, err := peers.Logger(ctx, args...); err != nil {
					t.Fatal(err)
				}
			})
			transport := "udp"
			if strings.Contains(strings.Join(c.args, " "), "-T") {
				transport = "tcp"
			}
			want := map[string]any{
				"message":                  marker + " with text",
				"host.hostname":            host,
				"process.name":             "shop-api",
				"process.pid":              4242,
				"log.syslog.facility.code": 19,
				"log.syslog.facility.name": "local3",
				"log.syslog.severity.code": 4,
				"log.syslog.severity.name": "Warning",
				"log.level":                "warning",
				"network.transport":        transport,
				"source.ip":                "127.0.0.1",
				"tags":                     nil,
			}
			if rfc5424 {
				want["log.syslog.msgid"] = "ID47"
				want["log.syslog.version"] = "1"
				want["log.syslog.structured_data.order@32473"] = map[string]any{"id": "A-17", "note": `say "hi" [now]`}
				want["log.syslog.structured_data.timeQuality.tzKnown"] = "1"
			} else {
				want["log.syslog.msgid"] = nil
				want["log.syslog.structured_data"] = nil
			}
			expect(t, ev, want)
			// logger stamps with the local clock: the event's time is now.
			ts, err := time.Parse(time.RFC3339Nano, ev["@timestamp"].(string))
			if err != nil || time.Since(ts).Abs() > time.Minute {
				t.Errorf("@timestamp %v is not about now (%v)", ev["@timestamp"], err)
			}
		})
	}
}

func TestLoggerUnixSocket(t *testing.T) {
	peers.Require(t, peers.PeerLogger)
	ctx := testCtx(t, time.Minute)
	cfg := testConfig()
	var l Listener
	l.SetDefaults()
	l.Protocol, l.Address = ProtoUnix, t.TempDir()+"/log.sock"
	cfg.Listeners = []Listener{l}
	h := startHarness(t, cfg)
	if st, err := os.Stat(l.Address); err != nil || st.Mode().Perm() != 0o660 {
		t.Fatalf("socket file: %v %v", st, err)
	}
	for _, format := range []string{"--rfc3164", "--rfc5424"} {
		marker := fmt.Sprintf("unix%s-%d", format, time.Now().UnixNano())
		ev := awaitSent(t, h, marker, func() {
			if _, err := peers.Logger(ctx, "-u", l.Address, "--socket-errors=on", "-d", format, "-t", "cron", "--id=77", "-p", "cron.err", marker); err != nil {
				t.Fatal(err)
			}
		})
		expect(t, ev, map[string]any{"message": marker, "process.name": "cron", "process.pid": 77,
			"log.syslog.facility.name": "cron", "log.syslog.severity.name": "Error", "source.ip": nil, "network.transport": nil})
	}
	// A second receiver must not steal a live socket.
	r2 := newReceiver(t, cfg)
	if err := r2.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second receiver on a live socket: %v", err)
	}
	_ = r2.Shutdown(context.Background())
}

// relayInput is the RFC 5424 message the relays get; each forwards it in
// its own format.
func relayInput(marker string) string {
	return `<156>1 2026-11-22T08:15:00.123456Z web-01 shop-api 4242 ID47 [order@32473 id="A-17" note="say \"hi\""] ` + marker + " with text"
}

// relayWant are the fields every relay format keeps.
func relayWant(marker string) map[string]any {
	return map[string]any{
		"message":                  marker + " with text",
		"host.hostname":            "web-01",
		"process.name":             "shop-api",
		"process.pid":              4242,
		"log.syslog.facility.name": "local3",
		"log.syslog.severity.name": "Warning",
		"source.ip":                "127.0.0.1",
		"tags":                     nil,
	}
}

// want5424 adds what RFC 5424 output keeps beyond RFC 3164.
func want5424(w map[string]any) map[string]any {
	w["log.syslog.msgid"] = "ID47"
	w["log.syslog.version"] = "1"
	w["log.syslog.structured_data.order@32473"] = map[string]any{"id": "A-17", "note": `say "hi"`}
	w["@timestamp"] = "2026-11-22T08:15:00.123456000Z"
	return w
}

func TestRsyslog(t *testing.T) {
	peers.Slow(t)
	ctx := testCtx(t, 3*time.Minute)
	h := startHarness(t, testConfig(ProtoTCP, ProtoTCP, ProtoUDP))
	ins := make([]int, 3)
	for i := range ins {
		p, err := peers.FreeUDPPort()
		if err != nil {
			t.Fatal(err)
		}
		ins[i] = p
	}
	// Each input has a ruleset with one forwarding action, so each marker
	// takes exactly one of the paths.
	conf := fmt.Sprintf(`
ruleset(name="octet") {
  action(type="omfwd" target="127.0.0.1" port="%s" protocol="tcp" TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
}
ruleset(name="plain") {
  action(type="omfwd" target="127.0.0.1" port="%s" protocol="tcp" template="RSYSLOG_ForwardFormat")
}
ruleset(name="udp") {
  action(type="omfwd" target="127.0.0.1" port="%s" protocol="udp" template="RSYSLOG_TraditionalForwardFormat")
}
input(type="imudp" address="127.0.0.1" port="%d" ruleset="octet")
input(type="imudp" address="127.0.0.1" port="%d" ruleset="plain")
input(type="imudp" address="127.0.0.1" port="%d" ruleset="udp")
`, h.port(0), h.port(1), h.port(2), ins[0], ins[1], ins[2])
	rs, err := peers.StartRsyslog(ctx, peers.RsyslogOptions{Modules: []string{"imudp"}, Config: conf, ListenUDP: ins})
	peers.Check(t, err)
	peers.Cleanup(t, rs)

	t.Run("omfwd tcp octet-counted RFC 5424", func(t *testing.T) {
		marker := fmt.Sprintf("rsyslog-octet-%d", time.Now().UnixNano())
		ev := awaitSent(t, h, marker, func() { sendUDP(t, ins[0], relayInput(marker)) })
		w := want5424(relayWant(marker))
		w["network.transport"] = "tcp"
		expect(t, ev, w)
	})
	t.Run("omfwd plain tcp (LF) with RFC 3339 stamps", func(t *testing.T) {
		marker := fmt.Sprintf("rsyslog-plain-%d", time.Now().UnixNano())
		ev := awaitSent(t, h, marker, func() { sendUDP(t, ins[1], relayInput(marker)) })
		w := relayWant(marker)
		w["network.transport"] = "tcp"
		w["@timestamp"] = "2026-11-22T08:15:00.123456000Z"
		w["log.syslog.version"] = nil
		expect(t, ev, w)
	})
	t.Run("omfwd udp, traditional format", func(t *testing.T) {
		marker := fmt.Sprintf("rsyslog-udp-%d", time.Now().UnixNano())
		ev := awaitSent(t, h, marker, func() { sendUDP(t, ins[2], relayInput(marker)) })
		w := relayWant(marker)
		w["network.transport"] = "udp"
		w["log.syslog.version"] = nil
		expect(t, ev, w)
		// "Nov 22 08:15:00" in the receiver's zone (Local by default).
		ts, _ := time.Parse(time.RFC3339Nano, ev["@timestamp"].(string))
		local := ts.In(time.Local)
		if local.Month() != time.November || local.Day() != 22 || local.Hour() != 8 || local.Minute() != 15 {
			t.Errorf("@timestamp %s is not Nov 22 08:15 local time", ev["@timestamp"])
		}
	})
	if n := h.metric("leitstand_syslog_parse_failures_total"); n != 0 {
		t.Errorf("%v parse failures", n)
	}
}

func TestSyslogNG(t *testing.T) {
	peers.Slow(t)
	ctx := testCtx(t, 3*time.Minute)
	h := startHarness(t, testConfig(ProtoTCP, ProtoTCP, ProtoUDP, ProtoUDP))
	ins := make([]int, 4)
	for i := range ins {
		p, err := peers.FreeUDPPort()
		if err != nil {
			t.Fatal(err)
		}
		ins[i] = p
	}
	// syslog() sources parse the RFC 5424 input; each goes to one
	// destination.
	// keep_hostname: a relay keeps the sender's HOST rather than putting the
	// name of the connection's peer there; frac_digits keeps microseconds.
	conf := fmt.Sprintf(`
options { keep_hostname(yes); frac_digits(6); };
source s_syslog_tcp { syslog(transport("udp") ip("127.0.0.1") port(%d)); };
source s_network_tcp { syslog(transport("udp") ip("127.0.0.1") port(%d)); };
source s_syslog_udp { syslog(transport("udp") ip("127.0.0.1") port(%d)); };
source s_network_udp { syslog(transport("udp") ip("127.0.0.1") port(%d)); };
destination d_syslog_tcp { syslog("127.0.0.1" transport("tcp") port(%s)); };
destination d_network_tcp { network("127.0.0.1" transport("tcp") port(%s)); };
destination d_syslog_udp { syslog("127.0.0.1" transport("udp") port(%s)); };
destination d_network_udp { network("127.0.0.1" transport("udp") port(%s)); };
log { source(s_syslog_tcp); destination(d_syslog_tcp); };
log { source(s_network_tcp); destination(d_network_tcp); };
log { source(s_syslog_udp); destination(d_syslog_udp); };
log { source(s_network_udp); destination(d_network_udp); };
`, ins[0], ins[1], ins[2], ins[3], h.port(0), h.port(1), h.port(2), h.port(3))
	ng, err := peers.StartSyslogNG(ctx, peers.SyslogNGOptions{Config: conf, ListenUDP: ins})
	peers.Check(t, err)
	peers.Cleanup(t, ng)

	for i, c := range []struct {
		name      string
		rfc5424   bool
		transport string
	}{
		{"syslog() tcp: RFC 5424, octet counting", true, "tcp"},
		{"network() tcp: RFC 3164, LF", false, "tcp"},
		{"syslog() udp: RFC 5424", true, "udp"},
		{"network() udp: RFC 3164", false, "udp"},
	} {
		t.Run(c.name, func(t *testing.T) {
			marker := fmt.Sprintf("syslog-ng-%d-%d", i, time.Now().UnixNano())
			ev := awaitSent(t, h, marker, func() { sendUDP(t, ins[i], relayInput(marker)) })
			w := relayWant(marker)
			w["network.transport"] = c.transport
			if c.rfc5424 {
				w = want5424(w)
			} else {
				w["log.syslog.version"] = nil
				w["log.syslog.msgid"] = nil
			}
			expect(t, ev, w)
		})
	}
	if n := h.metric("leitstand_syslog_parse_failures_total"); n != 0 {
		t.Errorf("%v parse failures", n)
	}
}
