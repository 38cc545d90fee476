package peers

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testCtx bounds one test: a peer that hangs must fail the test, not the
// whole go test run at its 10-minute default.
func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// timed logs how long a start took; the README quotes these numbers.
func timed[P any](t *testing.T, what string, start func() (P, error)) P {
	t.Helper()
	t0 := time.Now()
	p, err := start()
	Check(t, err)
	t.Logf("%s started in %s", what, time.Since(t0).Round(time.Millisecond))
	return p
}

// assertGone checks that nothing of a stopped peer's process group is
// left (zombies waiting for PID 1 aside).
func assertGone(t *testing.T, p *Process) {
	t.Helper()
	if p.Running() || p.groupAlive() {
		t.Errorf("%s: process group %d still alive after Stop", p.Name, p.PID())
	}
}

func request(ctx context.Context, t *testing.T, method, url, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestFreePort(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		// Both protocols must be bindable on it.
		l, err := net.Listen("tcp4", hostPort(p))
		if err != nil {
			t.Fatalf("tcp %d: %v", p, err)
		}
		c, err := net.ListenPacket("udp4", hostPort(p))
		if err != nil {
			t.Fatalf("udp %d: %v", p, err)
		}
		l.Close()
		c.Close()
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "scripts", "peers", "install.sh")); err != nil {
		t.Fatalf("repo root %s has no install script: %v", root, err)
	}
}

func TestElasticsearchURLIsHonoured(t *testing.T) {
	t.Setenv("ELASTICSEARCH_URL", "http://127.0.0.1:1/")
	es, err := StartElasticsearch(context.Background(), ElasticsearchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !es.External || es.URL != "http://127.0.0.1:1" || es.Instance != nil {
		t.Fatalf("got %+v, want the external URL and nothing started", es)
	}
	if es.Process() != nil || es.PID() != 0 || es.LogTail(5) != "" {
		t.Errorf("an external cluster has no process")
	}
	if err := es.Kill(); err != ErrExternal {
		t.Fatalf("Kill on an external cluster: %v", err)
	}
	if err := es.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestElasticsearch(t *testing.T) {
	Slow(t)
	ctx := testCtx(t, 5*time.Minute)
	es := timed(t, "elasticsearch", func() (*Elasticsearch, error) {
		return StartElasticsearch(ctx, ElasticsearchOptions{
			Private:  true,
			Settings: map[string]string{"thread_pool.write.queue_size": "500"},
		})
	})
	Cleanup(t, es)

	code, body := request(ctx, t, http.MethodPost, es.URL+"/leitstand-test/_doc?refresh=true",
		"application/json", `{"message":"hello"}`)
	if code != http.StatusCreated {
		t.Fatalf("index: %d %s", code, body)
	}
	count := func() int {
		code, body := request(ctx, t, http.MethodGet, es.URL+"/leitstand-test/_count", "", "")
		if code != http.StatusOK {
			t.Fatalf("_count: %d %s", code, body)
		}
		var c struct{ Count int }
		if err := json.Unmarshal([]byte(body), &c); err != nil {
			t.Fatal(err)
		}
		return c.Count
	}
	if n := count(); n != 1 {
		t.Fatalf("_count = %d, want 1", n)
	}
	// The extra -E setting reached the node.
	_, body = request(ctx, t, http.MethodGet, es.URL+"/_cluster/settings?include_defaults=true&filter_path=**.write.queue_size", "", "")
	if !strings.Contains(body, `"500"`) {
		t.Errorf("thread_pool.write.queue_size not applied: %s", body)
	}

	// Killed mid-stream and restarted: same port, same data.
	old := es.Process()
	if err := es.Kill(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, old)
	if _, err := http.Get(es.URL); err == nil {
		t.Fatal("Elasticsearch still answers after Kill")
	}
	t0 := time.Now()
	if err := es.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("elasticsearch restarted in %s", time.Since(t0).Round(time.Millisecond))
	if n := count(); n != 1 {
		t.Fatalf("_count after restart = %d, want 1", n)
	}

	last := es.Process()
	if err := es.Stop(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, last)
	if _, err := os.Stat(es.Dir); !os.IsNotExist(err) {
		t.Errorf("instance folder %s not removed: %v", es.Dir, err)
	}
}

func TestAlertmanager(t *testing.T) {
	Slow(t)
	ctx := testCtx(t, 2*time.Minute)
	am := timed(t, "alertmanager", func() (*Alertmanager, error) {
		return StartAlertmanager(ctx, AlertmanagerOptions{})
	})
	Cleanup(t, am)

	alert := `[{"labels":{"alertname":"LeitstandPeerTest","severity":"info"},"annotations":{"summary":"from peers_test"}}]`
	if code, body := request(ctx, t, http.MethodPost, am.URL+"/api/v2/alerts", "application/json", alert); code != http.StatusOK {
		t.Fatalf("POST alert: %d %s", code, body)
	}
	code, body := request(ctx, t, http.MethodGet, am.URL+"/api/v2/alerts?filter=alertname%3D%22LeitstandPeerTest%22", "", "")
	if code != http.StatusOK {
		t.Fatalf("GET alerts: %d %s", code, body)
	}
	var alerts []struct {
		Labels map[string]string `json:"labels"`
	}
	if err := json.Unmarshal([]byte(body), &alerts); err != nil {
		t.Fatal(err)
	}
	if len(alerts) != 1 || alerts[0].Labels["severity"] != "info" {
		t.Fatalf("alerts read back: %s", body)
	}

	// amtool, which tests use to check generated configs, works on it.
	amtool, err := Bin(ctx, "amtool")
	Check(t, err)
	if out, err := exec.CommandContext(ctx, amtool, "check-config", am.ConfigPath).CombinedOutput(); err != nil {
		t.Fatalf("amtool check-config: %v\n%s", err, out)
	}
	proc := am.Process()
	if err := am.Stop(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, proc)
}

func TestAlertmanagerCluster(t *testing.T) {
	Slow(t)
	ctx := testCtx(t, 3*time.Minute)
	c := timed(t, "alertmanager HA pair", func() (AlertmanagerCluster, error) {
		return StartAlertmanagerCluster(ctx, 2, AlertmanagerOptions{})
	})
	Cleanup(t, c)

	// Silences are gossiped (alerts are not): create one on the first
	// instance and find it on the second.
	now := time.Now().UTC()
	silence := fmt.Sprintf(`{"matchers":[{"name":"alertname","value":"LeitstandPeerTest","isRegex":false}],`+
		`"startsAt":%q,"endsAt":%q,"createdBy":"peers_test","comment":"gossip check"}`,
		now.Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339))
	if code, body := request(ctx, t, http.MethodPost, c[0].URL+"/api/v2/silences", "application/json", silence); code != http.StatusOK {
		t.Fatalf("POST silence: %d %s", code, body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, body := request(ctx, t, http.MethodGet, c[1].URL+"/api/v2/silences", "", "")
		if strings.Contains(body, "gossip check") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("silence did not reach the second instance: %s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestPrometheus(t *testing.T) {
	Slow(t)
	ctx := testCtx(t, 2*time.Minute)
	port := MustFreePort(t)
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: self
    static_configs:
      - targets: [%q]
`, hostPort(port))
	p := timed(t, "prometheus", func() (*Prometheus, error) {
		return StartPrometheus(ctx, PrometheusOptions{Config: cfg, Port: port, RemoteWriteReceiver: true})
	})
	Cleanup(t, p)

	// Scraping itself takes a scrape interval or two.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, body := request(ctx, t, http.MethodGet, p.URL+"/api/v1/query?query=up", "", "")
		var r struct {
			Status string
			Data   struct {
				Result []struct {
					Metric map[string]string
					Value  [2]any
				}
			}
		}
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("query: %v: %s", err, body)
		}
		if len(r.Data.Result) == 1 && r.Data.Result[0].Value[1] == "1" && r.Data.Result[0].Metric["job"] == "self" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("up never became 1: %s", body)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// The remote-write receiver is on: an empty (invalid) body is a 400,
	// not a 404.
	if code, _ := request(ctx, t, http.MethodPost, p.URL+"/api/v1/write", "application/x-protobuf", ""); code == http.StatusNotFound {
		t.Fatalf("remote write receiver not enabled")
	}
}

func TestNodeExporter(t *testing.T) {
	Slow(t)
	ctx := testCtx(t, time.Minute)
	ne := timed(t, "node-exporter", func() (*NodeExporter, error) {
		return StartNodeExporter(ctx, NodeExporterOptions{})
	})
	Cleanup(t, ne)
	code, body := request(ctx, t, http.MethodGet, ne.URL+"/metrics", "", "")
	if code != http.StatusOK || !strings.Contains(body, "node_cpu_seconds_total") {
		t.Fatalf("/metrics: %d, node_cpu_seconds_total missing", code)
	}
}

func TestPostgres(t *testing.T) {
	Slow(t)
	ctx := testCtx(t, 2*time.Minute)
	pg := timed(t, "postgres + exporter", func() (*Postgres, error) {
		return StartPostgres(ctx, PostgresOptions{})
	})
	Cleanup(t, pg)

	psql := filepath.Join(pg.BinDir, "psql")
	out, err := exec.CommandContext(ctx, psql, pg.DSN, "-Atc",
		"create table t(x int); insert into t values (41),(1); select sum(x) from t").CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err != nil || lines[len(lines)-1] != "42" {
		t.Fatalf("psql: %v: %q", err, out)
	}
	code, body := request(ctx, t, http.MethodGet, pg.ExporterURL+"/metrics", "", "")
	if code != http.StatusOK || !strings.Contains(body, "\npg_up 1\n") {
		t.Fatalf("exporter /metrics: %d, no pg_up 1", code)
	}
	server := pg.Process()
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, server)
}

// syslogSink is a TCP listener that reads octet-counted syslog frames
// (RFC 6587), standing in for leitstand's syslog input.
type syslogSink struct {
	ln     net.Listener
	Port   int
	frames chan string
}

func newSyslogSink(t *testing.T) *syslogSink {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &syslogSink{ln: ln, Port: ln.Addr().(*net.TCPAddr).Port, frames: make(chan string, 100)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				r := bufio.NewReader(conn)
				for {
					frame, err := readOctetCounted(r)
					if err != nil {
						return
					}
					select {
					case s.frames <- frame:
					default: // a test that stopped reading
					}
				}
			}()
		}
	}()
	return s
}

// readOctetCounted reads one "LEN SP MSG" frame.
func readOctetCounted(r *bufio.Reader) (string, error) {
	lenStr, err := r.ReadString(' ')
	if err != nil {
		return "", err
	}
	n, err := strconv.Atoi(strings.TrimSpace(lenStr))
	if err != nil || n <= 0 || n > 1<<20 {
		return "", fmt.Errorf("bad frame length %q", lenStr)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", err
	}
	return string(buf), nil
}

// await returns the first frame containing marker; resend (if not nil) is
// called every half second meanwhile, since a UDP datagram sent while the
// peer was still opening its output may be lost.
func (s *syslogSink) await(t *testing.T, marker string, timeout time.Duration, resend func()) string {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var other []string
	for {
		select {
		case f := <-s.frames:
			if strings.Contains(f, marker) {
				return f
			}
			other = append(other, f) // e.g. rsyslog's own start message
		case <-tick.C:
			if resend != nil {
				resend()
			}
		case <-deadline:
			t.Fatalf("no frame with %q after %s; got %q", marker, timeout, other)
		}
	}
}

// awaitFile waits until a peer's file output holds marker: the file action
// may run a moment after the forwarding one.
func awaitFile(t *testing.T, path, marker string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := os.ReadFile(path)
		if err == nil && strings.Contains(string(out), marker) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("file output %s: %v %q", path, err, out)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func sendUDP(t *testing.T, port int, msg string) {
	t.Helper()
	c, err := net.Dial("udp4", hostPort(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
}

func TestRsyslog(t *testing.T) {
	Slow(t)
	ctx := testCtx(t, time.Minute)
	sink := newSyslogSink(t)
	udp, err := FreeUDPPort()
	if err != nil {
		t.Fatal(err)
	}
	r := timed(t, "rsyslog", func() (*Rsyslog, error) {
		return StartRsyslog(ctx, RsyslogOptions{
			Modules: []string{"imudp"},
			Config: fmt.Sprintf(`input(type="imudp" address="127.0.0.1" port="%d")
action(type="omfwd" target="127.0.0.1" port="%d" protocol="tcp" TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
action(type="omfile" file="{{dir}}/out.log")
`, udp, sink.Port),
			ListenUDP: []int{udp},
		})
	})
	Cleanup(t, r)

	marker := fmt.Sprintf("rsyslog-check-%d", time.Now().UnixNano())
	msg := "<13>Nov 22 03:00:00 testhost peers_test: " + marker
	sendUDP(t, udp, msg)
	frame := sink.await(t, marker, 20*time.Second, func() { sendUDP(t, udp, msg) })
	// RSYSLOG_SyslogProtocol23Format is RFC 5424: "<PRI>1 TIMESTAMP ...".
	if !strings.HasPrefix(frame, "<13>1 ") {
		t.Errorf("forwarded frame is not RFC 5424: %q", frame)
	}
	awaitFile(t, filepath.Join(r.Dir, "out.log"), marker)
	proc := r.Process()
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, proc)
}

func TestSyslogNG(t *testing.T) {
	Slow(t)
	ctx := testCtx(t, time.Minute)
	sink := newSyslogSink(t)
	udp, err := FreeUDPPort()
	if err != nil {
		t.Fatal(err)
	}
	s := timed(t, "syslog-ng", func() (*SyslogNG, error) {
		return StartSyslogNG(ctx, SyslogNGOptions{
			Config: fmt.Sprintf(`source s_in { network(transport("udp") ip("127.0.0.1") port(%d)); };
destination d_out { syslog("127.0.0.1" transport("tcp") port(%d)); };
destination d_file { file("{{dir}}/out.log"); };
log { source(s_in); destination(d_out); destination(d_file); };
`, udp, sink.Port),
			ListenUDP: []int{udp},
		})
	})
	Cleanup(t, s)

	marker := fmt.Sprintf("syslog-ng-check-%d", time.Now().UnixNano())
	msg := "<13>Nov 22 03:00:00 testhost peers_test: " + marker
	sendUDP(t, udp, msg)
	frame := sink.await(t, marker, 20*time.Second, func() { sendUDP(t, udp, msg) })
	// syslog() sends RFC 5424 with octet counting.
	if !strings.HasPrefix(frame, "<13>1 ") {
		t.Errorf("forwarded frame is not RFC 5424: %q", frame)
	}
	awaitFile(t, filepath.Join(s.Dir, "out.log"), marker)
	proc := s.Process()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, proc)
}

func TestLogger(t *testing.T) {
	Require(t, PeerLogger)
	ctx := testCtx(t, 30*time.Second)
	sink := newSyslogSink(t)
	marker := fmt.Sprintf("logger-check-%d", time.Now().UnixNano())
	if _, err := Logger(ctx, "--rfc5424", "-n", "127.0.0.1", "-P", strconv.Itoa(sink.Port), "-T",
		"--octet-count", "-t", "peers_test", marker); err != nil {
		t.Fatal(err)
	}
	frame := sink.await(t, marker, 10*time.Second, nil)
	if !strings.HasPrefix(frame, "<13>1 ") || !strings.Contains(frame, " peers_test ") {
		t.Errorf("logger frame: %q", frame)
	}
}

// recordTB notes whether Check skipped or failed, ending the goroutine as
// the real methods do. Check uses no other methods of testing.TB.
type recordTB struct {
	testing.TB
	skipped, failed bool
}

func (r *recordTB) Helper()               {}
func (r *recordTB) Skipf(string, ...any)  { r.skipped = true; runtime.Goexit() }
func (r *recordTB) Fatal(...any)          { r.failed = true; runtime.Goexit() }
func (r *recordTB) Fatalf(string, ...any) { r.failed = true; runtime.Goexit() }

func runCheck(t *testing.T, err error) *recordTB {
	r := &recordTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Check(r, err)
	}()
	<-done
	return r
}

func TestCheck(t *testing.T) {
	unavailable := fmt.Errorf("start: %w", &UnavailableError{Peer: "x", Err: errString("install failed")})
	t.Setenv("CI", "")
	if r := runCheck(t, nil); r.skipped || r.failed {
		t.Errorf("nil error: %+v", r)
	}
	if r := runCheck(t, unavailable); !r.skipped || r.failed {
		t.Errorf("unavailable outside CI should skip: %+v", r)
	}
	if r := runCheck(t, errString("did not start")); r.skipped || !r.failed {
		t.Errorf("start failure should fail: %+v", r)
	}
	t.Setenv("CI", "true")
	if r := runCheck(t, unavailable); r.skipped || !r.failed {
		t.Errorf("unavailable in CI should fail: %+v", r)
	}
}
