package elasticsearch

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	es8 "github.com/elastic/go-elasticsearch/v8"
	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/internal/config"
	"github.com/prometheus/client_golang/prometheus"
)

// Sink ships batches to Elasticsearch with the bulk API.
type Sink struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	client  *es8.BaseClient
	http    *http.Transport
	creds   *credentials
	targets *targets
	// mode is cfg.Mode unless the cluster has no data streams; set by the
	// first setup, before ready is, and settled from then on. Only the
	// supervisor goroutine touches settled.
	mode    string
	settled bool

	// lim bounds the bulk requests in flight across concurrent Consume
	// calls, adapting to the cluster's 429s.
	lim *limiter

	// ready is true once the cluster answered and the templates are in
	// place, and false again after a request found the cluster unreachable,
	// until the supervisor has checked it (and the templates) again.
	ready   atomic.Bool
	lastErr atomic.Pointer[error]
	wake    chan struct{} // tells the supervisor to check the cluster now

	// doneIDs remembers which documents of a batch that Consume handed back
	// to the spool were already indexed, so the spool's retry does not send
	// them again (it would be safe, they would answer 409, but costs the
	// cluster work while it is struggling). Correctness never depends on
	// it: a restart forgets it and 409s take over.
	doneMu  sync.Mutex
	doneIDs map[string]struct{}
	// failingSince remembers when a document first failed with a server
	// error, for dead_letter_after.
	failingSince map[string]time.Time

	firstSetup chan struct{} // closed after the first setup attempt
	startOnce  sync.Once
	stopOnce   sync.Once
	stop       chan struct{}
	done       sync.WaitGroup
	closed     atomic.Bool
}

// Limits of the in-memory retry bookkeeping: it only saves work, so when
// full it stops remembering rather than grow.
const (
	maxDoneIDs      = 200000
	maxFailingSince = 100000
)

// New creates the sink from a validated config. It reads the credential and
// CA files; Start checks the cluster and installs the templates.
func New(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Sink, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	creds, err := newCredentials(&cfg)
	if err != nil {
		return nil, fmt.Errorf("elasticsearch: %w", err)
	}
	tr, err := newTransport(&cfg)
	if err != nil {
		return nil, err
	}
	tr.MaxIdleConnsPerHost = 2 * cfg.Workers
	// Bulk answers are filtered to a status per item: small, and
	// compressing them costs the node more CPU than it saves on the wire.
	tr.DisableCompression = true
	client, err := es8.NewBaseClient(es8.Config{
		Addresses: cfg.URLs,
		Transport: tr,
		// Retries are the sink's own, per item and with backoff; the
		// client's would resend whole requests blindly.
		DisableRetry: true,
	})
	if err != nil {
		return nil, fmt.Errorf("elasticsearch: %w", err)
	}
	s := &Sink{
		cfg:          cfg,
		log:          log,
		m:            newMetrics(reg),
		client:       client,
		http:         tr,
		creds:        creds,
		mode:         cfg.Mode,
		wake:         make(chan struct{}, 1),
		doneIDs:      map[string]struct{}{},
		failingSince: map[string]time.Time{},
		stop:         make(chan struct{}),
		firstSetup:   make(chan struct{}),
	}
	s.targets = newTargets(&cfg)
	s.lim = newLimiter(cfg.Workers, func(n int) { s.m.concurrency.Set(float64(n)) })
	notYet := errors.New("elasticsearch sink not started")
	s.lastErr.Store(&notYet)
	return s, nil
}

// Name implements collector.Sink.
func (s *Sink) Name() string { return "elasticsearch" }

// startWait bounds how long Start waits for the cluster before it lets the
// supervisor go on trying in the background.
const startWait = 10 * time.Second

// Start checks the cluster and installs the templates. An unreachable or
// failing cluster does not fail the start: it is logged with its address
// and counted, the sink is not ready, Consume refuses batches (the spool
// keeps them), and the check is retried in the background until it works.
func (s *Sink) Start(ctx context.Context) error {
	if s.closed.Load() {
		return collector.ErrClosed
	}
	s.startOnce.Do(func() {
		s.done.Add(1)
		go s.supervise(s.firstSetup)
	})
	wait, cancel := context.WithTimeout(ctx, startWait)
	defer cancel()
	select {
	case <-s.firstSetup:
	case <-wait.Done():
	}
	return nil
}

// supervise runs setup until it succeeds, then waits for a request to find
// the cluster gone and runs it again. Retries back off from 250ms to 5s: a
// restarted node is back in seconds, and until then the spool holds the
// events. Failures are logged on the first attempt and then once a minute.
func (s *Sink) supervise(first chan struct{}) {
	defer s.done.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	signalled := false
	for {
		var downSince, lastLog time.Time
		wait := 250 * time.Millisecond
		for attempt := 1; ; attempt++ {
			err := s.setup(ctx)
			if err == nil {
				if !downSince.IsZero() {
					s.log.Info("elasticsearch: reachable again", "peers", s.cfg.URLs, "down_for", time.Since(downSince).Round(time.Second).String())
				}
				break
			}
			if ctx.Err() != nil {
				return
			}
			s.m.setupFailures.Inc()
			s.lastErr.Store(&err)
			if downSince.IsZero() {
				downSince = time.Now()
			}
			if lastLog.IsZero() || time.Since(lastLog) >= time.Minute {
				s.log.Warn("elasticsearch: cluster not usable; events wait in the spool, retrying",
					"peers", s.cfg.URLs, "attempt", attempt, "err", err)
				lastLog = time.Now()
			}
			if !signalled {
				close(first)
				signalled = true
			}
			select {
			case <-s.stop:
				return
			case <-time.After(wait/2 + rand.N(wait/2+1)):
			}
			wait = min(2*wait, 5*time.Second)
		}
		s.ready.Store(true)
		s.m.up.Set(1)
		if !signalled {
			close(first)
			signalled = true
		}
		select {
		case <-s.stop:
			return
		case <-s.wake:
		}
	}
}

// setup checks the cluster and puts the templates in place.
func (s *Sink) setup(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	info, err := s.clusterInfo(ctx)
	if err != nil {
		return err
	}
	// The mode is settled before the first Consume can run and never
	// changes after, so Consume reads it without a lock.
	if !s.settled && s.mode == ModeDataStream && !info.atLeast(7, 9) {
		s.log.Warn("elasticsearch: the cluster has no data streams; writing to daily indices",
			"version", info.Version, "index_prefix", s.cfg.IndexPrefix)
		s.mode = ModeIndex
		s.targets.mode = ModeIndex
	}
	if info.Health == "red" {
		s.log.Warn("elasticsearch: cluster health is red; documents for unavailable shards are retried", "peers", s.cfg.URLs)
	}
	written := 0
	if s.cfg.InstallTemplates {
		if written, err = s.installTemplates(ctx, info); err != nil {
			return err
		}
	}
	s.settled = true
	s.log.Info("elasticsearch: cluster ready", "peers", s.cfg.URLs, "version", info.Version, "health", info.Health,
		"mode", s.mode, "templates_written", written)
	return nil
}

// markDown records that a request found the cluster unreachable: Consume
// refuses batches until the supervisor has checked the cluster again, so a
// cluster that came back empty gets its templates before the first write.
func (s *Sink) markDown(peer string, err error) {
	if s.ready.CompareAndSwap(true, false) {
		s.m.up.Set(0)
		e := fmt.Errorf("elasticsearch %s: %w", peer, err)
		s.lastErr.Store(&e)
		s.log.Warn("elasticsearch: cluster unreachable; events wait in the spool", "peer", peer, "err", err)
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Ready implements collector.ReadinessChecker: nil while the cluster is
// reachable and set up.
func (s *Sink) Ready() error {
	if s.closed.Load() {
		return collector.ErrClosed
	}
	if s.ready.Load() {
		return nil
	}
	return fmt.Errorf("elasticsearch not ready: %w", *s.lastErr.Load())
}

// Shutdown stops the background checks and closes idle connections. A
// Consume in flight ends with its context (the spool cancels it at its
// shutdown deadline). Safe without Start and more than once.
func (s *Sink) Shutdown(context.Context) error {
	s.stopOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		s.done.Wait()
		s.ready.Store(false)
		s.m.up.Set(0)
		s.http.CloseIdleConnections()
	})
	return nil
}

// response is a request's answer, read in full.
type response struct {
	status int
	body   []byte
	peer   string // scheme://host of the node that answered, for logs
}

// describe summarizes an error answer by its status and Elasticsearch's
// error type. The reason text is left out: in answers to bulk requests
// Elasticsearch quotes document values in it, and documents are never
// logged. Answers about templates and the cluster carry no documents; for
// them withReason adds the reason.
func (r *response) describe() string { return r.summary(false) }

func (r *response) withReason() string { return r.summary(true) }

func (r *response) summary(reason bool) string {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	var obj struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	}
	if json.Unmarshal(r.body, &e) == nil && len(e.Error) > 0 {
		_ = json.Unmarshal(e.Error, &obj)
	}
	msg := fmt.Sprintf("%s answered %d", r.peer, r.status)
	if obj.Type != "" {
		msg += " " + obj.Type
	}
	if reason && obj.Reason != "" {
		msg += ": " + obj.Reason
	}
	return msg
}

// requestError is a request that got no answer.
type requestError struct {
	peer string
	err  error
}

func (e *requestError) Error() string { return fmt.Sprintf("elasticsearch %s: %v", e.peer, e.err) }
func (e *requestError) Unwrap() error { return e.err }

// newRequest builds a request the client completes with a node's address.
func (s *Sink) newRequest(ctx context.Context, method, path, query string, body []byte) *http.Request {
	req := &http.Request{
		Method:     method,
		URL:        &url.URL{Path: path, RawQuery: query},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header, 6),
	}
	req = req.WithContext(ctx)
	if body != nil {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		req.ContentLength = int64(len(body))
		req.Header.Set("Content-Type", "application/json")
	}
	if auth := s.creds.authorization(); auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return req
}

// peerOf names the node a request went to (the client fills in its URL).
func peerOf(req *http.Request) string {
	if req.URL.Host == "" {
		return "(no node available)"
	}
	return req.URL.Scheme + "://" + req.URL.Host
}

// perform sends req and reads the answer into body (reused when big
// enough). A failure to get an answer is a *requestError.
func (s *Sink) perform(req *http.Request, body []byte) (response, error) {
	res, err := s.client.Perform(req)
	peer := peerOf(req)
	if err != nil {
		return response{peer: peer}, &requestError{peer: peer, err: err}
	}
	defer res.Body.Close()
	buf := bytes.NewBuffer(body[:0])
	if _, err := buf.ReadFrom(res.Body); err != nil {
		return response{peer: peer}, &requestError{peer: peer, err: fmt.Errorf("reading the answer: %w", err)}
	}
	if res.StatusCode == http.StatusUnauthorized {
		s.creds.invalidate() // a rotated secret file is read again
	}
	return response{status: res.StatusCode, body: buf.Bytes(), peer: peer}, nil
}

// request sends a small JSON request (setup, templates).
func (s *Sink) request(ctx context.Context, method, path, query string, body []byte) (response, error) {
	return s.perform(s.newRequest(ctx, method, path, query, body), nil)
}

// credentials builds the Authorization header, reading secret files again
// when they change, so a rotated Kubernetes secret takes effect without a
// restart.
type credentials struct {
	username              string
	password, apiKey      config.Secret
	passwordFile, keyFile string

	mu                    sync.Mutex
	header                string
	checked               time.Time
	passwordMod, keyMod   time.Time
	passwordSize, keySize int64
}

// credentialCheck is how often changed secret files are looked for.
const credentialCheck = 10 * time.Second

func newCredentials(cfg *Config) (*credentials, error) {
	c := &credentials{
		username: cfg.Username, password: cfg.Password, apiKey: cfg.APIKey,
		passwordFile: cfg.PasswordFile, keyFile: cfg.APIKeyFile,
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.refreshLocked(true); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *credentials) authorization() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if (c.passwordFile != "" || c.keyFile != "") && time.Since(c.checked) >= credentialCheck {
		_ = c.refreshLocked(false) // keep the old secret if the file is mid-rotation
	}
	return c.header
}

func (c *credentials) invalidate() {
	c.mu.Lock()
	c.checked = time.Time{}
	c.mu.Unlock()
}

// refreshLocked rebuilds the header, reading a secret file only when its
// size or modification time changed.
func (c *credentials) refreshLocked(force bool) error {
	c.checked = time.Now()
	changed := force
	read := func(path string, mod *time.Time, size *int64, dst *config.Secret) error {
		if path == "" {
			return nil
		}
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if !force && fi.ModTime().Equal(*mod) && fi.Size() == *size {
			return nil
		}
		sec, err := config.ReadSecretFile(path)
		if err != nil {
			return err
		}
		*dst, *mod, *size, changed = sec, fi.ModTime(), fi.Size(), true
		return nil
	}
	if err := read(c.passwordFile, &c.passwordMod, &c.passwordSize, &c.password); err != nil {
		return fmt.Errorf("password_file: %w", err)
	}
	if err := read(c.keyFile, &c.keyMod, &c.keySize, &c.apiKey); err != nil {
		return fmt.Errorf("api_key_file: %w", err)
	}
	if !changed {
		return nil
	}
	switch {
	case c.apiKey != "":
		c.header = "ApiKey " + c.apiKey.Reveal()
	case c.username != "":
		c.header = "Basic " + base64.StdEncoding.EncodeToString([]byte(c.username+":"+c.password.Reveal()))
	default:
		c.header = ""
	}
	return nil
}

var (
	_ collector.Sink             = (*Sink)(nil)
	_ collector.ReadinessChecker = (*Sink)(nil)
)

// newTransport is the HTTP transport to the cluster: the sink's and the
// search client's, with one ca_file and the same timeouts.
func newTransport(cfg *Config) (*http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = cfg.RequestTimeout
	tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	if cfg.CAFile != "" {
		pem, err := loadCAFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("elasticsearch: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("elasticsearch: ca_file %s: no usable certificate", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return tr, nil
}
