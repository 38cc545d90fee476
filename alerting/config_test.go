package alerting

import (
	"os"
	"strings"
	"testing"

	"github.com/leitstand/leitstand/internal/config"
)

func loadConfig(t testing.TB, path string) (Config, error) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	src, err := config.Decode(path, data, &cfg)
	if err != nil {
		return cfg, err
	}
	return cfg, src.Annotate(cfg.Validate())
}

func TestConfigGood(t *testing.T) {
	cfg, err := loadConfig(t, "testdata/roles.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Roles) != 4 || cfg.Roles[1].Receiver.IsZero() || len(cfg.Roles[3].matchers) != 2 {
		t.Fatalf("decoded %+v", cfg.Roles)
	}
	if cfg.Timeout == 0 || cfg.Route.GroupWait == 0 {
		t.Fatal("defaults lost")
	}
}

func TestConfigBad(t *testing.T) {
	_, err := loadConfig(t, "testdata/roles.bad.yml")
	if err == nil {
		t.Fatal("no error")
	}
	want := []string{
		"default_role: \"nobody\" is not a role name",
		"alertmanagers[0]: \"am-0:9093\": want an http",
		"roles[0].name: \"DBA\"",
		"roles[0].matchers[0]:",
		"roles[0].matchers[1]:",
		"roles[0].escalate[0].to: \"ops\" is not a role name",
		"roles[1].receiver: required",
		"roles[1].token_sha256[0]: want 64 hex digits",
	}
	got := err.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in\n%s", w, got)
		}
	}
	if !strings.Contains(got, "roles.bad.yml:") {
		t.Errorf("no file:line in\n%s", got)
	}
}

func TestParseMatcher(t *testing.T) {
	for _, c := range []struct {
		in, v string
		ok    bool
	}{
		{`a="b"`, "b", true}, {`a="b"`, "c", false},
		{`a!="b"`, "c", true}, {`a=~"b|c"`, "c", true}, {`a=~"b"`, "bb", false},
		{`a!~"x.*"`, "xy", false}, {`a!~"x.*"`, "", true}, {`a=b`, "b", true},
	} {
		m, err := ParseMatcher(c.in)
		if err != nil {
			t.Fatal(c.in, err)
		}
		if m.Matches(c.v) != c.ok {
			t.Errorf("%s on %q: want %v", c.in, c.v, c.ok)
		}
		if m2, err := ParseMatcher(m.String()); err != nil || m2.String() != m.String() {
			t.Errorf("round trip %s: %v %v", m, m2, err)
		}
	}
	for _, bad := range []string{"", "a", `1a="b"`, `a=~"("`, `a="b`, `a=b c`} {
		if _, err := ParseMatcher(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestPossibleOwners(t *testing.T) {
	cfg, err := loadConfig(t, "testdata/roles.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		static map[string]string
		want   string
	}{
		{map[string]string{"service": "postgres", "namespace": "db"}, "dba,tenant-admin/acme"},
		{map[string]string{"namespace": "payments"}, "dba,dev/payments,tenant-admin/acme"},
		{map[string]string{"namespace": "x", "service": "y", "tenant": "z"}, ""},
		{map[string]string{"tenant": "acme", "severity": "info", "service": "web", "namespace": "web"}, ""},
	} {
		if got := strings.Join(cfg.PossibleOwners(c.static), ","); got != c.want {
			t.Errorf("%v: %q, want %q", c.static, got, c.want)
		}
	}
}
