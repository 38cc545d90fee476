package dashboards

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leitstand/leitstand/internal/peers"
)

// The peers package starts node_exporter, PostgreSQL with its exporter and
// Prometheus. What it has no starter for (a streaming standby of that
// PostgreSQL, its exporter, pgbench, leitstand itself) this file starts, in
// the same manner: own process group, log to a file, SIGKILL if the test
// binary dies, and stopped by the PID it was given.

// proc is a program started by this test.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	stopSig syscall.Signal
	exited  chan struct{}
	err     error // the exit status, once exited is closed
}

type procOpts struct {
	args    []string
	env     []string
	dir     string
	cred    *syscall.Credential // run as another user (PostgreSQL refuses root)
	stopSig syscall.Signal      // default SIGTERM
}

func startProc(t *testing.T, name, path, logDir string, o procOpts) *proc {
	t.Helper()
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	if o.cred != nil {
		if err := os.Chown(logPath, int(o.cred.Uid), int(o.cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(path, o.args...)
	cmd.Dir = o.dir
	cmd.Env = append(os.Environ(), o.env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: o.cred}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, stopSig: o.stopSig, exited: make(chan struct{})}
	if p.stopSig == 0 {
		p.stopSig = syscall.SIGTERM
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.stop)
	return p
}

// stop signals the process group this test started, waits, and kills it
// if it does not go.
func (p *proc) stop() {
	pgid := p.cmd.Process.Pid
	select {
	case <-p.exited:
	default:
		_ = syscall.Kill(-pgid, p.stopSig)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.exited
		}
	}
	// Whatever the leader left in its group.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

func (p *proc) logTail(n int) string {
	data, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFor polls check until it succeeds, the process exits or the time is up.
func (p *proc) waitFor(ctx context.Context, what string, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = check(ctx); last == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited (%v) before %s:\n%s", p.name, p.err, what, p.logTail(20))
		case <-ctx.Done():
			return fmt.Errorf("%s: no %s after %s: %v\n%s", p.name, what, timeout, last, p.logTail(20))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// postgresCred is the credential to run PostgreSQL's programs with: user
// postgres when we are root (the server refuses root), ourselves otherwise.
func postgresCred(t *testing.T) *syscall.Credential {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		peers.Check(t, &peers.UnavailableError{Peer: peers.PeerPostgres, Err: err})
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
}

func chown(t *testing.T, path string, cred *syscall.Credential) {
	t.Helper()
	if cred == nil {
		return
	}
	if err := os.Chown(path, int(cred.Uid), int(cred.Gid)); err != nil {
		t.Fatal(err)
	}
}

// standby is a streaming replica of a peers.Postgres with its own
// postgres_exporter.
type standby struct {
	port        int
	exporterURL string
}

// exampleQueries is the example query file the Debian package of
// postgres_exporter ships; its pg_replication query yields
// pg_replication_lag, the lag in seconds the dashboard reads on standbys.
const exampleQueries = "/usr/share/doc/prometheus-postgres-exporter/examples/queries.yaml"

// replicationQuery cuts the pg_replication block out of the example file,
// so the exporter runs the upstream query text and nothing else of it (the
// rest needs extensions the test server does not have).
func replicationQuery(t *testing.T) string {
	t.Helper()
	f, err := os.Open(exampleQueries)
	if err != nil {
		peers.Check(t, &peers.UnavailableError{Peer: peers.PeerPostgres, Err: err})
	}
	defer f.Close()
	var b strings.Builder
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		top := line != "" && line[0] != ' ' && line[0] != '#'
		switch {
		case top && strings.HasPrefix(line, "pg_replication:"):
			in = true
		case top:
			in = false
		}
		if in {
			b.WriteString(line + "\n")
		}
	}
	if b.Len() == 0 {
		t.Fatalf("%s has no pg_replication query", exampleQueries)
	}
	return b.String()
}

func startStandby(ctx context.Context, t *testing.T, primary *peers.Postgres) *standby {
	t.Helper()
	cred := postgresCred(t)
	base, err := os.MkdirTemp("", "leitstand-dashboards-standby-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	chown(t, base, cred)
	data, sock := filepath.Join(base, "data"), filepath.Join(base, "socket")
	if err := os.Mkdir(sock, 0o755); err != nil {
		t.Fatal(err)
	}
	chown(t, sock, cred)

	// A base backup that writes standby.signal and primary_conninfo (-R)
	// and streams the WAL it needs (-X stream).
	backup := exec.CommandContext(ctx, filepath.Join(primary.BinDir, "pg_basebackup"),
		"-h", "127.0.0.1", "-p", strconv.Itoa(primary.Port), "-U", "postgres",
		"-D", data, "-R", "-X", "stream", "-c", "fast", "--no-sync")
	backup.Dir = base
	backup.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	if out, err := backup.CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}

	sb := &standby{}
	if sb.port, err = peers.FreeTCPPort(); err != nil {
		t.Fatal(err)
	}
	server := startProc(t, "postgres-standby", filepath.Join(primary.BinDir, "postgres"), base, procOpts{
		args: []string{"-D", data, "-p", strconv.Itoa(sb.port),
			"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + sock,
			"-c", "hot_standby=on", "-c", "fsync=off"},
		dir: base, cred: cred,
		stopSig: syscall.SIGINT, // fast shutdown
	})
	isReady := filepath.Join(primary.BinDir, "pg_isready")
	err = server.waitFor(ctx, "accepted connections", time.Minute, func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, isReady, "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(sb.port), "-U", "postgres").CombinedOutput()
		if err != nil {
			return fmt.Errorf("pg_isready: %v %s", err, out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	queries := filepath.Join(base, "queries.yaml")
	if err := os.WriteFile(queries, []byte(replicationQuery(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	exporterBin, err := peers.Bin(ctx, "prometheus-postgres-exporter")
	peers.Check(t, err)
	exporterPort, err := peers.FreeTCPPort()
	if err != nil {
		t.Fatal(err)
	}
	sb.exporterURL = fmt.Sprintf("http://127.0.0.1:%d", exporterPort)
	exporter := startProc(t, "postgres-exporter-standby", exporterBin, base, procOpts{
		args: []string{fmt.Sprintf("--web.listen-address=127.0.0.1:%d", exporterPort), "--extend.query-path=" + queries},
		env:  []string{fmt.Sprintf("DATA_SOURCE_NAME=postgresql://postgres@127.0.0.1:%d/postgres?sslmode=disable", sb.port)},
		dir:  base, cred: cred,
	})
	err = exporter.waitFor(ctx, "pg_up 1 and pg_replication_lag", time.Minute, func(ctx context.Context) error {
		body, err := get(ctx, sb.exporterURL+"/metrics")
		if err != nil {
			return err
		}
		if !strings.Contains(body, "\npg_up 1\n") || !strings.Contains(body, "\npg_replication_lag") {
			return errors.New("pg_up 1 or pg_replication_lag missing")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sb
}

// get fetches url and returns the body of a 200 answer.
func get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %.300s", url, resp.Status, body)
	}
	return string(body), nil
}

// buildLeitstand builds the daemon from this checkout.
func buildLeitstand(t *testing.T) string {
	t.Helper()
	root, err := peers.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "leitstand")
	build := exec.Command("go", "build", "-o", bin, "./cmd/leitstand")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/leitstand: %v\n%s", err, out)
	}
	return bin
}

// startLeitstand runs the daemon with its HTTP listener on addr and its
// data in a temporary folder, and waits until it is ready.
func startLeitstand(ctx context.Context, t *testing.T, bin, addr, extraConfig string) (url string) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "leitstand.yaml")
	if err := os.WriteFile(cfg, []byte("http:\n  listen: "+addr+"\n"+extraConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "leitstand", bin, dir, procOpts{
		args: []string{"run", "-config", cfg, "-data", filepath.Join(dir, "data")},
		dir:  dir,
	})
	url = "http://" + addr
	if err := p.waitFor(ctx, "/readyz", time.Minute, func(ctx context.Context) error {
		_, err := get(ctx, url+"/readyz")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return url
}
