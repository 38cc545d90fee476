package reliability

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// batch is one request a client sends until it is acknowledged: the same
// bytes every time, so a retry carries the same ids.
type batch struct {
	path     string
	ctype    string
	header   http.Header
	body     []byte
	messages []string // the unique message of each event
	ids      []string // the document id each event must get ("" if none)
}

// loadGen is a set of at-least-once clients: each sends its batch until
// it gets a 2xx, whatever happens to the daemon in between, then makes
// the next one. It keeps the ledger of what was sent and acknowledged.
type loadGen struct {
	d       *daemon
	clients int
	// rate is the events/s offered by all clients together; 0 is as fast
	// as they can.
	rate float64
	make func(client, seq int) batch

	client *http.Client

	stopNew chan struct{} // closed: no new batches, finish the pending ones
	halt    chan struct{} // closed: give up at once
	wg      sync.WaitGroup

	mu    sync.Mutex
	sent  map[string]string // message → id
	acked map[string]string

	requests, okReqs, errs atomic.Int64
	statusMu               sync.Mutex
	statuses               map[int]int
	bodies                 map[int]string // one answer body per status
	started                time.Time
}

func newLoadGen(d *daemon, clients int, rate float64, mk func(client, seq int) batch) *loadGen {
	return &loadGen{
		d: d, clients: clients, rate: rate, make: mk,
		client:   &http.Client{Timeout: 30 * time.Second, Transport: newTransport()},
		stopNew:  make(chan struct{}),
		halt:     make(chan struct{}),
		sent:     map[string]string{},
		acked:    map[string]string{},
		statuses: map[int]int{},
		bodies:   map[int]string{},
	}
}

func (g *loadGen) start() *loadGen {
	g.started = time.Now()
	for c := 0; c < g.clients; c++ {
		g.wg.Add(1)
		go g.run(c)
	}
	return g
}

// finish stops making new batches and waits until every pending one was
// acknowledged, or timeout passed (then it gives up and reports false).
func (g *loadGen) finish(timeout time.Duration) bool {
	close(g.stopNew)
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		close(g.halt)
		<-done
		return false
	}
}

func (g *loadGen) run(c int) {
	defer g.wg.Done()
	var pending *batch
	next := time.Now()
	for seq := 0; ; {
		if pending == nil {
			select {
			case <-g.stopNew:
				return
			default:
			}
			b := g.make(c, seq)
			seq++
			pending = &b
			g.mu.Lock()
			for i, m := range b.messages {
				g.sent[m] = b.ids[i]
			}
			g.mu.Unlock()
			if g.rate > 0 {
				// Each client offers its share of the rate; a client
				// that falls behind does not burst to catch up by more
				// than a second.
				per := time.Duration(float64(time.Second) * float64(len(b.messages)) * float64(g.clients) / g.rate)
				next = next.Add(per)
				if floor := time.Now().Add(-time.Second); next.Before(floor) {
					next = floor
				}
				if wait := time.Until(next); wait > 0 {
					select {
					case <-time.After(wait):
					case <-g.halt:
						return
					}
				}
			}
		}
		select {
		case <-g.halt:
			return
		default:
		}
		g.requests.Add(1)
		code, body, err := post(context.Background(), g.client, g.d.url+pending.path, pending.ctype, pending.body, pending.header)
		if err != nil {
			g.errs.Add(1)
			time.Sleep(20 * time.Millisecond) // the daemon is gone or going
			continue
		}
		g.statusMu.Lock()
		g.statuses[code]++
		if _, ok := g.bodies[code]; !ok {
			g.bodies[code] = string(body)
		}
		g.statusMu.Unlock()
		if code/100 == 2 {
			g.okReqs.Add(1)
			g.mu.Lock()
			for i, m := range pending.messages {
				g.acked[m] = pending.ids[i]
			}
			g.mu.Unlock()
			pending = nil
			continue
		}
		time.Sleep(50 * time.Millisecond) // 429 or 503: retry later
	}
}

// ledger returns copies of the sent and acknowledged maps.
func (g *loadGen) ledger() (sent, acked map[string]string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	sent = make(map[string]string, len(g.sent))
	for k, v := range g.sent {
		sent[k] = v
	}
	acked = make(map[string]string, len(g.acked))
	for k, v := range g.acked {
		acked[k] = v
	}
	return sent, acked
}

func (g *loadGen) ackedCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.acked)
}

func (g *loadGen) status(code int) int {
	g.statusMu.Lock()
	defer g.statusMu.Unlock()
	return g.statuses[code]
}

func (g *loadGen) statusSummary() string {
	g.statusMu.Lock()
	defer g.statusMu.Unlock()
	return fmt.Sprint(g.statuses)
}

// ndjsonBatches makes NDJSON requests of n events each with an
// Idempotency-Key, so every event has the id key:line and a retry stores
// nothing twice. Messages are "<prefix>-c<client>-s<seq>-l<line>".
func ndjsonBatches(prefix, dataset string, n int) func(c, seq int) batch {
	return func(c, seq int) batch {
		key := fmt.Sprintf("%s-c%d-s%d", prefix, c, seq)
		b := batch{path: "/v1/ingest", ctype: "application/x-ndjson", header: http.Header{"Idempotency-Key": {key}}}
		var buf bytes.Buffer
		for i := 1; i <= n; i++ {
			m := fmt.Sprintf("%s-l%d", key, i)
			fmt.Fprintf(&buf, `{"message":%q,"event":{"dataset":%q},"labels":{"pad":"reliability suite filler so an event is a realistic size"}}`+"\n", m, dataset)
			b.messages = append(b.messages, m)
			b.ids = append(b.ids, fmt.Sprintf("%s:%d", key, i))
		}
		b.body = buf.Bytes()
		return b
	}
}

// sentryBatches makes Sentry envelopes of n error events with fixed
// event_ids (the receiver keeps an SDK's event_id as the event's id), sent
// with the embedded default's dev key of project 1.
func sentryBatches(prefix string, n int) func(c, seq int) batch {
	return func(c, seq int) batch {
		b := batch{path: "/api/1/envelope/", ctype: "application/x-sentry-envelope",
			header: http.Header{"X-Sentry-Auth": {"Sentry sentry_version=7, sentry_key=dev, sentry_client=reliability/1.0"}}}
		var buf bytes.Buffer
		buf.WriteString(`{"sent_at":"` + time.Now().UTC().Format(time.RFC3339Nano) + `"}` + "\n")
		for i := 0; i < n; i++ {
			m := fmt.Sprintf("%s-c%d-s%d-e%d", prefix, c, seq, i)
			// 32 hex digits made of client, sequence and item: unique
			// per event and the same on every retry.
			id := fmt.Sprintf("%08x%016x%08x", c+1, seq, i)
			item := fmt.Sprintf(`{"event_id":%q,"level":"error","platform":"go","message":%q,"timestamp":%d}`, id, m, time.Now().Unix())
			fmt.Fprintf(&buf, `{"type":"event","length":%d}`+"\n%s\n", len(item), item)
			b.messages = append(b.messages, m)
			b.ids = append(b.ids, id)
		}
		b.body = buf.Bytes()
		return b
	}
}
