// Package suiteexample shows, and tests, the TestMain pattern of
// peers.Suite: one peer started for all tests of a package.
package suiteexample

import (
	"context"
	"net/http"
	"os"
	"testing"

	"github.com/leitstand/leitstand/internal/peers"
)

var (
	suite = &peers.Suite{Slow: true}
	am    *peers.Alertmanager
)

func TestMain(m *testing.M) {
	os.Exit(suite.Run(m, func(ctx context.Context) error {
		var err error
		am, err = peers.StartAlertmanager(ctx, peers.AlertmanagerOptions{})
		suite.Add(am) // nil after a failed start: ignored
		return err
	}))
}

func TestSharedPeer(t *testing.T) {
	suite.Require(t)
	resp, err := http.Get(am.URL + "/api/v2/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status: %s", resp.Status)
	}
}

func TestWithoutPeers(t *testing.T) {
	// Tests that need no peer run in -short mode too.
}
