package alerting

import (
	"strings"
	"testing"

	"github.com/leitstand/leitstand/rules"
	"github.com/leitstand/leitstand/rules/logrules"
)

func TestUnownedRules(t *testing.T) {
	const file = "testdata/ownership/rules.yml"
	// The fixture is a rule file leitstand loads.
	if err := rules.CheckRuleFiles([]string{file}); err != nil {
		t.Fatal(err)
	}
	if err := logrules.CheckFiles([]string{file}); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(t, "testdata/api.yml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := cfg.UnownedRules([]string{"testdata/ownership/*.yml"})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, u := range got {
		lines = append(lines, u.String())
	}
	want := []string{
		`testdata/ownership/rules.yml:13: alert DiskFull: no role owns it (it goes to the default role "platform-ops")`,
		`testdata/ownership/rules.yml:42: alert JobFailed: no role owns it (it goes to the default role "platform-ops")`,
		`testdata/ownership/rules.yml:53: log alert RootLoginFailed: no role owns it (it goes to the default role "platform-ops")`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}

	// A role owning everything of namespace monitoring leaves JobFailed
	// and the log alert.
	cfg.Roles = append(cfg.Roles, Role{Name: "monitoring", Matchers: []string{`namespace="monitoring"`}, Receiver: cfg.Roles[0].Receiver})
	got, err = cfg.UnownedRules([]string{file})
	if err != nil || len(got) != 2 || got[0].Name != "JobFailed" || got[1].Name != "RootLoginFailed" {
		t.Errorf("with a monitoring role: %v %v", got, err)
	}

	// No registry: nothing to warn about.
	empty := DefaultConfig()
	if got, err := empty.UnownedRules([]string{file}); err != nil || got != nil {
		t.Errorf("without roles: %v %v", got, err)
	}
	// A missing file is an error, not a warning.
	if _, err := cfg.UnownedRules([]string{"testdata/ownership/missing.yml"}); err == nil {
		t.Error("no error for a missing file")
	}
}
