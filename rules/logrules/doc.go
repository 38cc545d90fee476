// Package logrules owns leitstand's log rules: rules over events (not
// series) that live in the same rule files as the PromQL rules, under a
// `log:` key, and are evaluated in the stream as events pass the pipeline
// after the anonymizer. Three kinds exist: record (count matches into a
// series appended to the TSDB), alert (one throttled alert per group of
// matching events, resolved after a quiet period) and new_value (alert when
// a field value was not seen within a look-back window).
//
// It must not query any store (no Elasticsearch, no PromQL): everything is
// decided from the event at hand and the state kept here. It never sees raw
// events: templates only see fields the anonymizer has already scrubbed.
// Events that leitstand produced about itself never feed rules.
package logrules
