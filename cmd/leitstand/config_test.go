package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leitstand/leitstand/internal/config"
)

// expectedErrors lists, for every file in testdata/bad, every problem that
// `leitstand check` must report, in order, as file:line: key path: message.
var expectedErrors = map[string][]string{
	"unknown_key.yaml": {
		`:3: http.listne: unknown key "listne" (did you mean "listen"?)`,
		`:6: sinks.file.retention_byte: unknown key "retention_byte" (did you mean "retention_bytes"?)`,
	},
	"wrong_types.yaml": {
		`:2: pipeline.queue_size: want a whole number, got "lots"`,
		`:3: pipeline.workers: want a whole number, got a list`,
		`:6: sinks.file.compress: want true or false, got "maybe"`,
		`:7: sinks.file.max_file_bytes: invalid size "12 parsecs"`,
	},
	"durations.yaml": {
		`:1: shutdown_timeout: want a duration such as 30s or 5m, got "10"`,
		`:3: http.read_timeout: want a duration such as 30s or 5m, got "forever"`,
		`:4: http.write_timeout: must be positive, got -5s`,
	},
	"public_without_auth.yaml": {
		`:2: http.listen: "0.0.0.0:8080" is not a loopback address, so ingest.auth must list tokens`,
	},
	"unset_env.yaml": {
		`:4: ingest.auth.tokens[0]: environment variable LEITSTAND_TEST_SURELY_UNSET is not set`,
	},
	"missing_tokens_file.yaml": {
		`:3: ingest.auth.tokens_file: open testdata/does-not-exist.txt: no such file or directory`,
	},
	"short_token.yaml": {
		`:3: ingest.auth.tokens[0]: is shorter than 16 characters`,
	},
	"policy.yaml": {
		`:3: ingest.queue.when_full: must be "block" or "drop_newest", got "drop_oldest"`,
		`:4: ingest.queue.block_timeout: must not be negative, got -1s`,
	},
	"no_sink.yaml": {
		`:1: sinks: no sink is enabled`,
	},
	"file_limits.yaml": {
		`:3: sinks.file.max_file_bytes: must be at least 4KiB, got 100`,
		`:4: sinks.file.max_file_age: must be at least 1s, got 10ms`,
		`:5: sinks.file.retention_files: must be at least 1, got 0`,
		`:6: sinks.file.fsync: must be "always", "interval" or "never", got "sometimes"`,
	},
	"sizes.yaml": {
		`:2: pipeline.queue_size: must be at least 1, got 0`,
		`:3: pipeline.workers: must be between 1 and 1024, got 5000`,
		`:5: ingest.max_body_bytes: must be between 1KiB and 1GiB, got 2GiB`,
		`:4: ingest.max_inflight_bytes: must be at least max_body_bytes (2GiB), got 256MiB`,
		`:6: ingest.default_dataset: must be lowercase letters`,
	},
	"log_level.yaml": {
		`:2: log.level: must be debug, info, warn or error, got "verbose"`,
	},
	"syntax.yaml": {
		`:3: YAML syntax: mapping values are not allowed in this context`,
	},
	"not_a_mapping.yaml": {
		`:1: http: want a mapping of keys, got "127.0.0.1:8080"`,
		`:3: sinks: want a mapping of keys, got a list`,
	},
	"listen.yaml": {
		`:2: http.listen: want host:port, got "8080"`,
	},
	"anonymize.yaml": {
		`:2: anonymize.hash_key_file: the key in testdata/short.key is shorter than 16 bytes`,
		`:3: anonymize.ipv4_prefix: 33 is out of range (want 0 to 32)`,
		`:6: anonymize.detectors.card.method: truncate only applies to the ip detector`,
	},
	"rules.yaml": {
		`:2: rules.datasource: want "embedded" or "remote", got "somewhere"`,
		// Rule files report their own file, line and column.
		`!testdata/broken.rules.yml:5:15: group "node", rule 1, "HighLoad": could not parse expression`,
	},
	"agent.yaml": {
		`:12: sinks.forward.urls[0]: must start with http:// or https://, got "ftp://aggregator/v1/ingest"`,
		`:10: sinks.elasticsearch.enabled: an agent forwards to the aggregators`,
		`:5: rules.rule_files: an agent evaluates no rules`,
		`:6: alerting: an agent sends no alerts`,
		`:3: pipeline.workers: must be at least podlog.max_inflight_batches (4)`,
		`!testdata/broken.rules.yml:5:15: group "node", rule 1, "HighLoad": could not parse expression`,
	},
	"role.yaml": {
		`:1: role: must be "aggregator" or "agent", got "agnet"`,
	},
	"forward_on_aggregator.yaml": {
		`:2: sinks.forward: is the node agent's sink; set role: agent to use it`,
	},
	"duplicate_key.yaml": {
		`:3: log: key "log" appears twice (first on line 1)`,
	},
}

func TestCheckReportsEveryErrorOfBadConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 || len(files) != len(expectedErrors) {
		t.Fatalf("%d bad configs in testdata/bad, %d in the expected-errors table: keep them in step", len(files), len(expectedErrors))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, ok := expectedErrors[filepath.Base(f)]
			if !ok {
				t.Fatalf("no expected errors for %s", f)
			}
			var stdout, stderr bytes.Buffer
			if code := Main([]string{"check", "-config", f}, &stdout, &stderr); code != 1 {
				t.Fatalf("check exited %d, want 1; stdout %q", code, stdout.String())
			}
			var got []string
			for _, line := range strings.Split(stderr.String(), "\n") {
				if strings.HasPrefix(line, "  ") {
					got = append(got, strings.TrimSpace(line))
				}
			}
			if len(got) != len(want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), stderr.String())
			}
			for i := range want {
				prefix := f + want[i]
				if other, ok := strings.CutPrefix(want[i], "!"); ok {
					prefix = other // a problem in another file than the config
				}
				if !strings.HasPrefix(got[i], prefix) {
					t.Errorf("problem %d:\n got %s\nwant %s…", i, got[i], prefix)
				}
			}
		})
	}
}

func TestCheckAcceptsGoodConfigs(t *testing.T) {
	t.Setenv("LEITSTAND_TEST_TOKEN", "env-token-0123456789abcdef")
	files, _ := filepath.Glob("testdata/good/*.yaml")
	if len(files) == 0 {
		t.Fatal("no good configs")
	}
	for _, f := range files {
		var stdout, stderr bytes.Buffer
		if code := Main([]string{"check", "-config", f}, &stdout, &stderr); code != 0 {
			t.Errorf("%s: check exited %d:\n%s", f, code, stderr.String())
			continue
		}
		if lines := strings.Count(stdout.String(), "\n"); lines != 1 || !strings.HasPrefix(stdout.String(), "config OK") {
			t.Errorf("%s: want a one-line summary, got %q", f, stdout.String())
		}
	}
}

func TestProductionConfigDecodesEveryValue(t *testing.T) {
	t.Setenv("LEITSTAND_TEST_TOKEN", "env-token-0123456789abcdef")
	cfg, err := LoadConfig("testdata/good/production.yaml", "/data")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Pipeline.QueueSize != 200000 || cfg.Pipeline.Workers != 4 || cfg.Ingest.MaxBodyBytes != 32<<20 ||
		cfg.Sinks.File.RetentionBytes != 50<<30 || cfg.Sinks.File.Fsync != "always" || cfg.HTTP.MaxHeaderBytes != 32<<10 {
		t.Fatalf("values not decoded: %+v", cfg)
	}
	if len(cfg.Ingest.Auth.Tokens) != 1 || cfg.Ingest.Auth.Tokens[0].Reveal() != "env-token-0123456789abcdef" {
		t.Fatalf("${ENV} not expanded into the token list")
	}
	// Untouched keys keep their defaults.
	if def := DefaultConfig("/data"); cfg.HTTP.IdleTimeout != def.HTTP.IdleTimeout {
		t.Fatalf("idle_timeout lost its default: %s", cfg.HTTP.IdleTimeout)
	}
}

func TestRunRefusesABadConfig(t *testing.T) {
	var stderr bytes.Buffer
	if code := Main([]string{"run", "-config", "testdata/bad/unknown_key.yaml", "-data", t.TempDir()}, os.Stdout, &stderr); code != 1 {
		t.Fatalf("run exited %d with a bad config, want 1", code)
	}
	if !strings.Contains(stderr.String(), "testdata/bad/unknown_key.yaml:3: http.listne") {
		t.Fatalf("run did not report the problem the way check does:\n%s", stderr.String())
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	t.Setenv("LEITSTAND_TEST_TOKEN", "env-token-0123456789abcdef")
	var stdout, stderr bytes.Buffer
	Main([]string{"check", "-config", "testdata/good/production.yaml"}, &stdout, &stderr)
	cfg, _ := LoadConfig("testdata/good/production.yaml", "/data")
	for _, out := range []string{stdout.String(), stderr.String(), config.Secret("x").String()} {
		if strings.Contains(out, "env-token") || strings.Contains(out, "file-token") {
			t.Fatalf("a secret was printed: %s", out)
		}
	}
	if s := strings.Join([]string{cfg.Ingest.Auth.Tokens[0].String()}, ""); s != "<redacted>" {
		t.Fatalf("Secret.String() = %q", s)
	}
}

// TestDashboardsCommandWritesTheCommittedJSON: what `leitstand dashboards`
// writes is what deploy/grafana/dashboards holds.
func TestDashboardsCommandWritesTheCommittedJSON(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"dashboards", "-out", dir}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) < 5 {
		t.Fatalf("%d dashboards written", len(files))
	}
	for _, f := range files {
		got, _ := os.ReadFile(f)
		want, err := os.ReadFile(filepath.Join("../../deploy/grafana/dashboards", filepath.Base(f)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from the committed copy (%v)", filepath.Base(f), err)
		}
	}
}

// TestAgentRoleDefaults checks role: agent reads the file over the agent's
// defaults, and that keys the file sets still win.
func TestAgentRoleDefaults(t *testing.T) {
	cfg, err := LoadConfig("testdata/good/agent.yaml", "/data")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.agent() || !cfg.Podlog.Enabled || cfg.Sinks.File.Enabled || cfg.Ingest.Enabled || cfg.Syslog.Enabled || cfg.Sentry.Enabled {
		t.Errorf("agent defaults not applied: role %q, podlog %v, file %v, ingest %v, syslog %v, sentry %v",
			cfg.Role, cfg.Podlog.Enabled, cfg.Sinks.File.Enabled, cfg.Ingest.Enabled, cfg.Syslog.Enabled, cfg.Sentry.Enabled)
	}
	if cfg.Pipeline.QueueSize != 4096 || cfg.Pipeline.Workers < cfg.Podlog.MaxInflightBatches {
		t.Errorf("agent pipeline %+v, want queue 4096 and workers >= %d", cfg.Pipeline, cfg.Podlog.MaxInflightBatches)
	}
	if cfg.Podlog.StateDir != "/data/podlog" || len(cfg.Podlog.Exclude) != 1 || len(cfg.Podlog.Multiline) != 1 {
		t.Errorf("file keys lost: state_dir %q, exclude %v, multiline %v", cfg.Podlog.StateDir, cfg.Podlog.Exclude, cfg.Podlog.Multiline)
	}
	if len(cfg.Sinks.Forward.URLs) != 2 {
		t.Errorf("forward urls %v", cfg.Sinks.Forward.URLs)
	}
	// The same keys with role: aggregator keep the aggregator's defaults.
	agg, err := LoadConfig("testdata/good/minimal.yaml", "/data")
	if err != nil {
		t.Fatal(err)
	}
	if agg.Role != RoleAggregator || agg.Podlog.Enabled || !agg.Sinks.File.Enabled || agg.Pipeline.QueueSize == 4096 {
		t.Errorf("aggregator defaults changed: %+v", agg.Pipeline)
	}
}

// TestCheckWarnsWhenNobodyMayQuery checks `leitstand check` warns, and
// still succeeds, when the listener leaves loopback and no role could use
// the Prometheus API.
func TestCheckWarnsWhenNobodyMayQuery(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	body := "http:\n  listen: 0.0.0.0:8080\ningest:\n  auth:\n    tokens: [ingest-token-0123456789]\n"
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"check", "-config", cfg, "-data", dir}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "no role with scope all: true has a token") {
		t.Errorf("no warning: %q", stderr.String())
	}
	// With such a role the warning goes away.
	tok := filepath.Join(dir, "ops")
	os.WriteFile(tok, []byte("ops-token-0123456789"), 0o600)
	body += "alerting:\n  default_role: ops\n  roles:\n    - name: ops\n      receiver: {name: ops}\n      scope: {all: true}\n      token_files: [" + tok + "]\n"
	os.WriteFile(cfg, []byte(body), 0o600)
	stderr.Reset()
	if code := Main([]string{"check", "-config", cfg, "-data", dir}, &stdout, &stderr); code != 0 || strings.Contains(stderr.String(), "scope all") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}
