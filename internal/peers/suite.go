package peers

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Suite holds the peers a package's TestMain starts once for all its tests.
// TestMain has no *testing.T to skip with, so the Suite remembers why setup
// did not happen and each test asks it with Require.
type Suite struct {
	// Slow marks the setup as slow: with -short (and CI not true) Run does
	// not run it and Require skips.
	Slow bool
	// Timeout bounds the setup; default 15 minutes, room for a first
	// install of a peer plus its start.
	Timeout time.Duration

	mu    sync.Mutex
	peers []Stopper
	skip  string // why tests that need the peers skip
	err   error  // why tests that need the peers fail
}

// Add registers a started peer to be stopped after the tests, last added
// first. A nil peer is ignored, so `s.Add(p); return err` is fine after a
// failed start.
func (s *Suite) Add(p Stopper) {
	if isNil(p) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peers = append(s.peers, p)
}

// isNil sees through an interface holding a nil handle, which is what a
// failed Start returns.
func isNil(p Stopper) bool {
	if p == nil {
		return true
	}
	v := reflect.ValueOf(p)
	switch v.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Func, reflect.Interface:
		return v.IsNil()
	}
	return false
}

// Run is TestMain's body: it runs setup, then the tests, then stops every
// peer registered with Add, and returns the exit code for os.Exit.
//
// If setup fails because a peer is unavailable and CI is not true, the
// tests still run and those calling Require skip. Any other setup failure,
// or any failure with CI=true, makes Require fail the tests and the exit
// code non-zero even if no test calls Require.
func (s *Suite) Run(m *testing.M, setup func(ctx context.Context) error) int {
	if !flag.Parsed() {
		flag.Parse() // testing.Short needs the flags
	}
	// On Ctrl-C or SIGTERM stop the peers before going: their process
	// groups do not get the terminal's signal.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		sig, ok := <-sigs
		if !ok {
			return
		}
		fmt.Fprintf(os.Stderr, "peers: %v: stopping peers\n", sig)
		s.stopAll()
		os.Exit(130)
	}()

	if s.Slow && testing.Short() && !CI() {
		s.skip = "skipped with -short: the package's tests start real peers"
	} else {
		timeout := s.Timeout
		if timeout == 0 {
			timeout = 15 * time.Minute
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := setup(ctx)
		cancel()
		switch {
		case err == nil:
		case IsUnavailable(err) && !CI():
			s.skip = fmt.Sprintf("skipped: %v (set CI=true to make this a failure)", err)
			fmt.Fprintf(os.Stderr, "peers: %s\n", s.skip)
		default:
			s.err = fmt.Errorf("TestMain setup: %w", err)
			fmt.Fprintf(os.Stderr, "peers: %v\n", s.err)
		}
	}
	code := m.Run()
	if err := s.stopAll(); err != nil {
		fmt.Fprintf(os.Stderr, "peers: stopping peers: %v\n", err)
		code = max(code, 1)
	}
	if s.err != nil {
		code = max(code, 1)
	}
	return code
}

func (s *Suite) stopAll() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for i := len(s.peers) - 1; i >= 0; i-- {
		errs = append(errs, s.peers[i].Stop())
	}
	s.peers = nil
	return errors.Join(errs...)
}

// Require skips or fails a test when TestMain's setup did not succeed
// (see Run), so the test can use the suite's peers.
func (s *Suite) Require(tb testing.TB) {
	tb.Helper()
	switch {
	case s.err != nil:
		tb.Fatal(s.err)
	case s.skip != "":
		tb.Skip(s.skip)
	}
}

// Err is the setup error, if any (nil also when setup was skipped).
func (s *Suite) Err() error { return s.err }
