package reliability

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// esConfig is a daemon that ships to the shared Elasticsearch node through
// the spool, in its own data stream namespace, with syslog off unless a
// scenario adds it.
func esConfig(namespace, extra string) string {
	return `http:
  listen: @HTTP@
syslog:
  enabled: false
sinks:
  file:
    enabled: false
  elasticsearch:
    enabled: true
    urls: [@ES@]
    namespace: ` + namespace + `
    retry_initial: 50ms
    retry_max: 1s
spool:
  cursor_sync_interval: 200ms
  retry_initial: 100ms
  retry_max: 2s
` + extra
}

// TestCrashNDJSON: clients post NDJSON with Idempotency-Keys while
// leitstand is SIGKILLed at random moments and restarted on the same data
// directory; every acknowledged event must end up in Elasticsearch exactly
// once.
func TestCrashNDJSON(t *testing.T) {
	suite.Require(t)
	rec := scenario(t, 10, "Crash consistency: NDJSON intake")
	crashScenario(t, rec, "crashndjson", ndjsonBatches("nd", "reliability", 200))
}

// TestCrashSentry: the same with Sentry envelopes whose events carry fixed
// event_ids, which become the documents' ids.
func TestCrashSentry(t *testing.T) {
	suite.Require(t)
	rec := scenario(t, 11, "Crash consistency: Sentry envelopes")
	crashScenario(t, rec, "crashsentry", sentryBatches("se", 50))
}

func crashScenario(t *testing.T, rec *record, namespace string, mk func(c, seq int) batch) {
	kills := envInt(t, "LEITSTAND_RELIABILITY_KILLS", 20)
	r := rng(t.Name())
	d := newDaemon(t, "leitstand", esConfig(namespace, ""), daemonOptions{})
	const clients = 4
	g := newLoadGen(d, clients, 0, mk).start()
	start := time.Now()
	var moments []string
	for i := 1; i <= kills; i++ {
		// A moment between 100 ms and 1.5 s after the daemon was ready:
		// early ones hit start-up work (spool replay, template install),
		// late ones a full intake.
		after := time.Duration(100+r.IntN(1400)) * time.Millisecond
		before := g.ackedCount()
		time.Sleep(after)
		d.kill()
		moments = append(moments, after.Round(10*time.Millisecond).String())
		t.Logf("kill %d/%d: SIGKILL %s after ready (%d events acknowledged before, %d now)", i, kills, after, before, g.ackedCount())
		d.start(true)
	}
	// After the last restart the clients finish what is pending; the
	// daemon keeps running, as it would after a real crash.
	if !g.finish(3 * time.Minute) {
		t.Errorf("clients could not get every request acknowledged within 3m after the last restart (statuses %s)", g.statusSummary())
	}
	loadTime := time.Since(start)
	sent, acked := g.ledger()
	c := reconcile(t, "logs-*-"+namespace, sent, acked, 3*time.Minute)
	rec.counts(c)
	rec.Load = fmt.Sprintf("%d at-least-once clients, %d events/request, as fast as acknowledged: %d events in %s (%.0f events/s acknowledged on average, restarts included)",
		clients, len(mk(0, 0).messages), c.Acked, loadTime.Round(time.Second), float64(c.Acked)/loadTime.Seconds())
	rec.Faults = fmt.Sprintf("%d × SIGKILL at a random moment 0.1–1.5 s after ready (seed %d), restart on the same data directory: %s",
		kills, seed, strings.Join(moments, ", "))
	rec.note("%d requests, %d answered 2xx, %d failed at the connection (the daemon was gone), statuses %s",
		g.requests.Load(), g.okReqs.Load(), g.errs.Load(), g.statusSummary())
	if code := d.stop(); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}
