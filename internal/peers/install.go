package peers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Names of the peers, as install.sh and Ensure know them.
const (
	PeerElasticsearch = "elasticsearch"
	PeerAlertmanager  = "alertmanager" // also installs prometheus, promtool, amtool
	PeerPrometheus    = "prometheus"
	PeerNodeExporter  = "node-exporter"
	PeerPostgres      = "postgres" // PostgreSQL and postgres_exporter
	PeerRsyslog       = "rsyslog"
	PeerSyslogNG      = "syslog-ng"
	PeerLogger        = "logger" // util-linux logger
)

// esUser is the system user Elasticsearch runs as; install.sh creates it.
const esUser = "leitstand-es"

// installTimeout bounds one run of install.sh. A first install of
// everything took well under a minute here; the margin is for slow mirrors.
const installTimeout = 15 * time.Minute

// UnavailableError means a peer's programs are missing and could not be
// installed. Outside CI, tests skip on it; with CI=true they fail.
type UnavailableError struct {
	Peer string
	Err  error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("peer %s unavailable: %v", e.Peer, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// IsUnavailable tells whether err (or an error it wraps) is an
// *UnavailableError.
func IsUnavailable(err error) bool {
	var u *UnavailableError
	return errors.As(err, &u)
}

// CI tells whether we run in CI (CI=true), where a peer that cannot be had
// is a failure, never a reason to skip.
func CI() bool {
	v, _ := strconv.ParseBool(os.Getenv("CI"))
	return v
}

// CacheDir is where install.sh keeps downloads and unpacked peers.
func CacheDir() string {
	if d := os.Getenv("LEITSTAND_PEERS_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".cache", "leitstand", "peers")
}

// RepoRoot finds the repository root by walking up from the working
// folder to the first go.mod (go test runs in the package's folder).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working folder")
		}
		dir = parent
	}
}

var (
	ensureMu   sync.Mutex
	ensureDone = map[string]error{}
)

// Ensure makes sure the named peer's programs are installed, running
// scripts/peers/install.sh NAME if they are not. The outcome is remembered
// for the life of the test binary, so the script runs at most once per peer
// and binary (the script itself serializes parallel test binaries). A
// failure is an *UnavailableError.
func Ensure(ctx context.Context, name string) error {
	if name == PeerElasticsearch && os.Getenv("ELASTICSEARCH_URL") != "" {
		return nil // the user's cluster: nothing to install
	}
	if _, ok := installedChecks[name]; !ok {
		return fmt.Errorf("peers: unknown peer %q", name)
	}
	ensureMu.Lock()
	defer ensureMu.Unlock()
	if err, ok := ensureDone[name]; ok {
		return err
	}
	err := ensure(ctx, name)
	// A cancelled context says nothing about the peer: try again next time.
	if ctx.Err() == nil {
		ensureDone[name] = err
	}
	return err
}

func ensure(ctx context.Context, name string) error {
	if installedChecks[name]() == nil {
		return nil
	}
	root, err := RepoRoot()
	if err != nil {
		return &UnavailableError{Peer: name, Err: err}
	}
	script := filepath.Join(root, "scripts", "peers", "install.sh")
	ctx, cancel := context.WithTimeout(ctx, installTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script, name)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return &UnavailableError{Peer: name, Err: fmt.Errorf("%s %s: %v\n%s", script, name, err, strings.TrimSpace(out.String()))}
	}
	if err := installedChecks[name](); err != nil {
		return &UnavailableError{Peer: name, Err: fmt.Errorf("still missing after install.sh: %w", err)}
	}
	return nil
}

// installedChecks tells, per peer, whether its programs are in place.
var installedChecks = map[string]func() error{
	PeerElasticsearch: func() error {
		if _, err := esHome(); err != nil {
			return err
		}
		if os.Geteuid() != 0 {
			return nil // runs as ourselves, no user needed
		}
		_, err := user.Lookup(esUser)
		return err
	},
	PeerAlertmanager: func() error { return haveBins("prometheus-alertmanager", "amtool") },
	PeerPrometheus:   func() error { return haveBins("prometheus", "promtool") },
	PeerNodeExporter: func() error { return haveBins("prometheus-node-exporter") },
	PeerPostgres: func() error {
		if _, err := pgBinDir(); err != nil {
			return err
		}
		if _, err := user.Lookup("postgres"); err != nil && os.Geteuid() == 0 {
			return err
		}
		return haveBins("prometheus-postgres-exporter")
	},
	PeerRsyslog:  func() error { return haveBins("rsyslogd") },
	PeerSyslogNG: func() error { _, err := syslogNGLayout(); return err },
	PeerLogger:   func() error { return haveBins("logger") },
}

func haveBins(names ...string) error {
	for _, n := range names {
		if _, err := findBin(n); err != nil {
			return err
		}
	}
	return nil
}

// findBin looks a program up in PATH and then in the sbin folders, which
// the environment of a test run often lacks.
func findBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// pgBinDir finds the newest /usr/lib/postgresql/N/bin with initdb.
func pgBinDir() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", errors.New("no /usr/lib/postgresql/*/bin/initdb")
	}
	version := func(p string) int {
		n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		return n
	}
	sort.Slice(matches, func(i, j int) bool { return version(matches[i]) > version(matches[j]) })
	return filepath.Dir(matches[0]), nil
}

// okMarker is written by install.sh into an unpacked folder once it is
// complete.
const okMarker = ".leitstand-ok"

// Check handles the error of a Start function inside a test: nothing on
// nil; skip on an *UnavailableError unless CI=true; fail otherwise.
func Check(tb testing.TB, err error) {
	tb.Helper()
	if err == nil {
		return
	}
	if IsUnavailable(err) && !CI() {
		tb.Skipf("skipped: %v (set CI=true to make this a failure)", err)
	}
	tb.Fatal(err)
}

// Require makes sure the named peer's programs are installed (see Ensure),
// skipping the test if they cannot be (failing it with CI=true). Use it
// for programs a test runs itself, such as logger, promtool or amtool; the
// Start functions call Ensure on their own.
func Require(tb testing.TB, name string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	Check(tb, Ensure(ctx, name))
}

// Slow skips a test that starts real peers when go test runs with -short,
// except in CI, where nothing may skip.
func Slow(tb testing.TB) {
	tb.Helper()
	if testing.Short() && !CI() {
		tb.Skip("skipped with -short: starts a real peer")
	}
}

// Cleanup stops s when the test ends and reports a failure to stop.
func Cleanup(tb testing.TB, s Stopper) {
	tb.Helper()
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("stopping peer: %v", err)
		}
	})
}

// Bin returns the path of one of the peers' programs (e.g. "amtool",
// "promtool", "logger", "pgbench", "psql"), installing its peer first if
// needed. PostgreSQL's programs come from its versioned bin folder.
func Bin(ctx context.Context, name string) (string, error) {
	peer := map[string]string{
		"prometheus": PeerPrometheus, "promtool": PeerPrometheus,
		"prometheus-alertmanager": PeerAlertmanager, "amtool": PeerAlertmanager,
		"prometheus-node-exporter":     PeerNodeExporter,
		"prometheus-postgres-exporter": PeerPostgres, "psql": PeerPostgres, "pgbench": PeerPostgres,
		"initdb": PeerPostgres, "pg_isready": PeerPostgres, "postgres": PeerPostgres,
		"rsyslogd": PeerRsyslog, "logger": PeerLogger,
	}[name]
	if peer == "" {
		return "", fmt.Errorf("peers: no peer provides %q", name)
	}
	if err := Ensure(ctx, peer); err != nil {
		return "", err
	}
	if peer == PeerPostgres && name != "prometheus-postgres-exporter" {
		dir, err := pgBinDir()
		if err != nil {
			return "", err
		}
		return filepath.Join(dir, name), nil
	}
	return findBin(name)
}
