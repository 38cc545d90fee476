package sentry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leitstand/leitstand/collector"
)

// Scrubber scrubs free text; *anonymize.Anonymizer is one (ScrubString).
// The forwarder needs it for what the pipeline's anonymizer never sees:
// the items leitstand does not index (attachments, sessions, client
// reports).
type Scrubber interface {
	ScrubString(s string) string
}

// Forwarder sends scrubbed events on to an upstream Sentry or Relay, as
// Relay does: the events are turned back into envelopes and sent with
// retries from a bounded queue.
//
// It is a collector.Sink, and the wiring must put it among the pipeline's
// sinks, which only ever see events after the anonymizer stage: that is
// what makes sure nothing is forwarded before it is scrubbed. Items the
// pipeline does not carry reach it from the receiver (WithForwarder) and
// are scrubbed here, by the Scrubber, or not forwarded at all.
//
// Forwarding is best effort: Consume queues and returns, so an upstream
// that is slow or down never holds up acknowledgements; what cannot be
// queued or sent is dropped and counted.
type Forwarder struct {
	cfg      ForwardConfig
	upstream map[string]*dsn // project id → upstream
	scrub    Scrubber
	client   *http.Client
	log      *slog.Logger
	m        *forwardMetrics
	queue    chan *outgoing
	held     sync.Map // *collector.Batch → *heldItems

	mu      sync.Mutex
	started bool
	stopped bool
	ctx     context.Context
	cancel  context.CancelFunc
	workers sync.WaitGroup
}

// outgoing is one envelope on its way upstream.
type outgoing struct {
	to   *dsn
	body []byte // gzip-compressed envelope
}

// heldItems are the items of one request that the pipeline does not carry.
type heldItems struct {
	project string
	eventID string
	items   []item
	used    []bool
}

type forwardMetrics struct {
	envelopes *prometheus.CounterVec
	items     *prometheus.CounterVec
	queue     prometheus.Gauge
}

// NewForwarder builds the forwarding sink from the receiver's config (the
// forward section and the projects' forward_dsn). scrub may be nil; then
// only events, which the anonymizer stage has scrubbed, are forwarded.
func NewForwarder(cfg Config, scrub Scrubber, reg prometheus.Registerer, log *slog.Logger) (*Forwarder, error) {
	fc := cfg.Forward
	f := &Forwarder{cfg: fc, upstream: map[string]*dsn{}, scrub: scrub, log: log,
		client: &http.Client{Timeout: fc.Timeout},
		queue:  make(chan *outgoing, max(fc.QueueEnvelopes, 1))}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	var dflt *dsn
	if raw, err := fc.resolve(); err != nil {
		return nil, fmt.Errorf("sentry: forward: %w", err)
	} else if raw != "" {
		if dflt, err = parseDSN(raw); err != nil {
			return nil, fmt.Errorf("sentry: forward.dsn: %w", err)
		}
	}
	for _, p := range cfg.Projects {
		up := dflt
		if p.ForwardDSN != "" {
			d, err := parseDSN(p.ForwardDSN.Reveal())
			if err != nil {
				return nil, fmt.Errorf("sentry: project %d: forward_dsn: %w", p.ID, err)
			}
			up = d
		}
		if up != nil {
			f.upstream[strconv.FormatUint(p.ID, 10)] = up
		}
	}
	f.m = &forwardMetrics{
		envelopes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "leitstand", Subsystem: "sentry", Name: "forward_envelopes_total",
			Help: "Envelopes for the upstream Sentry by outcome: queued, sent, retried, dropped_queue_full, dropped_rejected (4xx), dropped_retries (gave up), dropped_shutdown."},
			[]string{"outcome"}),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "leitstand", Subsystem: "sentry", Name: "forward_items_dropped_total",
			Help: "Items not forwarded because they could not be scrubbed (binary, no_scrubber) or no upstream is configured for their project (no_upstream)."},
			[]string{"reason"}),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "leitstand", Subsystem: "sentry", Name: "forward_queue_envelopes",
			Help: "Envelopes waiting to be sent upstream."}),
	}
	if reg != nil {
		reg.MustRegister(f.m.envelopes, f.m.items, f.m.queue)
	}
	return f, nil
}

// Name implements collector.Sink.
func (f *Forwarder) Name() string { return "sentry_forward" }

// Start starts the senders.
func (f *Forwarder) Start(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.started || f.stopped {
		return errors.New("sentry forward: already started")
	}
	f.started = true
	for i := 0; i < max(f.cfg.Workers, 1); i++ {
		f.workers.Add(1)
		go f.send()
	}
	return nil
}

// Shutdown sends what is queued until ctx ends, then drops the rest.
func (f *Forwarder) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		return nil
	}
	f.stopped = true
	close(f.queue)
	started := f.started
	f.mu.Unlock()
	if !started {
		f.cancel()
		return nil
	}
	done := make(chan struct{})
	go func() { f.workers.Wait(); close(done) }()
	select {
	case <-done:
		f.cancel()
		return nil
	case <-ctx.Done():
		f.cancel()
		<-done
		return fmt.Errorf("sentry forward: shutdown deadline passed with envelopes unsent")
	}
}

// Consume turns the batch's Sentry events into envelopes and queues them.
// Only events of the Sentry receiver are taken; the pipeline has scrubbed
// them.
func (f *Forwarder) Consume(_ context.Context, b *collector.Batch) error {
	if b.Source != "sentry" {
		return nil
	}
	var held *heldItems
	if h, ok := f.held.Load(b); ok {
		held = h.(*heldItems)
	}
	views := make([]sentryEvent, len(b.Events))
	for i := range b.Events {
		views[i] = sentryEventOf(&b.Events[i], nil)
	}
	used := make([]bool, len(views))
	// Transactions take their child spans back.
	for i := range views {
		v := &views[i]
		if v.dataset != dsTransaction {
			continue
		}
		var spans []sentryEvent
		for j := range views {
			s := &views[j]
			if s.dataset == dsSpan && !used[j] && s.txID == v.txID && s.traceID == v.traceID && s.txID != "" {
				spans = append(spans, *s)
				used[j] = true
			}
		}
		f.enqueueEvent(v, spans, held)
		used[i] = true
	}
	logs := map[string][]*sentryEvent{}
	spans := map[string][]*sentryEvent{}
	for i := range views {
		v := &views[i]
		if used[i] {
			continue
		}
		switch v.dataset {
		case dsError, dsMessage:
			f.enqueueEvent(v, nil, held)
		case dsCheckIn:
			f.enqueue(v.project, "", [][2][]byte{{[]byte(`{"type":"check_in"}`), appendCheckIn(nil, v)}})
		case dsLog:
			logs[v.project] = append(logs[v.project], v)
		case dsSpan:
			spans[v.project] = append(spans[v.project], v)
		}
	}
	for project, vs := range logs {
		body := []byte(`{"items":[`)
		for i, v := range vs {
			if i > 0 {
				body = append(body, ',')
			}
			body = appendLog(body, v)
		}
		body = append(body, "]}"...)
		hdr := fmt.Sprintf(`{"type":"log","item_count":%d,"content_type":"application/vnd.sentry.items.log+json"}`, len(vs))
		f.enqueue(project, "", [][2][]byte{{[]byte(hdr), body}})
	}
	for project, vs := range spans {
		body := []byte(`{"version":2,"items":[`)
		for i, v := range vs {
			if i > 0 {
				body = append(body, ',')
			}
			body = appendSpanV2(body, v)
		}
		body = append(body, "]}"...)
		hdr := fmt.Sprintf(`{"type":"span","item_count":%d,"content_type":"application/vnd.sentry.items.span.v2+json"}`, len(vs))
		f.enqueue(project, "", [][2][]byte{{[]byte(hdr), body}})
	}
	return nil
}

// enqueueEvent sends an event with the attachments held for it.
func (f *Forwarder) enqueueEvent(v *sentryEvent, spans []sentryEvent, held *heldItems) {
	typ := `{"type":"event"}`
	if v.dataset == dsTransaction {
		typ = `{"type":"transaction"}`
	}
	items := [][2][]byte{{[]byte(typ), appendEvent(nil, v, spans)}}
	if held != nil && held.eventID == v.e.ID {
		for i, it := range held.items {
			if it.hdr.typ == "attachment" && !held.used[i] {
				held.used[i] = true
				if out, ok := f.scrubItem(&it); ok {
					items = append(items, out)
				}
			}
		}
	}
	f.enqueue(v.project, v.e.ID, items)
}

// hold keeps the items of a request that the pipeline does not carry, so
// that Consume can send attachments with their event and release the rest.
func (f *Forwarder) hold(b *collector.Batch, p *project, env *envelopeHeader, items []item) {
	h := &heldItems{project: p.idStr, items: items, used: make([]bool, len(items))}
	var id [32]byte
	if normalizeID(&id, env.eventID) {
		h.eventID = string(id[:])
	}
	f.held.Store(b, h)
}

// release forwards what no event took (when the request was accepted) and
// forgets the request's items.
func (f *Forwarder) release(b *collector.Batch, accepted bool) {
	v, ok := f.held.LoadAndDelete(b)
	if !ok || !accepted {
		return
	}
	h := v.(*heldItems)
	var items [][2][]byte
	for i := range h.items {
		if h.used[i] {
			continue
		}
		if out, ok := f.scrubItem(&h.items[i]); ok {
			items = append(items, out)
		}
	}
	if len(items) > 0 {
		f.enqueue(h.project, h.eventID, items)
	}
}

// scrubItem returns a scrubbed copy of an item the pipeline did not carry,
// as header and payload, or false when it cannot be scrubbed.
func (f *Forwarder) scrubItem(it *item) ([2][]byte, bool) {
	if f.scrub == nil {
		f.m.items.WithLabelValues("no_scrubber").Inc()
		return [2][]byte{}, false
	}
	if !textual(it) {
		f.m.items.WithLabelValues("binary").Inc()
		return [2][]byte{}, false
	}
	payload := it.payload
	if it.hdr.typ == "session" || it.hdr.typ == "sessions" {
		payload = dropSessionIdentity(payload)
	}
	out := []byte(f.scrub.ScrubString(string(payload)))
	// The header is rebuilt: the length changes, and nothing else in it is
	// needed upstream.
	h := openObj(nil)
	h.str("type", it.hdr.typ)
	h.key("length")
	h.b = strconv.AppendInt(h.b, int64(len(out)), 10)
	h.str("content_type", f.scrub.ScrubString(it.hdr.contentType))
	h.str("filename", f.scrub.ScrubString(it.hdr.filename))
	h.str("attachment_type", it.hdr.attachType)
	return [2][]byte{h.close(), out}, true
}

// textual reports whether an item is text the scrubber can read.
func textual(it *item) bool {
	ct := strings.ToLower(it.hdr.contentType)
	switch {
	case it.hdr.typ == "attachment" && !(strings.HasPrefix(ct, "text/") || strings.Contains(ct, "json") || strings.Contains(ct, "xml") || ct == ""):
		return false
	case it.hdr.typ == "attachment" && it.hdr.attachType != "" && it.hdr.attachType != "event.attachment":
		return false // minidumps, sentryEvent hierarchies in binary form, …
	}
	return utf8.Valid(it.payload)
}

// dropSessionIdentity removes the distinct id, address and user agent of
// session payloads: release health needs none of them.
func dropSessionIdentity(p []byte) []byte {
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil {
		return p
	}
	delete(m, "did")
	if attrs, ok := m["attrs"].(map[string]any); ok {
		delete(attrs, "ip_address")
		delete(attrs, "user_agent")
	}
	if aggs, ok := m["aggregates"].([]any); ok {
		for _, a := range aggs {
			if am, ok := a.(map[string]any); ok {
				delete(am, "did")
			}
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		return p
	}
	return out
}

// enqueue builds an envelope and queues it; a full queue drops it.
func (f *Forwarder) enqueue(project, eventID string, items [][2][]byte) {
	to := f.upstream[project]
	if to == nil {
		f.m.items.WithLabelValues("no_upstream").Add(float64(len(items)))
		return
	}
	var raw bytes.Buffer
	h := openObj(nil)
	h.str("event_id", eventID)
	h.key("sent_at")
	h.b = append(h.b, '"')
	h.b = collector.AppendTimestamp(h.b, time.Now())
	h.b = append(h.b, '"')
	raw.Write(h.close())
	for _, it := range items {
		raw.WriteByte('\n')
		raw.Write(it[0])
		raw.WriteByte('\n')
		raw.Write(it[1])
	}
	raw.WriteByte('\n')
	var body bytes.Buffer
	zw := gzip.NewWriter(&body)
	_, _ = zw.Write(raw.Bytes())
	_ = zw.Close()

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		f.m.envelopes.WithLabelValues("dropped_shutdown").Inc()
		return
	}
	select {
	case f.queue <- &outgoing{to: to, body: body.Bytes()}:
		f.m.envelopes.WithLabelValues("queued").Inc()
		f.m.queue.Inc()
	default:
		f.m.envelopes.WithLabelValues("dropped_queue_full").Inc()
	}
}

// send delivers queued envelopes, retrying network errors, 5xx and 429.
func (f *Forwarder) send() {
	defer f.workers.Done()
	for out := range f.queue {
		f.m.queue.Dec()
		f.deliver(out)
	}
}

func (f *Forwarder) deliver(out *outgoing) {
	backoff := f.cfg.RetryBackoff
	for attempt := 0; ; attempt++ {
		status, retryAfter, err := f.post(out)
		switch {
		case err == nil && status/100 == 2:
			f.m.envelopes.WithLabelValues("sent").Inc()
			return
		case err == nil && status != http.StatusTooManyRequests && status/100 == 4:
			f.m.envelopes.WithLabelValues("dropped_rejected").Inc()
			f.log.Warn("sentry forward: the upstream refused an envelope; dropped", "upstream", out.to.host, "status", status)
			return
		}
		if attempt >= f.cfg.MaxRetries {
			f.m.envelopes.WithLabelValues("dropped_retries").Inc()
			f.log.Warn("sentry forward: giving up on an envelope", "upstream", out.to.host, "attempts", attempt+1, "status", status, "err", errString(err))
			return
		}
		wait := max(backoff, retryAfter)
		backoff = min(backoff*2, time.Minute)
		f.m.envelopes.WithLabelValues("retried").Inc()
		f.log.Debug("sentry forward: retrying", "upstream", out.to.host, "status", status, "err", errString(err), "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-f.ctx.Done():
			t.Stop()
			f.m.envelopes.WithLabelValues("dropped_shutdown").Inc()
			return
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// post sends one envelope and returns the status and the upstream's
// Retry-After.
func (f *Forwarder) post(out *outgoing) (int, time.Duration, error) {
	req, err := http.NewRequestWithContext(f.ctx, http.MethodPost, out.to.envelopeURL(), bytes.NewReader(out.body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/x-sentry-envelope")
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("X-Sentry-Auth", "Sentry sentry_version=7, sentry_client=leitstand/1, sentry_key="+out.to.key)
	resp, err := f.client.Do(req)
	if err != nil {
		// the URL holds no key, but keep the error short and free of it anyway
		return 0, 0, errors.New(strings.ReplaceAll(err.Error(), out.to.key, "KEY"))
	}
	resp.Body.Close()
	var retryAfter time.Duration
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		retryAfter = min(time.Duration(s)*time.Second, 10*time.Minute)
	}
	return resp.StatusCode, retryAfter, nil
}

var _ collector.Sink = (*Forwarder)(nil)
