// Package alerting owns the role registry: who owns which alerts, who is
// paged for them, and what each role's API tokens may see. It labels every
// alert that leaves the rule engine with its owning role, sends it to the
// Alertmanagers, generates the Alertmanager routing from the same registry
// (so the two cannot disagree), serves a role-scoped API (alerts, silences,
// and a search of the stored events in Elasticsearch with the caller's scope
// forced into the query), and tells `leitstand check` which rules no role
// owns.
//
// It must not evaluate rules (package rules does) nor keep notification
// state: grouping, de-duplication across replicas, inhibition and silences
// stay Alertmanager's. It never writes events and never searches beyond the
// sink's own indices.
//
// An alert owned by several roles leaves as one alert per role, each with a
// single `role` label. That keeps every generated route a plain equality
// match (role="dba"), gives each role its own Alertmanager groups and
// silences (silencing role="dba" cannot mute another role's page), and two
// leitstand replicas still produce identical label sets, which Alertmanager
// de-duplicates.
package alerting
