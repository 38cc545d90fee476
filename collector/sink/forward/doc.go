// Package forward is the sink that carries an agent's events to the
// aggregators: NDJSON batches, compressed, to the aggregators' intake
// (collector/httpin) with a bearer token, fail-over between several
// aggregator addresses and retries with backoff and jitter. Consume returns
// nil only once an aggregator answered 2xx for every event of the batch, so
// a source that waits for the pipeline (the node agent) advances its read
// positions only after the aggregator has the events.
//
// # Event ids survive the hop
//
// The intake names each event "<Idempotency-Key>:<line>", line being the
// event's line number in the request body, and sinks that deduplicate (the
// Elasticsearch _id) store an event once per id. The sink keeps the ids its
// sources gave: an event whose ID already has that form ("<key>:<n>", as the
// node agent builds them from the file and the position of the line) is sent
// in a request whose Idempotency-Key is <key>, on line n of the body; the
// lines before it are left empty, which the intake skips but counts. The
// aggregator therefore derives exactly the id the agent assigned, however
// batches were cut, retried or replayed after a restart. Events without such
// an id are sent under a key derived from the request body, so a retried
// batch gets the same ids as the first attempt.
//
// The package must not know any receiver: it sees events and their ids only.
package forward
