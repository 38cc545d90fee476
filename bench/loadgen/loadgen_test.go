package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func octetInput(seed uint64, n int) []byte {
	m := NewMix(seed, DefaultPIIShare)
	var b, scratch []byte
	for range n {
		msg := m.Next()
		b, scratch = msg.AppendOctetCounted(b, scratch)
	}
	return b
}

func TestMixIsReproducible(t *testing.T) {
	a, b := octetInput(7, 5000), octetInput(7, 5000)
	if !bytes.Equal(a, b) {
		t.Fatal("the same seed gave different input")
	}
	if bytes.Equal(a, octetInput(8, 5000)) {
		t.Fatal("another seed gave the same input")
	}
}

// rfc5424 is the shape of every generated message: PRI, version, stamp,
// host, app, procid, msgid, structured data or "-", text.
var rfc5424 = regexp.MustCompile(`^<([0-9]{1,3})>1 2026-11-22T[0-9:.]{15}Z [a-z0-9.-]+ [A-Za-z/-]+ ([0-9]+|-) ([A-Z]+|-) (-|\[req@32473 id="[0-9a-f]{16}" status="[0-9]{3}" dur_ms="[0-9]+"\]) \S`)

func TestMixShape(t *testing.T) {
	const n = 20000
	m := NewMix(1, DefaultPIIShare)
	withPII, long, sev := 0, 0, map[int]int{}
	for range n {
		msg := m.Next()
		line := msg.AppendRFC5424(nil)
		if !rfc5424.Match(line) {
			t.Fatalf("not RFC 5424: %q", line)
		}
		if len(msg.PII) > 0 {
			withPII++
		}
		if len(line) > 600 {
			long++
		}
		sev[msg.Severity]++
		for _, p := range msg.PII {
			if !bytes.Contains(line, []byte(p.Value)) {
				t.Fatalf("personal data %q not in %q", p.Value, line)
			}
		}
		var ev map[string]any
		nd := msg.AppendNDJSON(nil)
		if err := json.Unmarshal(nd, &ev); err != nil || nd[len(nd)-1] != '\n' {
			t.Fatalf("NDJSON %q: %v", nd, err)
		}
		if ev["message"] != msg.Text {
			t.Fatalf("NDJSON message %q, want %q", ev["message"], msg.Text)
		}
	}
	// Shares, loosely: the mix is random, these only catch a broken one.
	if share := float64(withPII) / n; share < 0.17 || share > 0.23 {
		t.Errorf("%.3f of the messages carry personal data, want about %.2f", share, DefaultPIIShare)
	}
	if long < n/40 || long > n/10 {
		t.Errorf("%d of %d messages longer than 600 bytes", long, n)
	}
	if sev[6] < n/2 || sev[3] == 0 || sev[7] == 0 {
		t.Errorf("severities %v: want mostly info, some errors and debug", sev)
	}
}

func TestPIIScan(t *testing.T) {
	set := PIISet{}
	set.Add(PII{"email", "anna.berg7@example.org"}, PII{"ipv4", "198.51.100.23"}, PII{"ipv6", "2001:db8:1:2::3"},
		PII{"email", "jane.doe%40example.com"})
	for _, c := range []struct {
		text string
		want map[string]int
	}{
		{`from=<anna.berg7@example.org>, relay=mx[198.51.100.23]:25`, map[string]int{"email": 1, "ipv4": 1}},
		{`"message":"login from 2001:db8:1:2::3 port 22"`, map[string]int{"ipv6": 1}},
		{`GET http://198.51.100.23:8080/x?e=jane.doe%40example.com`, map[string]int{"ipv4": 1, "email": 1}},
		// Truncated, hashed or merely similar values are not the original.
		{`from 198.51.100.0 and 198.51.100.230 and 2001:db8:1:: user email:k1:abc`, map[string]int{}},
		{`xanna.berg7@example.org.uk 1198.51.100.23`, map[string]int{}},
	} {
		got := set.Scan([]byte(c.text)).Occurrences
		if len(got) != len(c.want) {
			t.Errorf("%q: found %v, want %v", c.text, got, c.want)
			continue
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("%q: found %v, want %v", c.text, got, c.want)
			}
		}
	}
}

func TestPIIOfMatchesTheInput(t *testing.T) {
	set := PIIOf(3, 0.5, 2000)
	found := set.Scan(stream3(2000))
	if got, want := found.Distinct, set.Kinds(); got["email"] != want["email"] || got["ipv4"] != want["ipv4"] || got["ipv6"] != want["ipv6"] {
		t.Errorf("scan of the input found %v distinct values, the set has %v", got, want)
	}
}

func stream3(n int) []byte {
	m := NewMix(3, 0.5)
	var b []byte
	for range n {
		msg := m.Next()
		b = msg.AppendRFC5424(b)
		b = append(b, '\n')
	}
	return b
}

// The events each capture makes in leitstand, from the golden files of
// collector/sentry (testdata/golden/*.ndjson, one line per event).
var goldenEvents = map[string]int{
	"sentry-go-envelope.txt#req-001": 1, "sentry-go-envelope.txt#req-002": 2, "sentry-go-envelope.txt#req-003": 1,
	"sentry-go-envelope.txt#req-004": 1, "sentry-go-envelope.txt#req-005": 1,
	"sentry-node-envelope.txt#req-001": 1, "sentry-node-envelope.txt#req-002": 0, "sentry-node-envelope.txt#req-003": 1,
	"sentry-node-envelope.txt#req-004": 1, "sentry-node-envelope.txt#req-005": 0, "sentry-node-envelope.txt#req-006": 1,
	"sentry-node-envelope.txt#req-007":          1,
	"sentry-python-1.9.10-envelope.txt#req-001": 1, "sentry-python-1.9.10-envelope.txt#req-002": 1,
	"sentry-python-1.9.10-envelope.txt#req-003": 1,
}

func TestSentrySamples(t *testing.T) {
	reqs, err := LoadSentrySamples("../testdata/sentry")
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != len(goldenEvents) {
		t.Fatalf("%d requests, want %d", len(reqs), len(goldenEvents))
	}
	for _, r := range reqs {
		want, ok := goldenEvents[r.Name]
		if !ok {
			t.Errorf("unexpected request %s", r.Name)
			continue
		}
		if r.Events != want {
			t.Errorf("%s: %d events, want %d", r.Name, r.Events, want)
		}
		if !strings.HasPrefix(r.Path, "/api/42/envelope/") {
			t.Errorf("%s: path %s", r.Name, r.Path)
		}
		if r.Header.Get("X-Sentry-Auth") == "" && !strings.Contains(r.Path, "sentry_key=") {
			t.Errorf("%s: no key", r.Name)
		}
		if strings.HasPrefix(r.Name, "sentry-python") != r.Gzip || strings.HasPrefix(r.Name, "sentry-node") != r.Chunked {
			t.Errorf("%s: gzip %v chunked %v", r.Name, r.Gzip, r.Chunked)
		}
	}
	pii := PIISet{}
	for i := range reqs {
		pii.Add(reqs[i].PII()...)
	}
	for _, v := range []string{"jane.doe@example.com", "jane.doe%40example.com", "admin@example.org", "198.51.100.7", "203.0.113.42"} {
		if _, ok := pii[v]; !ok {
			t.Errorf("the samples' personal data misses %s (have %v)", v, pii)
		}
	}
	if _, ok := pii["pw@db.example.com"]; ok {
		t.Error("the password of a URL was taken for an e-mail address")
	}
}

func TestLoopbackOnly(t *testing.T) {
	for _, target := range []string{"192.0.2.1:514", "example.org:514", "[2001:db8::1]:514", "nohost"} {
		if _, err := Run(context.Background(), Options{Mode: ModeSyslogTCP, Target: target, Count: 1}); err == nil {
			t.Errorf("%s accepted", target)
		}
	}
	for _, target := range []string{"127.0.0.1:514", "[::1]:514", "localhost:514", "127.1.2.3:9"} {
		if err := CheckLoopback(target); err != nil {
			t.Errorf("%s: %v", target, err)
		}
	}
}

// TestTCPFrames sends over two connections to a listener here and reads
// the frames back: each connection carries a contiguous share of the
// input, in order.
func TestTCPFrames(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	frames := make(chan [][]byte, 2)
	go func() {
		for range 2 {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				frames <- readFrames(c)
			}()
		}
	}()
	rep, err := Run(context.Background(), Options{Mode: ModeSyslogTCP, Target: l.Addr().String(), Count: 3000, Seed: 5, PIIShare: 0.2, Rate: 30000, Conns: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent != 3000 || rep.Events != 3000 {
		t.Fatalf("sent %d, events %d", rep.Sent, rep.Events)
	}
	// At 30000/s, 3000 messages take about 100ms.
	if rep.Seconds < 0.05 {
		t.Errorf("the rate was not kept: %v s", rep.Seconds)
	}
	var want [][]byte
	m := NewMix(5, 0.2)
	for range 3000 {
		msg := m.Next()
		want = append(want, msg.AppendRFC5424(nil))
	}
	a, b := <-frames, <-frames
	if len(a) > 0 && !bytes.Equal(a[0], want[0]) {
		a, b = b, a
	}
	got := append(a, b...)
	if len(got) != len(want) {
		t.Fatalf("%d frames read, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d: %q, want %q", i, got[i], want[i])
		}
	}
}

// readFrames reads octet-counted frames until the connection ends.
func readFrames(c net.Conn) [][]byte {
	var out [][]byte
	r := bufio.NewReader(c)
	for {
		n, err := r.ReadString(' ')
		if err != nil {
			return out
		}
		size, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil {
			return out
		}
		msg := make([]byte, size)
		if _, err := io.ReadFull(r, msg); err != nil {
			return out
		}
		out = append(out, msg)
	}
}

func TestDurationBound(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
		}
	}()
	start := time.Now()
	rep, err := Run(context.Background(), Options{Mode: ModeSyslogTCP, Target: l.Addr().String(), Count: 100000, Rate: 1000, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.TimedOut || rep.Sent >= 100000 || time.Since(start) > 10*time.Second {
		t.Errorf("timed out %v, sent %d after %v", rep.TimedOut, rep.Sent, time.Since(start))
	}
}
