// Package collector owns leitstand's event model and the contracts between
// its moving parts: the Event every receiver builds, the Batch that carries
// events through the pipeline, and the lifecycle every component keeps.
//
// It must not know any concrete receiver, sink or anonymizer: those live in
// sub-packages (or in anonymize/) and are wired together in cmd/leitstand.
package collector

import (
	"slices"
	"strings"
	"time"
)

// Kind says how a field's Str is to be read.
type Kind uint8

const (
	// KindString: Str is the text itself (unescaped, may hold any bytes).
	KindString Kind = iota
	// KindNumber: Str is a valid JSON number literal.
	KindNumber
	// KindBool: Str is "true" or "false".
	KindBool
	// KindRaw: Str is a valid JSON array or object, kept as text because
	// ECS has no flat form for it (structured data, Sentry frames, tags).
	KindRaw
)

// Field is one ECS field in dotted form ("log.level"). Nested JSON objects
// are flattened into dotted keys when an event is decoded and nested again
// when it is encoded, so components look fields up by their ECS name only.
type Field struct {
	Key  string
	Kind Kind
	Str  string
}

// Event is one log line, error or span in ECS shape.
//
// Events live inside a Batch and are valid only until the batch is released:
// their strings may point into the batch's arena or the request body it was
// decoded from. A component that keeps an event, or one of its strings, past
// the call that handed it over must copy it (Event.Clone, strings.Clone).
type Event struct {
	// Timestamp is @timestamp: when the event happened, as its source says.
	Timestamp time.Time
	// ID is the event's identity at its source (batch key and position,
	// Sentry event id, file and offset). Sinks that can deduplicate use it as
	// the document id; empty means the source has none.
	ID string
	// Fields other than @timestamp. Receivers append in any order; the
	// pipeline puts them in key order (Normalize) before any sink sees them.
	Fields []Field
}

// Well-known ECS field names used across components.
const (
	FieldMessage   = "message"
	FieldDataset   = "event.dataset"
	FieldIngested  = "event.ingested"
	FieldLevel     = "log.level"
	FieldReceiver  = "leitstand.receiver"
	FieldTenant    = "leitstand.tenant"
	FieldHostName  = "host.name"
	FieldService   = "service.name"
	FieldNamespace = "kubernetes.namespace"
)

// DefaultDataset is the dataset of events whose source names none, as in
// Elastic's data stream naming scheme.
const DefaultDataset = "generic"

// Get returns the value of the field key and whether it is set.
func (e *Event) Get(key string) (string, bool) {
	for i := len(e.Fields) - 1; i >= 0; i-- { // last wins, as in JSON
		if e.Fields[i].Key == key {
			return e.Fields[i].Str, true
		}
	}
	return "", false
}

// Dataset returns event.dataset, or DefaultDataset when it is not set.
func (e *Event) Dataset() string {
	if d, ok := e.Get(FieldDataset); ok && d != "" {
		return d
	}
	return DefaultDataset
}

// Message returns the message field ("" when unset).
func (e *Event) Message() string {
	m, _ := e.Get(FieldMessage)
	return m
}

// Add appends a field without looking for an existing one: the fast path
// for decoders, which meet each key once. Normalize keeps the last value of
// a repeated key.
func (e *Event) Add(key string, kind Kind, value string) {
	e.Fields = append(e.Fields, Field{Key: key, Kind: kind, Str: value})
}

// AddString appends a string field.
func (e *Event) AddString(key, value string) { e.Add(key, KindString, value) }

// Set replaces the value of key, or adds the field when it is not there.
func (e *Event) Set(key string, kind Kind, value string) {
	for i := range e.Fields {
		if e.Fields[i].Key == key {
			e.Fields[i].Kind, e.Fields[i].Str = kind, value
			return
		}
	}
	e.Add(key, kind, value)
}

// Delete removes every field named key and reports whether there was one.
func (e *Event) Delete(key string) bool {
	kept := e.Fields[:0]
	for _, f := range e.Fields {
		if f.Key != key {
			kept = append(kept, f)
		}
	}
	removed := len(kept) != len(e.Fields)
	clear(e.Fields[len(kept):]) // drop references for the GC
	e.Fields = kept
	return removed
}

// Reset empties the event and keeps its field capacity for reuse.
func (e *Event) Reset() {
	clear(e.Fields)
	*e = Event{Fields: e.Fields[:0]}
}

// Clone returns a deep copy whose strings no longer point into any batch.
func (e *Event) Clone() Event {
	c := Event{Timestamp: e.Timestamp, ID: strings.Clone(e.ID), Fields: make([]Field, len(e.Fields))}
	for i, f := range e.Fields {
		c.Fields[i] = Field{Key: strings.Clone(f.Key), Kind: f.Kind, Str: strings.Clone(f.Str)}
	}
	return c
}

// Normalize puts the fields in key order, keeps the last value of a repeated
// key and resolves a key that is both a value and an object ("a" beside
// "a.b") by moving the value to "a.value", so every event encodes to one
// well-formed JSON document with a stable field order. The pipeline calls it
// once, after the processing stages and before the sinks; sinks treat events
// as read-only and may encode them concurrently.
func (e *Event) Normalize() {
	if !e.sortFields() {
		return
	}
	e.dedupe()
	if e.resolveConflicts() {
		e.sortFields()
		e.dedupe()
	}
}

// sortFields sorts stably by key (so "last wins" survives the sort) and
// reports whether there is more than one field.
func (e *Event) sortFields() bool {
	f := e.Fields
	if len(f) < 2 {
		return false
	}
	// Insertion sort: receivers mostly add fields in order, and the slices are
	// short, so this beats sort.SliceStable and does not allocate.
	if len(f) <= 32 {
		for i := 1; i < len(f); i++ {
			for j := i; j > 0 && f[j].Key < f[j-1].Key; j-- {
				f[j], f[j-1] = f[j-1], f[j]
			}
		}
		return true
	}
	slices.SortStableFunc(f, func(a, b Field) int { return strings.Compare(a.Key, b.Key) })
	return true
}

func (e *Event) dedupe() {
	f := e.Fields
	out := f[:0]
	for i := range f {
		if i+1 < len(f) && f[i+1].Key == f[i].Key {
			continue // a later field with the same key wins
		}
		out = append(out, f[i])
	}
	clear(f[len(out):])
	e.Fields = out
}

// resolveConflicts renames scalar fields that are also object prefixes. The
// fields are sorted, so "a.b" and "a.b.c" are neighbours up to keys that sort
// between them ("a.b-x", "a.b.c"), which the inner scan skips over.
func (e *Event) resolveConflicts() bool {
	changed := false
	f := e.Fields
	for i := 0; i < len(f); i++ {
		k := f[i].Key
		for j := i + 1; j < len(f) && strings.HasPrefix(f[j].Key, k); j++ {
			if len(f[j].Key) > len(k) && f[j].Key[len(k)] == '.' {
				f[i].Key = k + ".value"
				changed = true
				break
			}
		}
	}
	return changed
}
