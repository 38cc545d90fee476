// Command leitstand-load is the load generator of the whole-process
// benchmark (bench/run): it sends a reproducible mix of syslog messages
// (TCP with octet counting, or UDP), NDJSON batches to /v1/ingest, or the
// real Sentry SDK envelopes of bench/testdata/sentry to a receiver on this
// machine, and prints what it sent as JSON.
//
//	leitstand-load -mode syslog-tcp -target 127.0.0.1:5514 -count 200000
//	leitstand-load -mode syslog-udp -target 127.0.0.1:5514 -count 200000 -rate 50000
//	leitstand-load -mode ndjson -target 127.0.0.1:8080 -count 200000 -batch 500
//	leitstand-load -mode sentry -target 127.0.0.1:8080 -count 20000 -samples bench/testdata/sentry
//
// The whole input is generated before the first byte is sent, so the
// generator's own work during the run is the writing. With -gate it prints
// "ready" once the input is prepared and waits for a line on stdin before
// it starts: the harness reads the receiver's CPU time in between.
//
// Every 50th syslog message or NDJSON line (-mark-every) ends with a
// latency mark, "lsbt=1" and 15 digits: the nanoseconds from the start of
// sending to the moment it was written, for the reader of the output to
// compare with the moment the line appeared there.
//
// It sends to loopback addresses only.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/leitstand/leitstand/bench/loadgen"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("leitstand-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o loadgen.Options
	mode := fs.String("mode", string(loadgen.ModeSyslogTCP), "what to send: syslog-tcp, syslog-udp, ndjson or sentry")
	fs.StringVar(&o.Target, "target", "127.0.0.1:5514", "receiver `host:port` (loopback only)")
	fs.IntVar(&o.Count, "count", 100000, "messages (syslog), lines (ndjson) or envelopes (sentry) to send")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the message mix and of the envelope choice")
	fs.Float64Var(&o.PIIShare, "pii", loadgen.DefaultPIIShare, "share of messages with e-mail or IP addresses (0 to 1)")
	fs.Float64Var(&o.Rate, "rate", 0, "offered rate in count units per second; 0 = as fast as the receiver takes them")
	fs.DurationVar(&o.Duration, "duration", 10*time.Minute, "stop sending after this long")
	fs.IntVar(&o.Conns, "conns", 0, "TCP connections, UDP sockets or HTTP clients (default 1 for syslog, 4 for HTTP)")
	fs.IntVar(&o.Batch, "batch", 500, "NDJSON lines per request")
	fs.StringVar(&o.SentryDir, "samples", "bench/testdata/sentry", "`folder` with the Sentry SDK captures (sentry mode)")
	fs.IntVar(&o.MarkEvery, "mark-every", loadgen.DefaultMarkEvery, "stamp every `n`-th syslog message or NDJSON line with its send time (\""+loadgen.MarkPrefix+"\" and the nanoseconds since the start); 0: none")
	gate := fs.Bool("gate", false, `print "ready" when the input is prepared and wait for a line on stdin before sending`)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "leitstand-load: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	o.Mode = loadgen.Mode(*mode)
	if o.PIIShare < 0 || o.PIIShare > 1 {
		fmt.Fprintln(stderr, "leitstand-load: -pii must be between 0 and 1")
		return 2
	}
	if *gate {
		o.Gate = func() error {
			if _, err := fmt.Fprintln(stdout, "ready"); err != nil {
				return err
			}
			_, err := bufio.NewReader(stdin).ReadString('\n')
			if err != nil {
				return fmt.Errorf("waiting for the start line on stdin: %w", err)
			}
			return nil
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := loadgen.Run(ctx, o)
	if rep != nil {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if e := enc.Encode(rep); e != nil && err == nil {
			err = e
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "leitstand-load: %v\n", err)
		return 1
	}
	return 0
}
