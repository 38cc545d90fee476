// Package rules owns leitstand's PromQL side: the embedded TSDB and what
// feeds it (scraping, remote_write, leitstand's own metrics, and the series
// the log rules derive), Prometheus rule files evaluated by Prometheus' own
// rule manager and PromQL engine, the Prometheus-compatible query API that
// lets Grafana use leitstand as a data source, and the promtool-format unit
// tests of `leitstand rules test`.
//
// Two datasource modes run the same rule files:
//
//   - embedded: expressions are evaluated against the local TSDB; recording
//     rule results, ALERTS and ALERTS_FOR_STATE are written back to it, so
//     pending alerts keep their `for` progress over a restart.
//   - remote: expressions are evaluated against a Prometheus-compatible
//     query API (as vmalert does); the ALERTS_FOR_STATE samples go to a
//     local state file that serves the same restore.
//
// Fired alerts leave through a Notifier the wiring supplies (the role
// router); this package sends nothing to Alertmanager itself. It knows no
// receiver, sink or alert route.
package rules
