package rules

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// ErrNotRunning is returned by appends and queries while the engine is not
// started (or already shut down).
var ErrNotRunning = errors.New("rule engine is not running")

// countingAppendable counts the samples committed through it under one
// source label, so every way into the TSDB shows up in
// leitstand_rule_samples_appended_total.
type countingAppendable struct {
	next     storage.AppendableV2
	appended prometheus.Counter
	refused  prometheus.Counter
}

func newCounting(next storage.AppendableV2, m *metrics, source string) *countingAppendable {
	return &countingAppendable{
		next:     next,
		appended: m.appended.WithLabelValues(source),
		refused:  m.appendFailed.WithLabelValues(source),
	}
}

func (c *countingAppendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return &countingAppender{next: c.next.AppenderV2(ctx), c: c}
}

type countingAppender struct {
	next     storage.AppenderV2
	c        *countingAppendable
	ok, fail int
}

func (a *countingAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	r, err := a.next.Append(ref, ls, st, t, v, h, fh, opts)
	var partial *storage.AppendPartialError
	if err != nil && !errors.As(err, &partial) {
		a.fail++
	} else {
		a.ok++
	}
	return r, err
}

// AppendExemplars passes exemplars on when the storage takes them (remote
// write 2.0 needs it).
func (a *countingAppender) AppendExemplars(ref storage.SeriesRef, ls labels.Labels, es []exemplar.Exemplar) (storage.SeriesRef, error) {
	if ea, ok := a.next.(storage.ExemplarAppenderV2); ok {
		return ea.AppendExemplars(ref, ls, es)
	}
	return ref, nil
}

func (a *countingAppender) Commit() error {
	err := a.next.Commit()
	if err != nil {
		a.c.refused.Add(float64(a.ok + a.fail))
		return err
	}
	a.c.appended.Add(float64(a.ok))
	a.c.refused.Add(float64(a.fail))
	return nil
}

func (a *countingAppender) Rollback() error {
	a.c.refused.Add(float64(a.fail))
	return a.next.Rollback()
}

// errAppender refuses everything: the engine is not running.
type errAppender struct{ err error }

func (e errAppender) Append(storage.SeriesRef, labels.Labels, int64, int64, float64, *histogram.Histogram, *histogram.FloatHistogram, storage.AppendV2Options) (storage.SeriesRef, error) {
	return 0, e.err
}
func (e errAppender) Commit() error   { return e.err }
func (e errAppender) Rollback() error { return nil }

// engineAppendable is the stable appendable handed out by Appendable: it
// appends to whatever the engine runs on now, across Start/Shutdown cycles.
type engineAppendable struct {
	e      *Engine
	source string
}

func (a engineAppendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	r := a.e.current()
	if r == nil {
		return errAppender{err: ErrNotRunning}
	}
	return r.appendable(a.source).AppenderV2(ctx)
}

// engineQueryable is the stable queryable handed out by Queryable.
type engineQueryable struct{ e *Engine }

func (q engineQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	r := q.e.current()
	if r == nil || r.queryable == nil {
		return nil, ErrNotRunning
	}
	return r.queryable.Querier(mint, maxt)
}

var (
	_ storage.ExemplarAppenderV2 = (*countingAppender)(nil)
	_ storage.AppendableV2       = engineAppendable{}
	_ storage.Queryable          = engineQueryable{}
)
