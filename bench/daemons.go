package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/leitstand/leitstand/internal/peers"
)

// Daemon names, as they appear in case names and results.
const (
	Leitstand       = "leitstand"
	LeitstandIPOnly = "leitstand-ip-only"
	// LeitstandFsync syncs the file sink before each acknowledgement
	// (sinks.file.fsync: always): what durability costs in latency.
	LeitstandFsync = "leitstand-fsync"
	Rsyslog        = "rsyslog"
	SyslogNG       = "syslog-ng"
)

// isLeitstand reports whether d is leitstand in one of its setups.
func isLeitstand(d string) bool {
	return d == Leitstand || d == LeitstandIPOnly || d == LeitstandFsync
}

// receiver is one running daemon under test.
type receiver interface {
	// PID is the process whose CPU time and memory are measured.
	PID() int
	// Outputs lists the files the daemon has written events to so far.
	Outputs() ([]string, error)
	// Finish stops the daemon once the output has been read; for
	// leitstand it is a graceful SIGTERM whose exit code is checked
	// (before the output is read, see stopFirst).
	Finish() error
	// stopFirst tells whether the output is complete only after Finish
	// (leitstand flushes on SIGTERM) or is gone after it (the peers'
	// folders are removed by Stop).
	stopFirst() bool
}

// startSpec is what a daemon needs to know to start for one case.
type startSpec struct {
	path    Path
	workDir string // a fresh folder for this run (leitstand's data)
	bins    binaries
	// queueSize and workers, when not 0, set leitstand's pipeline sizes
	// (pipeline.queue_size, pipeline.workers) instead of its defaults.
	queueSize, workers int
}

// leitstandConfig is the YAML of a leitstand run: the syslog listeners on
// one port, the Sentry project of the SDK samples, the file sink without
// rotation, compression or fsync, which is what omfile and file() do by
// default, so all three write to the page cache alike.
const leitstandConfig = `log:
  level: warn
http:
  listen: 127.0.0.1:%d
syslog:
  listeners:
    - {protocol: tcp, address: "127.0.0.1:%d"}
    - {protocol: udp, address: "127.0.0.1:%d"}
sentry:
  projects:
    - id: 42
      service: bench
      keys:
        - public_key: 0123456789abcdef0123456789abcdef
sinks:
  file:
    max_file_bytes: 8GiB
    retention_bytes: 16GiB
    compress: false
    fsync: never
`

// ipOnlyAnonymize turns off every detector but IP truncation: the same
// work the peers do (mmanon, a regular expression), for the comparison of
// equal work. The built-in key rules go with the secret and user
// detectors.
const ipOnlyAnonymize = `anonymize:
  detectors:
    email: {enabled: false}
    mac: {enabled: false}
    card: {enabled: false}
    iban: {enabled: false}
    phone: {enabled: false}
    jwt: {enabled: false}
    credential: {enabled: false}
    url_credentials: {enabled: false}
    api_key: {enabled: false}
    private_key: {enabled: false}
    tax_id: {enabled: false}
    home_path: {enabled: false}
    secret: {enabled: false}
    user: {enabled: false}
`

// leitstandProc is a leitstand started from the binary built for the run.
type leitstandProc struct {
	cmd     *exec.Cmd
	data    string
	log     string
	metrics string // the /metrics URL
	udpPort int    // the syslog port (UDP and TCP)
	exited  chan struct{}
	err     error // of Wait, valid once exited is closed
}

// metricsURL is where leitstand's own metrics are scraped.
func (p *leitstandProc) metricsURL() string { return p.metrics }

// startLeitstand starts leitstand on free ports. Other programs on the
// machine (tests running beside the benchmark) may take a port between
// the probe and leitstand's bind, so a start that fails on a taken address
// is tried again on other ports.
func startLeitstand(ctx context.Context, s startSpec, daemon string) (receiver, string, error) {
	for attempt := 1; ; attempt++ {
		r, target, err := startLeitstandOnce(ctx, s, daemon)
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			return r, target, err
		}
	}
}

func startLeitstandOnce(ctx context.Context, s startSpec, daemon string) (receiver, string, error) {
	httpPort, err := peers.FreeTCPPort()
	if err != nil {
		return nil, "", err
	}
	syslogPort, err := peers.FreePort()
	if err != nil {
		return nil, "", err
	}
	cfg := fmt.Sprintf(leitstandConfig, httpPort, syslogPort, syslogPort)
	switch daemon {
	case LeitstandIPOnly:
		cfg += ipOnlyAnonymize
	case LeitstandFsync:
		cfg = strings.Replace(cfg, "    fsync: never\n", "    fsync: always\n", 1)
	}
	if s.queueSize > 0 || s.workers > 0 {
		cfg += "pipeline:\n"
		if s.queueSize > 0 {
			cfg += fmt.Sprintf("  queue_size: %d\n", s.queueSize)
		}
		if s.workers > 0 {
			cfg += fmt.Sprintf("  workers: %d\n", s.workers)
		}
	}
	cfgPath := filepath.Join(s.workDir, "leitstand.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, "", err
	}
	p := &leitstandProc{data: filepath.Join(s.workDir, "data"), log: filepath.Join(s.workDir, "leitstand.log"), exited: make(chan struct{}),
		metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort), udpPort: syslogPort}
	if err := os.RemoveAll(p.data); err != nil { // a failed attempt's
		return nil, "", err
	}
	logFile, err := os.Create(p.log)
	if err != nil {
		return nil, "", err
	}
	defer logFile.Close()
	p.cmd = exec.Command(s.bins.leitstand, "run", "-config", cfgPath, "-data", p.data)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	// Own process group, and killed with us if the harness dies.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, "", err
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	if err := p.waitReady(ctx, "http://"+httpAddr+"/readyz"); err != nil {
		p.kill()
		return nil, "", err
	}
	switch s.path {
	case PathNDJSON, PathSentry:
		return p, httpAddr, nil
	default:
		return p, fmt.Sprintf("127.0.0.1:%d", syslogPort), nil
	}
}

func (p *leitstandProc) waitReady(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("leitstand exited before it was ready: %v\n%s", p.err, tail(p.log))
		case <-ctx.Done():
			return fmt.Errorf("leitstand not ready: %v\n%s", ctx.Err(), tail(p.log))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *leitstandProc) PID() int { return p.cmd.Process.Pid }

func (p *leitstandProc) Outputs() ([]string, error) {
	return filepath.Glob(filepath.Join(p.data, "events", "*"))
}

func (p *leitstandProc) stopFirst() bool { return true }

// Finish sends SIGTERM and wants exit code 0 within a minute: a clean
// shutdown (drained queue, flushed files) is part of what is measured.
func (p *leitstandProc) Finish() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(time.Minute):
		p.kill()
		return fmt.Errorf("leitstand did not exit within a minute of SIGTERM\n%s", tail(p.log))
	}
	if p.err != nil {
		return fmt.Errorf("leitstand: %v\n%s", p.err, tail(p.log))
	}
	return nil
}

func (p *leitstandProc) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// tail returns the end of a log file for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// peerProc is rsyslog or syslog-ng started by internal/peers.
type peerProc struct {
	inst    peers.Stopper
	pid     int
	outPath string
}

func (p *peerProc) PID() int { return p.pid }

func (p *peerProc) Outputs() ([]string, error) {
	if _, err := os.Stat(p.outPath); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return []string{p.outPath}, nil
}

func (p *peerProc) stopFirst() bool { return false }

func (p *peerProc) Finish() error { return p.inst.Stop() }

// rsyslogConfig: imtcp or imudp → mmanon (IPv4 /24, IPv6 /48, as
// leitstand's defaults) → omfile with a JSON template, all in one ruleset
// on the default main queue, as a user would write it.
const rsyslogConfig = `template(name="benchjson" type="list" option.jsonf="on") {
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="host" name="hostname" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="severity" name="syslogseverity-text" format="jsonf")
  property(outname="facility" name="syslogfacility-text" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="message" name="msg" format="jsonf")
}
ruleset(name="bench") {
  action(type="mmanon" ipv4.bits="8" ipv4.mode="zero" ipv6.bits="80" ipv6.anonmode="zero")
  action(type="omfile" file="{{dir}}/out.json" template="benchjson")
}
%s
`

func startRsyslog(ctx context.Context, s startSpec) (receiver, string, error) {
	port, err := peers.FreePort()
	if err != nil {
		return nil, "", err
	}
	opts := peers.RsyslogOptions{Modules: []string{"mmanon"}}
	var input string
	switch s.path {
	case PathTCP:
		opts.Modules = append(opts.Modules, "imtcp")
		opts.ListenTCP = []int{port}
		input = fmt.Sprintf(`input(type="imtcp" address="127.0.0.1" port="%d" ruleset="bench")`, port)
	case PathUDP:
		opts.Modules = append(opts.Modules, "imudp")
		opts.ListenUDP = []int{port}
		// The same kernel buffer as leitstand's default (8MiB).
		input = fmt.Sprintf(`input(type="imudp" address="127.0.0.1" port="%d" ruleset="bench" rcvbufSize="8m")`, port)
	default:
		return nil, "", fmt.Errorf("rsyslog has no %s path", s.path)
	}
	opts.Config = fmt.Sprintf(rsyslogConfig, input)
	rs, err := peers.StartRsyslog(ctx, opts)
	if err != nil {
		return nil, "", err
	}
	return &peerProc{inst: rs, pid: rs.PID(), outPath: filepath.Join(rs.Dir, "out.json")}, fmt.Sprintf("127.0.0.1:%d", port), nil
}

// syslogNGConfig: network() → two subst() rewrites (IPv4 to /24, IPv6 to
// /48; syslog-ng has no IP anonymizer of its own, a regular expression is
// how its users do it) → file() with a JSON template. network() reads
// octet-counted frames with transport("framed") (with "tcp" it splits at
// newlines). flow-control makes TCP lossless as in the other two: without
// it syslog-ng drops messages when its file destination falls behind.
const syslogNGConfig = `options { keep_hostname(yes); frac_digits(6); stats_freq(0); };
source s_bench { %s };
rewrite r_anon {
  subst("(?<![0-9.])([0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3})\\.[0-9]{1,3}(?![0-9.])", "${1}.0", value("MESSAGE") type("pcre") flags(global));
  subst("(?<![0-9A-Fa-f:])([0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}):[0-9A-Fa-f:]*[0-9A-Fa-f](?![0-9A-Fa-f:])", "${1}::", value("MESSAGE") type("pcre") flags(global));
};
destination d_file { file("{{dir}}/out.json" template("$(format-json timestamp=${ISODATE} host=${HOST} app=${PROGRAM} procid=${PID} msgid=${MSGID} severity=${LEVEL} facility=${FACILITY} sd=${SDATA} message=${MESSAGE})\n")); };
log { source(s_bench); rewrite(r_anon); destination(d_file); flags(flow-control); };
`

func startSyslogNG(ctx context.Context, s startSpec) (receiver, string, error) {
	port, err := peers.FreePort()
	if err != nil {
		return nil, "", err
	}
	opts := peers.SyslogNGOptions{}
	var source string
	switch s.path {
	case PathTCP:
		opts.ListenTCP = []int{port}
		source = fmt.Sprintf(`network(ip("127.0.0.1") port(%d) transport("framed") flags(syslog-protocol));`, port)
	case PathUDP:
		opts.ListenUDP = []int{port}
		source = fmt.Sprintf(`network(ip("127.0.0.1") port(%d) transport("udp") flags(syslog-protocol) so-rcvbuf(8388608));`, port)
	default:
		return nil, "", fmt.Errorf("syslog-ng has no %s path", s.path)
	}
	opts.Config = fmt.Sprintf(syslogNGConfig, source)
	ng, err := peers.StartSyslogNG(ctx, opts)
	if err != nil {
		return nil, "", err
	}
	return &peerProc{inst: ng, pid: ng.PID(), outPath: filepath.Join(ng.Dir, "out.json")}, fmt.Sprintf("127.0.0.1:%d", port), nil
}

// versions asks each program for its version. syslog-ng is found where
// install.sh unpacks it (internal/peers keeps its layout to itself).
func versions(ctx context.Context, bins binaries) map[string]string {
	v := map[string]string{}
	run := func(env []string, name string, args ...string) string {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "unknown (" + err.Error() + ")"
		}
		line, _, _ := strings.Cut(string(bytes.TrimSpace(out)), "\n")
		return strings.TrimSpace(line)
	}
	v[Leitstand] = run(nil, bins.leitstand, "version")
	if bin, err := peers.Bin(ctx, "rsyslogd"); err == nil {
		v[Rsyslog] = strings.TrimSuffix(strings.Join(strings.Fields(run(nil, bin, "-v")), " "), " compiled with:")
	}
	root, err := filepath.EvalSymlinks(filepath.Join(peers.CacheDir(), "syslog-ng"))
	if err == nil {
		mods, _ := filepath.Glob(filepath.Join(root, "usr/lib/syslog-ng/[0-9]*"))
		if len(mods) > 0 {
			env := []string{"LD_LIBRARY_PATH=" + filepath.Join(root, "usr/lib/syslog-ng") + ":" + filepath.Join(root, "usr/lib/x86_64-linux-gnu")}
			v[SyslogNG] = run(env, filepath.Join(root, "usr/sbin/syslog-ng"), "--module-path="+mods[0], "--version")
		}
	}
	return v
}
