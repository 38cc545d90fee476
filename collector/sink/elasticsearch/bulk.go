package elasticsearch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/leitstand/leitstand/collector"
)

// The sink builds _bulk bodies itself rather than through esutil.BulkIndexer:
// the indexer owns its own queue and flush timer, so it would hold events
// after Consume returned (the spool must know when each batch is done),
// calls back per item through closures, and has no way to resend only the
// items that failed. Here one Consume call owns its documents from the
// encoding to the last per-item answer, each document is encoded once per
// attempt straight from the event into a pooled buffer, and each answer is
// matched to its document by position, which the bulk API guarantees.

// minChunkEvents keeps a batch from being cut into requests so small that
// their overhead outweighs the parallelism.
const minChunkEvents = 200

// deadLetterOriginalMax caps the original document kept in a dead letter
// when it was refused for its size.
const deadLetterOriginalMax = 64 << 10

// chunkSize is how many documents go into one request when n are pending:
// enough requests to keep the workers busy, none above bulk_max_events.
func (s *Sink) chunkSize(n int) int {
	chunks := (n + s.cfg.BulkMaxEvents - 1) / s.cfg.BulkMaxEvents
	if chunks < s.cfg.Workers {
		chunks = min(s.cfg.Workers, (n+minChunkEvents-1)/minChunkEvents)
	}
	chunks = max(chunks, 1)
	return (n + chunks - 1) / chunks
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 256<<10); return &b }}

func getBuf() *[]byte { b := bufPool.Get().(*[]byte); *b = (*b)[:0]; return b }

func putBuf(b *[]byte) {
	if cap(*b) > 16<<20 {
		return // a rare giant request must not pin its memory
	}
	bufPool.Put(b)
}

// round sends every pending item once and records each one's result. The
// calling goroutine encodes; requests are compressed, sent and answered on
// up to `workers` goroutines shared by all calls.
func (s *Sink) round(ctx context.Context, c *call) {
	n := len(c.pending)
	if cap(c.results) < n {
		c.results = make([]result, n)
	}
	c.results = c.results[:n]
	clear(c.results)
	per := s.chunkSize(n)
	now := time.Now()

	var wg sync.WaitGroup
	lo, buf := 0, getBuf()
	for k := 0; k < n; k++ {
		off := len(*buf)
		*buf = s.appendItem(*buf, c, &c.pending[k], now)
		if len(*buf) > c.maxBytes && k > lo {
			// This document would make the request too large: it starts
			// the next one.
			tail := getBuf()
			*tail = append(*tail, (*buf)[off:]...)
			*buf = (*buf)[:off]
			s.dispatch(ctx, c, lo, k, buf, &wg)
			lo, buf = k, tail
		}
		if k+1-lo >= per || len(*buf) >= c.maxBytes {
			s.dispatch(ctx, c, lo, k+1, buf, &wg)
			lo, buf = k+1, getBuf()
		}
	}
	if lo < n {
		s.dispatch(ctx, c, lo, n, buf, &wg)
	} else {
		putBuf(buf)
	}
	wg.Wait()
}

// dispatch sends pending[lo:hi], encoded in buf, once a worker is free.
func (s *Sink) dispatch(ctx context.Context, c *call, lo, hi int, buf *[]byte, wg *sync.WaitGroup) {
	for k := lo; k < hi; k++ {
		c.pending[k].attempts++
	}
	if err := s.lim.acquire(ctx); err != nil {
		putBuf(buf)
		c.fail(lo, hi, 0, err)
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer putBuf(buf)
		s.lim.release(s.send(ctx, c, lo, hi, *buf))
	}()
}

// fail records that the request for pending[lo:hi] failed as a whole.
func (c *call) fail(lo, hi, status int, err error) {
	for k := lo; k < hi; k++ {
		c.results[k] = result{status: status, whole: true, alone: hi-lo == 1}
	}
	c.errMu.Lock()
	c.lastErr = err
	c.errMu.Unlock()
}

var gzipPool = sync.Pool{New: func() any {
	// The fastest level: NDJSON of log events still shrinks several times,
	// and leitstand's CPU is better spent elsewhere.
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

// bulkQuery asks only for what the per-item handling reads, which keeps
// answers small. Elasticsearch's own timeout for unavailable shards is
// set below the request timeout, so such items come back as 503 in time.
func (s *Sink) bulkQuery() string {
	return "filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason,items.*.error.caused_by.type,items.*.error.caused_by.reason" +
		"&timeout=" + strconv.FormatInt(max(s.cfg.RequestTimeout/2, time.Second).Milliseconds(), 10) + "ms"
}

// send posts one bulk request and records the answer of each item. It
// reports whether the cluster answered 429, to the request or any item.
func (s *Sink) send(ctx context.Context, c *call, lo, hi int, body []byte) (rejected bool) {
	s.m.bytesEncoded.Add(float64(len(body)))
	wire := body
	var zbuf *[]byte
	if s.cfg.Compress {
		zbuf = getBuf()
		defer putBuf(zbuf)
		w := bytes.NewBuffer(*zbuf)
		gz := gzipPool.Get().(*gzip.Writer)
		gz.Reset(w)
		_, _ = gz.Write(body) // a bytes.Buffer does not fail
		_ = gz.Close()
		gzipPool.Put(gz)
		*zbuf = w.Bytes()
		wire = *zbuf
	}
	reqCtx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	req := s.newRequest(reqCtx, http.MethodPost, "/_bulk", s.bulkQuery(), wire)
	req.Header.Set("Content-Type", "application/x-ndjson")
	if s.cfg.Compress {
		req.Header.Set("Content-Encoding", "gzip")
	}

	rbuf := getBuf()
	defer putBuf(rbuf)
	s.m.inflight.Inc()
	start := time.Now()
	res, err := s.perform(req, *rbuf)
	s.m.latency.Observe(time.Since(start).Seconds())
	s.m.inflight.Dec()
	s.m.bytesSent.Add(float64(len(wire)))
	if cap(res.body) > cap(*rbuf) {
		*rbuf = res.body[:0]
	}
	if err != nil {
		s.m.requests.WithLabelValues(outcomeNetwork).Inc()
		c.fail(lo, hi, 0, err)
		if ctx.Err() == nil {
			s.markDown(res.peer, errors.Unwrap(err))
		}
		return false
	}
	if res.status != http.StatusOK {
		s.m.requests.WithLabelValues(outcomeHTTPError).Inc()
		c.fail(lo, hi, res.status, fmt.Errorf("bulk request: %s", res.describe()))
		switch res.status {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			s.markDown(res.peer, fmt.Errorf("answered %d", res.status))
		}
		return res.status == http.StatusTooManyRequests
	}
	if allCreated(res.body, hi-lo) {
		for k := lo; k < hi; k++ {
			c.results[k] = result{status: http.StatusCreated}
		}
		s.m.requests.WithLabelValues(outcomeOK).Inc()
		return false
	}
	ans := answerPool.Get().(*bulkAnswer)
	defer answerPool.Put(ans)
	clear(ans.Items[:cap(ans.Items)])
	ans.Items, ans.Errors = ans.Items[:0], false
	if err := json.Unmarshal(res.body, ans); err != nil || len(ans.Items) != hi-lo {
		// Without an exact answer per document nothing is known: send
		// them all again (409 marks those that did get in).
		s.m.requests.WithLabelValues(outcomeHTTPError).Inc()
		if err == nil {
			err = fmt.Errorf("%d items in the answer for %d documents", len(ans.Items), hi-lo)
		}
		c.fail(lo, hi, 0, fmt.Errorf("elasticsearch %s: unreadable bulk answer: %w", res.peer, err))
		return false
	}
	failed := false
	for i := range ans.Items {
		a := &ans.Items[i].Create
		r := result{status: a.Status}
		if a.Error != nil {
			r.errType, r.errMsg = a.Error.Type, a.Error.Reason
			if cb := a.Error.CausedBy; cb != nil {
				r.errMsg += " (caused by " + cb.Type + ": " + cb.Reason + ")"
			}
		}
		if r.status != http.StatusOK && r.status != http.StatusCreated && r.status != http.StatusConflict {
			failed = true
		}
		if r.status == http.StatusTooManyRequests {
			rejected = true
		}
		c.results[lo+i] = r
	}
	if failed {
		s.m.requests.WithLabelValues(outcomeItemErrors).Inc()
	} else {
		s.m.requests.WithLabelValues(outcomeOK).Inc()
	}
	return rejected
}

// allCreated recognizes, byte by byte, the answer of a bulk request in
// which each of n documents was created — by far the most common answer —
// so that it costs no JSON decoding. Any other answer, even one that
// differs only in spacing, goes to the full decoder.
func allCreated(body []byte, n int) bool {
	const head, item, tail = `{"errors":false,"items":[`, `{"create":{"status":201}}`, `]}`
	if n == 0 || len(body) != len(head)+n*len(item)+(n-1)+len(tail) {
		return false
	}
	if string(body[:len(head)]) != head || string(body[len(body)-len(tail):]) != tail {
		return false
	}
	p := body[len(head) : len(body)-len(tail)]
	for i := 0; i < n; i++ {
		if i > 0 {
			if p[0] != ',' {
				return false
			}
			p = p[1:]
		}
		if string(p[:len(item)]) != item {
			return false
		}
		p = p[len(item):]
	}
	return true
}

// bulkAnswer is the _bulk answer as filtered by bulkQuery. The sink only
// sends create actions, so every item is {"create":{...}}; an item under
// another key decodes with status 0 and is retried.
type bulkAnswer struct {
	Errors bool `json:"errors"`
	Items  []struct {
		Create itemAnswer `json:"create"`
	} `json:"items"`
}

type itemAnswer struct {
	Status int        `json:"status"`
	Error  *itemError `json:"error"`
}

type itemError struct {
	Type     string `json:"type"`
	Reason   string `json:"reason"`
	CausedBy *struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	} `json:"caused_by"`
}

var answerPool = sync.Pool{New: func() any { return new(bulkAnswer) }}

// appendItem appends one bulk action and its document.
func (s *Sink) appendItem(dst []byte, c *call, it *item, now time.Time) []byte {
	e := &c.b.Events[it.ev]
	if it.dead != nil {
		return s.appendDeadLetter(dst, e, it, now)
	}
	dst = append(dst, `{"create":{"_index":"`...)
	dst = s.targets.appendTarget(dst, e.Dataset(), e.Timestamp)
	dst = append(dst, '"')
	if e.ID != "" {
		dst = append(dst, `,"_id":`...)
		dst = collector.AppendJSONString(dst, e.ID)
	}
	dst = append(dst, "}}\n"...)
	dst = e.AppendJSON(dst)
	return append(dst, '\n')
}

// appendDeadLetter appends the action and document that put a refused
// event into the dead-letter index: the event as a JSON string (so it
// cannot be refused again for its fields), the reason, the status, the
// target it was meant for and when it was dead-lettered. It goes to the
// daily index of the event's own date with the event's id, so a replay
// finds it there (409) instead of adding a second copy.
func (s *Sink) appendDeadLetter(dst []byte, e *collector.Event, it *item, now time.Time) []byte {
	d := it.dead
	dst = append(dst, `{"create":{"_index":"`...)
	dst = append(dst, s.cfg.DeadLetterIndex...)
	dst = append(dst, '-')
	dst = appendDate(dst, e.Timestamp)
	dst = append(dst, '"')
	if e.ID != "" {
		dst = append(dst, `,"_id":`...)
		dst = collector.AppendJSONString(dst, e.ID)
	}
	dst = append(dst, "}}\n"...)

	orig := getBuf()
	*orig = e.AppendJSON(*orig)
	truncated := false
	if d.reason == deadTooLarge && len(*orig) > deadLetterOriginalMax {
		*orig, truncated = (*orig)[:deadLetterOriginalMax], true
	}
	dst = append(dst, `{"@timestamp":"`...)
	dst = collector.AppendTimestamp(dst, now)
	dst = append(dst, `","event":{"dataset":`...)
	dst = collector.AppendJSONString(dst, e.Dataset())
	dst = append(dst, `,"original":`...)
	dst = collector.AppendJSONString(dst, string(*orig))
	putBuf(orig)
	dst = append(dst, `},"error":{"message":`...)
	dst = collector.AppendJSONString(dst, d.errMsg)
	dst = append(dst, `,"type":`...)
	dst = collector.AppendJSONString(dst, d.errType)
	dst = append(dst, `},"http":{"response":{"status_code":`...)
	dst = strconv.AppendInt(dst, int64(d.status), 10)
	dst = append(dst, `}},"leitstand":{"dead_letter":{"attempts":`...)
	dst = strconv.AppendInt(dst, int64(it.attempts), 10)
	dst = append(dst, `,"id":`...)
	dst = collector.AppendJSONString(dst, e.ID)
	dst = append(dst, `,"reason":"`...)
	dst = append(dst, d.reason...)
	dst = append(dst, `","target":"`...)
	dst = s.targets.appendTarget(dst, e.Dataset(), e.Timestamp)
	dst = append(dst, `","truncated":`...)
	dst = strconv.AppendBool(dst, truncated)
	return append(dst, "}}}\n"...)
}
