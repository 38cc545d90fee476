package reliability

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
	"github.com/leitstand/leitstand/internal/peers"
)

// hostileConfig is a daemon with small limits, a file sink (so every byte
// it stores can be checked) and a log record rule grouped by a field the
// senders control.
const hostileConfig = `http:
  listen: @HTTP@
  read_header_timeout: 2s
  read_timeout: 5s
ingest:
  max_body_bytes: 1MiB
sentry:
  max_body_bytes: 1MiB
  max_decompressed_bytes: 4MiB
syslog:
  max_message_bytes: 8KiB
  listeners:
    - {protocol: tcp, address: @SYSLOG@, read_timeout: 2s, idle_timeout: 10s}
    - {protocol: udp, address: @SYSLOG@}
rules:
  rule_files: [@RULES@]
log_rules:
  interval: 1s
  max_series_per_rule: 100
sinks:
  file:
    fsync: always
`

const explosionRules = `groups:
  - name: explosion
    rules:
      - log: '{event.dataset="explode"}'
        record: log:explode:count
        by: [service.name]
`

// TestHostileInput sends the daemon what attackers and broken clients
// send: slowloris connections on HTTP and syslog TCP, oversized bodies and
// frames, decompression bombs, invalid UTF-8, JSON nested 100,000 deep and
// a label explosion in a record rule. The daemon must refuse or contain
// each, keep serving others, stay within memory, and store only valid
// UTF-8 JSON.
func TestHostileInput(t *testing.T) {
	peers.Slow(t)
	rec := scenario(t, 40, "Hostile input")
	rules := filepath.Join(t.TempDir(), "explode.rules.yml")
	if err := os.WriteFile(rules, []byte(explosionRules), 0o600); err != nil {
		t.Fatal(err)
	}
	d := newDaemon(t, "leitstand", strings.Replace(hostileConfig, "@RULES@", rules, 1), daemonOptions{})
	ctx := context.Background()

	// probe is an honest client that must be served throughout.
	probe := func(what string) {
		t.Helper()
		start := time.Now()
		code, body, err := post(ctx, insecureClient, d.url+"/v1/ingest", "application/x-ndjson",
			[]byte(fmt.Sprintf(`{"message":"honest client during %s","event":{"dataset":"honest"}}`+"\n", what)), nil)
		if err != nil || code != http.StatusOK || time.Since(start) > 2*time.Second {
			t.Errorf("an honest client during %s: %d %s %v after %s", what, code, body, err, time.Since(start))
		}
	}

	t.Run("slowloris HTTP", func(t *testing.T) {
		const conns = 100
		closed := slowConns(t, d.addr, conns, func(c net.Conn) {
			// Headers one byte a second: never finishes.
			c.Write([]byte("POST /v1/ingest HTTP/1.1\r\nHost: leitstand\r\nX-Slow: "))
			for i := 0; i < 30; i++ {
				if _, err := c.Write([]byte("a")); err != nil {
					return
				}
				time.Sleep(time.Second)
			}
		}, probe)
		rec.input("slowloris HTTP: %d connections sending their headers a byte a second → all closed by the server after %s (http.read_header_timeout 2s); an honest client served meanwhile", conns, closed.Round(100*time.Millisecond))
		closedBody := slowConns(t, d.addr, 20, func(c net.Conn) {
			c.Write([]byte("POST /v1/ingest HTTP/1.1\r\nHost: leitstand\r\nContent-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n"))
			for i := 0; i < 30; i++ {
				if _, err := c.Write([]byte("{")); err != nil {
					return
				}
				time.Sleep(time.Second)
			}
		}, probe)
		rec.input("slow HTTP body: 20 connections sending a 100 kB body a byte a second → all closed after %s (http.read_timeout 5s)", closedBody.Round(100*time.Millisecond))
	})

	t.Run("slowloris syslog TCP", func(t *testing.T) {
		const conns = 100
		closed := slowConns(t, d.syslog, conns, func(c net.Conn) {
			// An octet-counted frame that never completes.
			c.Write([]byte("200 <13>1 2026-11-22T07:00:00Z host app - - - slow"))
			for i := 0; i < 30; i++ {
				if _, err := c.Write([]byte("w")); err != nil {
					return
				}
				time.Sleep(time.Second)
			}
		}, func(what string) {
			probe(what)
			sendSyslogTCP(t, d.syslog, "honest syslog sender during slowloris")
		})
		m, _ := d.metrics()
		rec.input("slowloris syslog TCP: %d connections dribbling an unfinished frame → all closed after %s (read_timeout 2s; connections_closed_total{reason=\"read_timeout\"} %.0f); an honest TCP sender and HTTP client served meanwhile",
			conns, closed.Round(100*time.Millisecond), sum(m, "leitstand_syslog_connections_closed_total", `reason="read_timeout"`))
	})

	t.Run("oversized bodies and frames", func(t *testing.T) {
		big := bytes.Repeat([]byte(`{"message":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`+"\n"), 40000) // 2.6 MB
		code, body, err := post(ctx, insecureClient, d.url+"/v1/ingest", "application/x-ndjson", big, nil)
		if code != http.StatusRequestEntityTooLarge {
			t.Errorf("NDJSON body of %d bytes (max 1MiB): %d %s %v, want 413", len(big), code, body, err)
		}
		rec.input("NDJSON body of 2.6 MB, ingest.max_body_bytes 1MiB → %d", code)
		env := append([]byte(`{}`+"\n"+`{"type":"event"}`+"\n"), bytes.Repeat([]byte("x"), 2<<20)...)
		code, body, err = post(ctx, insecureClient, d.url+"/api/1/envelope/", "application/x-sentry-envelope", env, sentryAuth())
		if code != http.StatusRequestEntityTooLarge {
			t.Errorf("Sentry envelope of %d bytes (max 1MiB): %d %s %v, want 413", len(env), code, body, err)
		}
		rec.input("Sentry envelope of 2 MB, sentry.max_body_bytes 1MiB → %d", code)

		before, _ := d.metrics()
		frame := "<13>1 2026-11-22T07:00:00Z host app - - - " + strings.Repeat("y", 1<<20)
		c, err := net.Dial("tcp", d.syslog)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "%d %s", len(frame), frame)
		fmt.Fprintf(c, "%d %s", len("<13>1 - host app - - - after the big frame"), "<13>1 - host app - - - after the big frame")
		c.Close()
		udp, err := net.Dial("udp", d.syslog)
		if err != nil {
			t.Fatal(err)
		}
		udp.Write([]byte("<13>1 - host app - - - " + strings.Repeat("z", 60000)))
		udp.Close()
		after, _ := d.metrics()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			after, _ = d.metrics()
			if sum(after, "leitstand_syslog_truncated_total")-sum(before, "leitstand_syslog_truncated_total") >= 2 {
				break
			}
		}
		truncated := sum(after, "leitstand_syslog_truncated_total") - sum(before, "leitstand_syslog_truncated_total")
		discarded := sum(after, "leitstand_syslog_discarded_bytes_total") - sum(before, "leitstand_syslog_discarded_bytes_total")
		if truncated < 2 {
			t.Errorf("a 1 MiB TCP frame and a 60 kB datagram (max 8KiB): %v truncations counted, want 2", truncated)
		}
		rec.input("syslog TCP frame of 1 MiB and UDP datagram of 60 kB, syslog.max_message_bytes 8KiB → cut, tagged and counted (truncated_total +%.0f, discarded_bytes_total +%.0f); the frame after the big one is read normally", truncated, discarded)
	})

	t.Run("decompression bombs", func(t *testing.T) {
		rss0, _ := d.rssBytes()
		var seen []string
		for _, enc := range []string{"gzip", "zstd"} {
			bomb := compressionBomb(t, enc, 256<<20) // 256 MiB of zeros in some kB
			h := http.Header{"Content-Encoding": {enc}}
			code, body, err := post(ctx, insecureClient, d.url+"/v1/ingest", "application/x-ndjson", bomb, h)
			if code != http.StatusRequestEntityTooLarge {
				t.Errorf("NDJSON %s bomb: %d %s %v, want 413", enc, code, body, err)
			}
			h2 := sentryAuth()
			h2.Set("Content-Encoding", enc)
			code2, body, err := post(ctx, insecureClient, d.url+"/api/1/envelope/", "application/x-sentry-envelope", bomb, h2)
			if code2 != http.StatusRequestEntityTooLarge {
				t.Errorf("Sentry %s bomb: %d %s %v, want 413", enc, code2, body, err)
			}
			seen = append(seen, fmt.Sprintf("%s (%d kB) → NDJSON %d, Sentry %d", enc, len(bomb)>>10, code, code2))
		}
		// A zstd frame that asks for a 256 MiB window: refused before any
		// memory is taken for it.
		window := compressionBomb(t, "zstd-window", 32<<20)
		code, body, err := post(ctx, insecureClient, d.url+"/v1/ingest", "application/x-ndjson", window, http.Header{"Content-Encoding": {"zstd"}})
		if code/100 != 4 {
			t.Errorf("zstd frame with a 256 MiB window: %d %s %v, want 4xx", code, body, err)
		}
		seen = append(seen, fmt.Sprintf("a zstd frame declaring a 256 MiB window → NDJSON %d", code))
		rss1, _ := d.rssBytes()
		if rss1-rss0 > 64<<20 {
			t.Errorf("RSS grew by %d MiB on decompression bombs", (rss1-rss0)>>20)
		}
		rec.input("bombs that inflate to 256 MiB: %s; RSS %d → %d MiB", strings.Join(seen, "; "), rss0>>20, rss1>>20)
		probe("decompression bombs")
	})

	t.Run("invalid UTF-8", func(t *testing.T) {
		code, body, _ := post(ctx, insecureClient, d.url+"/v1/ingest", "application/x-ndjson",
			[]byte("{\"message\":\"bad \xff\xfe bytes \xc3\x28 in ndjson\",\"event\":{\"dataset\":\"utf8\"}}\n"), nil)
		sendSyslogTCP(t, d.syslog, "bad \xff\xfe bytes \xc3\x28 in syslog")
		item := "{\"event_id\":\"0badc0de0badc0de0badc0de0badc0de\",\"message\":\"bad \xff\xfe bytes in sentry\"}"
		env := fmt.Sprintf("{}\n{\"type\":\"event\",\"length\":%d}\n%s\n", len(item), item)
		code2, body2, _ := post(ctx, insecureClient, d.url+"/api/1/envelope/", "application/x-sentry-envelope", []byte(env), sentryAuth())
		rec.input("invalid UTF-8 in an NDJSON message → %d %s; in a syslog message → stored with U+FFFD, counted; in a Sentry event → %d %s",
			code, strings.TrimSpace(string(body)), code2, strings.TrimSpace(string(body2)))
	})

	t.Run("JSON nested 100,000 deep", func(t *testing.T) {
		deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
		start := time.Now()
		code, body, err := post(ctx, insecureClient, d.url+"/v1/ingest", "application/x-ndjson",
			[]byte(`{"message":"deep","event":{"dataset":"deep"},"a":`+deep+"}\n"), nil)
		took := time.Since(start)
		if err != nil || code/100 == 5 || took > 5*time.Second {
			t.Errorf("NDJSON line nested 100,000 deep: %d %s %v after %s", code, body, err, took)
		}
		item := `{"event_id":"0dee90dee90dee90dee90dee90dee900","message":"deep","extra":{"a":` + deep + `}}`
		env := fmt.Sprintf("{}\n{\"type\":\"event\",\"length\":%d}\n%s\n", len(item), item)
		start = time.Now()
		code2, body2, err := post(ctx, insecureClient, d.url+"/api/1/envelope/", "application/x-sentry-envelope", []byte(env), sentryAuth())
		took2 := time.Since(start)
		if err != nil || code2/100 == 5 || took2 > 5*time.Second {
			t.Errorf("Sentry event nested 100,000 deep: %d %s %v after %s", code2, body2, err, took2)
		}
		rec.input("JSON nested 100,000 deep: NDJSON line → %d %s in %s; Sentry event → %d %s in %s",
			code, short(body), took.Round(time.Millisecond), code2, short(body2), took2.Round(time.Millisecond))
		probe("deep JSON")
	})

	t.Run("label explosion in a record rule", func(t *testing.T) {
		const values = 5000
		var buf bytes.Buffer
		for i := 0; i < values; i++ {
			fmt.Fprintf(&buf, `{"message":"explode %d","event":{"dataset":"explode"},"service":{"name":"svc-%d"}}`+"\n", i, i)
		}
		if code, body, err := post(ctx, insecureClient, d.url+"/v1/ingest", "application/x-ndjson", buf.Bytes(), nil); code != http.StatusOK {
			t.Fatalf("ingest: %d %s %v", code, body, err)
		}
		dropped, ok := d.waitMetric(20*time.Second, func(v float64) bool { return v >= values-100 }, "leitstand_log_rules_dropped_total", `kind="record"`)
		if !ok {
			t.Errorf("%d distinct label values, cap 100: leitstand_log_rules_dropped_total{kind=\"record\"} = %.0f, want ≥ %d", values, dropped, values-100)
		}
		series := promCount(t, d, "count(log:explode:count)", 30*time.Second)
		if series > 100 {
			t.Errorf("%v series of log:explode:count in the TSDB, cap 100", series)
		}
		rec.input("label explosion: %d distinct service.name values into a record rule `by: [service.name]`, log_rules.max_series_per_rule 100 → %.0f series in the TSDB, %.0f matches dropped and counted", values, series, dropped)
	})

	// After all of it: alive, and every stored line is valid UTF-8 JSON.
	if !d.alive() {
		t.Fatal("the daemon died")
	}
	rss, _ := d.rssBytes()
	probe("the end")
	if code := d.stop(); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
	lines, bad, stored := checkStoredJSON(t, filepath.Join(d.data, "events"))
	if bad > 0 {
		t.Errorf("%d stored lines are not valid UTF-8 JSON", bad)
	}
	for _, want := range []string{"after the big frame", "honest syslog sender during slowloris", "honest client during the end"} {
		if !strings.Contains(stored, want) {
			t.Errorf("%q was not stored", want)
		}
	}
	rec.Load = "one daemon with small limits (ingest and sentry bodies 1 MiB, syslog messages 8 KiB, header timeout 2 s, read timeout 5 s, syslog read_timeout 2 s) and honest clients probing throughout"
	rec.Faults = "the hostile inputs below, one after another against the same process"
	rec.note("afterwards: alive, RSS %d MiB, exit 0 on SIGTERM; %d stored lines, %d not valid UTF-8 JSON", rss>>20, lines, bad)
}

// slowConns opens n connections that run hostile concurrently, calls
// during while they are open, and returns how long the server took to
// close the last of them. A connection the server never closes within 20s
// is an error.
func slowConns(t *testing.T, addr string, n int, hostile func(net.Conn), during func(string)) time.Duration {
	t.Helper()
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var last time.Duration
	open := 0
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		wg.Add(2)
		go func() { defer wg.Done(); hostile(c) }()
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, err := io.Copy(io.Discard, c) // until the server closes
			took := time.Since(start)
			c.Close()
			mu.Lock()
			defer mu.Unlock()
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				open++
				return
			}
			last = max(last, took)
		}()
	}
	time.Sleep(500 * time.Millisecond)
	during(t.Name())
	wg.Wait()
	if open > 0 {
		t.Errorf("%d of %d hostile connections still open after 20s", open, n)
	}
	return last
}

func sendSyslogTCP(t testing.TB, addr, msg string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close()
	frame := "<13>1 " + time.Now().UTC().Format(time.RFC3339) + " host app - - - " + msg
	fmt.Fprintf(c, "%d %s", len(frame), frame)
}

func sentryAuth() http.Header {
	return http.Header{"X-Sentry-Auth": {"Sentry sentry_version=7, sentry_key=dev, sentry_client=reliability/1.0"}}
}

// compressionBomb compresses size bytes of zeros with gzip or zstd;
// "zstd-window" writes a frame whose header asks for a 256 MiB window.
func compressionBomb(t testing.TB, enc string, size int) []byte {
	var buf bytes.Buffer
	var zw io.WriteCloser
	switch enc {
	case "gzip":
		zw, _ = gzip.NewWriterLevel(&buf, gzip.BestCompression)
	case "zstd":
		zw, _ = zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithWindowSize(1<<20))
	case "zstd-window":
		var err error
		zw, err = zstd.NewWriter(&buf, zstd.WithWindowSize(256<<20), zstd.WithSingleSegment(false))
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("no encoding %q", enc)
	}
	zeros := make([]byte, 1<<20)
	for i := 0; i < size/len(zeros); i++ {
		zw.Write(zeros)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func short(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

// promCount evaluates an instant query that yields one number on the
// daemon's Prometheus API, retrying until it has a result.
func promCount(t testing.TB, d *daemon, query string, timeout time.Duration) float64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := insecureClient.Get(d.url + "/api/v1/query?query=" + urlQueryEscape(query))
		if err == nil {
			var r struct {
				Data struct {
					Result []struct {
						Value [2]any `json:"value"`
					} `json:"result"`
				} `json:"data"`
			}
			json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if len(r.Data.Result) == 1 {
				var v float64
				fmt.Sscan(fmt.Sprint(r.Data.Result[0].Value[1]), &v)
				return v
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("query %s: no result within %s", query, timeout)
			return 0
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkStoredJSON reads every file the file sink wrote (gzip included) and
// counts lines that are not valid UTF-8 or not JSON.
func checkStoredJSON(t testing.TB, dir string) (lines, bad int, text string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	var all strings.Builder
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		var r io.Reader = fh
		if strings.HasSuffix(f, ".gz") {
			zr, err := gzip.NewReader(fh)
			if err != nil {
				t.Errorf("%s: %v", f, err)
				fh.Close()
				continue
			}
			r = zr
		}
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 4<<20), 4<<20)
		for sc.Scan() {
			lines++
			all.Write(sc.Bytes())
			all.WriteByte('\n')
			if !utf8.Valid(sc.Bytes()) || !json.Valid(sc.Bytes()) {
				bad++
				if bad <= 3 {
					t.Errorf("%s: stored line is not valid UTF-8 JSON: %q", filepath.Base(f), short(sc.Bytes()))
				}
			}
		}
		if err := sc.Err(); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		fh.Close()
	}
	return lines, bad, all.String()
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
