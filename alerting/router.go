package alerting

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/notifier"
	promrules "github.com/prometheus/prometheus/rules"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/internal/config"
	"github.com/leitstand/leitstand/rules"
)

// Options are the Router's dependencies.
type Options struct {
	// Logger default: discard.
	Logger *slog.Logger
	// Registerer takes the leitstand_alerts* and leitstand_notifications_*
	// metrics. Nil: not registered.
	Registerer prometheus.Registerer
	// Client sends to the Alertmanagers. Default: a client with
	// Config.Timeout.
	Client *http.Client
}

// Alert is an alert as it leaves leitstand (Alertmanager's v2 API shape),
// with its role label set.
type Alert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
	// State is pending or firing in the API's answers (from FromRules);
	// never sent to Alertmanager.
	State string `json:"state,omitempty"`
	// Value is the rule's value when the alert became active (from
	// FromRules), for the API's Prometheus-shaped answers; never sent.
	Value float64 `json:"-"`

	hash uint64 // of the labels, role included: the key of Router.active
}

// Firing reports whether the alert is active at t.
func (a *Alert) Firing(t time.Time) bool { return a.EndsAt.IsZero() || a.EndsAt.After(t) }

// Router labels every alert with its owning role(s) and sends it to every
// configured Alertmanager. It implements rules.Notifier and
// collector.Component. Send never blocks: alerts wait in a bounded queue,
// the oldest dropped (and counted) when it is full, as Prometheus' notifier
// does.
type Router struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client
	m      *metrics
	tokens map[[sha256.Size]byte]*Role

	mu       sync.Mutex
	queue    []Alert
	wake     chan struct{}
	closed   bool
	started  bool
	stop     chan struct{}
	done     chan struct{}
	ctx      context.Context
	cancel   context.CancelFunc
	shutOnce sync.Once

	activeMu  sync.Mutex
	active    map[uint64]*Alert // by labels hash, role included
	lastPrune time.Time

	// rulesAlerts lists the rule engine's active alerts (WatchRules); the
	// pending ones are counted in leitstand_alerts, since the router
	// itself only sees alerts once they fire.
	rulesAlerts atomic.Pointer[rules.AlertSource]
}

// WatchRules has leitstand_alerts count, per role, the alerts of src
// whose state is pending.
func (r *Router) WatchRules(src rules.AlertSource) { r.rulesAlerts.Store(&src) }

// New validates cfg, reads the token files and returns a Router that
// queues until Start.
func New(cfg Config, opts Options) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: cfg.Timeout}
	}
	r := &Router{
		cfg: cfg, log: opts.Logger, client: opts.Client,
		tokens: map[[sha256.Size]byte]*Role{},
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		active: map[uint64]*Alert{},
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	var errs config.Errors
	for i := range r.cfg.Roles {
		role := &r.cfg.Roles[i]
		for k, f := range role.TokenFiles {
			s, err := config.ReadSecretFile(f)
			if err != nil {
				errs.Addf(fmt.Sprintf("roles[%d].token_files[%d]", i, k), "%v", err)
				continue
			}
			r.tokens[sha256.Sum256([]byte(s.Reveal()))] = role
		}
		for _, h := range role.TokenSHA256 {
			var sum [sha256.Size]byte
			b, _ := hex.DecodeString(h) // checked by Validate
			copy(sum[:], b)
			r.tokens[sum] = role
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	r.m = newMetrics(r)
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(alertsCollector{r.m, r}); err != nil {
			return nil, fmt.Errorf("alerting metrics: %w", err)
		}
	}
	return r, nil
}

// Config returns the validated registry the Router routes by.
func (r *Router) Config() *Config { return &r.cfg }

// Label returns one copy of a per owning role, each with the role label
// set, and whether a role owned it (false: the copy is for the default
// role). A role label already on the alert (a log rule that names its
// owner) is kept as the only owner when it names a known role.
func (r *Router) Label(a *notifier.Alert) ([]Alert, bool) {
	get := a.Labels.Get
	var roles []string
	owned := true
	if pre := get(RoleLabel); pre != "" && r.cfg.role(pre) != nil {
		roles = []string{pre}
	} else {
		roles, owned = r.cfg.Owners(get)
	}
	out := make([]Alert, 0, len(roles))
	for _, role := range roles {
		l := labels.NewBuilder(a.Labels).Set(RoleLabel, role).Labels()
		out = append(out, Alert{
			hash:   l.Hash(),
			Labels: l.Map(), Annotations: a.Annotations.Map(),
			StartsAt: a.StartsAt, EndsAt: a.EndsAt, GeneratorURL: a.GeneratorURL,
		})
	}
	return out, owned
}

// Send implements rules.Notifier.
func (r *Router) Send(alerts ...*notifier.Alert) {
	now := time.Now()
	var out []Alert
	unowned := 0
	for _, a := range alerts {
		copies, owned := r.Label(a)
		if !owned {
			unowned++
		}
		out = append(out, copies...)
	}
	r.m.unowned.Add(float64(unowned))
	r.remember(out, now)
	if len(r.cfg.Alertmanagers) == 0 {
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.m.dropped.Add(float64(len(out)))
		return
	}
	r.queue = append(r.queue, out...)
	if over := len(r.queue) - r.cfg.QueueCapacity; over > 0 {
		r.queue = append(r.queue[:0:0], r.queue[over:]...)
		r.m.dropped.Add(float64(over))
		r.log.Warn("alert queue full, dropped the oldest alerts", "dropped", over)
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Router) queueLen() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue)
}

func (r *Router) next() []Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := min(len(r.queue), r.cfg.MaxBatch)
	if n == 0 {
		return nil
	}
	b := append([]Alert(nil), r.queue[:n]...)
	r.queue = r.queue[n:]
	return b
}

// Start begins sending on a context of its own.
func (r *Router) Start(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || r.closed {
		return errors.New("alerting: router already started or shut down")
	}
	r.started = true
	go r.run()
	return nil
}

// Shutdown stops taking alerts and sends what is queued (resolved
// notifications included) until ctx ends; what is left is counted as
// dropped. Safe without Start and twice.
func (r *Router) Shutdown(ctx context.Context) error {
	r.shutOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		started := r.started
		r.mu.Unlock()
		close(r.stop)
		if !started {
			close(r.done)
			return
		}
	})
	select {
	case <-r.done:
	case <-ctx.Done():
		r.cancel() // ends retries and requests in flight
		<-r.done
	}
	r.cancel()
	r.mu.Lock()
	left := len(r.queue)
	r.queue = nil
	r.mu.Unlock()
	if left > 0 {
		r.m.dropped.Add(float64(left))
		return fmt.Errorf("alerting: %d alerts not sent before shutdown: %w", left, ctx.Err())
	}
	return nil
}

func (r *Router) run() {
	defer close(r.done)
	ctx := r.ctx
	for {
		for b := r.next(); b != nil; b = r.next() {
			r.sendAll(ctx, b)
		}
		select {
		case <-r.wake:
		case <-r.stop:
			// Drain; Shutdown cancels ctx when its own context ends, and
			// counts what is left as dropped.
			for b := r.next(); b != nil && ctx.Err() == nil; b = r.next() {
				r.sendAll(ctx, b)
			}
			return
		}
	}
}

func (r *Router) sendAll(ctx context.Context, b []Alert) {
	body, err := json.Marshal(b)
	if err != nil {
		r.log.Error("encode alerts", "err", err)
		return
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := false
	for _, am := range r.cfg.Alertmanagers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.post(ctx, am, body); err != nil {
				r.m.errors.WithLabelValues(am).Add(float64(len(b)))
				r.log.Warn("alerts not accepted by Alertmanager", "alertmanager", am, "alerts", len(b), "err", err)
				return
			}
			r.m.notifSent.WithLabelValues(am).Add(float64(len(b)))
			mu.Lock()
			ok = true
			mu.Unlock()
		}()
	}
	wg.Wait()
	if ok {
		r.m.sent.Add(float64(len(b)))
	}
}

func (r *Router) post(ctx context.Context, am string, body []byte) error {
	url := strings.TrimSuffix(am, "/") + "/api/v2/alerts"
	var err error
	backoff := 100 * time.Millisecond
	for try := 0; try <= r.cfg.Retries; try++ {
		if try > 0 {
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return ctx.Err()
			}
			backoff *= 2
		}
		if err = r.postOnce(ctx, url, body); err == nil {
			return nil
		}
		var perm permanentError
		if errors.As(err, &perm) {
			return err
		}
	}
	return err
}

type permanentError struct{ error }

func (r *Router) postOnce(ctx context.Context, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return permanentError{err}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusTooManyRequests:
		// A 400 will not get better by sending the same batch again.
		return permanentError{fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))}
	default:
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
	}
}

// resolvedKeep is how long resolved alerts stay in Active and in the
// leitstand_alerts{state="resolved"} gauge.
const resolvedKeep = 15 * time.Minute

func (r *Router) remember(as []Alert, now time.Time) {
	r.activeMu.Lock()
	defer r.activeMu.Unlock()
	for i := range as {
		a := as[i]
		r.active[a.hash] = &a
	}
	if now.Sub(r.lastPrune) > 10*time.Second {
		r.pruneLocked(now)
	}
}

func (r *Router) pruneLocked(now time.Time) {
	r.lastPrune = now
	for k, a := range r.active {
		if !a.EndsAt.IsZero() && a.EndsAt.Add(resolvedKeep).Before(now) {
			delete(r.active, k)
		}
	}
}

// Alerts returns the alerts last sent that are firing now (with their role
// labels): what the role-scoped API shows when the engine's own view is not
// wired in.
func (r *Router) Alerts() []Alert {
	now := time.Now()
	r.activeMu.Lock()
	defer r.activeMu.Unlock()
	r.pruneLocked(now)
	out := make([]Alert, 0, len(r.active))
	for _, a := range r.active {
		if a.Firing(now) {
			out = append(out, *a)
		}
	}
	return out
}

// FromRules returns the active (pending and firing) alerts of rule engines
// labelled with their roles, one per owning role, for NewAPI: the rule
// engine's view, including alerts not yet sent.
// Pass rules.Engine.ActiveAlerts (and the log rules' source).
func (r *Router) FromRules(sources ...rules.AlertSource) func() []Alert {
	return func() []Alert {
		var out []Alert
		for _, src := range sources {
			for _, a := range src() {
				copies, _ := r.Label(&notifier.Alert{Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.ActiveAt})
				for i := range copies {
					copies[i].State = a.State.String()
					copies[i].Value = a.Value
				}
				out = append(out, copies...)
			}
		}
		return out
	}
}

type countKey struct{ role, state, severity string }

func (r *Router) alertCounts() map[countKey]int {
	out := map[countKey]int{}
	// Outside activeMu: the source takes the rule engines' locks.
	if src := r.rulesAlerts.Load(); src != nil {
		for _, a := range (*src)() {
			if a.State != promrules.StatePending {
				continue // firing ones are counted from what was sent
			}
			copies, _ := r.Label(&notifier.Alert{Labels: a.Labels})
			for _, c := range copies {
				out[countKey{c.Labels[RoleLabel], "pending", c.Labels["severity"]}]++
			}
		}
	}
	now := time.Now()
	r.activeMu.Lock()
	defer r.activeMu.Unlock()
	r.pruneLocked(now)
	for _, a := range r.active {
		state := "resolved"
		if a.Firing(now) {
			state = "firing"
		}
		out[countKey{a.Labels[RoleLabel], state, a.Labels["severity"]}]++
	}
	return out
}

var (
	_ rules.Notifier      = (*Router)(nil)
	_ collector.Component = (*Router)(nil)
)
