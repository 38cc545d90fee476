package reliability

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leitstand/leitstand/internal/peers"
)

// daemon is the leitstand binary run as its own process on a config file
// and data directory that outlive restarts, like a process under a
// supervisor.
type daemon struct {
	t      testing.TB
	name   string
	config string // path of the config file
	data   string // -data directory
	addr   string // host:port of the HTTP listener
	url    string // http://addr (https:// with TLS)
	syslog string // host:port of the syslog UDP and TCP listeners
	env    []string

	// log collects the stderr of every run, in order.
	log *syncBuffer

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	starts int
}

// daemonOptions are the parts of a daemon a scenario may choose.
type daemonOptions struct {
	// Env is added to the process environment (GOMEMLIMIT, tokens).
	Env []string
	// Scheme is "http" (default) or "https".
	Scheme string
	// NoWait skips waiting for /readyz (for configs that stay unready).
	NoWait bool
}

// newDaemon writes config to a file and starts leitstand on it. In config,
// @HTTP@ stands for a free loopback host:port for the HTTP listener,
// @SYSLOG@ for one free for UDP and TCP, @DATA@ for the data directory,
// @DIR@ for the scenario's folder and @ES@ for the Elasticsearch URL.
func newDaemon(t testing.TB, name, config string, opts daemonOptions) *daemon {
	t.Helper()
	dir := t.TempDir()
	d := &daemon{
		t: t, name: name,
		config: filepath.Join(dir, "leitstand.yaml"),
		data:   filepath.Join(dir, "data"),
		addr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(peers.MustFreePort(t))),
		syslog: net.JoinHostPort("127.0.0.1", strconv.Itoa(peers.MustFreePort(t))),
		env:    opts.Env,
		log:    &syncBuffer{},
	}
	scheme := opts.Scheme
	if scheme == "" {
		scheme = "http"
	}
	d.url = scheme + "://" + d.addr
	esURL := ""
	if es != nil {
		esURL = es.URL
	}
	_, port, _ := net.SplitHostPort(d.addr)
	if strings.Contains(config, "@PORT@") {
		// The config names its own host for the listener (see
		// loopbackHostName); it still binds 127.0.0.1.
		for _, l := range strings.Split(config, "\n") {
			if h, ok := strings.CutPrefix(strings.TrimSpace(l), "listen: "); ok && strings.HasSuffix(h, ":@PORT@") {
				d.addr = net.JoinHostPort(strings.TrimSuffix(h, ":@PORT@"), port)
				d.url = scheme + "://" + d.addr
			}
		}
	}
	config = strings.NewReplacer("@PORT@", port, "@HTTP@", d.addr, "@SYSLOG@", d.syslog, "@DATA@", d.data, "@DIR@", dir, "@ES@", esURL).Replace(config)
	if err := os.WriteFile(d.config, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.kill()
		if t.Failed() {
			t.Logf("%s's log (last 60 lines):\n%s", d.name, d.log.tail(60))
		}
	})
	d.start(!opts.NoWait)
	return d
}

// start runs the binary and, with wait, waits until /readyz answers 200.
func (d *daemon) start(wait bool) {
	d.t.Helper()
	cmd := exec.Command(binary, "run", "-config", d.config, "-data", d.data)
	cmd.Env = append(os.Environ(), d.env...)
	cmd.Stderr = d.log
	// The daemon dies with the test binary, whatever happens to it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	d.mu.Lock()
	d.cmd, d.exited = cmd, exited
	d.starts++
	d.mu.Unlock()
	if wait {
		d.waitReady(60 * time.Second)
	}
}

// pid is the process id of the current run.
func (d *daemon) pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cmd.Process.Pid
}

// waitReady waits until /readyz answers 200.
func (d *daemon) waitReady(timeout time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := insecureClient.Get(d.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-d.exited:
			d.t.Fatalf("%s exited before it was ready:\n%s", d.name, d.log.tail(40))
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%s not ready after %s:\n%s", d.name, timeout, d.log.tail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends the current run with SIGKILL, as a crash or the OOM killer
// would, and waits until it is gone.
func (d *daemon) kill() {
	d.mu.Lock()
	cmd, exited := d.cmd, d.exited
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// stop sends SIGTERM and returns the exit code.
func (d *daemon) stop() int {
	d.t.Helper()
	d.mu.Lock()
	cmd, exited := d.cmd, d.exited
	d.mu.Unlock()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(90 * time.Second):
		d.kill()
		d.t.Errorf("%s did not exit within 90s of SIGTERM", d.name)
	}
	return cmd.ProcessState.ExitCode()
}

// alive reports whether the current run has not exited.
func (d *daemon) alive() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// rssBytes reads the resident set size of the current run from /proc.
func (d *daemon) rssBytes() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.pid()))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", d.pid())
}

// metrics scrapes /metrics and returns every sample as "name{labels}" →
// value, labels in the order the exposition gives them.
func (d *daemon) metrics() (map[string]float64, error) {
	resp, err := insecureClient.Get(d.url + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// sum adds the samples of metric whose labels contain every one of
// labels (each written as `key="value"`).
func sum(m map[string]float64, metric string, labels ...string) float64 {
	var total float64
	for k, v := range m {
		name, rest, _ := strings.Cut(k, "{")
		if name != metric {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				ok = false
				break
			}
		}
		if ok {
			total += v
		}
	}
	return total
}

// waitMetric polls /metrics until cond holds for the sum of metric with
// labels, or the timeout passes; it returns the last value.
func (d *daemon) waitMetric(timeout time.Duration, cond func(float64) bool, metric string, labels ...string) (float64, bool) {
	deadline := time.Now().Add(timeout)
	var v float64
	for {
		if m, err := d.metrics(); err == nil {
			v = sum(m, metric, labels...)
			if cond(v) {
				return v, true
			}
		}
		if time.Now().After(deadline) {
			return v, false
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a process's stderr and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) tail(n int) string {
	lines := strings.Split(strings.TrimRight(s.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// insecureClient talks to the daemon's own test certificate and never
// waits long: a hung daemon is a finding, not a reason to hang the suite.
var insecureClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: newTransport(),
}

func newTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = testClientTLS()
	tr.MaxIdleConnsPerHost = 64
	return tr
}

// post sends body and returns the status and the answer's body.
func post(ctx context.Context, c *http.Client, url, contentType string, body []byte, header http.Header) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", contentType)
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}
