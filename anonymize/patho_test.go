package anonymize

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/leitstand/leitstand/internal/peers"
)

// pathologicalFragments, repeated, make detectors look far ahead or back:
// half a key=value, an address without its end, a PEM header, a JWT
// that never completes. A quadratic scan shows on them first.
var pathologicalFragments = []string{
	"a:", "a=", "@", "::", "1:", "1.", "0 ", "+1 ", "(0", "token=\"", "token='", "password: ", "Cookie: a=b",
	"-----BEGIN RSA PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY----- x ", "http://", "a://b:c", "a@b.", "%40",
	"/home/", "C:\\Users\\", "Bearer ", "eyJ", "eyJaaaaaaaaaaaa.", "AKIA", "DE89 ", "4111 ", "00:", "ff:", "1a2b:",
	"\"password\":{", "x\\\"token\\\":\\\"",
}

// workEnv tells the instrumented child what to scrub: "<fragment index>
// <bytes>".
const workEnv = "LEITSTAND_TEST_SCAN_WORK"

// workSize is n of the inputs of n, 2n and 4n bytes: above the longest
// value a detector takes whole (8KiB), so that every size has the same
// share of such values, and small enough that a quadratic scan still
// ends in seconds.
const workSize = 16 << 10

// TestPathologicalInputsStayLinear counts the work of scrubbing each
// fragment repeated to n, 2n and 4n bytes and requires the work per byte
// added from 2n to 4n to be about that from n to 2n: equal for a linear
// scan, twice for a quadratic one. (Differences, not plain ratios, so that
// the work of setting up and a value cut at its longest cancel out.) Work
// is the number of statements of this package executed, from Go's coverage
// counters in a test binary built with -covermode=count, one run per
// input: the same input always gives the same count, so unlike a time
// limit it cannot flake on a busy machine. Only this package's statements
// count: a call into the standard library is one statement, so a scan
// that calls strings.Index from every position would pass; the detectors
// here do their own scanning. BenchmarkPathological has the times.
func TestPathologicalInputsStayLinear(t *testing.T) {
	if os.Getenv(workEnv) != "" {
		t.Skip("running as the child")
	}
	if testing.Short() {
		t.Skip("builds a test binary with coverage counters")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		if peers.CI() {
			t.Fatalf("the go command is needed to count the work: %v", err)
		}
		t.Skipf("the go command is needed to count the work: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "anonymize.test")
	build := exec.Command(goTool, "test", "-c", "-cover", "-covermode=count", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the instrumented test binary: %v\n%s", err, out)
	}
	runs := 0
	work := func(frag, size int) int64 {
		t.Helper()
		runs++
		counters := filepath.Join(dir, strconv.Itoa(runs))
		if err := os.Mkdir(counters, 0o755); err != nil {
			t.Fatal(err)
		}
		child := exec.Command(bin, "-test.run=^TestPathologicalWorkChild$", "-test.v", "-test.count=1", "-test.gocoverdir="+counters)
		child.Env = append(os.Environ(), fmt.Sprintf("%s=%d %d", workEnv, frag, size))
		if out, err := child.CombinedOutput(); err != nil || !strings.Contains(string(out), "--- PASS: TestPathologicalWorkChild") {
			t.Fatalf("child: %v\n%s", err, out)
		}
		prof := counters + ".txt"
		if out, err := exec.Command(goTool, "tool", "covdata", "textfmt", "-i="+counters, "-o="+prof).CombinedOutput(); err != nil {
			t.Fatalf("go tool covdata: %v\n%s", err, out)
		}
		n, err := statementsRun(prof)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i, frag := range pathologicalFragments {
		w1, w2, w4 := work(i, workSize), work(i, 2*workSize), work(i, 4*workSize)
		// Work per byte added from 2n to 4n, against that from n to 2n.
		growth := float64(w4-w2) / 2 / float64(w2-w1)
		if growth > 1.25 || w2 <= w1 {
			t.Errorf("%q: %d, %d and %d statements for %d, %d and %d KiB: each byte beyond %d KiB costs ×%.2f of one beyond %d KiB, want about ×1 (a scan that is not linear)",
				frag, w1, w2, w4, workSize>>10, 2*workSize>>10, 4*workSize>>10, 2*workSize>>10, growth, workSize>>10)
		} else {
			t.Logf("%-38q %8d %8d %8d statements for %d, %d, %d KiB: per byte added ×%.3f", frag, w1, w2, w4, workSize>>10, 2*workSize>>10, 4*workSize>>10, growth)
		}
	}
}

// TestPathologicalWorkChild runs in the instrumented binary and scrubs
// what workEnv says once; its counters go to -test.gocoverdir at the end.
func TestPathologicalWorkChild(t *testing.T) {
	var frag, size int
	if _, err := fmt.Sscan(os.Getenv(workEnv), &frag, &size); err != nil {
		t.Skip("helper of TestPathologicalInputsStayLinear")
	}
	a := newTestAnonymizer(t)
	a.ScrubString(strings.Repeat(pathologicalFragments[frag], size/len(pathologicalFragments[frag])))
}

// statementsRun sums statements × executions over a text coverage profile
// ("file:line.col,line.col statements count" per block).
func statementsRun(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var total int64
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || strings.HasPrefix(f[0], "mode:") {
			continue
		}
		stmts, err1 := strconv.ParseInt(f[1], 10, 64)
		count, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("%s: odd line %q", path, sc.Text())
		}
		total += stmts * count
	}
	return total, sc.Err()
}
