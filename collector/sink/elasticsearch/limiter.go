package elasticsearch

import (
	"context"
	"sync"
	"time"
)

// limiter bounds the bulk requests in flight and adapts the bound to what
// the cluster takes (additive increase, multiplicative decrease, as TCP
// does): a request that meets a 429 — the cluster's write queue is full —
// halves the bound, at most once per cut interval; each request answered
// without one raises it by 1/bound, so a full window of good answers adds
// one slot, up to `workers`. Resending rejected documents at full
// concurrency would only keep the queue full: the cluster spends its CPU
// on refusing them.
type limiter struct {
	max int

	mu       sync.Mutex
	limit    float64
	inflight int
	lastCut  time.Time
	changed  chan struct{} // closed and replaced when a slot may have come free
	onChange func(limit int)
}

// cutInterval keeps the answers to requests sent before a cut, which still
// carry 429s, from cutting again.
const cutInterval = 500 * time.Millisecond

func newLimiter(max int, onChange func(int)) *limiter {
	l := &limiter{max: max, limit: float64(max), changed: make(chan struct{}), onChange: onChange}
	onChange(max)
	return l
}

// acquire waits for a slot.
func (l *limiter) acquire(ctx context.Context) error {
	for {
		l.mu.Lock()
		if l.inflight < int(l.limit) {
			l.inflight++
			l.mu.Unlock()
			return nil
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// release frees a slot; rejected tells whether the request met a 429.
func (l *limiter) release(rejected bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight--
	old := int(l.limit)
	switch {
	case rejected && time.Since(l.lastCut) >= cutInterval:
		l.limit = max(1, l.limit/2)
		l.lastCut = time.Now()
	case !rejected:
		l.limit = min(float64(l.max), l.limit+1/l.limit)
	}
	if int(l.limit) != old {
		l.onChange(int(l.limit))
	}
	close(l.changed)
	l.changed = make(chan struct{})
}
