package elasticsearch

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/spool"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// TestRealRejectionsRetried: the fragile node has a write queue of 2, so
// concurrent bulk requests spread over many shards get real 429s from
// Elasticsearch. Every document still ends up indexed exactly once.
func TestRealRejectionsRetried(t *testing.T) {
	suite.Require(t)
	cfg := testConfig(t, fragile.URL)
	cfg.Workers = 8
	cfg.BulkMaxEvents = 100
	s, reg, logs := startSink(t, cfg)
	waitReady(t, s, 60*time.Second)

	const callers, batches, per, datasets = 2, 3, 2000, 8
	var g errgroup.Group
	for c := 0; c < callers; c++ {
		g.Go(func() error {
			for i := 0; i < batches; i++ {
				first := (c*batches + i) * per
				b := makeBatch(first, per, eventSpec{dataset: "x", idPrefix: "q", extra: func(seq int, e *collector.Event) {
					e.Set(collector.FieldDataset, collector.KindString, fmt.Sprintf("rejections.%d", seq%datasets))
				}})
				consumeUntilDone(t, s, b, 2*time.Minute)
				b.Release()
			}
			return nil
		})
	}
	_ = g.Wait()

	total := callers * batches * per
	all := "logs-rejections.*-" + cfg.Namespace
	if got := count(t, fragile.URL, all); got != total {
		t.Errorf("%d documents, want %d", got, total)
	}
	if distinct, dup := seqStats(t, fragile.URL, all); distinct != total || dup != 0 {
		t.Errorf("%d distinct events, %d duplicated; want %d and 0", distinct, dup, total)
	}
	items429 := metricValue(t, reg, "leitstand_elasticsearch_items_total", "status", "429")
	whole := metricValue(t, reg, "leitstand_elasticsearch_bulk_requests_total", "outcome", outcomeHTTPError)
	t.Logf("real rejections: %v items answered 429, %v requests refused whole; %v documents resent",
		items429, whole, metricValue(t, reg, "leitstand_elasticsearch_retries_total", "reason", retryRejected))
	if items429 == 0 {
		t.Errorf("no item was rejected with 429: the test did not provoke what it is about")
	}
	if strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("errors logged:\n%s", logs)
	}
}

// TestKillRestartThroughSpool: events flow continuously through a real
// spool into the sink while Elasticsearch is killed with SIGKILL and
// started again on the same ports and data. Every event is present
// exactly once afterwards.
func TestKillRestartThroughSpool(t *testing.T) {
	suite.Require(t)
	if fragile.External {
		t.Fatal("the fragile node must be our own")
	}
	cfg := testConfig(t, fragile.URL)
	s, reg, logs := startSink(t, cfg)
	waitReady(t, s, 60*time.Second)

	spCfg := spool.DefaultConfig()
	spCfg.Dir = t.TempDir()
	spCfg.RetryInitial = 100 * time.Millisecond
	spCfg.RetryMax = time.Second
	spCfg.CursorSyncInterval = 100 * time.Millisecond
	if err := spCfg.Validate(); err != nil {
		t.Fatal(err)
	}
	sp := spool.New(spCfg, []collector.Sink{s}, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := sp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = sp.Shutdown(ctx)
	}()

	// The feeder appends 20-event batches without ids (the spool gives
	// each a position id) every 10ms until told to stop.
	var fed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			n := int(fed.Load())
			b := makeBatch(n, 20, eventSpec{dataset: "crash"})
			if err := sp.Consume(context.Background(), b); err != nil {
				t.Errorf("spool: %v", err)
				b.Release()
				return
			}
			b.Release()
			fed.Add(20)
		}
	}()

	ds := dataStreamName("crash", cfg.Namespace)
	waitCount(t, ds, 2000, time.Minute)
	if err := fragile.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed Elasticsearch with %d events fed", fed.Load())
	time.Sleep(2 * time.Second) // the sink notices, the spool holds on
	if s.Ready() == nil {
		t.Error("sink still ready with Elasticsearch killed")
	}
	t0 := time.Now()
	if err := fragile.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("Elasticsearch back after %s with %d events fed", time.Since(t0).Round(time.Second), fed.Load())
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	total := int(fed.Load())

	waitCount(t, ds, total, 2*time.Minute)
	if distinct, dup := seqStats(t, fragile.URL, ds); distinct != total || dup != 0 {
		t.Errorf("%d distinct events, %d duplicated; want %d and 0", distinct, dup, total)
	}
	if got := count(t, fragile.URL, ds); got != total {
		t.Errorf("%d documents, want %d", got, total)
	}
	if v := metricValue(t, reg, "leitstand_elasticsearch_up"); v != 1 {
		t.Errorf("up = %v after the restart", v)
	}
	for _, want := range []string{"cluster unreachable", "reachable again", fragile.URL} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	t.Logf("%d events, %d answered 409 after the restart (already indexed before the kill)", total,
		int(metricValue(t, reg, "leitstand_elasticsearch_items_total", "status", "409")))
}

// waitCount polls until target on the fragile node holds want documents.
func waitCount(t *testing.T, target string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := -1
	for {
		code, _ := esRequest(t, "POST", fragile.URL+"/"+target+"/_refresh", "")
		if code == 200 {
			if last = count(t, fragile.URL, target); last >= want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d documents after %s, want %d", target, last, within, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
