package shipped_test

import (
	"bytes"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/leitstand/leitstand/rules"
	"github.com/leitstand/leitstand/rules/shipped"
)

func TestShippedRulesLoad(t *testing.T) {
	files, err := fs.Glob(shipped.FS, "*.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4 {
		t.Fatalf("embedded rule files: %v", files)
	}
	if err := rules.CheckRuleFiles(files); err != nil {
		t.Fatal(err)
	}
}

func TestShippedRuleTests(t *testing.T) {
	tests, err := filepath.Glob("tests/*_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	failed, err := rules.RunRuleTests(tests, &out)
	if err != nil || failed {
		t.Fatalf("failed=%v err=%v\n%s", failed, err, out.String())
	}
}
