// Package dashboards owns leitstand's Grafana dashboards: they are written as
// Go code over grafana-foundation-sdk (v0.0.18), reviewed and tested like
// code, and rendered to the classic dashboard JSON that Grafana's file
// provisioning reads. The rendered files are committed under
// deploy/grafana/dashboards and a test fails when they drift.
//
// house.go is the thin layer that gives every dashboard the same defaults
// (a data-source variable, legends shown, tooltips listing every series, a
// unit and a description on every panel, thresholds where they mean
// something, stable panel ids, collapsible rows, refIds on every query); each
// dashboard lives in a file of its own and says only what it shows.
//
// The package depends on nothing of leitstand's: the names of leitstand's own
// metrics appear here as strings, and a test started against the real daemon
// checks them against what it exports.
package dashboards
