package rules

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves goroutines behind. None of the
// Prometheus parts the engine runs (TSDB, rule manager, scrape and
// discovery managers, remote_write handler) needs an exception: Shutdown
// stops all of them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
