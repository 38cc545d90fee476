// Package httpin is the NDJSON intake: POST /v1/ingest with one JSON object
// per line. It answers 2xx only once the accepted events have been handed to
// every sink, reports each rejected line with its number and reason, and
// never lets a bad line cost the good lines of the same request.
//
// The same endpoint carries agent-to-aggregator batches: an Idempotency-Key
// header gives every event of the batch a stable identity (key and line),
// so a batch sent twice is stored once by sinks that deduplicate.
package httpin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/collector/telemetry"
	"github.com/leitstand/leitstand/internal/config"
	"golang.org/x/sync/semaphore"
)

// Path is where the intake listens.
const Path = "/v1/ingest"

// Config of the NDJSON intake.
type Config struct {
	// Enabled serves /v1/ingest. Default true.
	Enabled bool `yaml:"enabled"`
	// MaxBodyBytes limits a request body after decompression (and before).
	// Default 16MiB.
	MaxBodyBytes config.ByteSize `yaml:"max_body_bytes"`
	// MaxInflightBytes bounds the request bodies held in memory at once;
	// a request that would pass it waits like a full queue, then gets 429.
	// A compressed body or one without Content-Length counts as
	// max_body_bytes. Default 256MiB.
	MaxInflightBytes config.ByteSize `yaml:"max_inflight_bytes"`
	// DefaultDataset is event.dataset for lines that name none. Default generic.
	DefaultDataset string `yaml:"default_dataset"`
	// Auth holds the bearer tokens. Required when the HTTP listener is not on
	// a loopback address.
	Auth Auth `yaml:"auth"`
	// Queue is the policy when the pipeline is full. Default block with a
	// 5s block_timeout, then 429.
	Queue pipeline.Policy `yaml:"queue"`
}

// Auth configures bearer tokens. A request must present one of them when
// any is configured.
type Auth struct {
	// Tokens lists accepted tokens; use ${ENV} rather than literals. Default none.
	Tokens []config.Secret `yaml:"tokens"`
	// TokensFile names a file with one token per line. Default none.
	TokensFile string `yaml:"tokens_file"`
}

// DefaultConfig returns the intake's defaults.
func DefaultConfig() Config {
	return Config{
		Enabled:          true,
		MaxBodyBytes:     16 << 20,
		MaxInflightBytes: 256 << 20,
		DefaultDataset:   collector.DefaultDataset,
		Queue:            pipeline.Policy{WhenFull: pipeline.Block, BlockTimeout: 5 * time.Second},
	}
}

// Validate checks the settings, including that the tokens file is readable.
func (c *Config) Validate() error {
	var errs config.Errors
	if !c.Enabled {
		return nil
	}
	if c.MaxBodyBytes < 1024 || c.MaxBodyBytes > 1<<30 {
		errs.Addf("max_body_bytes", "must be between 1KiB and 1GiB, got %s", c.MaxBodyBytes)
	}
	if c.MaxInflightBytes < c.MaxBodyBytes {
		errs.Addf("max_inflight_bytes", "must be at least max_body_bytes (%s), got %s", c.MaxBodyBytes, c.MaxInflightBytes)
	}
	if !validDataset(c.DefaultDataset) {
		errs.Addf("default_dataset", "must be lowercase letters, digits, '_', '-' and '.', got %q", c.DefaultDataset)
	}
	for i, t := range c.Auth.Tokens {
		if len(t) < 16 {
			errs.Addf(fmt.Sprintf("auth.tokens[%d]", i), "is shorter than 16 characters; use a random token")
		}
	}
	if c.Auth.TokensFile != "" {
		if _, err := config.ReadSecretLines(c.Auth.TokensFile); err != nil {
			errs.Addf("auth.tokens_file", "%v", err)
		}
	}
	errs.Nest("queue", c.Queue.Validate())
	return errs.Err()
}

// HasAuth reports whether tokens are configured.
func (c *Config) HasAuth() bool { return len(c.Auth.Tokens) > 0 || c.Auth.TokensFile != "" }

// Submitter is the part of the pipeline the intake needs.
type Submitter interface {
	Submit(ctx context.Context, b *collector.Batch, pol pipeline.Policy) error
}

// Handler serves the intake.
type Handler struct {
	cfg    Config
	tokens [][sha256.Size]byte // hashed, so comparing takes the same time whatever the length
	next   Submitter
	// inflight holds the bytes of bodies being read or processed.
	inflight *semaphore.Weighted
	c        *telemetry.Component
	log      *slog.Logger

	gzips sync.Pool
	zstds sync.Pool
}

// New builds the handler, reading the tokens file.
func New(cfg Config, next Submitter, m *telemetry.Metrics, log *slog.Logger) (*Handler, error) {
	h := &Handler{cfg: cfg, next: next, c: m.Component("ingest"), log: log,
		inflight: semaphore.NewWeighted(int64(cfg.MaxInflightBytes))}
	tokens := cfg.Auth.Tokens
	if cfg.Auth.TokensFile != "" {
		more, err := config.ReadSecretLines(cfg.Auth.TokensFile)
		if err != nil {
			return nil, fmt.Errorf("ingest: %w", err)
		}
		tokens = append(tokens[:len(tokens):len(tokens)], more...)
	}
	for _, t := range tokens {
		h.tokens = append(h.tokens, sha256.Sum256([]byte(t.Reveal())))
	}
	return h, nil
}

// maxReportedRejects bounds the response to a body full of bad lines.
const maxReportedRejects = 100

// Response is the intake's answer.
type Response struct {
	Accepted int      `json:"accepted"`
	Rejected []Reject `json:"rejected,omitempty"`
	// RejectedCount counts all rejected lines; Rejected lists the first 100.
	RejectedCount int    `json:"rejected_count,omitempty"`
	Error         string `json:"error,omitempty"`
}

// Reject is one line that was not accepted.
type Reject struct {
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, Response{Error: "use POST with an NDJSON body"})
		return
	}
	if !h.authorized(r) {
		h.c.Refused("unauthorized", 0)
		w.Header().Set("WWW-Authenticate", `Bearer realm="leitstand"`)
		writeJSON(w, http.StatusUnauthorized, Response{Error: "missing or wrong bearer token"})
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if err := checkIdempotencyKey(key); err != nil {
		writeJSON(w, http.StatusBadRequest, Response{Error: err.Error()})
		return
	}

	reserve := h.reservation(r)
	if !h.reserve(r.Context(), reserve) {
		h.c.Refused("inflight_full", 0)
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusTooManyRequests, Response{Error: "too many request bodies in flight; retry later"})
		return
	}
	defer h.inflight.Release(reserve)

	buf := collector.GetBuffer()
	status, err := h.readBody(r, buf)
	if err != nil {
		collector.PutBuffer(buf)
		h.c.Refused(refuseReason(status), 0)
		writeJSON(w, status, Response{Error: err.Error()})
		return
	}
	h.c.BytesReceived(len(*buf))

	b := collector.NewBatch("ingest")
	defer b.Release()
	b.Keep(buf) // events point into the body
	resp := h.decode(*buf, key, b)
	h.c.Received(b.Len() + resp.RejectedCount)
	if resp.RejectedCount > 0 {
		h.c.Refused("invalid", resp.RejectedCount)
	}
	if b.Len() == 0 {
		if resp.RejectedCount == 0 {
			resp.Error = "empty body: send one JSON object per line"
		} else {
			resp.Error = "no line was accepted"
		}
		writeJSON(w, http.StatusBadRequest, resp)
		return
	}

	n := b.Len()
	switch err := h.next.Submit(r.Context(), b, h.cfg.Queue); {
	case err == nil:
		h.c.Accepted(n)
		resp.Accepted = n
		writeJSON(w, http.StatusOK, resp)
	case errors.Is(err, collector.ErrSpoolFull):
		// The disk buffer, not the in-memory queue: the sinks behind it
		// (Elasticsearch) are behind or down, and it may take a while.
		h.c.Refused("spool_full", n)
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusTooManyRequests, Response{Error: "the spool is full (the sinks behind it are behind or down); retry later"})
	case errors.Is(err, collector.ErrQueueFull):
		h.c.Refused("queue_full", n)
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusTooManyRequests, Response{Error: "the pipeline is full; retry later"})
	case errors.Is(err, collector.ErrClosed):
		h.c.Refused("shutting_down", n)
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, Response{Error: "leitstand is shutting down; retry on another instance or later"})
	default:
		h.c.Refused("sink_error", n)
		h.log.Error("ingest: events not stored", "events", n, "err", err)
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, Response{Error: "events not stored: " + err.Error()})
	}
}

// reservation is how much memory a request's body may take.
func (h *Handler) reservation(r *http.Request) int64 {
	encoding := r.Header.Get("Content-Encoding")
	if r.ContentLength > 0 && (encoding == "" || encoding == "identity") {
		return min(r.ContentLength, int64(h.cfg.MaxBodyBytes))
	}
	return int64(h.cfg.MaxBodyBytes)
}

// reserve waits for in-flight room as the queue policy says.
func (h *Handler) reserve(ctx context.Context, n int64) bool {
	if h.inflight.TryAcquire(n) {
		return true
	}
	if h.cfg.Queue.WhenFull == pipeline.DropNewest {
		return false
	}
	if h.cfg.Queue.BlockTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.cfg.Queue.BlockTimeout)
		defer cancel()
	}
	return h.inflight.Acquire(ctx, n) == nil
}

func refuseReason(status int) string {
	switch status {
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusUnsupportedMediaType:
		return "unsupported_encoding"
	}
	return "bad_body"
}

// Authorized reports whether r carries one of the intake's tokens (always
// true when none are configured). Other endpoints that take data in, such
// as remote_write, accept the same tokens.
func (h *Handler) Authorized(r *http.Request) bool { return h.authorized(r) }

func (h *Handler) authorized(r *http.Request) bool {
	if len(h.tokens) == 0 {
		return true
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	match := 0
	for i := range h.tokens {
		match |= subtle.ConstantTimeCompare(sum[:], h.tokens[i][:]) // no early exit: timing says nothing
	}
	return match == 1
}

func checkIdempotencyKey(k string) error {
	if len(k) > 128 {
		return errors.New("Idempotency-Key is longer than 128 characters")
	}
	for i := 0; i < len(k); i++ {
		if k[i] <= ' ' || k[i] > '~' {
			return errors.New("Idempotency-Key must be printable ASCII without spaces")
		}
	}
	return nil
}

// readBody reads the (decompressed) body into buf, bounded by MaxBodyBytes.
// On error it returns the HTTP status to answer with.
func (h *Handler) readBody(r *http.Request, buf *[]byte) (int, error) {
	limit := int64(h.cfg.MaxBodyBytes)
	if r.ContentLength > limit {
		return http.StatusRequestEntityTooLarge, fmt.Errorf("body of %d bytes is over the limit of %s", r.ContentLength, h.cfg.MaxBodyBytes)
	}
	body := http.MaxBytesReader(nil, r.Body, limit)
	var src io.Reader = body
	encoding := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	switch encoding {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := h.gzipReader(body)
		if err != nil {
			return http.StatusBadRequest, fmt.Errorf("body is not valid gzip: %v", err)
		}
		defer h.gzips.Put(zr)
		src = zr
	case "zstd":
		zr, err := h.zstdReader(body)
		if err != nil {
			return http.StatusBadRequest, fmt.Errorf("body is not valid zstd: %v", err)
		}
		defer func() { zr.Reset(nil); h.zstds.Put(zr) }()
		src = zr
	default:
		return http.StatusUnsupportedMediaType, fmt.Errorf("Content-Encoding %q is not supported; use gzip, zstd or none", encoding)
	}
	// Read one byte past the limit to tell "exactly at" from "over".
	n, err := readAll(buf, io.LimitReader(src, limit+1))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, fmt.Errorf("body is over the limit of %s", h.cfg.MaxBodyBytes)
	case err != nil && encoding != "" && encoding != "identity":
		return http.StatusBadRequest, fmt.Errorf("body is not valid %s: %v", encoding, err)
	case err != nil:
		return http.StatusBadRequest, fmt.Errorf("reading the body: %v", err)
	case n > limit:
		return http.StatusRequestEntityTooLarge, fmt.Errorf("decompressed body is over the limit of %s", h.cfg.MaxBodyBytes)
	}
	return 0, nil
}

func readAll(buf *[]byte, r io.Reader) (int64, error) {
	b := (*buf)[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			*buf = b
			return int64(len(b)), nil
		}
		if err != nil {
			*buf = b
			return int64(len(b)), err
		}
	}
}

func (h *Handler) gzipReader(r io.Reader) (*gzip.Reader, error) {
	if zr, ok := h.gzips.Get().(*gzip.Reader); ok {
		return zr, zr.Reset(r)
	}
	return gzip.NewReader(r)
}

func (h *Handler) zstdReader(r io.Reader) (*zstd.Decoder, error) {
	if zr, ok := h.zstds.Get().(*zstd.Decoder); ok {
		return zr, zr.Reset(r)
	}
	// One goroutine per decoder and a bounded window, so a hostile frame
	// cannot ask for gigabytes.
	return zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(h.cfg.MaxBodyBytes)+1),
		zstd.WithDecoderMaxWindow(8<<20))
}

// decode splits body into lines and decodes each into the batch.
func (h *Handler) decode(body []byte, key string, b *collector.Batch) Response {
	var resp Response
	d := lineDecoder{arena: &b.Arena}
	lineNo := 0
	for len(body) > 0 {
		lineNo++
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		line = bytes.TrimRight(line, "\r\t ")
		if len(line) == 0 {
			continue
		}
		e := b.Next()
		if err := d.decode(line, e); err != nil {
			b.Drop()
			resp.RejectedCount++
			if len(resp.Rejected) < maxReportedRejects {
				resp.Rejected = append(resp.Rejected, Reject{Line: lineNo, Reason: err.Error()})
			}
			continue
		}
		if !d.ts {
			e.Timestamp = b.Received
		}
		if _, ok := e.Get(collector.FieldDataset); !ok {
			e.Add(collector.FieldDataset, collector.KindString, h.cfg.DefaultDataset)
		}
		e.Add(collector.FieldReceiver, collector.KindString, "ingest")
		if key != "" {
			id := append(append(b.Arena.Builder(len(key)+12), key...), ':')
			e.ID = b.Arena.Commit(strconv.AppendInt(id, int64(lineNo), 10))
		}
	}
	return resp
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
