package reliability

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/leitstand/leitstand/internal/peers"
)

var (
	suite = &peers.Suite{Slow: true}
	// es is one Elasticsearch node for the whole run, private to this
	// test binary because the outage scenario kills it.
	es *peers.Elasticsearch
	// binary is the leitstand binary built once for the run.
	binary string
	// seed makes the kill moments reproducible: the log of a failed run
	// names it, and LEITSTAND_RELIABILITY_SEED repeats it.
	seed uint64
)

func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		// fuzz.sh fuzzing FuzzConfigFile needs neither the binary nor
		// Elasticsearch.
		os.Exit(m.Run())
	}
	seed = uint64(time.Now().UnixNano())
	if s := os.Getenv("LEITSTAND_RELIABILITY_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			fmt.Fprintf(os.Stderr, "LEITSTAND_RELIABILITY_SEED: %v\n", err)
			os.Exit(2)
		}
	}
	fmt.Fprintf(os.Stderr, "reliability: seed %d (LEITSTAND_RELIABILITY_SEED=%d repeats this run's kill moments)\n", seed, seed)
	binDir, err := os.MkdirTemp("", "leitstand-reliability-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	start := time.Now()
	code := suite.Run(m, func(ctx context.Context) error {
		if binary = os.Getenv("LEITSTAND_BINARY"); binary == "" {
			binary = filepath.Join(binDir, "leitstand")
			out, err := exec.CommandContext(ctx, "go", "build", "-o", binary, "github.com/leitstand/leitstand/cmd/leitstand").CombinedOutput()
			if err != nil {
				return fmt.Errorf("go build: %v\n%s", err, out)
			}
		}
		var err error
		es, err = peers.StartElasticsearch(ctx, peers.ElasticsearchOptions{Private: true})
		suite.Add(es)
		return err
	})
	os.RemoveAll(binDir)
	if path := os.Getenv("LEITSTAND_RELIABILITY_REPORT"); path != "" {
		if err := report.write(path, seed, time.Since(start)); err != nil {
			fmt.Fprintf(os.Stderr, "reliability: writing %s: %v\n", path, err)
			code = max(code, 1)
		}
	}
	os.Exit(code)
}

// rng returns a generator for one scenario, derived from the run's seed
// and the scenario's name so scenarios do not shift each other's moments.
func rng(name string) *rand.Rand {
	var h uint64 = 14695981039346656037
	for _, c := range []byte(name) {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return rand.New(rand.NewPCG(seed, h))
}

// envDuration reads a duration from the environment, or returns def.
func envDuration(t testing.TB, name string, def time.Duration) time.Duration {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d
}

// envInt reads an integer from the environment, or returns def.
func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return n
}
