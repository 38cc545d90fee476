// Package peers starts the real programs that leitstand talks to —
// Elasticsearch, Alertmanager, Prometheus, node_exporter, PostgreSQL with
// postgres_exporter, rsyslog, syslog-ng — as private instances on 127.0.0.1
// for integration tests. It is test support code: import it from _test.go
// files and TestMain only.
//
// Every peer runs from its own temporary folder on free ports, in its own
// process group, with its output in a log file in that folder. Stop ends
// exactly the process group it started (never anything found by name),
// waits until every member is gone and removes the folder. Set
// LEITSTAND_PEERS_KEEP=1 to keep the folders for a look at the logs. The
// peers get SIGKILL from the kernel if the test binary dies first
// (Pdeathsig), and the folders such a binary leaves are removed by the
// next one that starts a peer.
//
// If a peer's programs are missing, the Start functions run
// scripts/peers/install.sh for it first. When that fails they return an
// *UnavailableError: outside CI the test is skipped with the reason (Check,
// Require, Suite.Require), and with CI=true it fails, because CI must never
// pass by skipping its integration tests.
//
// A test that needs one peer:
//
//	func TestForward(t *testing.T) {
//		peers.Slow(t)
//		am, err := peers.StartAlertmanager(ctx, peers.AlertmanagerOptions{})
//		peers.Check(t, err)
//		peers.Cleanup(t, am)
//		...
//	}
//
// A peer shared by all tests of a package (Elasticsearch takes seconds to
// start):
//
//	var (
//		suite = &peers.Suite{Slow: true}
//		es    *peers.Elasticsearch
//	)
//
//	func TestMain(m *testing.M) {
//		os.Exit(suite.Run(m, func(ctx context.Context) error {
//			var err error
//			es, err = peers.StartElasticsearch(ctx, peers.ElasticsearchOptions{})
//			suite.Add(es)
//			return err
//		}))
//	}
//
//	func TestSink(t *testing.T) {
//		suite.Require(t)
//		... es.URL ...
//	}
package peers
