package reliability

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leitstand/leitstand/alerting"
	"github.com/leitstand/leitstand/anonymize"
	"github.com/leitstand/leitstand/collector/httpin"
	"github.com/leitstand/leitstand/collector/httpserver"
	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/collector/sentry"
	"github.com/leitstand/leitstand/collector/sink/elasticsearch"
	"github.com/leitstand/leitstand/collector/sink/file"
	"github.com/leitstand/leitstand/collector/spool"
	"github.com/leitstand/leitstand/collector/syslog"
	"github.com/leitstand/leitstand/internal/config"
)

// fuzzConfig has the sections of leitstand's config file whose types
// live outside package main, so the YAML machinery and every section's
// Validate can be fuzzed with the file's real shape. (The rules sections
// are fuzzed by rules.FuzzRuleFile and logrules.FuzzParse.)
type fuzzConfig struct {
	HTTP      httpserver.Config `yaml:"http"`
	Pipeline  pipeline.Config   `yaml:"pipeline"`
	Ingest    httpin.Config     `yaml:"ingest"`
	Syslog    syslog.Config     `yaml:"syslog"`
	Sentry    sentry.Config     `yaml:"sentry"`
	Anonymize anonymize.Config  `yaml:"anonymize"`
	Alerting  alerting.Config   `yaml:"alerting"`
	Spool     spool.Config      `yaml:"spool"`
	Sinks     struct {
		File          file.Config          `yaml:"file"`
		Elasticsearch elasticsearch.Config `yaml:"elasticsearch"`
	} `yaml:"sinks"`
}

func defaultFuzzConfig() *fuzzConfig {
	c := &fuzzConfig{
		HTTP: httpserver.DefaultConfig(), Pipeline: pipeline.DefaultConfig(), Ingest: httpin.DefaultConfig(),
		Syslog: syslog.DefaultConfig(), Sentry: sentry.DefaultConfig(), Anonymize: anonymize.DefaultConfig(),
		Alerting: alerting.DefaultConfig(), Spool: spool.DefaultConfig(),
	}
	c.Sinks.File, c.Sinks.Elasticsearch = file.DefaultConfig(), elasticsearch.DefaultConfig()
	return c
}

// FuzzConfigFile decodes arbitrary bytes as leitstand's YAML config and
// validates every section: no input may panic or hang the decoder, and
// every error must say something.
func FuzzConfigFile(f *testing.F) {
	// Every config the daemon's own tests keep, good and bad.
	files, _ := filepath.Glob(filepath.Join("..", "cmd", "leitstand", "testdata", "*", "*.yaml"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("http: {listen: '0.0.0.0:80'}\ningest: {auth: {tokens: ['${TOKEN:-x}']}}\n"))
	f.Add([]byte("spool: {max_bytes: 1EiB, segment_bytes: -1}\nsinks: {file: {max_file_bytes: 99999999999999999999GiB}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := defaultFuzzConfig()
		src, err := config.Decode("fuzz.yaml", data, c)
		for _, v := range []interface{ Validate() error }{&c.HTTP, &c.Pipeline, &c.Ingest, &c.Syslog, &c.Sentry, &c.Anonymize, &c.Alerting, &c.Spool, &c.Sinks.File, &c.Sinks.Elasticsearch} {
			if verr := v.Validate(); verr != nil && strings.TrimSpace(verr.Error()) == "" {
				t.Fatalf("%T.Validate returned an empty error", v)
			}
		}
		if err != nil {
			if msg := src.Annotate(err).Error(); strings.TrimSpace(msg) == "" {
				t.Fatal("decode error without a message")
			}
		}
	})
}
