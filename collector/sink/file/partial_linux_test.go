package file

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/leitstand/leitstand/internal/peers"
)

const partialWriteDirEnv = "LEITSTAND_TEST_PARTIAL_WRITE_DIR"

// TestPartialWriteIsCutOff makes the kernel write only part of a batch, by
// a file size limit, in a child process (the limit holds for the whole
// process), and checks that the file keeps whole lines only.
func TestPartialWriteIsCutOff(t *testing.T) {
	if os.Getenv(partialWriteDirEnv) != "" {
		t.Skip("running as the child")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPartialWriteChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), partialWriteDirEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err == nil && strings.Contains(string(out), "--- SKIP: TestPartialWriteChild") {
		// The child skips only outside CI; in CI it fails.
		t.Skipf("child could not limit the file size:\n%s", out)
	}
	if err != nil || !strings.Contains(string(out), "--- PASS: TestPartialWriteChild") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if got := seqs(readLines(t, filepath.Join(dir, "app.ndjson"))); !slices.Equal(got, []int{0, 1, 2, 3, 4, 10}) {
		t.Fatalf("file holds %v, want the first batch and the one after the failed write", got)
	}
}

func TestPartialWriteChild(t *testing.T) {
	dir := os.Getenv(partialWriteDirEnv)
	if dir == "" {
		t.Skip("helper of TestPartialWriteIsCutOff")
	}
	h := startSink(t, testConfig(dir))
	b := events("app", 0, 5)
	h.consume(t, b)
	b.Release()
	path := filepath.Join(dir, "app.ndjson")
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	// Room for 100 more bytes: the next batch (about 1KiB) is cut short.
	lim := syscall.Rlimit{Cur: uint64(info.Size()) + 100, Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		// Some sandboxes refuse setrlimit. CI runs where it works: there a
		// refusal is a failure, not a reason to skip.
		if peers.CI() {
			t.Fatalf("cannot limit the file size: %v", err)
		}
		t.Skipf("cannot limit the file size: %v", err)
	}
	b = events("app", 5, 5)
	err = h.Consume(context.Background(), b)
	b.Release()
	if restore := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); restore != nil {
		t.Fatal(restore)
	}
	if !errors.Is(err, syscall.EFBIG) {
		t.Fatalf("Consume over the file size limit = %v, want EFBIG", err)
	}
	if after, err := os.Stat(path); err != nil || after.Size() != info.Size() {
		t.Fatalf("after the failed write the file is %v bytes (%v), want %d: the partial write was not cut off", after.Size(), err, info.Size())
	}
	if got := testutil.ToFloat64(h.m.writeErrors); got != 1 {
		t.Errorf("write_errors_total = %v, want 1", got)
	}
	// The sink carries on where the last whole line ended.
	b = events("app", 10, 1)
	h.consume(t, b)
	b.Release()
	h.shutdown(t)
}
