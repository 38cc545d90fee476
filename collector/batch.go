package collector

import (
	"sync"
	"time"
	"unsafe"
)

// Batch is the unit that travels through the pipeline: the events of one
// request, datagram burst or file read, and the memory their strings live in.
// Batches are pooled: a batch and everything its events point to are reused
// after Release, which is what keeps the hot path free of per-event
// allocations.
type Batch struct {
	// Events holds the batch's events; use Next to add one so that field
	// slices of earlier uses are reused.
	Events []Event
	// Received is when the receiver read the batch; it becomes event.ingested.
	Received time.Time
	// Source names the receiver, for metrics and logs.
	Source string
	// Arena holds strings that decoders and processors create.
	Arena Arena

	// keep holds buffers whose bytes events point into (a request body), so
	// they are recycled with the batch and not before.
	keep []*[]byte
	// ingested caches Received formatted once for every event of the batch.
	ingested string
}

var batchPool = sync.Pool{New: func() any { return new(Batch) }}

// NewBatch returns an empty batch from the pool.
func NewBatch(source string) *Batch {
	b := batchPool.Get().(*Batch)
	b.Source = source
	b.Received = time.Now()
	return b
}

// Release returns the batch, and buffers it keeps, to their pools. Nothing
// may use the batch or its events afterwards.
func (b *Batch) Release() {
	for i := range b.Events {
		b.Events[i].Reset()
	}
	b.Events = b.Events[:0]
	for _, buf := range b.keep {
		PutBuffer(buf)
	}
	clear(b.keep)
	b.keep = b.keep[:0]
	b.Arena.Reset()
	b.Source, b.ingested = "", ""
	if cap(b.Events) > maxPooledEvents {
		return // let an unusually large batch go rather than pin its memory
	}
	batchPool.Put(b)
}

// maxPooledEvents bounds the memory a pooled batch keeps between uses.
const maxPooledEvents = 1 << 16

// Next appends an empty event to the batch and returns it. The pointer is
// valid until the next call to Next.
func (b *Batch) Next() *Event {
	if len(b.Events) < cap(b.Events) {
		b.Events = b.Events[:len(b.Events)+1]
	} else {
		b.Events = append(b.Events, Event{})
	}
	return &b.Events[len(b.Events)-1]
}

// Drop removes the last event (one that failed to decode).
func (b *Batch) Drop() {
	b.Events[len(b.Events)-1].Reset()
	b.Events = b.Events[:len(b.Events)-1]
}

// Len is the number of events in the batch.
func (b *Batch) Len() int { return len(b.Events) }

// Keep ties buf's lifetime to the batch: it goes back to the buffer pool when
// the batch is released, since events may point into it.
func (b *Batch) Keep(buf *[]byte) { b.keep = append(b.keep, buf) }

// Ingested returns Received formatted as an ECS timestamp, built once per batch.
func (b *Batch) Ingested() string {
	if b.ingested == "" {
		var buf [32]byte
		b.ingested = b.Arena.String(AppendTimestamp(buf[:0], b.Received))
	}
	return b.ingested
}

// Arena is an append-only store for strings built while decoding or
// scrubbing a batch. It hands out strings that point into its chunks, so
// building a string costs a copy, not an allocation. When a chunk is full a
// new one is started; old chunks stay alive for as long as strings point
// into them and are never written again, so handed-out strings do not
// change until Reset.
type Arena struct {
	chunk []byte
}

const arenaChunk = 32 << 10

// String copies p into the arena and returns it as a string.
func (a *Arena) String(p []byte) string {
	if len(p) == 0 {
		return ""
	}
	start := a.grow(len(p))
	a.chunk = append(a.chunk, p...)
	return unsafe.String(&a.chunk[start], len(p))
}

// Concat returns the concatenation of parts, stored in the arena.
func (a *Arena) Concat(parts ...string) string {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n == 0 {
		return ""
	}
	start := a.grow(n)
	for _, p := range parts {
		a.chunk = append(a.chunk, p...)
	}
	return unsafe.String(&a.chunk[start], n)
}

// Builder returns spare arena capacity to append into, for callers that do
// not know a string's length in advance. Pass the result to Commit before
// any other use of the arena.
func (a *Arena) Builder(expect int) []byte {
	start := a.grow(expect)
	return a.chunk[start:start:cap(a.chunk)]
}

// Commit turns bytes appended to a Builder slice into an arena string. If the
// appends outgrew the arena's chunk, the slice already lives in memory of its
// own, which the string then keeps alive.
func (a *Arena) Commit(p []byte) string {
	if len(p) == 0 {
		return ""
	}
	if free := a.chunk[len(a.chunk):cap(a.chunk)]; cap(free) > 0 && unsafe.SliceData(free) == unsafe.SliceData(p) {
		a.chunk = a.chunk[:len(a.chunk)+len(p)]
	}
	return unsafe.String(unsafe.SliceData(p), len(p))
}

// grow makes room for n bytes and returns the offset they will start at.
func (a *Arena) grow(n int) int {
	if len(a.chunk)+n <= cap(a.chunk) {
		return len(a.chunk)
	}
	size := arenaChunk
	if n > size {
		size = n
	}
	a.chunk = make([]byte, 0, size)
	return 0
}

// Reset lets the arena reuse its current chunk. Strings handed out before are
// invalid afterwards.
func (a *Arena) Reset() { a.chunk = a.chunk[:0] }

var bufferPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// GetBuffer returns an empty byte buffer from a shared pool.
func GetBuffer() *[]byte {
	b := bufferPool.Get().(*[]byte)
	*b = (*b)[:0]
	return b
}

// maxPooledBuffer keeps one giant request from pinning its memory in the pool.
const maxPooledBuffer = 4 << 20

// PutBuffer returns a buffer to the pool.
func PutBuffer(b *[]byte) {
	if cap(*b) > maxPooledBuffer {
		return
	}
	bufferPool.Put(b)
}
