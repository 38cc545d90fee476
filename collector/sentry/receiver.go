package sentry

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zlib"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/collector/telemetry"
)

// Submitter is the part of the pipeline the receiver needs
// ((*pipeline.Pipeline).Submit): it returns once every sink has accepted
// the batch, or with collector.ErrQueueFull or collector.ErrClosed. The
// caller keeps ownership of b.
type Submitter interface {
	Submit(ctx context.Context, b *collector.Batch, pol pipeline.Policy) error
}

// Receiver serves the Sentry ingestion endpoints. It is a
// collector.Component; its handlers run on the daemon's HTTP listener.
type Receiver struct {
	cfg      Config
	next     Submitter
	log      *slog.Logger
	c        *telemetry.Component
	m        *metrics
	projects map[uint64]*project
	keys     map[string]*keyInfo
	inflight *semaphore.Weighted
	dec      decoders
	norms    sync.Pool
	fwd      *Forwarder
	closing  atomic.Bool
	// devKey says the dev key is in effect, for DevDSN.
	devKey bool
}

// keyInfo is a configured public key.
type keyInfo struct {
	project *project
	limits  [numCategories]*bucket
}

// Option configures a Receiver.
type Option func(*Receiver)

// WithForwarder makes the receiver hand the items it does not index
// (attachments, sessions, client reports, unknown types) to f, which
// forwards them, scrubbed, with the events the pipeline brings it.
func WithForwarder(f *Forwarder) Option { return func(r *Receiver) { r.fwd = f } }

// New builds the receiver. reg takes the receiver's own metrics
// (leitstand_sentry_*), m the event counters shared with the other
// components. The key "dev" is dropped unless cfg.Loopback is set.
func New(cfg Config, next Submitter, m *telemetry.Metrics, reg prometheus.Registerer, log *slog.Logger, opts ...Option) (*Receiver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sentry: %w", err)
	}
	r := &Receiver{
		cfg: cfg, next: next, log: log, c: m.Component("sentry"), m: newMetrics(reg),
		projects: map[uint64]*project{}, keys: map[string]*keyInfo{},
		inflight: semaphore.NewWeighted(int64(cfg.MaxInflightBytes)),
	}
	r.dec.maxDecompressed = int64(cfg.MaxDecompressedBytes)
	r.norms.New = func() any { return &normalizer{} }
	for _, o := range opts {
		o(r)
	}
	droppedDev := false
	for _, pc := range cfg.Projects {
		p := &project{id: pc.ID, idStr: strconv.FormatUint(pc.ID, 10), service: pc.Service, tenant: pc.Tenant, origins: map[string]bool{}}
		if p.service == "" {
			p.service = "sentry-" + p.idStr
		}
		for _, o := range pc.AllowedOrigins {
			if o == "*" {
				p.anyOrigin = true
			}
			p.origins[strings.TrimSuffix(o, "/")] = true
		}
		r.projects[pc.ID] = p
		for _, k := range pc.Keys {
			pub, err := k.resolve()
			if err != nil {
				return nil, fmt.Errorf("sentry: project %d: %w", pc.ID, err)
			}
			if pub == DevKey && k.PublicKeyFile == "" {
				if !cfg.Loopback {
					droppedDev = true
					continue
				}
				r.devKey = true
			}
			ki := &keyInfo{project: p}
			for cat, rl := range k.RateLimits {
				for i, name := range rateCategories {
					if name == cat {
						ki.limits[i] = newBucket(rl)
					}
				}
			}
			r.keys[pub] = ki
		}
	}
	if droppedDev {
		log.Warn("sentry: the key \"dev\" is disabled because a listener is not on loopback; configure sentry.projects with keys of your own")
	}
	return r, nil
}

// DevDSN returns the DSN to print at start-up when the embedded default's
// dev key is in effect ("http://dev@127.0.0.1:8080/1"), else "".
func (r *Receiver) DevDSN(listen string) string {
	if !r.devKey {
		return ""
	}
	return r.cfg.DevDSN(listen)
}

// Start implements collector.Component; the receiver runs on the HTTP
// listener and has nothing of its own to start.
func (r *Receiver) Start(context.Context) error {
	r.closing.Store(false)
	return nil
}

// Shutdown makes new requests answer 503, so SDKs retry elsewhere or later
// while the pipeline drains.
func (r *Receiver) Shutdown(context.Context) error {
	r.closing.Store(true)
	return nil
}

// Register adds the endpoints to mux: POST (and OPTIONS, for CORS) on
// /api/{project_id}/envelope/ and /api/{project_id}/store/, with and
// without the trailing slash.
func (r *Receiver) Register(mux *http.ServeMux) {
	for _, p := range []string{"/api/{project_id}/envelope/{$}", "/api/{project_id}/envelope"} {
		mux.HandleFunc("POST "+p, r.serveEnvelope)
		mux.HandleFunc("OPTIONS "+p, r.servePreflight)
	}
	for _, p := range []string{"/api/{project_id}/store/{$}", "/api/{project_id}/store"} {
		mux.HandleFunc("POST "+p, r.serveStore)
		mux.HandleFunc("OPTIONS "+p, r.servePreflight)
	}
}

// Handler returns a handler with just the Sentry endpoints.
func (r *Receiver) Handler() http.Handler {
	mux := http.NewServeMux()
	r.Register(mux)
	return mux
}

// response is the JSON body of every answer.
type response struct {
	ID     string `json:"id,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// refuse answers an error with its reason in X-Sentry-Error and the body.
func (r *Receiver) refuse(w http.ResponseWriter, endpoint, outcome string, status int, reason string) {
	r.m.requests.WithLabelValues(endpoint, outcome).Inc()
	r.log.Debug("sentry: request refused", "endpoint", endpoint, "status", status, "reason", reason)
	w.Header().Set("X-Sentry-Error", reason)
	writeJSON(w, status, response{Detail: reason})
}

func statusOutcome(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusUnsupportedMediaType:
		return "unsupported_encoding"
	case http.StatusNotFound:
		return "unknown_project"
	}
	return "bad_request"
}

// corsHeaders are what browser SDKs send.
const corsHeaders = "x-sentry-auth, x-requested-with, origin, accept, content-type, authentication, authorization, content-encoding, sentry-trace, baggage"

// allowOrigin sets the CORS answer for a request with an Origin header and
// reports whether the project allows it. Requests without one (server
// SDKs) are allowed.
func (r *Receiver) allowOrigin(w http.ResponseWriter, req *http.Request, p *project) bool {
	origin := req.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if p == nil || !(p.anyOrigin || p.origins[origin]) {
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", "x-sentry-error, x-sentry-rate-limits, retry-after")
	return true
}

func (r *Receiver) servePreflight(w http.ResponseWriter, req *http.Request) {
	p := r.projectFromPath(req)
	if p == nil || req.Header.Get("Origin") == "" || !r.allowOrigin(w, req, p) {
		r.refuse(w, "preflight", "forbidden", http.StatusForbidden, "origin not allowed for this project")
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", corsHeaders)
	h.Set("Access-Control-Max-Age", "3600")
	r.m.requests.WithLabelValues("preflight", "accepted").Inc()
	w.WriteHeader(http.StatusOK)
}

// projectFromPath returns the configured project named in the URL, or nil.
func (r *Receiver) projectFromPath(req *http.Request) *project {
	id, err := strconv.ParseUint(req.PathValue("project_id"), 10, 64)
	if err != nil {
		return nil
	}
	return r.projects[id]
}

// request is the state of one request between the steps of serve.
type request struct {
	// ctx ends when the client goes away: waiting for queue room stops then.
	ctx      context.Context
	endpoint string
	p        *project
	key      string
	ki       *keyInfo
	// client is the SDK named by the request's headers, the fallback for
	// envelopes that name none.
	clientName, clientVersion string
}

// begin runs the checks before the body is read: shutdown, project, key
// from headers and query, origin. It answers the refusals itself.
func (r *Receiver) begin(w http.ResponseWriter, req *http.Request, endpoint string) (*request, bool) {
	rq := &request{ctx: req.Context(), endpoint: endpoint}
	rq.clientName, rq.clientVersion = requestClient(req)
	if r.closing.Load() {
		w.Header().Set("Retry-After", "5")
		r.refuse(w, endpoint, "shutting_down", http.StatusServiceUnavailable, "leitstand is shutting down; retry later")
		return nil, false
	}
	if _, err := strconv.ParseUint(req.PathValue("project_id"), 10, 64); err != nil {
		r.refuse(w, endpoint, "bad_request", http.StatusBadRequest, "the project id in the URL must be a number")
		return nil, false
	}
	rq.p = r.projectFromPath(req)
	if rq.p == nil {
		r.refuse(w, endpoint, "forbidden", http.StatusForbidden, "unknown project")
		return nil, false
	}
	key, err := requestKey(req)
	if err != nil {
		ae := err.(*authError)
		r.refuse(w, endpoint, statusOutcome(ae.status), ae.status, ae.reason)
		return nil, false
	}
	if key != "" {
		if !r.authorize(w, rq, key) {
			return nil, false
		}
	}
	if !r.allowOrigin(w, req, rq.p) {
		r.refuse(w, endpoint, "forbidden", http.StatusForbidden, "origin not allowed for this project")
		return nil, false
	}
	return rq, true
}

// authorize checks a public key against the project of the URL.
func (r *Receiver) authorize(w http.ResponseWriter, rq *request, key string) bool {
	ki := r.keys[key]
	var err *authError
	switch {
	case ki == nil:
		err = errUnknownKey
	case ki.project != rq.p:
		err = errWrongProject
	}
	if err != nil {
		r.refuse(w, rq.endpoint, statusOutcome(err.status), err.status, err.reason)
		return false
	}
	rq.key, rq.ki = key, ki
	return true
}

// readBody reads the body, reserving in-flight room as it grows: a small
// body holds little, so compressed requests (all of sentry-python's) do
// not each hold max_decompressed_bytes. The first reservation waits as the
// queue policy says; growing does not wait (a request that holds room and
// waits for more could wait for others that do the same), it answers 429.
// On false it has answered.
func (r *Receiver) readBody(w http.ResponseWriter, req *http.Request, rq *request) (*[]byte, int64, bool) {
	initial := int64(64 << 10)
	if enc := req.Header.Get("Content-Encoding"); req.ContentLength > 0 && (enc == "" || enc == "identity") {
		initial = req.ContentLength
	}
	res := reservation{r: r, limit: min(int64(r.cfg.MaxDecompressedBytes)+1, int64(r.cfg.MaxInflightBytes))}
	initial = min(initial, res.limit)
	if !r.reserve(req.Context(), initial) {
		r.refuseInflight(w, rq)
		return nil, 0, false
	}
	res.held = initial
	buf := collector.GetBuffer()
	if err := r.dec.readBody(req, int64(r.cfg.MaxBodyBytes), buf, res.grow); err != nil {
		collector.PutBuffer(buf)
		r.inflight.Release(res.held)
		if err == errInflight {
			r.refuseInflight(w, rq)
			return nil, 0, false
		}
		be := err.(*bodyError)
		r.refuse(w, rq.endpoint, statusOutcome(be.status), be.status, be.reason)
		return nil, 0, false
	}
	r.c.BytesReceived(len(*buf))
	return buf, res.held, true
}

func (r *Receiver) refuseInflight(w http.ResponseWriter, rq *request) {
	w.Header().Set("Retry-After", strconv.Itoa(int(r.cfg.RetryAfter.Seconds())))
	r.refuse(w, rq.endpoint, "inflight_full", http.StatusTooManyRequests, "too many request bodies in flight; retry later")
}

// reservation is the in-flight room one body holds.
type reservation struct {
	r     *Receiver
	held  int64
	limit int64
}

// grow makes the reservation at least n bytes, doubling to spare the
// semaphore; false when there is no room.
func (res *reservation) grow(n int64) bool {
	if n <= res.held {
		return true
	}
	want := min(max(n, 2*res.held), res.limit)
	if want < n {
		return true // past the limit: the reader refuses the body itself
	}
	if !res.r.inflight.TryAcquire(want - res.held) {
		return false
	}
	res.held = want
	return true
}

// reserve waits for in-flight room as the queue policy says.
func (r *Receiver) reserve(ctx context.Context, n int64) bool {
	if r.inflight.TryAcquire(n) {
		return true
	}
	if r.cfg.Queue.WhenFull == pipeline.DropNewest {
		return false
	}
	if r.cfg.Queue.BlockTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.cfg.Queue.BlockTimeout)
		defer cancel()
	}
	return r.inflight.Acquire(ctx, n) == nil
}

func (r *Receiver) serveEnvelope(w http.ResponseWriter, req *http.Request) {
	rq, ok := r.begin(w, req, "envelope")
	if !ok {
		return
	}
	buf, reserved, ok := r.readBody(w, req, rq)
	if !ok {
		return
	}
	defer r.inflight.Release(reserved)
	b := collector.NewBatch("sentry")
	defer b.Release()
	b.Keep(buf)
	n := r.norms.Get().(*normalizer)
	defer r.norms.Put(n)
	r.envelope(w, rq, *buf, b, n)
}

// envelope handles a read envelope body; split from serveEnvelope for the
// benchmark and the fuzz test.
func (r *Receiver) envelope(w http.ResponseWriter, rq *request, body []byte, b *collector.Batch, n *normalizer) {
	var items []item
	env, items, err := parseEnvelope(body, &n.s, &b.Arena, r.cfg.MaxItems, n.items[:0])
	n.items = items
	if err != nil {
		ee := err.(*envelopeError)
		r.refuse(w, rq.endpoint, statusOutcome(ee.status), ee.status, ee.reason)
		return
	}
	if env.dsn != "" || rq.ki == nil {
		if !r.dsnAuth(w, rq, env.dsn) {
			return
		}
	}
	if env.sdkName == "" {
		env.sdkName, env.sdkVer = rq.clientName, rq.clientVersion
	}
	n.reset(b, rq.ki.project, &env, r.cfg.MaxItems)
	r.process(w, rq, b, n, items)
}

// dsnAuth authenticates by the envelope header's dsn, which must agree with
// the headers' key and the URL's project.
func (r *Receiver) dsnAuth(w http.ResponseWriter, rq *request, raw string) bool {
	if raw == "" {
		r.refuse(w, rq.endpoint, "unauthorized", errNoAuth.status, errNoAuth.reason)
		return false
	}
	d, err := parseDSN(raw)
	if err != nil {
		r.refuse(w, rq.endpoint, "unauthorized", http.StatusUnauthorized, "the envelope's dsn is not valid: "+err.Error())
		return false
	}
	if id, _ := strconv.ParseUint(d.project, 10, 64); id != rq.p.id {
		r.refuse(w, rq.endpoint, "forbidden", errDSNProject.status, errDSNProject.reason)
		return false
	}
	if rq.key != "" {
		if d.key != rq.key {
			r.refuse(w, rq.endpoint, "unauthorized", errAuthDisagrees.status, errAuthDisagrees.reason)
			return false
		}
		return true
	}
	return r.authorize(w, rq, d.key)
}

// process applies rate limits, normalises the items into b, submits it
// and answers.
func (r *Receiver) process(w http.ResponseWriter, rq *request, b *collector.Batch, n *normalizer, items []item) {
	now := time.Now()
	var limited [numCategories]time.Duration
	dropped := n.dropped[:0]
	eventLimited := false
	for i := range items {
		cat := itemCategory(items[i].hdr.typ)
		drop := false
		if cat >= 0 && cat != catAttachment {
			if bk := rq.ki.limits[cat]; bk != nil {
				if ok, wait := bk.take(now, max(1, items[i].hdr.itemCount)); !ok {
					drop = true
					limited[cat] = max(limited[cat], wait)
					if cat == catError || cat == catTransaction {
						eventLimited = true
					}
				}
			}
		}
		dropped = append(dropped, drop)
	}
	// Attachments go with their event: when it is limited, so are they.
	for i := range items {
		if items[i].hdr.typ != "attachment" {
			continue
		}
		if eventLimited {
			dropped[i] = true
			limited[catAttachment] = max(limited[catAttachment], limited[catError], limited[catTransaction])
		} else if bk := rq.ki.limits[catAttachment]; bk != nil {
			if ok, wait := bk.take(now, 1); !ok {
				dropped[i] = true
				limited[catAttachment] = max(limited[catAttachment], wait)
			}
		}
	}
	n.dropped = dropped

	var held []item
	var typeCounts itemCounts
	accepted := 0
	for i := range items {
		it := &items[i]
		if dropped[i] {
			typeCounts.add(it.hdr.typ, outRateLimited, max(1, it.hdr.itemCount))
			continue
		}
		before := len(b.Events)
		outcome, err := r.item(n, it)
		if err != nil {
			status, reason := http.StatusBadRequest, fmt.Sprintf("item %d (%.32q): %v", i+1, it.hdr.typ, err)
			if errors.Is(err, errTooManyItems) {
				status, reason = http.StatusRequestEntityTooLarge, fmt.Sprintf("the envelope holds more than %d items and records (max_items)", r.cfg.MaxItems)
			} else if errors.Is(err, errItemTooLarge) {
				status = http.StatusRequestEntityTooLarge
			}
			for j := range items {
				r.m.countItems(items[j].hdr.typ, outRefused, 1)
			}
			r.c.Received(len(items))
			r.c.Refused("invalid", len(items))
			r.refuse(w, rq.endpoint, statusOutcome(status), status, reason)
			return
		}
		switch outcome {
		case outIndexed:
			typeCounts.add(it.hdr.typ, outcome, max(1, len(b.Events)-before))
		default:
			typeCounts.add(it.hdr.typ, outcome, 1)
			// kept for forwarding: attachments, sessions, client reports, …
			held = append(held, *it)
		}
		accepted++
	}
	typeCounts.flush(r.m)
	r.m.countSessions(rq.ki.project.idStr, n.sessions)
	r.m.countDiscarded(rq.ki.project.idStr, n.discarded)

	header, wait := rateLimitHeader(limited)
	if header != "" {
		w.Header().Set("X-Sentry-Rate-Limits", header)
	}
	if accepted == 0 && header != "" {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		r.c.Received(len(items))
		r.c.Refused("rate_limited", len(items))
		r.refuse(w, rq.endpoint, "rate_limited", http.StatusTooManyRequests, "rate limit of this key exceeded for: "+limitedNames(limited))
		return
	}
	r.submit(w, rq, b, n, held)
}

// submit hands the batch to the pipeline and answers.
func (r *Receiver) submit(w http.ResponseWriter, rq *request, b *collector.Batch, n *normalizer, held []item) {
	events := b.Len()
	r.c.Received(events)
	var err error
	if r.fwd != nil && len(held) > 0 {
		r.fwd.hold(b, rq.ki.project, n.env, held)
	}
	if events > 0 {
		ctx := rq.ctx
		if ctx == nil {
			ctx = context.Background()
		}
		err = r.next.Submit(ctx, b, r.cfg.Queue)
	}
	if r.fwd != nil && len(held) > 0 {
		r.fwd.release(b, err == nil)
	}
	switch {
	case err == nil:
		r.c.Accepted(events)
		r.m.requests.WithLabelValues(rq.endpoint, "accepted").Inc()
		writeJSON(w, http.StatusOK, response{ID: n.responseID()})
	case errors.Is(err, collector.ErrSpoolFull):
		r.c.Refused("spool_full", events)
		secs := strconv.Itoa(int(max(r.cfg.RetryAfter, 5*time.Second).Seconds()))
		w.Header().Set("Retry-After", secs)
		w.Header().Set("X-Sentry-Rate-Limits", secs+"::organization:spool_full")
		r.refuse(w, rq.endpoint, "spool_full", http.StatusTooManyRequests, "the spool is full (the sinks behind it are behind or down); retry later")
	case errors.Is(err, collector.ErrQueueFull):
		r.c.Refused("queue_full", events)
		secs := strconv.Itoa(int(r.cfg.RetryAfter.Seconds()))
		w.Header().Set("Retry-After", secs)
		w.Header().Set("X-Sentry-Rate-Limits", secs+"::organization:queue_full")
		r.refuse(w, rq.endpoint, "queue_full", http.StatusTooManyRequests, "the pipeline is full; retry later")
	case errors.Is(err, collector.ErrClosed):
		r.c.Refused("shutting_down", events)
		w.Header().Set("Retry-After", "5")
		r.refuse(w, rq.endpoint, "shutting_down", http.StatusServiceUnavailable, "leitstand is shutting down; retry later")
	default:
		r.c.Refused("sink_error", events)
		r.log.Error("sentry: events not stored", "events", events, "err", err)
		w.Header().Set("Retry-After", "5")
		r.refuse(w, rq.endpoint, "sink_error", http.StatusServiceUnavailable, "events not stored; retry later")
	}
}

func (n *normalizer) responseID() string {
	if n.env != nil && n.env.eventID != "" {
		if isLowerHex32(n.env.eventID) || normalizeID(&n.idBuf, n.env.eventID) {
			return n.env.eventID
		}
	}
	return n.firstID
}

func limitedNames(limited [numCategories]time.Duration) string {
	var names []string
	for c, w := range limited {
		if w > 0 {
			names = append(names, rateCategories[c])
		}
	}
	return strings.Join(names, ", ")
}

// errItemTooLarge: a JSON item over max_event_bytes.
var errItemTooLarge = errors.New("item too large")

// item normalises one item and returns its outcome.
func (r *Receiver) item(n *normalizer, it *item) (string, error) {
	typ := it.hdr.typ
	if typ != "attachment" && len(it.payload) > int(r.cfg.MaxEventBytes) {
		return "", fmt.Errorf("%w: %d bytes is over max_event_bytes (%d)", errItemTooLarge, len(it.payload), int(r.cfg.MaxEventBytes))
	}
	switch typ {
	case "event":
		return outIndexed, n.event(it.payload, false)
	case "transaction":
		return outIndexed, n.event(it.payload, true)
	case "log":
		return outIndexed, n.logItem(it.payload)
	case "span":
		return outIndexed, n.spanItem(it.payload)
	case "check_in":
		return outIndexed, n.checkIn(it.payload)
	case "session":
		return outMetrics, n.session(it.payload)
	case "sessions":
		return outMetrics, n.sessionAggregates(it.payload)
	case "client_report":
		return outMetrics, n.clientReport(it.payload)
	}
	// Attachments, profiles, replays, feedback and types leitstand does not
	// know: counted, held for forwarding, not stored.
	n.count++
	if n.count > n.maxItems {
		return "", errTooManyItems
	}
	return outNotIndexed, nil
}

// itemCounts batches the item counter updates of one request.
type itemCounts struct {
	entries []itemCount
}

type itemCount struct {
	typ, outcome string
	n            int
}

func (c *itemCounts) add(typ, outcome string, n int) {
	typ = itemTypeLabel(typ)
	for i := range c.entries {
		if e := &c.entries[i]; e.typ == typ && e.outcome == outcome {
			e.n += n
			return
		}
	}
	c.entries = append(c.entries, itemCount{typ, outcome, n})
}

func (c *itemCounts) flush(m *metrics) {
	for _, e := range c.entries {
		m.countItems(e.typ, e.outcome, e.n)
	}
}

func (r *Receiver) serveStore(w http.ResponseWriter, req *http.Request) {
	rq, ok := r.begin(w, req, "store")
	if !ok {
		return
	}
	if rq.ki == nil {
		r.refuse(w, rq.endpoint, "unauthorized", errNoAuth.status, errNoAuth.reason)
		return
	}
	buf, reserved, ok := r.readBody(w, req, rq)
	if !ok {
		return
	}
	defer r.inflight.Release(reserved)
	b := collector.NewBatch("sentry")
	defer b.Release()
	b.Keep(buf)
	body := *buf
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] != '{' {
		// Old raven clients: base64 of zlib, without Content-Encoding.
		decoded, err := legacyBody(t, int64(r.cfg.MaxDecompressedBytes))
		if err != nil {
			r.refuse(w, rq.endpoint, "bad_request", http.StatusBadRequest, "the body is neither a JSON event nor base64 of a zlib-compressed one")
			return
		}
		body = decoded
	}
	n := r.norms.Get().(*normalizer)
	defer r.norms.Put(n)
	env := envelopeHeader{sdkName: rq.clientName, sdkVer: rq.clientVersion}
	n.reset(b, rq.ki.project, &env, r.cfg.MaxItems)
	it := item{hdr: itemHeader{typ: "event", length: len(body)}, payload: body}
	r.process(w, rq, b, n, append(n.items[:0], it))
}

func legacyBody(b []byte, limit int64) ([]byte, error) {
	dec := make([]byte, base64.StdEncoding.DecodedLen(len(b)))
	k, err := base64.StdEncoding.Decode(dec, b)
	if err != nil {
		return nil, err
	}
	zr, err := zlib.NewReader(bytes.NewReader(dec[:k]))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	out, err := io.ReadAll(io.LimitReader(zr, limit+1))
	if err != nil || int64(len(out)) > limit {
		return nil, errors.New("invalid or too large")
	}
	return out, nil
}

func writeJSON(w http.ResponseWriter, status int, v response) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	var buf [128]byte
	out := append(buf[:0], '{')
	if v.ID != "" {
		out = append(out, `"id":`...)
		out = collector.AppendJSONString(out, v.ID)
	}
	if v.Detail != "" {
		out = append(out, `"detail":`...)
		out = collector.AppendJSONString(out, v.Detail)
	}
	out = append(out, '}', '\n')
	_, _ = w.Write(out)
}

var _ collector.Component = (*Receiver)(nil)
