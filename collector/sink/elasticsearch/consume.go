package elasticsearch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/leitstand/leitstand/collector"
)

// item is one document of a Consume call still to be handled.
type item struct {
	ev       int32     // the event's index in the batch
	attempts int32     // how often it was sent
	dead     *deadInfo // non-nil: it goes to the dead-letter index
}

// deadInfo is why a document goes to the dead-letter index.
type deadInfo struct {
	reason  string // deadInvalid, deadTooLarge or deadExhausted
	status  int
	errType string
	errMsg  string
}

// result is what became of one item in a round.
type result struct {
	status  int  // the item's status, or the whole request's; 0: no answer
	whole   bool // the status is the whole request's
	alone   bool // the request held this document only
	errType string
	errMsg  string
}

// call is the state of one Consume call, pooled.
type call struct {
	b        *collector.Batch
	pending  []item
	next     []item
	results  []result
	maxBytes int // lowered when the cluster answers 413
	lastErr  error
	errMu    sync.Mutex
}

var callPool = sync.Pool{New: func() any { return new(call) }}

// Consume sends the batch and returns nil once every event is indexed, was
// indexed before (409 on create, a replay), or is in the dead-letter index
// with the reason it was refused. Documents the cluster rejects for load
// (429) or server errors (5xx), and requests that fail as a whole, are sent
// again with exponential backoff and jitter, only those documents, up to
// retry_max_attempts times; then Consume returns an error and the spool
// retries the batch later. Nothing is dropped.
//
// Each document's _id is the event's ID with op_type create, so sending a
// document again — within this call, in the spool's retry, or after a
// crash of leitstand — stores it once. An event without an ID (a sink used
// without the spool) gets an id from Elasticsearch and is not protected
// against duplicates when its batch is retried.
//
// Consume may be called concurrently; the bulk requests of all calls share
// the workers limit.
func (s *Sink) Consume(ctx context.Context, b *collector.Batch) error {
	if s.closed.Load() {
		return collector.ErrClosed
	}
	if !s.ready.Load() {
		return fmt.Errorf("elasticsearch not ready: %w", *s.lastErr.Load())
	}
	if b.Len() == 0 {
		return nil
	}
	c := callPool.Get().(*call)
	defer func() {
		c.b, c.lastErr = nil, nil
		clear(c.pending)
		clear(c.next)
		clear(c.results)
		callPool.Put(c)
	}()
	c.b, c.maxBytes = b, int(s.cfg.BulkMaxBytes)
	c.pending = s.initialItems(c.pending[:0], b)

	wait := s.cfg.RetryInitial
	backoffs := 0
	for len(c.pending) > 0 {
		s.round(ctx, c)
		again, stats := s.classify(c)
		if stats.deadLetterRefused > 0 {
			s.rememberDone(b, c.next)
			return fmt.Errorf("elasticsearch: the dead-letter index refused %d documents (%s); the batch stays in the spool", stats.deadLetterRefused, stats.refusedTypes)
		}
		if len(c.next) == 0 {
			break
		}
		c.pending, c.next = c.next, c.pending[:0]
		if !again {
			continue // only moved documents to the dead-letter queue, or split a too-large request
		}
		backoffs++
		if backoffs >= s.cfg.RetryMaxAttempts || !s.ready.Load() || ctx.Err() != nil {
			s.rememberDone(b, c.pending)
			return s.giveUp(c, stats, backoffs)
		}
		select {
		case <-ctx.Done():
			s.rememberDone(b, c.pending)
			return s.giveUp(c, stats, backoffs)
		case <-s.stop:
			s.rememberDone(b, c.pending)
			return collector.ErrClosed
		case <-time.After(wait/2 + rand.N(wait/2+1)):
		}
		wait = min(2*wait, s.cfg.RetryMax)
	}
	s.forgetDone()
	return nil
}

// giveUp builds the error Consume returns to the spool.
func (s *Sink) giveUp(c *call, st roundStats, attempts int) error {
	c.errMu.Lock()
	last := c.lastErr
	c.errMu.Unlock()
	msg := fmt.Sprintf("elasticsearch: %d of %d documents not yet indexed after %d attempts (last round: %d rejected with 429, %d server errors, %d in failed requests); the spool retries the batch",
		len(c.pending), c.b.Len(), attempts, st.rejected, st.serverErrors, st.requestFailed)
	if last != nil {
		return fmt.Errorf("%s: %w", msg, last)
	}
	return errors.New(msg)
}

// initialItems lists the batch's events, leaving out those a failed
// earlier call already indexed.
func (s *Sink) initialItems(dst []item, b *collector.Batch) []item {
	s.doneMu.Lock()
	skip := len(s.doneIDs) > 0
	for i := range b.Events {
		if skip && b.Events[i].ID != "" {
			if _, ok := s.doneIDs[b.Events[i].ID]; ok {
				continue
			}
		}
		dst = append(dst, item{ev: int32(i)})
	}
	s.doneMu.Unlock()
	return dst
}

// rememberDone notes the ids of the batch's events that are handled —
// every event not in left — for the spool's retry of this batch.
func (s *Sink) rememberDone(b *collector.Batch, left []item) {
	open := make(map[int32]bool, len(left))
	for _, it := range left {
		open[it.ev] = true
	}
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	for i := range b.Events {
		id := b.Events[i].ID
		if id == "" || open[int32(i)] || len(s.doneIDs) >= maxDoneIDs {
			continue
		}
		s.doneIDs[strings.Clone(id)] = struct{}{}
	}
}

// forgetDone drops the remembered ids once a batch went through: the batch
// they belonged to is delivered.
func (s *Sink) forgetDone() {
	s.doneMu.Lock()
	if len(s.doneIDs) > 0 {
		clear(s.doneIDs)
	}
	s.doneMu.Unlock()
}

// roundStats counts what a round's classification found.
type roundStats struct {
	rejected, serverErrors, requestFailed int
	deadLetterRefused                     int
	refusedTypes                          string
}

// classify sorts the round's results: done items are dropped, retryable
// ones go to c.next, refused ones become dead-letter items (also in
// c.next, sent at once). again tells whether c.next holds documents that
// need a backoff before they are sent again.
func (s *Sink) classify(c *call) (again bool, st roundStats) {
	c.next = c.next[:0]
	now := time.Now()
	var newDead map[string]int
	var refused map[string]int
	var deadTargets []string
	halved := false
	tracking := s.tracksFailing()
	for k := range c.pending {
		it, r := c.pending[k], c.results[k]
		e := &c.b.Events[it.ev]
		if !r.whole {
			s.m.items.WithLabelValues(statusClass(r.status)).Inc()
		}
		switch {
		case !r.whole && (r.status >= 200 && r.status < 300 || r.status == 409):
			if it.dead != nil {
				s.m.deadLettered.WithLabelValues(it.dead.reason).Inc()
			}
			if tracking {
				s.clearFailing(e.ID)
			}
			continue

		case r.whole && r.status == 413:
			// The request was larger than the cluster takes
			// (http.max_content_length): send smaller ones, and a single
			// document that is too large on its own to the dead letters.
			if r.alone {
				if it.dead != nil {
					st.deadLetterRefused++
					s.m.deadLetterFailed.Inc()
					refused = addCount(refused, "too_large")
					c.next = append(c.next, it)
					continue
				}
				it.dead = &deadInfo{reason: deadTooLarge, status: 413, errType: "request_entity_too_large",
					errMsg: "the document alone is larger than the cluster's http.max_content_length"}
				newDead = addCount(newDead, it.dead.errType)
				deadTargets = appendTarget(deadTargets, s, e)
			} else if !halved {
				c.maxBytes = max(c.maxBytes/2, 1)
				halved = true
			}
			c.next = append(c.next, it)
			continue

		case r.whole || r.status == 0:
			st.requestFailed++
			s.m.retries.WithLabelValues(retryRequest).Inc()

		case r.status == 429:
			st.rejected++
			s.m.retries.WithLabelValues(retryRejected).Inc()

		case r.status >= 500 || r.status == 408 || r.status == 403 && r.errType == "cluster_block_exception":
			// Server errors and blocks (a read-only index) pass; documents
			// that keep failing for dead_letter_after go to the dead letters.
			if it.dead == nil && s.failingTooLong(e.ID, now) {
				it.dead = &deadInfo{reason: deadExhausted, status: r.status, errType: r.errType,
					errMsg: fmt.Sprintf("failed with server errors for longer than dead_letter_after (%s); last: %s", s.cfg.DeadLetterAfter, r.errMsg)}
				newDead = addCount(newDead, it.dead.errType)
				deadTargets = appendTarget(deadTargets, s, e)
				c.next = append(c.next, it)
				continue
			}
			st.serverErrors++
			s.m.retries.WithLabelValues(retryServerError).Inc()

		default: // any other 4xx: the document itself is refused
			if it.dead != nil {
				st.deadLetterRefused++
				s.m.deadLetterFailed.Inc()
				refused = addCount(refused, r.errType)
				c.next = append(c.next, it)
				continue
			}
			it.dead = &deadInfo{reason: deadInvalid, status: r.status, errType: r.errType, errMsg: r.errMsg}
			newDead = addCount(newDead, r.errType)
			deadTargets = appendTarget(deadTargets, s, e)
			c.next = append(c.next, it)
			continue
		}
		again = true
		c.next = append(c.next, it)
	}
	if len(newDead) > 0 {
		// Types and targets only: Elasticsearch's reasons quote values.
		s.log.Warn("elasticsearch: documents refused; writing them to the dead-letter index",
			"count", sumCounts(newDead), "error_types", formatCounts(newDead), "targets", deadTargets,
			"dead_letter_index", s.cfg.DeadLetterIndex+"-*")
	}
	if len(refused) > 0 {
		st.refusedTypes = formatCounts(refused)
		s.log.Error("elasticsearch: the dead-letter index refused documents; their batch stays in the spool",
			"count", st.deadLetterRefused, "error_types", st.refusedTypes, "dead_letter_index", s.cfg.DeadLetterIndex+"-*")
	}
	return again, st
}

func addCount(m map[string]int, k string) map[string]int {
	if m == nil {
		m = map[string]int{}
	}
	if k == "" {
		k = "unknown"
	}
	m[k]++
	return m
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// formatCounts renders {"a":2,"b":1} as "a=2 b=1", sorted.
func formatCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}

// appendTarget adds an event's target to a short list for a log line.
func appendTarget(list []string, s *Sink, e *collector.Event) []string {
	if len(list) >= 5 {
		return list
	}
	t := string(s.targets.appendTarget(nil, e.Dataset(), e.Timestamp))
	for _, x := range list {
		if x == t {
			return list
		}
	}
	return append(list, t)
}

// failingTooLong records that the document with id failed with a server
// error and tells whether it has been failing for dead_letter_after.
func (s *Sink) failingTooLong(id string, now time.Time) bool {
	if id == "" || s.cfg.DeadLetterAfter == 0 {
		return false
	}
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	since, ok := s.failingSince[id]
	if !ok {
		if len(s.failingSince) < maxFailingSince {
			s.failingSince[strings.Clone(id)] = now
		}
		return false
	}
	if now.Sub(since) < s.cfg.DeadLetterAfter {
		return false
	}
	delete(s.failingSince, id)
	return true
}

// tracksFailing tells whether any document is being timed for
// dead_letter_after, so the common round skips clearFailing's lock.
func (s *Sink) tracksFailing() bool {
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	return len(s.failingSince) > 0
}

func (s *Sink) clearFailing(id string) {
	if id == "" {
		return
	}
	s.doneMu.Lock()
	delete(s.failingSince, id)
	s.doneMu.Unlock()
}
