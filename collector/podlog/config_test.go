package podlog

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leitstand/leitstand/internal/config"
)

func loadConfig(t *testing.T, name string) (Config, error) {
	t.Helper()
	cfg := DefaultConfig()
	src, err := config.LoadFile(filepath.Join("testdata", "config", name), &cfg)
	if err != nil {
		return cfg, err
	}
	return cfg, src.Annotate(cfg.Validate())
}

func TestDefaultConfigIsValid(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("disabled default: %v", err)
	}
	cfg.Enabled = true
	if err := cfg.Validate(); err != nil {
		t.Fatalf("enabled default: %v", err)
	}
}

func TestGoodConfig(t *testing.T) {
	cfg, err := loadConfig(t, "good_full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StartAt != StartEnd || cfg.MaxLineBytes != 128<<10 || len(cfg.Multiline) != 2 {
		t.Errorf("decoded %+v", cfg)
	}
	// The second rule has its defaults.
	if r := cfg.Multiline[1]; r.Match != "*" || r.MaxLines != 500 || r.MaxWait != 2*time.Second {
		t.Errorf("rule defaults: %+v", r)
	}
}

func TestBadConfigs(t *testing.T) {
	cases := map[string][]string{
		"bad_paths.yaml":       {"bad_paths.yaml:2: roots[0]: must be an absolute path", "file_glob: syntax error"},
		"bad_globs.yaml":       {"include[0]", "has more than three parts", "exclude[0]", "must not be empty", "exclude[1]"},
		"bad_sizes.yaml":       {"max_line_bytes", "read_buffer_bytes", "max_batch_events", "max_batch_bytes", "max_inflight_batches"},
		"bad_durations.yaml":   {"rescan_interval", "poll_interval", "rotate_wait", "retry_max_backoff", "forget_after", "start_at"},
		"bad_multiline.yaml":   {"multiline[0].start_pattern", "multiline[0].max_lines", "multiline[1].start_pattern: is required", "multiline[1].max_bytes", "multiline[1].max_wait"},
		"bad_kubernetes.yaml":  {"kubernetes.token_file", "kubernetes.ca_file", "kubernetes.refresh_interval"},
		"bad_unknown_key.yaml": {`bad_unknown_key.yaml:2: rots: unknown key "rots"`},
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := loadConfig(t, name)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
