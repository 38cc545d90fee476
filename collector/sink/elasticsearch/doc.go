// Package elasticsearch is the Elasticsearch sink: it ships anonymized
// events from the spool to an Elasticsearch 8 cluster with the bulk API and
// owns everything between a batch and its documents being searchable —
// index templates, target names, per-document outcomes, retries and the
// dead-letter index. It knows the collector's types and nothing of the
// receivers; it never logs an event's content.
//
// # Where events go
//
// By default each event goes to the data stream logs-<dataset>-<namespace>
// (Elastic's naming scheme), where dataset is event.dataset made fit for a
// name (lowercase; '-' and other forbidden bytes become '_'; at most 100
// bytes) and namespace comes from the config. With mode "index" events go
// to daily indices <index_prefix>-<dataset>-YYYY.MM.DD, dated by the event's
// own @timestamp in UTC.
//
// At start, and again whenever the cluster was unreachable, the sink checks
// the cluster (version and modules from the nodes info API, health) and
// installs its templates if they are missing or older: the component
// template leitstand@mappings with ECS mappings for leitstand's fields, an
// index template (leitstand-logs for logs-*-* with data_stream, priority
// 150: above the built-in logs template, below Elastic integrations'
// per-dataset templates; or <index_prefix> in index mode) that also lists
// leitstand@custom, a component template leitstand never writes, for the
// user's settings, and a template for the dead-letter indices. Templates
// carry a version and a hash of their content, so a second start writes
// nothing.
//
// # Delivery
//
// Consume returns nil only when every event of the batch is handled: indexed,
// found already indexed (409 on op_type create with the event's
// deterministic id: a replay after a crash), or written to the dead-letter
// index. Documents refused for load (429) or with server errors (5xx), and
// requests that failed as a whole, are sent again with exponential backoff
// and jitter — only those documents — up to retry_max_attempts; then
// Consume returns an error and the spool retries the batch later. A
// document refused for what it is (a mapping conflict, a malformed value:
// any other 4xx), one too large for the cluster, and one that failed with
// server errors for longer than dead_letter_after, goes to the daily
// dead-letter index <dead_letter_index>-YYYY.MM.DD with the reason. If the
// dead-letter index refuses it too, Consume returns an error: nothing is
// dropped silently.
//
// When the cluster is unreachable, Start still succeeds: the sink logs the
// peer's address, sets leitstand_elasticsearch_up to 0, refuses batches
// (Ready and Consume return the reason) and checks the cluster again in the
// background until it answers. The spool keeps the events meanwhile.
package elasticsearch
