package rules

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzRuleFile feeds arbitrary rule files through the loader: it must
// never panic, every error must name the file, and removing log rules must
// leave files without them unchanged and be idempotent.
func FuzzRuleFile(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.rules.yml")
	more, _ := filepath.Glob("shipped/*.rules.yml")
	for _, s := range append(seeds, more...) {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("groups: [{name: g, rules: [{log: x}, {alert: A, expr: up}]}]"))
	f.Add([]byte("groups:\n- name: g\n  rules:\n  - log: |\n      x\n    by: [a]\n  - record: r\n    expr: up\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, content []byte) {
		path := filepath.Join(dir, "fuzz.rules.yml")
		if err := os.WriteFile(path, content, 0o644); err != nil {
			t.Fatal(err)
		}
		stripped, err := stripLogRules(content)
		if err == nil && !bytes.Contains(content, []byte(LogRuleKey)) && !bytes.Equal(stripped, content) {
			t.Fatal("a file without log rules changed")
		}
		if err == nil {
			again, err := stripLogRules(stripped)
			if err == nil && mapValueCount(again) != mapValueCount(stripped) {
				t.Fatal("stripping log rules twice removed more")
			}
		}
		_, errs := parseRuleFile(path, newParser())
		for _, e := range errs {
			if !bytes.HasPrefix([]byte(e.Error()), []byte(path)) {
				t.Fatalf("error without the file name: %v", e)
			}
		}
	})
}

// mapValueCount counts the rules a file has after stripping.
func mapValueCount(content []byte) int {
	idx := indexRules(content)
	if idx == nil {
		return -1
	}
	n := 0
	for _, r := range idx.rules {
		n += len(r)
	}
	return n
}
