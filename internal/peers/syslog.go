package peers

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// RsyslogOptions configures StartRsyslog.
type RsyslogOptions struct {
	// Modules are loaded before Config, e.g. "imudp", "imtcp", "mmanon"
	// (omfwd and omfile are built in).
	Modules []string
	// Config is the rest of the configuration in RainerScript: inputs,
	// templates and the forwarding actions under test. rsyslogd changes to
	// "/" on start, so file names must be absolute: write {{dir}} for the
	// instance folder, e.g. action(type="omfile" file="{{dir}}/out.log").
	Config string
	// ListenTCP and ListenUDP are ports Config makes rsyslog listen on;
	// the start waits until they are bound.
	ListenTCP, ListenUDP []int
	// StartTimeout bounds the start; default 30s.
	StartTimeout time.Duration
}

// Rsyslog is a private rsyslogd: it has no /dev/log input (unless Config
// loads imuxsock) and keeps its state in its own folder.
type Rsyslog struct {
	*Instance
	// WorkDir is rsyslog's work directory (queues, state files).
	WorkDir string
	// ConfigPath is the generated configuration file.
	ConfigPath string
	// PIDFile is the pid file rsyslogd writes.
	PIDFile string
}

// RsyslogPreamble returns the lines StartRsyslog puts before the caller's
// Config: the work directory and the module loads.
func RsyslogPreamble(workDir string, modules []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global(workDirectory=%q)\n", workDir)
	for _, m := range modules {
		fmt.Fprintf(&b, "module(load=%q)\n", m)
	}
	return b.String()
}

// StartRsyslog checks the configuration with rsyslogd -N1 (rsyslog runs on
// with a broken config, so the check is what makes a mistake visible), then
// runs `rsyslogd -n -f CONF -i PIDFILE` and waits for the pid file and the
// listening ports.
func StartRsyslog(ctx context.Context, opts RsyslogOptions) (*Rsyslog, error) {
	if err := Ensure(ctx, PeerRsyslog); err != nil {
		return nil, err
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	bin, err := findBin("rsyslogd")
	if err != nil {
		return nil, &UnavailableError{Peer: PeerRsyslog, Err: err}
	}
	in, err := newInstance("rsyslog")
	if err != nil {
		return nil, err
	}
	r := &Rsyslog{
		Instance:   in,
		WorkDir:    filepath.Join(in.Dir, "work"),
		ConfigPath: filepath.Join(in.Dir, "rsyslog.conf"),
		PIDFile:    filepath.Join(in.Dir, "rsyslogd.pid"),
	}
	if err := os.Mkdir(r.WorkDir, 0o755); err != nil {
		return nil, in.stopAfter(err)
	}
	conf := RsyslogPreamble(r.WorkDir, opts.Modules) + expandDir(opts.Config, in.Dir) + "\n"
	if err := writeFile(r.ConfigPath, conf); err != nil {
		return nil, in.stopAfter(err)
	}
	check := exec.CommandContext(ctx, bin, "-N1", "-f", r.ConfigPath)
	check.Dir = in.Dir
	if out, err := check.CombinedOutput(); err != nil {
		return nil, in.stopAfter(fmt.Errorf("rsyslog: config check failed: %v\n%s\n--- %s ---\n%s", err, out, r.ConfigPath, conf))
	}
	proc, err := startProcess(procSpec{
		name: "rsyslog", path: bin, dir: in.Dir,
		args:    []string{"-n", "-f", r.ConfigPath, "-i", r.PIDFile},
		logPath: filepath.Join(in.Dir, "rsyslog.log"),
	})
	if err != nil {
		return nil, in.stopAfter(err)
	}
	in.add(proc)
	err = waitReady(ctx, proc, opts.StartTimeout, "pid file and inputs", func(context.Context) error {
		if err := pidFileIs(r.PIDFile, proc.PID()); err != nil {
			return err
		}
		return portsBound(opts.ListenTCP, opts.ListenUDP)
	})
	if err != nil {
		return nil, in.stopAfter(err)
	}
	return r, nil
}

// expandDir replaces {{dir}} in a configuration with the instance folder,
// which the caller cannot know before the start.
func expandDir(conf, dir string) string {
	return strings.ReplaceAll(conf, "{{dir}}", dir)
}

// pidFileIs checks that a pid file names the expected process: with -n /
// -F the daemons do not fork, so it must be the PID we started.
func pidFileIs(path string, pid int) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	got, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return fmt.Errorf("pid file %s: %q", path, data)
	}
	if got != pid {
		return fmt.Errorf("pid file %s names %d, not %d", path, got, pid)
	}
	return nil
}

// SyslogNGOptions configures StartSyslogNG.
type SyslogNGOptions struct {
	// Config is syslog-ng's configuration. A "@version:" line with the
	// binary's config version is put first unless Config has one. {{dir}}
	// stands for the instance folder, e.g. file("{{dir}}/out.log").
	Config string
	// ListenTCP and ListenUDP are ports Config makes syslog-ng listen on;
	// the start waits until they are bound.
	ListenTCP, ListenUDP []int
	// StartTimeout bounds the start; default 30s.
	StartTimeout time.Duration
}

// SyslogNG is a syslog-ng run from the package install.sh unpacked into the
// cache (it conflicts with rsyslog as an installed package).
type SyslogNG struct {
	*Instance
	// Version is the syslog-ng release, e.g. "3.38".
	Version string
	// ConfigVersion is the "@version:" it speaks, e.g. "3.35".
	ConfigVersion string
	ConfigPath    string
	PIDFile       string
	ControlSocket string
	PersistFile   string
}

// syslogNG describes the unpacked syslog-ng.
type syslogNG struct {
	bin, modulePath, libPath, version string
}

func syslogNGLayout() (syslogNG, error) {
	root, err := filepath.EvalSymlinks(filepath.Join(CacheDir(), "syslog-ng"))
	if err != nil {
		return syslogNG{}, fmt.Errorf("syslog-ng not unpacked in %s: %w", CacheDir(), err)
	}
	if _, err := os.Stat(filepath.Join(root, okMarker)); err != nil {
		return syslogNG{}, fmt.Errorf("syslog-ng in %s is incomplete: %w", root, err)
	}
	mods, _ := filepath.Glob(filepath.Join(root, "usr/lib/syslog-ng/[0-9]*"))
	if len(mods) == 0 {
		return syslogNG{}, fmt.Errorf("no module folder in %s/usr/lib/syslog-ng", root)
	}
	return syslogNG{
		bin:        filepath.Join(root, "usr/sbin/syslog-ng"),
		modulePath: mods[0],
		libPath:    filepath.Join(root, "usr/lib/syslog-ng") + ":" + filepath.Join(root, "usr/lib/x86_64-linux-gnu"),
		version:    filepath.Base(mods[0]),
	}, nil
}

var configVersionRE = regexp.MustCompile(`(?m)^Config version: (\S+)`)

// configVersion asks the binary which configuration version it speaks:
// Debian's 3.38.1 says 3.35 (the number moves only when the grammar
// changes), and a newer @version than that draws a warning.
func (l syslogNG) configVersion(ctx context.Context) string {
	cmd := exec.CommandContext(ctx, l.bin, "--module-path="+l.modulePath, "--version")
	cmd.Env = mergeEnv(os.Environ(), []string{"LD_LIBRARY_PATH=" + l.libPath})
	out, err := cmd.Output()
	if m := configVersionRE.FindSubmatch(out); err == nil && m != nil {
		return string(m[1])
	}
	return l.version
}

var versionLine = regexp.MustCompile(`^\s*@version:`)

// StartSyslogNG checks the configuration with --syntax-only, runs syslog-ng
// in the foreground with its persist file, control socket and pid file in
// the instance folder, and waits for the pid file and the listening ports.
func StartSyslogNG(ctx context.Context, opts SyslogNGOptions) (*SyslogNG, error) {
	if err := Ensure(ctx, PeerSyslogNG); err != nil {
		return nil, err
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	layout, err := syslogNGLayout()
	if err != nil {
		return nil, &UnavailableError{Peer: PeerSyslogNG, Err: err}
	}
	in, err := newInstance("syslog-ng")
	if err != nil {
		return nil, err
	}
	s := &SyslogNG{
		Instance:      in,
		Version:       layout.version,
		ConfigVersion: layout.configVersion(ctx),
		ConfigPath:    filepath.Join(in.Dir, "syslog-ng.conf"),
		PIDFile:       filepath.Join(in.Dir, "syslog-ng.pid"),
		ControlSocket: filepath.Join(in.Dir, "syslog-ng.ctl"),
		PersistFile:   filepath.Join(in.Dir, "syslog-ng.persist"),
	}
	conf := expandDir(opts.Config, in.Dir)
	if !versionLine.MatchString(conf) {
		conf = "@version: " + s.ConfigVersion + "\n" + conf
	}
	if err := writeFile(s.ConfigPath, conf+"\n"); err != nil {
		return nil, in.stopAfter(err)
	}
	env := []string{"LD_LIBRARY_PATH=" + layout.libPath}
	base := []string{"--module-path=" + layout.modulePath, "-f", s.ConfigPath}

	check := exec.CommandContext(ctx, layout.bin, append(base, "--syntax-only")...)
	check.Dir = in.Dir
	check.Env = mergeEnv(os.Environ(), env)
	var out bytes.Buffer
	check.Stdout, check.Stderr = &out, &out
	if err := check.Run(); err != nil {
		return nil, in.stopAfter(fmt.Errorf("syslog-ng: config check failed: %v\n%s\n--- %s ---\n%s", err, out.String(), s.ConfigPath, conf))
	}
	args := append(base,
		"-F", // foreground: we own its PID
		"-e", // its own messages to stderr, i.e. the log file
		"-R", s.PersistFile, "-c", s.ControlSocket, "-p", s.PIDFile)
	proc, err := startProcess(procSpec{
		name: "syslog-ng", path: layout.bin, args: args, env: env, dir: in.Dir,
		logPath: filepath.Join(in.Dir, "syslog-ng.log"),
	})
	if err != nil {
		return nil, in.stopAfter(err)
	}
	in.add(proc)
	err = waitReady(ctx, proc, opts.StartTimeout, "pid file and inputs", func(context.Context) error {
		if err := pidFileIs(s.PIDFile, proc.PID()); err != nil {
			return err
		}
		return portsBound(opts.ListenTCP, opts.ListenUDP)
	})
	if err != nil {
		return nil, in.stopAfter(err)
	}
	return s, nil
}

// Logger runs util-linux logger with args (e.g. "--rfc5424", "-n",
// "127.0.0.1", "-P", port, "-T", "--octet-count", "message") and returns
// its combined output.
func Logger(ctx context.Context, args ...string) ([]byte, error) {
	bin, err := Bin(ctx, "logger")
	if err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("logger %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return out, nil
}
