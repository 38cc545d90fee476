package peers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Stopper is what every peer handle implements.
type Stopper interface {
	Stop() error
}

// Process is one program started by this package, the leader of its own
// process group.
type Process struct {
	// Name says which peer this is, for error messages.
	Name string
	// LogPath is the file that gets the program's stdout and stderr.
	LogPath string

	cmd     *exec.Cmd
	stopSig syscall.Signal
	exited  chan struct{} // closed when the leader has exited (not yet reaped)

	stopOnce sync.Once
	stopErr  error
}

// procSpec describes a program to start.
type procSpec struct {
	name    string
	path    string
	args    []string
	env     []string // added to (and overriding) the test's environment
	dir     string   // working folder
	logPath string
	// cred runs the program as another user (Elasticsearch refuses root,
	// PostgreSQL too). Doing it here instead of through runuser keeps the
	// peer itself our direct child, so Pdeathsig reaches it.
	cred *syscall.Credential
	// stopSig is sent to the group first by Stop (default SIGTERM);
	// PostgreSQL wants SIGINT for a fast shutdown.
	stopSig syscall.Signal
}

// stopGrace is how long Stop lets a peer shut down by itself before SIGKILL.
const stopGrace = 10 * time.Second

// startProcess starts spec in its own process group with its output
// appended to spec.logPath.
func startProcess(spec procSpec) (*Process, error) {
	logFile, err := os.OpenFile(spec.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", spec.name, err)
	}
	defer logFile.Close() // the child has its own descriptor once started

	fmt.Fprintf(logFile, "=== %s: %s %s\n", time.Now().Format(time.RFC3339Nano), spec.path, strings.Join(spec.args, " "))
	cmd := exec.Command(spec.path, spec.args...)
	cmd.Dir = spec.dir
	cmd.Env = mergeEnv(os.Environ(), spec.env)
	cmd.Stdin = nil // /dev/null: peers must not read the test's stdin
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group: Stop signals exactly the group we created,
		// and a Ctrl-C in the terminal reaches the test binary, not the
		// peers (which the test binary then stops in order).
		Setpgid: true,
		// If the test binary dies without stopping its peers (timeout
		// panic, kill -9), the kernel kills the peer.
		Pdeathsig:  syscall.SIGKILL,
		Credential: spec.cred,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", spec.name, spec.path, err)
	}
	p := &Process{
		Name:    spec.name,
		LogPath: spec.logPath,
		cmd:     cmd,
		stopSig: spec.stopSig,
		exited:  make(chan struct{}),
	}
	if p.stopSig == 0 {
		p.stopSig = syscall.SIGTERM
	}
	go p.watch()
	return p, nil
}

// mergeEnv returns base with the KEY=VALUE entries of extra replacing or
// adding to it.
func mergeEnv(base, extra []string) []string {
	if len(extra) == 0 {
		return base
	}
	override := make(map[string]bool, len(extra))
	for _, kv := range extra {
		k, _, _ := strings.Cut(kv, "=")
		override[k] = true
	}
	out := make([]string, 0, len(base)+len(extra))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if !override[k] {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}

// watch waits until the leader exits WITHOUT reaping it: while the leader
// is a zombie its PID (and so its process group ID) cannot be reused, so
// signalling the group afterwards can never hit an unrelated process.
func (p *Process) watch() {
	const (
		pPID    = 1          // P_PID
		wExited = 0x4        // WEXITED
		wNoWait = 0x01000000 // WNOWAIT
	)
	var info [128]byte // siginfo_t, contents unused
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(p.cmd.Process.Pid),
			uintptr(unsafe.Pointer(&info[0])), wExited|wNoWait, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		break
	}
	close(p.exited)
}

// PID is the process ID of the program started, which is also the ID of
// its process group.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited is closed once the program has exited (or been killed).
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Running tells whether the program has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Signal sends sig to the program's process group (e.g. SIGHUP to make a
// peer reload its configuration, SIGSTOP to freeze it).
func (p *Process) Signal(sig syscall.Signal) error {
	if !p.Running() && !p.groupAlive() {
		return fmt.Errorf("%s: not running", p.Name)
	}
	if err := syscall.Kill(-p.PID(), sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%s: signal %v to group %d: %w", p.Name, sig, p.PID(), err)
	}
	return nil
}

// Kill ends the whole process group at once with SIGKILL, as a crash would,
// and waits until every member is gone.
func (p *Process) Kill() error {
	p.stopOnce.Do(func() { p.stopErr = p.terminate(0) })
	return p.stopErr
}

// Stop asks the process group to exit (SIGTERM, or the peer's own stop
// signal), uses SIGKILL after a grace period, and waits until every member
// of the group is gone. Stop and Kill may be called more than once.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() { p.stopErr = p.terminate(stopGrace) })
	return p.stopErr
}

func (p *Process) terminate(grace time.Duration) error {
	pgid := p.PID()
	if grace > 0 && p.Running() {
		_ = syscall.Kill(-pgid, p.stopSig)
		select {
		case <-p.exited:
		case <-time.After(grace):
		}
	}
	// Whether the leader ended by itself or not, children it left in the
	// group (Elasticsearch's server JVM, postgres backends) go too. The
	// leader is still unreaped here, so -pgid is certainly ours.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s: pid %d did not exit after SIGKILL", p.Name, pgid)
	}
	deadline := time.Now().Add(30 * time.Second)
	for p.groupAlive() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: members of process group %d still alive after SIGKILL", p.Name, pgid)
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		time.Sleep(20 * time.Millisecond)
	}
	// Reap the leader; its exit status is that of a killed process and is
	// of no interest.
	_ = p.cmd.Wait()
	return nil
}

// groupAlive tells whether any process other than the (exited) leader and
// zombies is still in the process group. Zombies count as gone: orphans
// are reaped by PID 1 at its own pace and hold no resources.
func (p *Process) groupAlive() bool {
	pgid := p.PID()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// Format: pid (comm) state ppid pgrp ...; comm may hold spaces
		// and parentheses, so parse from the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 3 {
			continue
		}
		state, pgrp := fields[0], fields[2]
		if pgrp == strconv.Itoa(pgid) && state != "Z" && state != "X" {
			if pid == pgid && !p.Running() {
				continue
			}
			return true
		}
	}
	return false
}

// LogTail returns the last n lines of the program's log.
func (p *Process) LogTail(n int) string { return tailFile(p.LogPath, n) }

// tailFile returns the last n lines of a file (at most the last 64 KiB).
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	const max = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(st.Size()-max, io.SeekStart)
	}
	data, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startError adds the end of the peer's log to err: a peer that does not
// come up almost always says why in its last lines.
func startError(p *Process, err error) error {
	return fmt.Errorf("%w\n--- last lines of %s ---\n%s\n---", err, p.LogPath, p.LogTail(40))
}

// waitReady polls check until it succeeds, the program exits, ctx ends or
// timeout passes. what names the condition for the error message.
func waitReady(ctx context.Context, p *Process, timeout time.Duration, what string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	interval := 50 * time.Millisecond
	var last error
	for {
		// Each check gets its own short deadline so one hung request
		// cannot eat the whole budget.
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.Exited():
			return startError(p, fmt.Errorf("%s exited before %s (last check: %v)", p.Name, what, last))
		case <-ctx.Done():
			return startError(p, fmt.Errorf("%s: no %s after %s (last check: %v)", p.Name, what, time.Since(start).Round(time.Millisecond), last))
		case <-time.After(interval):
		}
		if interval < 500*time.Millisecond {
			interval *= 2
		}
	}
}
