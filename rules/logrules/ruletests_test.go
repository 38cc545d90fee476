package logrules

import (
	"bytes"
	"strings"
	"testing"
)

func TestRunTests(t *testing.T) {
	var out bytes.Buffer
	failed, err := RunTests([]string{"testdata/log.rules.test.yml"}, &out)
	if err != nil || failed {
		t.Fatalf("failed=%v err=%v\n%s", failed, err, out.String())
	}
	out.Reset()
	failed, err = RunTests([]string{"testdata/failing.test.yml"}, &out)
	if err != nil || !failed {
		t.Fatalf("failed=%v err=%v\n%s", failed, err, out.String())
	}
	for _, want := range []string{"FAILED", "RootLoginFailed", "got 1 want 5"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q in\n%s", want, out.String())
		}
	}
}
