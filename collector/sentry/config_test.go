package sentry

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/leitstand/leitstand/internal/config"
)

func loadConfig(t *testing.T, name string) (Config, error) {
	t.Helper()
	cfg := DefaultConfig()
	data, err := os.ReadFile("testdata/config/" + name)
	if err != nil {
		t.Fatal(err)
	}
	src, err := config.Decode(name, data, &cfg)
	if err != nil {
		return cfg, err
	}
	return cfg, src.Annotate(cfg.Validate())
}

func TestConfigGood(t *testing.T) {
	cfg, err := loadConfig(t, "good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Projects) != 2 || cfg.Projects[0].Keys[0].RateLimits["error"].Burst != 200 || cfg.RetryAfter != 2*time.Second ||
		cfg.Forward.Workers != 4 || cfg.Projects[1].ForwardDSN.Reveal() == "" {
		t.Fatalf("%+v", cfg)
	}
	if cfg.UsesDevKey() || cfg.DevDSN("127.0.0.1:8080") != "" {
		t.Error("a config of its own has no dev key")
	}
	d := DefaultConfig()
	if err := d.Validate(); err != nil {
		t.Fatal("defaults:", err)
	}
	if !d.UsesDevKey() || d.DevDSN("127.0.0.1:8080") != "" {
		t.Error("the dev DSN is printed only when the wiring says loopback")
	}
	d.Loopback = true
	if got := d.DevDSN("127.0.0.1:8080"); got != "http://dev@127.0.0.1:8080/1" {
		t.Errorf("DevDSN %q", got)
	}
	if got := d.DevDSN("[::1]:9000"); got != "http://dev@[::1]:9000/1" {
		t.Errorf("DevDSN %q", got)
	}
	// Secrets never print.
	if s := strings.ToLower(strings.Join([]string{cfg.Projects[0].Keys[0].PublicKey.String(), cfg.Forward.DSN.String()}, " ")); strings.Contains(s, "0123") || strings.Contains(s, "upstreamkey") {
		t.Errorf("a secret printed: %s", s)
	}
	// The receiver and the forwarder take it.
	if _, err := New(cfg, nil, testMetrics(), nil, testLogger()); err != nil {
		t.Fatal(err)
	}
	if _, err := NewForwarder(cfg, nil, nil, testLogger()); err != nil {
		t.Fatal(err)
	}
}

func TestConfigBad(t *testing.T) {
	for file, want := range map[string][]string{
		"bad_keys.yaml": {
			"bad_keys.yaml:5: projects[0].keys[1].public_key: the same key is already used at projects[0].keys[0]",
			"bad_keys.yaml:6: projects[0].keys[2].public_key: must be 1 to 128 letters, digits",
			"bad_keys.yaml:7: projects[0].keys[3]: public_key_file: open missing.txt",
			"bad_keys.yaml:8: projects[0].keys[4]: public_key or public_key_file is required",
			"bad_keys.yaml:9: projects[0].keys[5]: set public_key or public_key_file, not both",
		},
		"bad_projects.yaml": {
			"bad_projects.yaml:2: projects[0].id: must be a positive number",
			"bad_projects.yaml:5: projects[1].keys: a project needs at least one key",
			"bad_projects.yaml:6: projects[2].id: project 5 is already defined at projects[1]",
			`bad_projects.yaml:8: projects[2].allowed_origins[0]: "app.example.org" is not an origin`,
			`bad_projects.yaml:8: projects[2].allowed_origins[1]: "https://x.example.org/path" is not an origin`,
			"bad_projects.yaml:9: projects[2].tenant: must be at most 128 characters on one line",
		},
		"bad_limits.yaml": {
			"bad_limits.yaml:1: max_body_bytes: must be between 1KiB and 1GiB, got 100",
			"bad_limits.yaml:3: max_event_bytes: must be between 1KiB and max_decompressed_bytes (10KiB), got 20KiB",
			"bad_limits.yaml:4: max_items: must be between 1 and 100000, got 0",
			"bad_limits.yaml:5: max_inflight_bytes: must be at least max_decompressed_bytes (10KiB), got 1KiB",
			"bad_limits.yaml:6: retry_after: must be between 1s and 1h, got 0s",
			`bad_limits.yaml:7: queue.when_full: must be "block" or "drop_newest", got "wait"`,
			`bad_limits.yaml:13: projects[0].keys[0].rate_limits.errors: unknown category "errors" (want one of error, transaction, span, log_item, monitor, attachment, session, profile, replay, feedback)`,
			"bad_limits.yaml:14: projects[0].keys[0].rate_limits.error.per_second: must be above 0 (and at most 1e9), got 0",
			"bad_limits.yaml:14: projects[0].keys[0].rate_limits.error.burst: must be between 0 and 1e9, got -1",
		},
		"bad_forward.yaml": {
			"bad_forward.yaml:4: projects[0].forward_dsn: want an http or https DSN",
			"bad_forward.yaml:7: forward.dsn: the DSN has no public key",
			"bad_forward.yaml:8: forward.queue_envelopes: must be between 1 and 1000000, got 0",
			"bad_forward.yaml:9: forward.workers: must be between 1 and 64, got 0",
			"bad_forward.yaml:10: forward.timeout: must be positive, got 0s",
			"bad_forward.yaml:11: forward.max_retries: must be between 0 and 100, got -1",
			"bad_forward.yaml:12: forward.retry_backoff: must be positive, got 0s",
		},
		"bad_unknown.yaml": {
			`bad_unknown.yaml:1: projcts: unknown key "projcts" (did you mean "projects"?)`,
			`bad_unknown.yaml:3: forward.enable: unknown key "enable" (did you mean "enabled"?)`,
		},
	} {
		t.Run(file, func(t *testing.T) {
			_, err := loadConfig(t, file)
			var got []string
			for _, e := range config.Flatten(err) {
				got = append(got, e.Error())
			}
			if len(got) != len(want) {
				t.Fatalf("%d errors, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
			}
			for _, w := range want {
				found := false
				for _, g := range got {
					if strings.HasPrefix(g, w) {
						found = true
					}
				}
				if !found {
					t.Errorf("missing %q in:\n%s", w, strings.Join(got, "\n"))
				}
			}
		})
	}
}

func TestConfigDisabled(t *testing.T) {
	c := DefaultConfig()
	c.Enabled = false
	c.Projects = nil
	c.MaxItems = -1
	if err := c.Validate(); err != nil {
		t.Fatalf("a disabled receiver is not checked: %v", err)
	}
}
