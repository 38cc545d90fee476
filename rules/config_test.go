package rules

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leitstand/leitstand/internal/config"
)

// loadConfig decodes a config fixture over the defaults and validates it,
// with file and line in every error.
func loadConfig(path string) (Config, error) {
	cfg := DefaultConfig("/var/lib/leitstand")
	src, err := config.LoadFile(path, &cfg)
	if err != nil {
		return cfg, err
	}
	return cfg, src.Annotate(cfg.Validate())
}

func TestConfigFixtures(t *testing.T) {
	good, _ := filepath.Glob("testdata/config/good_*.yaml")
	for _, f := range good {
		if _, err := loadConfig(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	want := map[string][]string{
		"bad_remote_without_url.yaml": {
			"bad_remote_without_url.yaml:2: remote.url: required with datasource remote",
			"bad_remote_without_url.yaml:3: remote.timeout: must be greater than 0",
		},
		"bad_scrape.yaml": {
			"bad_scrape.yaml:5: scrape.jobs[0].targets[0]: want host:port",
			"bad_scrape.yaml:6: scrape.jobs[0].timeout: scrape timeout 30s is longer than the interval 10s",
			`bad_scrape.yaml:7: scrape.jobs[1].job_name: "node" is already the name of scrape.jobs[0]`,
			"bad_scrape.yaml:7: scrape.jobs[1]: needs targets or file_sd_files",
			`bad_scrape.yaml:8: scrape.jobs[1].scheme: want http or https, got "ftp"`,
		},
		"bad_unknown_key.yaml": {`bad_unknown_key.yaml:2: tsdb.retension: unknown key "retension"`},
		"bad_values.yaml": {
			"bad_values.yaml:4: tsdb.retention: want a duration such as 15d or 12h",
		},
	}
	bad, _ := filepath.Glob("testdata/config/bad_*.yaml")
	if len(bad) != len(want) {
		t.Fatalf("fixtures %v, expectations for %d", bad, len(want))
	}
	for _, f := range bad {
		_, err := loadConfig(f)
		if err == nil {
			t.Errorf("%s: no error", f)
			continue
		}
		for _, w := range want[filepath.Base(f)] {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: want %q in\n%v", f, w, err)
			}
		}
	}
	// bad_values.yaml once the retention is fixed: the other keys.
	b, _ := os.ReadFile("testdata/config/bad_values.yaml")
	fixed := filepath.Join(t.TempDir(), "values.yaml")
	_ = os.WriteFile(fixed, []byte(strings.Replace(string(b), "forever", "15d", 1)), 0o644)
	_, err := loadConfig(fixed)
	for _, w := range []string{
		`values.yaml:1: datasource: want "embedded" or "remote", got "nowhere"`,
		"values.yaml:2: evaluation_interval: must be greater than 0",
		`values.yaml:5: external_url: want an absolute URL`,
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("want %q in\n%v", w, err)
		}
	}
}
