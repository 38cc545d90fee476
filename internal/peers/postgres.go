package peers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PostgresOptions configures StartPostgres.
type PostgresOptions struct {
	// Port is the server's TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// ExporterPort is postgres_exporter's HTTP port; 0 picks a free one.
	ExporterPort int
	// NoExporter starts the database alone.
	NoExporter bool
	// Settings are server settings passed as -c name=value.
	Settings map[string]string
	// StartTimeout bounds initdb and the start; default 60s.
	StartTimeout time.Duration
}

// Postgres is a private PostgreSQL cluster (not the system's) and the
// postgres_exporter watching it.
type Postgres struct {
	*Instance
	// Port is the server's port on 127.0.0.1; user postgres, database
	// postgres, trust authentication.
	Port int
	// DSN connects over TCP, e.g.
	// postgresql://postgres@127.0.0.1:41234/postgres?sslmode=disable.
	DSN string
	// SocketDir holds the server's unix socket.
	SocketDir string
	// DataDir is the cluster's data folder.
	DataDir string
	// BinDir holds psql, pgbench and the other PostgreSQL programs.
	BinDir string
	// ExporterURL is postgres_exporter's endpoint (metrics at
	// ExporterURL+"/metrics"); empty with NoExporter.
	ExporterURL  string
	ExporterPort int
}

// StartPostgres creates a cluster with initdb in a temp folder, runs it as
// user postgres on a free port with its socket in that folder, starts
// postgres_exporter against it and waits until the exporter reports pg_up 1.
func StartPostgres(ctx context.Context, opts PostgresOptions) (*Postgres, error) {
	if err := Ensure(ctx, PeerPostgres); err != nil {
		return nil, err
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}
	binDir, err := pgBinDir()
	if err != nil {
		return nil, &UnavailableError{Peer: PeerPostgres, Err: err}
	}
	// PostgreSQL refuses to run as root.
	cred, err := runAs("postgres")
	if err != nil {
		return nil, &UnavailableError{Peer: PeerPostgres, Err: err}
	}
	port, err := pickPort(opts.Port)
	if err != nil {
		return nil, err
	}
	in, err := newInstance("postgres")
	if err != nil {
		return nil, err
	}
	pg := &Postgres{
		Instance:  in,
		Port:      port,
		DSN:       fmt.Sprintf("postgresql://postgres@%s/postgres?sslmode=disable", hostPort(port)),
		SocketDir: filepath.Join(in.Dir, "socket"),
		DataDir:   filepath.Join(in.Dir, "data"),
		BinDir:    binDir,
	}
	if err := os.Mkdir(pg.SocketDir, 0o755); err != nil {
		return nil, in.stopAfter(err)
	}
	if err := chownTree(in.Dir, cred); err != nil {
		return nil, in.stopAfter(err)
	}

	initCtx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	initdb := exec.CommandContext(initCtx, filepath.Join(binDir, "initdb"),
		"-D", pg.DataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C",
		// Test data is disposable: skip the fsyncs that make initdb slow.
		"--no-sync")
	initdb.Dir = in.Dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, in.stopAfter(fmt.Errorf("postgres: initdb: %v\n%s", err, out))
	}

	settings := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": pg.SocketDir,
		// Durability buys nothing in a test and costs time.
		"fsync":              "off",
		"synchronous_commit": "off",
		"full_page_writes":   "off",
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	args := []string{"-D", pg.DataDir, "-p", strconv.Itoa(port)}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-c", k+"="+settings[k])
	}
	server, err := startProcess(procSpec{
		name: "postgres", path: filepath.Join(binDir, "postgres"), args: args, dir: in.Dir,
		logPath: filepath.Join(in.Dir, "postgres.log"), cred: cred,
		// SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for
		// clients (such as the exporter) to disconnect.
		stopSig: syscall.SIGINT,
	})
	if err != nil {
		return nil, in.stopAfter(err)
	}
	in.add(server)
	isReady := filepath.Join(binDir, "pg_isready")
	err = waitReady(ctx, server, opts.StartTimeout, "accepted connections", func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, isReady, "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres").CombinedOutput()
		if err != nil {
			return fmt.Errorf("pg_isready: %v %s", err, out)
		}
		return nil
	})
	if err != nil {
		return nil, in.stopAfter(err)
	}
	if opts.NoExporter {
		return pg, nil
	}

	exporterBin, err := findBin("prometheus-postgres-exporter")
	if err != nil {
		return nil, in.stopAfter(&UnavailableError{Peer: PeerPostgres, Err: err})
	}
	if pg.ExporterPort, err = pickPort(opts.ExporterPort); err != nil {
		return nil, in.stopAfter(err)
	}
	pg.ExporterURL = "http://" + hostPort(pg.ExporterPort)
	exporter, err := startProcess(procSpec{
		name: "postgres-exporter", path: exporterBin, dir: in.Dir,
		args:    []string{"--web.listen-address=" + hostPort(pg.ExporterPort)},
		env:     []string{"DATA_SOURCE_NAME=" + pg.DSN},
		logPath: filepath.Join(in.Dir, "postgres-exporter.log"),
		// It needs no privileges; run it as postgres, as the package does.
		cred: cred,
	})
	if err != nil {
		return nil, in.stopAfter(err)
	}
	in.add(exporter)
	err = waitReady(ctx, exporter, opts.StartTimeout, "pg_up 1", func(ctx context.Context) error {
		body, err := httpGet(ctx, pg.ExporterURL+"/metrics")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(body, "\n") {
			if line == "pg_up 1" {
				return nil
			}
		}
		return errString("pg_up is not 1 yet")
	})
	if err != nil {
		return nil, in.stopAfter(err)
	}
	return pg, nil
}
