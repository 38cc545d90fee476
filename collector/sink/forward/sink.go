package forward

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/telemetry"
	"github.com/leitstand/leitstand/internal/config"
)

// MaxLine is the highest line number an event id may ask for ("<key>:<n>");
// ids beyond it are not kept (the intake assigns a new one), so the empty
// lines that place an event stay few.
const MaxLine = 1 << 20

// maxKeyLen is the longest Idempotency-Key the intake takes.
const maxKeyLen = 128

// Sink forwards batches to the aggregators' intake.
type Sink struct {
	cfg    Config
	log    *slog.Logger
	c      *telemetry.Component
	m      *metrics
	client *http.Client
	tr     *http.Transport

	token   atomic.Pointer[string]
	tokenMu sync.Mutex // serialises re-reading the token file

	// preferred is the index of the URL to try first: the last one that
	// answered, so a healthy aggregator keeps the traffic.
	preferred atomic.Uint32
	healthMu  sync.Mutex
	down      []bool // per URL: the last attempt failed (for logging transitions and Ready)

	zenc    *zstd.Encoder
	gzips   sync.Pool
	scratch sync.Pool

	closed atomic.Bool
}

type metrics struct {
	requests *prometheus.CounterVec
	retries  prometheus.Counter
	bytes    prometheus.Counter
	duration prometheus.Histogram
	lag      prometheus.Histogram
	splits   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	opts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: "leitstand", Subsystem: "forward", Name: name, Help: help}
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(opts("requests_total", "Requests to the aggregators by URL and outcome (HTTP status code, or error)."), []string{"url", "code"}),
		retries:  prometheus.NewCounter(opts("retries_total", "Requests sent again after a failure (fail-over included).")),
		bytes:    prometheus.NewCounter(opts("sent_bytes_total", "Request body bytes sent, as compressed.")),
		splits:   prometheus.NewCounter(opts("splits_total", "Requests split because the aggregator found them too large (413).")),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "leitstand", Subsystem: "forward", Name: "request_duration_seconds",
			Help: "Time one request to an aggregator took.", Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12)}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "leitstand", Subsystem: "forward", Name: "lag_seconds",
			Help:    "Per batch, the time from the oldest event's @timestamp to the aggregator's acknowledgement: how far behind forwarding runs.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600}}),
	}
	reg.MustRegister(m.requests, m.retries, m.bytes, m.splits, m.duration, m.lag)
	return m
}

// New builds the sink from a validated config. It reads the token file and
// the TLS files, so a broken secret stops start-up with a clear error.
func New(cfg Config, m *telemetry.Metrics, reg prometheus.Registerer, log *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tlsConf, err := clientTLS(cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	tr := &http.Transport{
		// Aggregators are in the cluster: no proxy from the environment.
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: min(5*time.Second, cfg.RequestTimeout), KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConf,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   min(10*time.Second, cfg.RequestTimeout),
		ExpectContinueTimeout: time.Second,
	}
	conc := min(4, runtime.GOMAXPROCS(0))
	zenc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(conc),
		zstd.WithWindowSize(256<<10), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	s := &Sink{
		cfg:    cfg,
		log:    log,
		c:      m.Component("forward"),
		m:      newMetrics(reg),
		tr:     tr,
		client: &http.Client{Transport: tr, Timeout: cfg.RequestTimeout},
		down:   make([]bool, len(cfg.URLs)),
		zenc:   zenc,
	}
	s.scratch.New = func() any { return new(scratch) }
	if err := s.loadToken(); err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	return s, nil
}

func clientTLS(c TLSConfig) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s holds no PEM certificate", c.CAFile)
		}
		conf.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// loadToken (re-)reads the bearer token.
func (s *Sink) loadToken() error {
	tok := s.cfg.Token.Reveal()
	if s.cfg.TokenFile != "" {
		sec, err := config.ReadSecretFile(s.cfg.TokenFile)
		if err != nil {
			return fmt.Errorf("token_file: %w", err)
		}
		tok = strings.TrimSpace(sec.Reveal())
	}
	s.token.Store(&tok)
	return nil
}

// Name implements collector.Sink.
func (s *Sink) Name() string { return "forward" }

// Start implements collector.Component. The sink needs no background work:
// connections are made on demand.
func (s *Sink) Start(context.Context) error {
	if s.closed.Load() {
		return errors.New("forward: started after shutdown")
	}
	return nil
}

// Shutdown stops taking batches and closes idle connections. Batches in
// flight finish (their time is bounded by batch_timeout). Safe without
// Start and when called twice.
func (s *Sink) Shutdown(context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	s.tr.CloseIdleConnections()
	return nil
}

// Ready reports an error while no aggregator answered the last attempt.
func (s *Sink) Ready() error {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	for _, d := range s.down {
		if !d {
			return nil
		}
	}
	return fmt.Errorf("forward: no aggregator reachable (%s)", strings.Join(s.cfg.URLs, ", "))
}

// scratch holds one Consume call's grouping and encoding buffers.
type scratch struct {
	groups []group
	lines  []int32 // per event: its line number, or 0 for events without a usable id
	body   []byte
	comp   []byte
}

// group is the events of one request key.
type group struct {
	key    string
	events []int32 // indices into the batch, in line order for keyed groups
	sorted bool
}

// maxScratch keeps a large batch from pinning its buffers in the pool: an
// agent's memory is what its steady state needs, not its largest backlog.
const maxScratch = 1 << 20

// Consume sends the batch and returns nil once the aggregators accepted all
// of it (or refused lines as invalid, which retrying cannot cure; those are
// counted as dropped). It returns an error when batch_timeout runs out, so
// the source keeps the events and tries again.
func (s *Sink) Consume(ctx context.Context, b *collector.Batch) error {
	if s.closed.Load() {
		return collector.ErrClosed
	}
	if b.Len() == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.BatchTimeout)
	defer cancel()
	sc := s.scratch.Get().(*scratch)
	defer func() {
		if cap(sc.body) > maxScratch || cap(sc.comp) > maxScratch {
			return
		}
		s.scratch.Put(sc)
	}()
	s.group(sc, b)
	for gi := range sc.groups {
		g := &sc.groups[gi]
		if err := s.sendGroup(ctx, sc, b, g.key, g.events); err != nil {
			return err
		}
	}
	oldest := b.Events[0].Timestamp
	for i := range b.Events {
		if t := b.Events[i].Timestamp; t.Before(oldest) {
			oldest = t
		}
	}
	s.m.lag.Observe(max(0, time.Since(oldest).Seconds()))
	return nil
}

// group sorts the batch's events into requests: one group per id key, each
// in line order, and one group of events whose ids the aggregator cannot
// reproduce (key "" until the body is known).
func (s *Sink) group(sc *scratch, b *collector.Batch) {
	for i := range sc.groups {
		sc.groups[i].events = sc.groups[i].events[:0]
	}
	sc.groups = sc.groups[:0]
	sc.lines = slices.Grow(sc.lines[:0], b.Len())[:b.Len()]
	plain := -1
	last := -1 // the group of the previous event: batches from one file are runs of one key
	for i := range b.Events {
		key, n, ok := SplitID(b.Events[i].ID)
		if !ok {
			sc.lines[i] = 0
			if plain < 0 {
				plain = sc.addGroup("")
			}
			sc.groups[plain].events = append(sc.groups[plain].events, int32(i))
			continue
		}
		sc.lines[i] = int32(n)
		gi := -1
		if last >= 0 && sc.groups[last].key == key {
			gi = last
		} else {
			for j := range sc.groups {
				if sc.groups[j].key == key {
					gi = j
					break
				}
			}
			if gi < 0 {
				gi = sc.addGroup(key)
			}
		}
		g := &sc.groups[gi]
		if k := len(g.events); k > 0 && sc.lines[g.events[k-1]] >= int32(n) {
			g.sorted = false
		}
		g.events = append(g.events, int32(i))
		last = gi
	}
	// Put out-of-order groups in line order; two events claiming one line
	// cannot both keep their ids, so the later ones go to the plain group.
	for gi := range sc.groups {
		g := &sc.groups[gi]
		if g.sorted || g.key == "" {
			continue
		}
		slices.SortStableFunc(g.events, func(a, b int32) int { return int(sc.lines[a] - sc.lines[b]) })
		kept := g.events[:0]
		var moved []int32
		for k, ev := range g.events {
			if k > 0 && sc.lines[ev] == sc.lines[kept[len(kept)-1]] {
				moved = append(moved, ev)
				continue
			}
			kept = append(kept, ev)
		}
		g.events = kept
		g.sorted = true
		if len(moved) > 0 {
			if plain < 0 {
				plain = sc.addGroup("")
			}
			for _, ev := range moved {
				sc.lines[ev] = 0
			}
			sc.groups[plain].events = append(sc.groups[plain].events, moved...)
			s.log.Debug("forward: events with duplicate ids sent under new ids", "events", len(moved))
		}
	}
}

func (sc *scratch) addGroup(key string) int {
	if len(sc.groups) < cap(sc.groups) {
		sc.groups = sc.groups[:len(sc.groups)+1]
	} else {
		sc.groups = append(sc.groups, group{})
	}
	g := &sc.groups[len(sc.groups)-1]
	g.key, g.events, g.sorted = key, g.events[:0], true
	return len(sc.groups) - 1
}

// SplitID splits an event id of the form "<key>:<n>" into the
// Idempotency-Key and line number that make the intake derive the same id.
// ok is false for ids the intake cannot reproduce.
func SplitID(id string) (key string, n int, ok bool) {
	i := strings.LastIndexByte(id, ':')
	if i <= 0 || i > maxKeyLen || i == len(id)-1 || len(id)-i-1 > 7 {
		return "", 0, false
	}
	for k := i + 1; k < len(id); k++ {
		c := id[k]
		if c < '0' || c > '9' {
			return "", 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n < 1 || n > MaxLine || id[i+1] == '0' {
		return "", 0, false
	}
	for k := 0; k < i; k++ {
		if c := id[k]; c <= ' ' || c > '~' {
			return "", 0, false
		}
	}
	return id[:i], n, true
}

var newlines = bytes.Repeat([]byte{'\n'}, 4096)

// sendGroup sends one group's events, in as many requests as
// max_request_bytes (or the aggregator's 413) asks for.
func (s *Sink) sendGroup(ctx context.Context, sc *scratch, b *collector.Batch, key string, events []int32) error {
	for len(events) > 0 {
		n := s.encode(sc, b, key, events)
		k := key
		if k == "" {
			sum := sha256.Sum256(sc.body)
			k = "b" + hex.EncodeToString(sum[:16])
		}
		err := s.send(ctx, sc, k, n)
		if errors.Is(err, errTooLarge) {
			if n == 1 {
				return fmt.Errorf("forward: the aggregator refused a single event of %d bytes as too large; raise its ingest.max_body_bytes", len(sc.body))
			}
			// Send the first half on its own and the rest after it.
			s.m.splits.Inc()
			if err := s.sendGroup(ctx, sc, b, key, events[:n/2]); err != nil {
				return err
			}
			events = events[n/2:]
			continue
		}
		if err != nil {
			return err
		}
		events = events[n:]
	}
	return nil
}

// encode writes the NDJSON body of as many of events as fit in
// max_request_bytes (at least one) into sc.body and returns how many.
// Keyed events go on the line their id names; plain ones on lines 1, 2, ….
func (s *Sink) encode(sc *scratch, b *collector.Batch, key string, events []int32) int {
	body := sc.body[:0]
	line := int32(0)
	limit := int(s.cfg.MaxRequestBytes)
	for k, ev := range events {
		start := len(body)
		want := line + 1
		if key != "" {
			want = sc.lines[ev]
		}
		for gap := int(want - line - 1); gap > 0; {
			c := min(gap, len(newlines))
			body = append(body, newlines[:c]...)
			gap -= c
		}
		body = b.Events[ev].AppendJSON(body)
		body = append(body, '\n')
		line = want
		if len(body) > limit && k > 0 {
			sc.body = body[:start]
			return k
		}
	}
	sc.body = body
	return len(events)
}

var errTooLarge = errors.New("forward: request too large")

// intakeResponse is the part of the intake's answer the sink reads.
type intakeResponse struct {
	Accepted      int `json:"accepted"`
	RejectedCount int `json:"rejected_count"`
	Rejected      []struct {
		Line   int    `json:"line"`
		Reason string `json:"reason"`
	} `json:"rejected"`
	Error string `json:"error"`
}

// send delivers sc.body (events events) under key, failing over between
// URLs and retrying with backoff until ctx ends.
func (s *Sink) send(ctx context.Context, sc *scratch, key string, events int) error {
	encoding, err := s.compress(sc)
	if err != nil {
		return err
	}
	n := len(s.cfg.URLs)
	var lastErr error
	for attempt := 0; ; attempt++ {
		idx := int(s.preferred.Load()) % n
		if attempt > 0 {
			s.m.retries.Inc()
		}
		status, retryAfter, resp, err := s.post(ctx, s.cfg.URLs[idx], key, encoding, sc.comp)
		switch {
		case err == nil && status/100 == 2:
			s.markUp(idx)
			if resp.RejectedCount > 0 {
				s.rejected(key, resp, events)
			}
			return nil
		case err == nil && status == http.StatusRequestEntityTooLarge:
			s.markUp(idx)
			return errTooLarge
		case err == nil && permanent(status):
			// The aggregator says the lines themselves are wrong: sending
			// them again cannot succeed, and holding on would stop the
			// source for good.
			s.markUp(idx)
			s.c.Dropped("rejected", events)
			s.log.Error("forward: the aggregator refused a batch as invalid; its events are dropped",
				"url", s.cfg.URLs[idx], "status", status, "events", events, "reason", resp.Error)
			return nil
		}
		if err == nil {
			err = fmt.Errorf("HTTP %d: %s", status, resp.Error)
		}
		lastErr = err
		s.markDown(idx, err)
		// Fail over at once; wait only after every URL failed in a row.
		s.preferred.CompareAndSwap(uint32(idx), uint32((idx+1)%n))
		if (attempt+1)%n != 0 && retryAfter == 0 {
			continue
		}
		wait := s.backoff((attempt + 1) / n)
		if retryAfter > wait {
			wait = min(retryAfter, s.cfg.MaxBackoff)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return fmt.Errorf("forward: no aggregator accepted the batch within %s: %w", s.cfg.BatchTimeout, lastErr)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("forward: batch not accepted: %w (last error: %v)", ctx.Err(), lastErr)
		case <-t.C:
		}
	}
}

// permanent tells the statuses that no retry can cure.
func permanent(status int) bool {
	switch status {
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

func (s *Sink) rejected(key string, resp intakeResponse, events int) {
	s.c.Dropped("rejected", resp.RejectedCount)
	first := ""
	if len(resp.Rejected) > 0 {
		first = "line " + strconv.Itoa(resp.Rejected[0].Line) + ": " + resp.Rejected[0].Reason
	}
	s.log.Error("forward: the aggregator refused lines as invalid; they are dropped",
		"key", key, "rejected", resp.RejectedCount, "events", events, "first", first)
}

// backoff is the wait before retry round r (from 1): exponential with equal
// jitter, so agents that lost the same aggregator do not return in step.
func (s *Sink) backoff(r int) time.Duration {
	d := s.cfg.MinBackoff << min(r-1, 20)
	if d > s.cfg.MaxBackoff || d <= 0 {
		d = s.cfg.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

func (s *Sink) compress(sc *scratch) (string, error) {
	switch s.cfg.Compression {
	case CompressZstd:
		sc.comp = s.zenc.EncodeAll(sc.body, sc.comp[:0])
		return "zstd", nil
	case CompressGzip:
		buf := bytes.NewBuffer(sc.comp[:0])
		zw, _ := s.gzips.Get().(*gzip.Writer)
		if zw == nil {
			zw, _ = gzip.NewWriterLevel(buf, gzip.BestSpeed)
		} else {
			zw.Reset(buf)
		}
		if _, err := zw.Write(sc.body); err != nil {
			return "", err
		}
		if err := zw.Close(); err != nil {
			return "", err
		}
		s.gzips.Put(zw)
		sc.comp = buf.Bytes()
		return "gzip", nil
	}
	sc.comp = append(sc.comp[:0], sc.body...)
	return "", nil
}

// post sends one request and reads the answer.
func (s *Sink) post(ctx context.Context, url, key, encoding string, body []byte) (int, time.Duration, intakeResponse, error) {
	var resp intakeResponse
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, resp, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("User-Agent", "leitstand-forward")
	if tok := *s.token.Load(); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	start := time.Now()
	r, err := s.client.Do(req)
	s.m.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		s.m.requests.WithLabelValues(url, "error").Inc()
		return 0, 0, resp, err
	}
	defer r.Body.Close()
	s.m.bytes.Add(float64(len(body)))
	s.m.requests.WithLabelValues(url, strconv.Itoa(r.StatusCode)).Inc()
	data, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return 0, 0, resp, fmt.Errorf("reading the answer: %w", err)
	}
	if json.Unmarshal(data, &resp) != nil && r.StatusCode/100 != 2 {
		resp.Error = strings.TrimSpace(string(data[:min(len(data), 200)]))
	}
	if r.StatusCode == http.StatusUnauthorized && s.cfg.TokenFile != "" {
		s.tokenMu.Lock()
		if err := s.loadToken(); err != nil {
			s.log.Error("forward: re-reading the token file after a 401", "err", err)
		}
		s.tokenMu.Unlock()
	}
	return r.StatusCode, retryAfter(r.Header.Get("Retry-After")), resp, nil
}

// retryAfter reads a Retry-After header in seconds (the intake's form) or
// as an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t))
	}
	return 0
}

func (s *Sink) markDown(idx int, err error) {
	s.healthMu.Lock()
	was := s.down[idx]
	s.down[idx] = true
	s.healthMu.Unlock()
	if !was {
		s.log.Warn("forward: aggregator failed; failing over and retrying", "url", s.cfg.URLs[idx], "err", err)
	}
}

func (s *Sink) markUp(idx int) {
	s.healthMu.Lock()
	was := s.down[idx]
	s.down[idx] = false
	s.healthMu.Unlock()
	if was {
		s.log.Info("forward: aggregator answers again", "url", s.cfg.URLs[idx])
	}
}

var (
	_ collector.Sink             = (*Sink)(nil)
	_ collector.ReadinessChecker = (*Sink)(nil)
)
