package logrules

import (
	"strings"
	"testing"
)

func TestParseFile(t *testing.T) {
	rs, err := ParseFile("testdata/log.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 {
		t.Fatalf("got %d rules", len(rs))
	}
	want := []struct {
		kind Kind
		name string
		line int
	}{{KindRecord, "log:failed_logins:count", 4}, {KindAlert, "RootLoginFailed", 10}, {KindNewValue, "NewErrorKind", 19}}
	for i, w := range want {
		if rs[i].Kind != w.kind || rs[i].Name != w.name || rs[i].Line != w.line {
			t.Errorf("rule %d: got %s %s line %d, want %+v", i, rs[i].Kind, rs[i].Name, rs[i].Line, w)
		}
	}
}

func TestCheckFilesBad(t *testing.T) {
	err := CheckFiles([]string{"testdata/bad.rules.yml"})
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		"testdata/bad.rules.yml:4:", "missing }",
		"testdata/bad.rules.yml:6:", "quoted string",
		"testdata/bad.rules.yml:8:", "not both",
		"testdata/bad.rules.yml:13:", `unknown key "throttel"`,
		"testdata/bad.rules.yml:14:",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
}

func TestLabelName(t *testing.T) {
	for in, want := range map[string]string{"host.name": "host_name", "a": "a", "@timestamp": "_timestamp", "9x": "_x"} {
		if got := LabelName(in); got != want {
			t.Errorf("%s: got %s want %s", in, got, want)
		}
	}
}
