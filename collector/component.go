package collector

import (
	"context"
	"errors"
)

// Component is the lifecycle every running part of leitstand keeps.
// Shutdown must be safe without Start and when called twice; work begun in
// Start runs on a context of its own, not on the one Start was given.
type Component interface {
	Start(ctx context.Context) error
	Shutdown(ctx context.Context) error
}

// Sink is where events leave the pipeline: a file, the spool,
// Elasticsearch, the aggregator. Consume returns once the sink has accepted
// the batch (what "accepted" means is the sink's documented guarantee); it is
// called from several pipeline workers at once and must not keep the batch.
type Sink interface {
	Component
	Name() string
	Consume(ctx context.Context, b *Batch) error
}

// Stage transforms events between the queue and the sinks (the anonymizer
// is one). It may rewrite fields in place, using the batch's arena for new
// strings, and is called from several workers at once on different batches.
type Stage interface {
	Name() string
	Process(b *Batch)
}

// ReadinessChecker is implemented by components that can be alive but not
// ready (a sink whose peer is unreachable); /readyz asks each one.
type ReadinessChecker interface {
	Ready() error
}

// Errors the pipeline returns to receivers, so each can answer its sender in
// its own protocol (HTTP 429/503, a syslog drop counter).
var (
	// ErrQueueFull: the pipeline is at capacity and the source's policy
	// refused to wait (longer).
	ErrQueueFull = errors.New("pipeline queue is full")
	// ErrClosed: the pipeline is shutting down and takes no new batches.
	ErrClosed = errors.New("pipeline is shutting down")
	// ErrSpoolFull: the durable buffer in front of the sinks that talk to
	// peers (the spool) is at its cap. It wraps ErrQueueFull, so a source
	// that only knows "full" answers as for a full queue (429); one that
	// tells its sender the reason can say which buffer is full.
	ErrSpoolFull error = spoolFullError{}
)

type spoolFullError struct{}

func (spoolFullError) Error() string { return "the spool is full" }
func (spoolFullError) Unwrap() error { return ErrQueueFull }
