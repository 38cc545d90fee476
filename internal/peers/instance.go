package peers

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

// Instance is the part every started peer shares: its temporary folder and
// the processes started in it. The peer handles (Elasticsearch,
// Alertmanager, ...) embed it.
type Instance struct {
	// Dir is the peer's temporary folder: configuration, data, and the
	// log file of each process.
	Dir string

	mu    sync.Mutex
	procs []*Process // in start order; stopped in reverse
	done  bool
}

// instancePrefix starts the name of every instance folder in the temp
// folder; sweepStale looks for nothing else.
const instancePrefix = "leitstand-peer-"

// ownerFile in an instance folder holds the PID of the test binary that
// made it.
const ownerFile = ".owner-pid"

var sweepOnce sync.Once

func newInstance(name string) (*Instance, error) {
	sweepOnce.Do(sweepStale)
	dir, err := os.MkdirTemp("", instancePrefix+name+"-")
	if err != nil {
		return nil, fmt.Errorf("%s: temp folder: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	return &Instance{Dir: dir}, nil
}

// sweepStale removes instance folders left by test binaries that were
// killed before they could stop their peers (the peers themselves died
// with them through Pdeathsig). A folder whose owner still runs, or
// whose owner is unknown, stays; so do kept ones (LEITSTAND_PEERS_KEEP).
func sweepStale() {
	if keep, _ := strconv.ParseBool(os.Getenv("LEITSTAND_PEERS_KEEP")); keep {
		return
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), instancePrefix+"*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(string(data))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(dir)
		}
	}
}

func (in *Instance) add(p *Process) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.procs = append(in.procs, p)
}

// replace swaps the process at index i (a restarted peer).
func (in *Instance) replace(i int, p *Process) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.procs[i] = p
}

// Process returns the peer's main process (for a PID, Signal or Kill);
// nil when nothing was started (an external Elasticsearch).
func (in *Instance) Process() *Process {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.procs) == 0 {
		return nil
	}
	return in.procs[0]
}

// PID is the process ID (and process group ID) of the peer's main process.
func (in *Instance) PID() int {
	if p := in.Process(); p != nil {
		return p.PID()
	}
	return 0
}

// LogTail returns the last n lines of the main process's log.
func (in *Instance) LogTail(n int) string {
	if p := in.Process(); p != nil {
		return p.LogTail(n)
	}
	return ""
}

// Stop stops the peer's processes, last started first, and removes Dir
// (kept when LEITSTAND_PEERS_KEEP is set). It is safe to call more than once
// and on a nil or half-started instance.
func (in *Instance) Stop() error {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.done {
		return nil
	}
	in.done = true
	var errs []error
	for i := len(in.procs) - 1; i >= 0; i-- {
		errs = append(errs, in.procs[i].Stop())
	}
	if keep, _ := strconv.ParseBool(os.Getenv("LEITSTAND_PEERS_KEEP")); !keep {
		if err := os.RemoveAll(in.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stopAfter is for the error paths of the Start functions: stop what was
// started and return err unchanged.
func (in *Instance) stopAfter(err error) error {
	_ = in.Stop()
	return err
}

// runAs returns the credential to run a peer that refuses root with: the
// named system user when we are root, nil (ourselves) otherwise, since a
// developer running tests as himself can run it as himself.
func runAs(name string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	return systemUser(name)
}

// systemUser returns the credential of a system user and its primary group.
func systemUser(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	// No supplementary groups: the peer gets exactly what that user has
	// through its own uid and gid, as runuser -u would give it.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// chownTree gives a folder tree to a user, so a peer running as that user
// can write its data and logs in it.
func chownTree(dir string, cred *syscall.Credential) error {
	if cred == nil {
		return nil // runs as ourselves
	}
	return filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(cred.Uid), int(cred.Gid))
	})
}

// writeFile writes a configuration file into a peer's folder.
func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644)
}
