package syslog

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/leitstand/leitstand/internal/config"
)

// loadTestConfig decodes a testdata/config file over the defaults, as the
// daemon decodes its syslog section, and validates it. It returns every
// problem, one string each.
func loadTestConfig(t *testing.T, name string) (Config, []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "config", name))
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	src, decodeErr := config.Decode(name, data, &cfg)
	var out []string
	for _, e := range config.Flatten(src.Annotate(errors.Join(decodeErr, cfg.Validate()))) {
		out = append(out, e.Error())
	}
	sort.Strings(out)
	return cfg, out
}

func TestConfigFiles(t *testing.T) {
	pki := newTestPKI(t)
	t.Setenv("SYSLOG_TEST_PKI", pki.dir)
	// Each expected error is matched by substring; every error must be
	// expected and every expectation met.
	cases := map[string][]string{
		"good_empty.yaml":                  nil,
		"good_production.yaml":             nil,
		"good_public_unauthenticated.yaml": nil,
		"bad_public_without_auth.yaml": {
			`bad_public_without_auth.yaml:3: listeners[0].address: "0.0.0.0:514" is not a loopback address, so the listener must authenticate its senders: list allowed_sources`,
			`bad_public_without_auth.yaml:5: listeners[1].address: ":514" is not a loopback address, so the listener must authenticate its senders: use protocol tls with tls.client_ca_file`,
			`bad_public_without_auth.yaml:7: listeners[2].address: "192.0.2.10:6514" is not a loopback address, so the listener must authenticate its senders: set tls.client_ca_file`,
		},
		"bad_tls.yaml": {
			"bad_tls.yaml:2: listeners[0].tls.cert_file: must be set for protocol tls",
			"bad_tls.yaml:2: listeners[0].tls.key_file: must be set for protocol tls",
			"bad_tls.yaml:7: listeners[1].tls.cert_file: does not load with key_file: open /nonexistent/server.pem: no such file or directory",
			"bad_tls.yaml:9: listeners[1].tls.client_ca_file: open /nonexistent/ca.pem: no such file or directory",
			`bad_tls.yaml:10: listeners[1].tls.min_version: must be 1.2 or 1.3, got "1.1"`,
			`bad_tls.yaml:13: listeners[2].tls: is only for protocol tls, not "udp"`,
		},
		"bad_listeners.yaml": {
			`bad_listeners.yaml:2: listeners[0].protocol: must be udp, tcp, tls or unix, got "sctp"`,
			"bad_listeners.yaml:4: listeners[1].protocol: must be set: udp, tcp, tls or unix",
			`bad_listeners.yaml:6: listeners[2].address: want host:port, got "localhost5514"`,
			`bad_listeners.yaml:8: listeners[3].address: port of "127.0.0.1:99999" must be a number from 0 to 65535`,
			`bad_listeners.yaml:10: listeners[4].address: host of "example.org:514" must be an IP address, localhost or empty`,
			"bad_listeners.yaml:14: listeners[6].address: tls 127.0.0.1:5516 is already used by listeners[5]",
		},
		"bad_limits.yaml": {
			"bad_limits.yaml:1: max_message_bytes: must be between 480 and 16MiB, got 100",
			"bad_limits.yaml:2: batch_events: must be between 1 and 65536, got 0",
			"bad_limits.yaml:3: batch_linger: must be between 0 and 10s, got 1m0s",
			"bad_limits.yaml:7: listeners[0].max_connections: must be between 1 and 1048576, got 0",
			"bad_limits.yaml:8: listeners[0].idle_timeout: must be at least 1s, got 10ms",
			"bad_limits.yaml:9: listeners[0].read_timeout: must be at least 100ms, got 1ms",
			"bad_limits.yaml:12: listeners[1].readers: must be between 0 (one per CPU) and 256, got 1000",
			"bad_limits.yaml:13: listeners[1].socket_buffer_bytes: must be between 0 (the system default) and 1GiB, got 2GiB",
		},
		"bad_sources_and_queue.yaml": {
			`bad_sources_and_queue.yaml:4: listeners[0].allowed_sources: entry 0, "10.0.0.0/33", is neither a CIDR`,
			`bad_sources_and_queue.yaml:6: listeners[0].queue.when_full: must be "block" or "drop_newest", got "sometimes"`,
			"bad_sources_and_queue.yaml:8: listeners[1].address: folder /nonexistent-folder of the socket does not exist",
			`bad_sources_and_queue.yaml:9: listeners[1].socket_mode: must be an octal file mode such as 0660, got "999"`,
			"bad_sources_and_queue.yaml:10: listeners[1].allowed_sources: does not apply to a unix socket; use socket_mode",
		},
		"bad_rfc3164.yaml": {
			`bad_rfc3164.yaml:2: rfc3164.timezone: unknown time zone "Mars/Olympus_Mons"`,
			"bad_rfc3164.yaml:3: rfc3164.year: must be 0 (from the clock) or between 1970 and 9999, got 1066",
		},
		"bad_unknown_key.yaml": {
			`bad_unknown_key.yaml:3: listeners[0].adress: unknown key "adress"`,
			`bad_unknown_key.yaml:4: max_mesage_bytes: unknown key "max_mesage_bytes"`,
			`listeners[0].address: want host:port, got ""`,
		},
		"bad_empty_list.yaml": {
			"bad_empty_list.yaml:1: listeners: must list at least one listener (or set enabled: false)",
		},
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "config", "*.yaml"))
	if len(files) != len(cases) {
		t.Errorf("%d files in testdata/config, %d cases: keep them in step", len(files), len(cases))
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			_, got := loadTestConfig(t, name)
			used := make([]bool, len(got))
			for _, w := range want {
				found := false
				for i, g := range got {
					if !used[i] && strings.Contains(g, w) {
						used[i], found = true, true
						break
					}
				}
				if !found {
					t.Errorf("missing error %q", w)
				}
			}
			for i, g := range got {
				if !used[i] {
					t.Errorf("unexpected error %q", g)
				}
			}
		})
	}
}

func TestDefaultsAndDescribe(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Describe(), "syslog udp 127.0.0.1:5514, tcp 127.0.0.1:5514"; got != want {
		t.Errorf("Describe() = %q, want %q", got, want)
	}
	if p := cfg.Listeners[0].policy(); p.WhenFull != "drop_newest" {
		t.Errorf("udp policy %q", p.WhenFull)
	}
	if p := cfg.Listeners[1].policy(); p.WhenFull != "block" || p.BlockTimeout != 0 {
		t.Errorf("tcp policy %+v", p)
	}

	pki := newTestPKI(t)
	t.Setenv("SYSLOG_TEST_PKI", pki.dir)
	prod, errs := loadTestConfig(t, "good_production.yaml")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := "syslog tls 0.0.0.0:6514 (client certificates), udp 0.0.0.0:514 (2 allowed networks), tcp [::]:514 (1 allowed networks), unix " + pki.dir + "/log.sock"
	if got := prod.Describe(); got != want {
		t.Errorf("Describe() = %q\nwant %q", got, want)
	}
	// Defaults reach listeners the file adds.
	if l := prod.Listeners[1]; l.MaxConnections != 1000 || l.ReadTimeout.String() != "30s" || l.socketMode() != 0o660 {
		t.Errorf("listener defaults not applied: %+v", l)
	}
	if l := prod.Listeners[3]; l.socketMode() != 0o666 {
		t.Errorf("socket_mode %o", l.socketMode())
	}
	unauth, _ := loadTestConfig(t, "good_public_unauthenticated.yaml")
	if got := unauth.Describe(); got != "syslog udp 0.0.0.0:514 (unauthenticated)" {
		t.Errorf("Describe() = %q", got)
	}
	off := DefaultConfig()
	off.Enabled = false
	if got := off.Describe(); got != "syslog off" {
		t.Errorf("Describe() = %q", got)
	}
}
