package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRender rebuilds the tables of the committed full run: the results
// file still decodes strictly and every path has its table.
func TestRender(t *testing.T) {
	md := filepath.Join(t.TempDir(), "RESULTS.md")
	var out, errOut bytes.Buffer
	if code := run([]string{"full", "-render", "../../results.json", "-markdown", md}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	b, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, out.Bytes()) {
		t.Error("printed and written tables differ")
	}
	for _, want := range []string{"## syslog-tcp", "## syslog-udp@50000", "## ndjson", "## sentry", "| rsyslog |", "| syslog-ng |"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("no %q in the tables", want)
		}
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{"fast"}, {"quick", "-udp-rates", "x"}, {"quick", "extra"}, {"quick", "-nope"}} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errOut.String())
		}
	}
}
