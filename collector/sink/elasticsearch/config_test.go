package elasticsearch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leitstand/leitstand/internal/config"
)

// load decodes a config file over the defaults and validates it, as
// cmd/leitstand does for the sink's section.
func load(t *testing.T, path string) (Config, []string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	src, err := config.Decode(path, data, &cfg)
	if err == nil {
		err = src.Annotate(cfg.Validate())
	}
	var msgs []string
	for _, e := range config.Flatten(err) {
		msgs = append(msgs, e.Error())
	}
	return cfg, msgs
}

// expectedErrors lists, per file in testdata/bad, every problem Validate
// must report, in order, as file:line: key: message (prefix).
var expectedErrors = map[string][]string{
	"urls.yaml": {
		`:3: urls[0]: must start with http:// or https://, got "ftp://es.example.org"`,
		`:4: urls[1]: must not hold credentials; use username with password_file, or api_key_file`,
		`:5: urls[2]: has no host: "http:"`,
	},
	"credentials.yaml": {
		`:2: username: needs password or password_file`,
		`:3: api_key_file: set either an API key or username and password, not both`,
		`:3: api_key_file: open testdata/does-not-exist.txt: no such file or directory`,
		`:4: ca_file: testdata/not-a-cert.pem holds no PEM certificate`,
	},
	"names.yaml": {
		`:2: mode: must be "data_stream" or "index", got "stream"`,
		`:3: namespace: may hold lowercase letters, digits, '_' and '.' only, got "Prod-EU"`,
		`:4: index_prefix: must not start with '_', '-', '+' or '.', got "_events"`,
		`:5: dead_letter_index: must not be or start with "logs-": those names belong to the logs data streams, got "logs-dlq"`,
	},
	"overlap.yaml": {
		`:4: dead_letter_index: must not start with index_prefix "leitstand" or the other way round, got "leitstand-deadletter"`,
	},
	"limits.yaml": {
		`:10: template_priority: must be between 0 and 1073741824, got -1`,
		`:2: workers: must be between 1 and 64, got 0`,
		`:3: bulk_max_events: must be between 1 and 100000, got 0`,
		`:4: bulk_max_bytes: must be between 64KiB and 100MiB (Elasticsearch's http.max_content_length), got 1GiB`,
		`:5: request_timeout: must be at least 1s, got 10ms`,
		`:6: retry_initial: must be at least 1ms, got 0s`,
		`:8: retry_max_attempts: must be between 1 and 100, got 0`,
		`:9: dead_letter_after: must not be negative (0 never dead-letters server errors), got -1m0s`,
	},
	"unknown_key.yaml": {
		`:2: bulk_max_event: unknown key "bulk_max_event" (did you mean "bulk_max_events"?)`,
	},
}

func TestBadConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) != len(expectedErrors) {
		t.Fatalf("%d files in testdata/bad, %d in expectedErrors: keep them in step", len(files), len(expectedErrors))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want := expectedErrors[filepath.Base(f)]
			_, got := load(t, f)
			if len(got) != len(want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
			}
			for i := range want {
				if !strings.HasPrefix(got[i], f+want[i]) {
					t.Errorf("problem %d:\n got %s\nwant %s%s", i, got[i], f, want[i])
				}
			}
		})
	}
}

func TestGoodConfigs(t *testing.T) {
	t.Setenv("LEITSTAND_TEST_ES_KEY", "aWQ6a2V5")
	files, _ := filepath.Glob("testdata/good/*.yaml")
	if len(files) == 0 {
		t.Fatal("no good configs")
	}
	for _, f := range files {
		if _, errs := load(t, f); len(errs) > 0 {
			t.Errorf("%s:\n%s", f, strings.Join(errs, "\n"))
		}
	}
	cfg, _ := load(t, "testdata/good/full.yaml")
	if cfg.BulkMaxBytes != 8<<20 || cfg.Workers != 8 || cfg.Compress || cfg.RequestTimeout != time.Minute ||
		cfg.Namespace != "school_prod" || cfg.DeadLetterAfter != 30*time.Minute || len(cfg.URLs) != 2 {
		t.Errorf("values not decoded: %+v", cfg)
	}
	// Untouched keys keep their defaults.
	if cfg.IndexPrefix != DefaultConfig().IndexPrefix {
		t.Errorf("index_prefix = %q, want the default", cfg.IndexPrefix)
	}
	cfg, _ = load(t, "testdata/good/index_mode.yaml")
	if cfg.APIKey.Reveal() != "aWQ6a2V5" {
		t.Errorf("${ENV} not expanded into api_key")
	}
}

func TestDefaultsAreValid(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Enabled = true
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg = Config{} // disabled: nothing is checked
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestCredentialsHeader(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := newCredentials(&Config{Username: "u", PasswordFile: pw})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.authorization(); got != "Basic dTpmaXJzdA==" { // u:first
		t.Fatalf("header %q", got)
	}
	// A rotated secret is read again after a 401 (invalidate) or credentialCheck.
	if err := os.WriteFile(pw, []byte("second-and-longer\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.invalidate()
	if got := c.authorization(); got != "Basic dTpzZWNvbmQtYW5kLWxvbmdlcg==" {
		t.Fatalf("header after rotation %q", got)
	}
	k, err := newCredentials(&Config{APIKey: "aWQ6a2V5"})
	if err != nil {
		t.Fatal(err)
	}
	if got := k.authorization(); got != "ApiKey aWQ6a2V5" {
		t.Fatalf("api key header %q", got)
	}
}
