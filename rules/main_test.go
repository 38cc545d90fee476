package rules

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leakOptions()...)
}

// leakOptions ignores goroutines Prometheus' packages start and never stop.
func leakOptions() []goleak.Option {
	return []goleak.Option{
		// The HTTP client's idle connections of the remote datasource and
		// of Prometheus' scrape clients are closed by their transports
		// only after their idle timeout.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	}
}
