package ruletest_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leitstand/leitstand/internal/peers"
	"github.com/leitstand/leitstand/rules"
)

// testFiles are the unit test files whose verdicts must agree with
// promtool's: the corpus here (pass_* pass, fail_* fail) and the tests of
// the shipped rules (all pass). differs_* files document a known
// difference between Prometheus 2.42 and leitstand's Prometheus 3 engine:
// they pass with promtool 2.42 and fail with leitstand.
func testFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pattern := range []string{"testdata/*_test.yml", "../shipped/tests/*_test.yml"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 10 {
		t.Fatalf("only %d test files", len(files))
	}
	return files
}

// TestVerdicts checks leitstand's own verdict of every file against its
// name: pass_* and the shipped tests pass, fail_* fail.
func TestVerdicts(t *testing.T) {
	for _, f := range testFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var out bytes.Buffer
			failed, err := rules.RunRuleTests([]string{f}, &out)
			if err != nil {
				t.Fatal(err)
			}
			base := filepath.Base(f)
			want := strings.HasPrefix(base, "fail_") || strings.HasPrefix(base, "differs_")
			if failed != want {
				t.Fatalf("failed=%v, want %v:\n%s", failed, want, out.String())
			}
			if !strings.Contains(out.String(), "Unit Testing:  "+f) {
				t.Fatalf("report without the file name:\n%s", out.String())
			}
		})
	}
}

// TestVerdictsMatchPromtool runs every file through Debian's promtool
// (Prometheus 2.42) too and requires the same verdict.
func TestVerdictsMatchPromtool(t *testing.T) {
	peers.Slow(t)
	peers.Require(t, peers.PeerPrometheus)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	promtool, err := peers.Bin(ctx, "promtool")
	peers.Check(t, err)
	for _, f := range testFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cmd := exec.CommandContext(ctx, promtool, "test", "rules", f)
			promOut, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				t.Fatalf("promtool: %v", err)
			}
			promFailed := err != nil
			var out bytes.Buffer
			failed, err := rules.RunRuleTests([]string{f}, &out)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(filepath.Base(f), "differs_") {
				if promFailed || !failed {
					t.Fatalf("known difference not seen: leitstand failed=%v, promtool failed=%v\npromtool:\n%s\nleitstand:\n%s", failed, promFailed, promOut, out.String())
				}
				return
			}
			if failed != promFailed {
				t.Fatalf("leitstand failed=%v, promtool failed=%v\npromtool:\n%s\nleitstand:\n%s", failed, promFailed, promOut, out.String())
			}
		})
	}
}

func TestNoFiles(t *testing.T) {
	if _, err := rules.RunRuleTests(nil, &bytes.Buffer{}); err == nil {
		t.Fatal("no error without files")
	}
}
