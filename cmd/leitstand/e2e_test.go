package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leitstand/leitstand/internal/peers"
)

// buildBinary builds leitstand once per test run.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "leitstand-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "leitstand")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// daemonProcess is a leitstand started as its own process for a test.
type daemonProcess struct {
	cmd    *exec.Cmd
	url    string
	syslog string // host:port of the UDP and TCP syslog listeners
	data   string
	stderr *bytes.Buffer
	exited chan error
}

// freeUDPAndTCPPort returns a port free for both protocols.
func freeUDPAndTCPPort(t testing.TB) int {
	t.Helper()
	p, err := peers.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startDaemon runs the binary with extraConfig appended to an HTTP listener
// on a free loopback port, and waits until /readyz answers 200.
func startDaemon(t testing.TB, extraConfig string) *daemonProcess {
	t.Helper()
	return startDaemonOn(t, "127.0.0.1", extraConfig)
}

// startDaemonOn is startDaemon with the HTTP listener on host (0.0.0.0
// makes the daemon treat it as reachable from the network; the test still
// talks to it on loopback).
func startDaemonOn(t testing.TB, host, extraConfig string) *daemonProcess {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("%s:%d", host, port)
	syslogAddr := fmt.Sprintf("127.0.0.1:%d", freeUDPAndTCPPort(t))
	cfgFile := filepath.Join(dir, "leitstand.yaml")
	cfg := "http:\n  listen: " + addr + "\n" +
		"syslog:\n  listeners:\n    - {protocol: udp, address: " + syslogAddr + "}\n    - {protocol: tcp, address: " + syslogAddr + "}\n" +
		extraConfig
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &daemonProcess{url: fmt.Sprintf("http://127.0.0.1:%d", port), syslog: syslogAddr, data: filepath.Join(dir, "data"), stderr: &bytes.Buffer{}, exited: make(chan error, 1)}
	d.cmd = execCommand(bin, "run", "-config", cfgFile, "-data", d.data)
	d.cmd.Stderr = &lockedWriter{w: d.stderr}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			<-d.exited
		}
	})
	waitReady(t, d)
	return d
}

func execCommand(bin string, args ...string) *exec.Cmd { return exec.Command(bin, args...) }

// waitReady waits until /readyz answers 200.
func waitReady(t testing.TB, d *daemonProcess) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(d.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-d.exited:
			t.Fatalf("leitstand exited before it was ready: %v\n%s", err, d.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("leitstand not ready after 20s:\n%s", d.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and returns the exit code.
func (d *daemonProcess) stop(t testing.TB) int {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.exited:
	case <-time.After(60 * time.Second):
		d.cmd.Process.Kill()
		t.Fatalf("leitstand did not exit within 60s of SIGTERM:\n%s", d.stderr)
	}
	return d.cmd.ProcessState.ExitCode()
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// readEvents returns every event line in the data directory's event files,
// rotated and compressed ones included.
func readEvents(t testing.TB, dir string) []map[string]any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "events", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var events []map[string]any
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		var r io.Reader = fh
		if strings.HasSuffix(f, ".gz") {
			zr, err := gzip.NewReader(fh)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			r = zr
		}
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var ev map[string]any
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatalf("%s: line is not JSON: %v: %q", f, err, sc.Text())
			}
			events = append(events, ev)
		}
		if err := sc.Err(); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		fh.Close()
	}
	return events
}

// TestEndToEndHundredThousandEvents is the foundation's promise: 100,000
// events from 8 concurrent clients, SIGTERM, and exactly 100,000 events in
// the files, none lost and none duplicated.
func TestEndToEndHundredThousandEvents(t *testing.T) {
	const clients, perClient, perRequest = 8, 12500, 500
	// Small files, so rotation and compression happen under load too.
	d := startDaemon(t, "sinks:\n  file:\n    max_file_bytes: 2MiB\n")

	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			var body bytes.Buffer
			for start := 0; start < perClient; start += perRequest {
				body.Reset()
				for i := start; i < start+perRequest; i++ {
					fmt.Fprintf(&body, `{"message":"event %d of client %d","labels":{"client":%d,"seq":%d},"event":{"dataset":"e2e.c%d"}}`+"\n", i, c, c, i, c%3)
				}
				if err := postUntilAccepted(d.url, body.Bytes(), perRequest); err != nil {
					errs <- fmt.Errorf("client %d: %w", c, err)
					return
				}
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	metrics := scrape(t, d.url)
	for _, want := range []string{
		`leitstand_events_accepted_total{component="ingest"} 100000`,
		`leitstand_events_sent_total{component="file"} 100000`,
		`leitstand_queue_depth_events{queue="pipeline"} 0`,
		`leitstand_queue_capacity_events{queue="pipeline"} 16384`,
		`leitstand_http_requests_total{code="200",handler="ingest"} 200`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0:\n%s", code, d.stderr)
	}
	if !strings.Contains(d.stderr.String(), `"msg":"leitstand stopped"`) {
		t.Errorf("no clean stop in the log:\n%s", d.stderr)
	}

	events := readEvents(t, d.data)
	seen := make(map[string]int, clients*perClient)
	for _, ev := range events {
		labels, _ := ev["labels"].(map[string]any)
		seen[fmt.Sprintf("%v/%v", labels["client"], labels["seq"])]++
	}
	dups := 0
	for _, n := range seen {
		if n > 1 {
			dups++
		}
	}
	if len(events) != clients*perClient || len(seen) != clients*perClient || dups != 0 {
		t.Fatalf("found %d event lines, %d distinct events, %d duplicated; want exactly %d", len(events), len(seen), dups, clients*perClient)
	}
	gz, _ := filepath.Glob(filepath.Join(d.data, "events", "*.gz"))
	t.Logf("%d events in %d compressed rotated files and the active files", len(events), len(gz))
}

// postUntilAccepted posts body, retrying on 429/503 as a well-behaved client
// does, and checks every line was accepted.
func postUntilAccepted(url string, body []byte, lines int) error {
	for attempt := 0; attempt < 50; attempt++ {
		resp, err := http.Post(url+"/v1/ingest", "application/x-ndjson", bytes.NewReader(body))
		if err != nil {
			return err
		}
		var r struct {
			Accepted int    `json:"accepted"`
			Error    string `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		switch {
		case err != nil:
			return err
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
			time.Sleep(100 * time.Millisecond)
			continue
		case resp.StatusCode != http.StatusOK || r.Accepted != lines:
			return fmt.Errorf("status %d, accepted %d of %d: %s", resp.StatusCode, r.Accepted, lines, r.Error)
		}
		return nil
	}
	return fmt.Errorf("still refused after 50 attempts")
}

func scrape(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestNoPersonalDataAtRest sends personal data through the intake and then
// searches every file the daemon wrote, and its own log, for the originals.
func TestNoPersonalDataAtRest(t *testing.T) {
	// Elasticsearch is enabled but unreachable, so the events stay in the
	// spool, which is searched below with everything else.
	d := startDaemon(t, fmt.Sprintf("log:\n  level: debug\nsinks:\n  elasticsearch:\n    enabled: true\n    urls: [http://127.0.0.1:%d]\n", freePort(t)))
	secrets := []string{
		"maria.schulz@example-schule.de", "203.0.113.77", "2001:db8:85a3::8a2e:370:7334",
		"4111 1111 1111 1111", "DE89370400440532013000", "+49 170 1234567",
		"ghp_0123456789abcdefghijklmnopqrstuvwxyzAB", "hunter2-very-secret", "/home/mschulz/",
	}
	body := strings.Join([]string{
		`{"message":"login failed for maria.schulz@example-schule.de from 203.0.113.77","event":{"dataset":"auth"}}`,
		`{"message":"card 4111 1111 1111 1111 declined, IBAN DE89370400440532013000","user":{"email":"maria.schulz@example-schule.de"}}`,
		`{"message":"call +49 170 1234567","source":{"ip":"2001:db8:85a3::8a2e:370:7334"},"labels":{"token":"ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"}}`,
		`{"message":"password=hunter2-very-secret in /home/mschulz/app.log","details":["maria.schulz@example-schule.de"]}`,
		`{"message":"bad line"` + ` "maria.schulz@example-schule.de"`, // rejected: its reason must not quote it either
	}, "\n")
	resp, err := http.Post(d.url+"/v1/ingest", "application/x-ndjson", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(answer), `"accepted":4`) {
		t.Fatalf("%d %s", resp.StatusCode, answer)
	}
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	events := readEvents(t, d.data)
	if len(events) != 4 {
		t.Fatalf("%d events stored, want 4", len(events))
	}
	// Everything the daemon wrote: event files, spool segments, cursors,
	// keys, and its log.
	written := map[string]string{"stderr": d.stderr.String()}
	filepath.Walk(d.data, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			written[p] = string(b)
		}
		return nil
	})
	spooled := 0
	for p, content := range written {
		if strings.HasSuffix(p, ".seg") {
			spooled += len(content)
		}
	}
	if spooled == 0 {
		t.Error("nothing was spooled; the test would prove nothing about the spool")
	}
	for where, content := range written {
		for _, s := range secrets {
			if strings.Contains(content, s) {
				t.Errorf("%q found in %s", s, where)
			}
		}
	}
	// The events still correlate: the one address became one pseudonym,
	// wherever it stood (message, user.email, inside an array).
	stored, _ := json.Marshal(events)
	pseudonyms := regexp.MustCompile(`email:[a-z0-9]+:[A-Za-z0-9_-]{16}`).FindAllString(string(stored), -1)
	if len(pseudonyms) != 3 || pseudonyms[0] != pseudonyms[1] || pseudonyms[1] != pseudonyms[2] {
		t.Errorf("want the same e-mail pseudonym 3 times, got %v in %s", pseudonyms, stored)
	}
}
