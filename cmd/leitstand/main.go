// Command leitstand is the observability and alerting aggregator daemon.
//
//	leitstand [run] [-config FILE] [-data DIR]   run the daemon (the default)
//	leitstand check [-config FILE] [-data DIR]   validate a config and exit
//	leitstand version                            print the version
//
// This package wires components together and owns nothing else.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	// Zone names in syslog.rfc3164.timezone must work in minimal containers
	// that have no zoneinfo.
	_ "time/tzdata"

	"github.com/leitstand/leitstand/alerting"
	"github.com/leitstand/leitstand/collector/httpserver"
	"github.com/leitstand/leitstand/dashboards"
	"github.com/leitstand/leitstand/internal/config"
	"github.com/leitstand/leitstand/rules"
	"github.com/leitstand/leitstand/rules/logrules"
	"gopkg.in/yaml.v3"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs one subcommand and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		opts, ok := parseFlags("run", args, stderr)
		if !ok {
			return 2
		}
		return run(opts, stderr)
	case "check":
		opts, ok := parseFlags("check", args, stderr)
		if !ok {
			return 2
		}
		return check(opts, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "dashboards":
		return writeDashboards(args, stdout, stderr)
	case "rules":
		return rulesCommand(args, stdout, stderr)
	case "alertmanager-config":
		return alertmanagerConfig(args, stdout, stderr)
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "leitstand: unknown command %q\n\n", cmd)
		usage(stderr)
		return 2
	}
}

type options struct {
	configFile string
	dataDir    string
}

func parseFlags(name string, args []string, stderr io.Writer) (options, bool) {
	var o options
	fs := flag.NewFlagSet("leitstand "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.configFile, "config", "", "configuration `file` (YAML); without it leitstand runs the embedded default on loopback")
	fs.StringVar(&o.dataDir, "data", "./data", "data `directory` for event files, spool and TSDB")
	if err := fs.Parse(args); err != nil {
		return o, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "leitstand %s: unexpected argument %q\n", name, fs.Arg(0))
		return o, false
	}
	return o, true
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: leitstand [command] [-config FILE] [-data DIR]

commands:
  run       run the daemon (the default)
  check     validate the configuration and exit
  dashboards -out DIR
            write the Grafana dashboards as JSON into DIR
  alertmanager-config [-config FILE]
            print the Alertmanager configuration generated from the role registry
  rules test FILE...
            run rule unit tests in promtool's format
  version   print the version
`)
}

func versionString() string {
	commit := "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
	}
	return fmt.Sprintf("leitstand %s (commit %s, %s %s/%s)", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// check validates the configuration the way run does, without starting.
func check(o options, stdout, stderr io.Writer) int {
	cfg, err := LoadConfig(o.configFile, o.dataDir)
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	name := o.configFile
	if name == "" {
		name = "embedded default"
	}
	// Rules no role owns still page someone (the default role), but
	// probably not whom their author meant: warn, don't fail.
	if len(cfg.Alerting.Roles) > 0 {
		unowned, err := cfg.Alerting.UnownedRules(cfg.Rules.RuleFiles)
		if err != nil {
			fmt.Fprintf(stderr, "warning: ownership check: %v\n", err)
		}
		for _, u := range unowned {
			fmt.Fprintf(stderr, "warning: %s\n", u)
		}
	}
	if !cfg.agent() && !httpserver.IsLoopback(cfg.HTTP.Listen) && cfg.HTTP.TLS.ClientCAFile == "" && !scopeAllHasToken(cfg.Alerting) {
		fmt.Fprintf(stderr, "warning: http.listen %q leaves loopback and no role with scope all: true has a token, so the Prometheus API (/api/v1/query, /api/v1/rules, …) answers 401 to everyone, Grafana included\n", cfg.HTTP.Listen)
	}
	fmt.Fprintf(stdout, "config OK (%s): %s\n", name, cfg.Summary())
	return 0
}

// scopeAllHasToken reports whether some role may use the Prometheus API
// off loopback.
func scopeAllHasToken(c alerting.Config) bool {
	for _, r := range c.Roles {
		if r.Scope.All && (len(r.TokenFiles) > 0 || len(r.TokenSHA256) > 0) {
			return true
		}
	}
	return false
}

// rulesCommand runs `leitstand rules test FILE…`, promtool's format.
func rulesCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 || args[0] != "test" {
		fmt.Fprintln(stderr, "usage: leitstand rules test FILE...")
		return 2
	}
	// promtool-format files and log-rule test files may be mixed.
	var prom, logs []string
	for _, f := range args[1:] {
		if isLogRuleTest(f) {
			logs = append(logs, f)
		} else {
			prom = append(prom, f)
		}
	}
	code := 0
	for _, run := range []struct {
		files []string
		fn    func([]string, io.Writer) (bool, error)
	}{{prom, rules.RunRuleTests}, {logs, logrules.RunTests}} {
		if len(run.files) == 0 {
			continue
		}
		failed, err := run.fn(run.files, stdout)
		if err != nil {
			fmt.Fprintf(stderr, "leitstand rules test: %v\n", err)
			code = 1
		}
		if failed {
			code = 1
		}
	}
	return code
}

// isLogRuleTest tells log-rule unit tests (events at times) from promtool's
// (input_series).
func isLogRuleTest(path string) bool {
	var f struct {
		Tests []struct {
			Events []any `yaml:"events"`
		} `yaml:"tests"`
	}
	b, err := os.ReadFile(path)
	if err != nil || yaml.Unmarshal(b, &f) != nil {
		return false
	}
	for _, t := range f.Tests {
		if len(t.Events) > 0 {
			return true
		}
	}
	return false
}

// alertmanagerConfig prints the Alertmanager configuration for the role
// registry of the config.
func alertmanagerConfig(args []string, stdout, stderr io.Writer) int {
	o, ok := parseFlags("alertmanager-config", args, stderr)
	if !ok {
		return 2
	}
	cfg, err := LoadConfig(o.configFile, o.dataDir)
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	out, err := alerting.GenerateAlertmanagerConfig(cfg.Alerting)
	if err != nil {
		fmt.Fprintf(stderr, "leitstand alertmanager-config: %v\n", err)
		return 1
	}
	stdout.Write(out)
	return 0
}

// writeDashboards writes the generated Grafana dashboards.
func writeDashboards(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("leitstand dashboards", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "`directory` to write the dashboards' JSON into (created if missing)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: leitstand dashboards -out DIR")
		return 2
	}
	if err := dashboards.Write(*out); err != nil {
		fmt.Fprintf(stderr, "leitstand dashboards: %v\n", err)
		return 1
	}
	all, _ := dashboards.All()
	fmt.Fprintf(stdout, "wrote %d dashboards to %s\n", len(all), *out)
	return 0
}

func printConfigErrors(w io.Writer, err error) {
	errs := config.Flatten(err)
	fmt.Fprintf(w, "leitstand: the configuration has %d problem(s):\n", len(errs))
	for _, e := range errs {
		fmt.Fprintf(w, "  %v\n", e)
	}
}
