// Package sentry is leitstand's Sentry-compatible receiver: SDKs for Go,
// JavaScript, Python and the rest send to it unchanged, by pointing their
// DSN at leitstand (http://KEY@host:port/PROJECT).
//
// It owns the endpoints POST /api/{project}/envelope/ and the legacy
// /api/{project}/store/, their CORS preflights, authentication (the public
// key in X-Sentry-Auth, Authorization: Sentry, ?sentry_key= or the
// envelope's dsn, which must agree), body decoding (gzip, deflate, br,
// zstd, chunked; limits before and after decompression), envelope
// parsing, per-key per-category rate limits, and the mapping of every item
// type to ECS events. It hands batches to the pipeline and answers only
// when the pipeline has accepted them. It must not store, log or forward
// anything unscrubbed: events reach sinks (and the forwarder, which is
// one) only through the anonymizer stage, and its own log lines carry
// reasons and counts, never event contents, keys or addresses.
//
// # Hot path
//
// Items are read by a hand-written JSON scanner (scan.go) that extracts
// the members it maps and validates and skips the rest: no map[string]any,
// no reflection. Strings without escapes and raw JSON values (frames,
// contexts, breadcrumbs, extra) point into the request body, which the
// batch keeps; unescaped strings and compacted values go into the batch's
// arena. On the real 2.3 KB sentry-go error event that is several times
// faster than encoding/json into maps (see bench_test.go).
//
// # Fields
//
// Every event: @timestamp, event.dataset (below), event.id (events),
// leitstand.receiver "sentry", leitstand.tenant and service.name (from the
// project), sentry.project, service.version (release), service.environment,
// sentry.sdk.name and .version; the document id (Event.ID) is the Sentry
// event id (events), "<trace>-<span>" (spans) or "<check-in id>-<status>".
//
//   - sentry.error (an event with a non-synthetic exception), sentry.message
//     (any other event): message ("Type: value" for errors), log.level,
//     error.type, error.message, error.stack_trace (text, newest exception
//     first, innermost frame first, "Caused by:" for the chain),
//     error.grouping_key, labels.* (tags; dots become '_'), user.id,
//     user.email, user.name (username), user.full_name, user.geo, user.data,
//     source.ip (user.ip_address), url.full, url.query,
//     http.request.method, .headers, .cookies, .body.content (.body.data when
//     structured), .env, .referrer, user_agent.original,
//     http.response.status_code, trace.id, span.id, parent.id, host.name
//     (server_name), log.logger, transaction.name, sentry.platform,
//     sentry.dist, and raw JSON: sentry.exception (the exception list with
//     frames), sentry.breadcrumbs, sentry.contexts, sentry.extra,
//     sentry.fingerprint, sentry.measurements.
//   - sentry.transaction: transaction.name, .id, .type (op), .span_count,
//     .duration.us, event.duration (ns), sentry.status, event.outcome, and the
//     event fields above; each child span becomes a sentry.span event.
//   - sentry.span (child spans and span items, v1 and v2): span.id,
//     span.name, span.type, span.duration.us, parent.id, trace.id,
//     transaction.name and .id, event.duration, sentry.status,
//     event.outcome, sentry.span.data, and of v2 attributes url.*,
//     http.request.method, http.response.status_code, user_agent.original,
//     user.*, with the rest in sentry.attributes.
//   - sentry.log (one event per record of a log item): message (body),
//     log.level, sentry.severity_number, trace.id, span.id, host.name,
//     user.*, sentry.attributes.
//   - sentry.check_in: sentry.check_in.id, .status, sentry.monitor.slug,
//     event.duration, event.outcome, trace.id.
//
// Sessions and client reports become metrics
// (leitstand_sentry_sessions_total, leitstand_sentry_client_discarded_events_total).
// Attachments and types leitstand does not know are counted
// (leitstand_sentry_items_total{outcome="not_indexed"}) and, when
// forwarding is on, handed to the Forwarder, which scrubs them or drops
// them.
//
// # Grouping
//
// error.grouping_key is 32 hex digits of a SHA-256 over the SDK's
// fingerprint when it sent one ("{{ default }}" in it stands for the
// default), else over the exception types with the module and function of
// their in-app frames (all frames when none is in app), else over the
// message template with every word holding a digit or '@' left out, so
// that it is neither split by ids nor a hash of personal data.
//
// # Personal data
//
// The anonymizer's built-in rules for the sentry.* datasets hash user.*
// (pseudonyms), truncate addresses and mask cookies and frame variables;
// its detectors scrub everything else, raw JSON included. The mapping
// above keeps those fields where the rules look for them.
package sentry
