// Command benchrun is the whole-process benchmark that bench/run starts:
// leitstand, rsyslog and syslog-ng in turn on this machine with the same
// input, results as a Markdown table and a JSON file.
//
//	bench/run                 quick mode (CI): 200k messages per case, 2 runs
//	bench/run full            1M messages per case, 3 runs, UDP at 3 rates
//	bench/run quick -only 'syslog-tcp/'
//	bench/run full -render bench/results.json -markdown bench/RESULTS.md -plot bench/delivered-vs-offered.png
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/leitstand/leitstand/bench"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	mode := "quick"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		mode, args = args[0], args[1:]
	}
	var o bench.Options
	switch mode {
	case "quick":
		o = bench.Quick()
	case "full":
		o = bench.Full()
	default:
		fmt.Fprintf(stderr, "benchrun: unknown mode %q (quick or full)\n", mode)
		return 2
	}
	fs := flag.NewFlagSet("benchrun "+mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.Reps, "reps", o.Reps, "runs per case (the summary takes the median)")
	fs.IntVar(&o.SyslogCount, "syslog-count", o.SyslogCount, "syslog messages per case")
	fs.IntVar(&o.NDJSONCount, "ndjson-count", o.NDJSONCount, "NDJSON lines per case")
	fs.IntVar(&o.SentryCount, "sentry-count", o.SentryCount, "Sentry envelopes per case")
	rates := fs.String("udp-rates", joinRates(o.UDPRates), "offered UDP rates in messages/s, comma-separated")
	fs.Uint64Var(&o.Seed, "seed", o.Seed, "seed of the input")
	fs.StringVar(&o.Only, "only", "", "run only the cases whose name matches this `regexp` (e.g. 'syslog-tcp/')")
	fs.DurationVar(&o.CaseTimeout, "case-timeout", 5*time.Minute, "bound on one case")
	fs.Float64Var(&o.LatencyRate, "latency-rate", o.LatencyRate, "offered rate of the TCP and NDJSON latency cases (0: none)")
	fs.IntVar(&o.MarkEvery, "mark-every", o.MarkEvery, "one message in `n` carries its send time (0: no latency figures)")
	fs.BoolVar(&o.Overload, "overload", o.Overload, "run leitstand's overload cases (3× its capacity) after the others")
	fs.IntVar(&o.QueueSize, "queue-size", 0, "leitstand's pipeline.queue_size (0: its default)")
	fs.IntVar(&o.Workers, "workers", 0, "leitstand's pipeline.workers (0: its default)")
	jsonPath := fs.String("json", "bench/out/results-"+mode+".json", "results `file` (JSON)")
	mdPath := fs.String("markdown", "bench/out/RESULTS-"+mode+".md", "results `file` (Markdown); the table is also printed")
	plotPath := fs.String("plot", "bench/out/delivered-vs-offered-"+mode+".png", "`file` for the PNG plot of delivered against offered rate (UDP); empty: none")
	render := fs.String("render", "", "run nothing: read this results `file` (JSON) and write its tables to -markdown")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "benchrun: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	o.UDPRates = nil
	for _, r := range strings.Split(*rates, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		v, err := strconv.ParseFloat(r, 64)
		if err != nil || v <= 0 {
			fmt.Fprintf(stderr, "benchrun: -udp-rates: %q is not a positive rate\n", r)
			return 2
		}
		o.UDPRates = append(o.UDPRates, v)
	}
	if *render != "" {
		res, err := bench.ReadResults(*render)
		if err == nil {
			plot := "" // the run's plot stays unless -plot asks for a new one
			fs.Visit(func(f *flag.Flag) {
				if f.Name == "plot" {
					plot = *plotPath
				}
			})
			if err = res.WriteFiles("", *mdPath, plot); err == nil {
				res.Markdown(stdout)
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "benchrun: %v\n", err)
			return 1
		}
		return 0
	}
	o.Command = "bench/run " + strings.Join(append([]string{mode}, args...), " ")
	o.Log = stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, o)
	if res != nil && len(res.Runs) > 0 {
		res.Markdown(stdout)
		if werr := res.WriteFiles(*jsonPath, *mdPath, *plotPath); werr != nil {
			fmt.Fprintf(stderr, "benchrun: %v\n", werr)
			return 1
		}
		fmt.Fprintf(stderr, "benchrun: results in %s, %s and %s\n", *jsonPath, *mdPath, *plotPath)
	}
	if err != nil {
		fmt.Fprintf(stderr, "benchrun: %v\n", err)
		return 1
	}
	if f := res.Failures(); len(f) > 0 {
		fmt.Fprintf(stderr, "benchrun: %d run(s) failed:\n  %s\n", len(f), strings.Join(f, "\n  "))
		return 1
	}
	return 0
}

func joinRates(rs []float64) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = strconv.FormatFloat(r, 'g', -1, 64)
	}
	return strings.Join(s, ",")
}
