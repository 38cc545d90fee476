package alerting

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/leitstand/leitstand/collector"
)

// scopeDims are the scope's dimensions: the alert label each is matched
// against (alerts, silences) and the event field (event search). One table,
// so what a role sees of alerts and of events cannot drift apart.
var scopeDims = [...]struct {
	label string // alert label, and the event search's query parameter
	field string // ECS field of the stored events
}{
	{"namespace", collector.FieldNamespace},
	{"service", collector.FieldService},
	{"dataset", collector.FieldDataset},
}

type scopeList struct {
	label, field string
	values       []string
}

func (s Scope) lists() [len(scopeDims)]scopeList {
	vals := [len(scopeDims)][]string{s.Namespaces, s.Services, s.Datasets}
	var out [len(scopeDims)]scopeList
	for i, d := range scopeDims {
		out[i] = scopeList{d.label, d.field, vals[i]}
	}
	return out
}

func (s Scope) empty() bool {
	return len(s.Namespaces) == 0 && len(s.Services) == 0 && len(s.Datasets) == 0
}

// Contains reports whether an alert with these labels is in the scope.
func (s Scope) Contains(get func(string) string) bool {
	if s.All {
		return true
	}
	if s.empty() {
		return false
	}
	for _, l := range s.lists() {
		if len(l.values) > 0 && !slices.Contains(l.values, get(l.label)) {
			return false
		}
	}
	return true
}

// API is the role-scoped HTTP API. Every request needs
// `Authorization: Bearer <token>` of a role (401 otherwise); the role's
// scope filters what it reads and bounds what it silences and searches
// (403 beyond it).
//
//	GET  /alerts         the active alerts in the caller's scope, in
//	                     Prometheus' /api/v1/alerts shape (Grafana reads it)
//	POST /silences       an Alertmanager v2 silence; the scope's matchers are
//	                     added, so it cannot mute alerts outside the scope
//	GET  /events/search  stored events in Elasticsearch, the scope forced
//	                     into the query (WithEventSearch; see search.go)
//
// Paths are relative: mount it with http.StripPrefix (e.g. "/api/v1/roles"
// or, to replace the unscoped endpoints, "/api/v1" for exactly these three).
type API struct {
	r      *Router
	alerts func() []Alert
	client *http.Client
	mux    *http.ServeMux
	search *eventSearch // nil: event search not configured
}

// APIOption configures NewAPI.
type APIOption func(*API)

// NewAPI returns the API of r's roles. alerts returns the active alerts
// with their role labels (nil: r.Alerts, what r last sent).
func (r *Router) NewAPI(alerts func() []Alert, opts ...APIOption) *API {
	if alerts == nil {
		alerts = r.Alerts
	}
	a := &API{r: r, alerts: alerts, client: r.client, mux: http.NewServeMux()}
	for _, o := range opts {
		o(a)
	}
	a.mux.HandleFunc("GET /alerts", a.getAlerts)
	a.mux.HandleFunc("POST /silences", a.postSilence)
	a.mux.HandleFunc("GET /events/search", a.searchEvents)
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, req *http.Request) { a.mux.ServeHTTP(w, req) }

// Authenticate returns the role of the request's bearer token, or nil.
func (r *Router) Authenticate(req *http.Request) *Role {
	tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return nil
	}
	// Only the token's hash is kept; looking that up leaks no timing
	// about the token itself.
	return r.tokens[sha256.Sum256([]byte(strings.TrimSpace(tok)))]
}

func (a *API) auth(w http.ResponseWriter, req *http.Request) *Role {
	role := a.r.Authenticate(req)
	if role == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="leitstand"`)
		apiError(w, http.StatusUnauthorized, "a valid bearer token is required")
	}
	return role
}

// success and failure are the answers' envelopes, status first, as
// Prometheus' API writes them.
type success struct {
	Status string `json:"status"`
	Data   any    `json:"data"`
}

type failure struct {
	Status string `json:"status"`
	Error  string `json:"error"`
}

func apiError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(failure{Status: "error", Error: msg})
}

// promAlert is an alert as Prometheus' GET /api/v1/alerts answers it, so
// Grafana's Prometheus data source (and anything else written for that API)
// reads the scoped endpoint unchanged.
type promAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	ActiveAt    *time.Time        `json:"activeAt,omitempty"`
	Value       string            `json:"value"`
}

func toPromAlert(al *Alert) promAlert {
	p := promAlert{Labels: al.Labels, Annotations: al.Annotations, State: al.State,
		Value: strconv.FormatFloat(al.Value, 'e', -1, 64)}
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	if p.State == "" {
		p.State = "firing" // what the Router sent: firing alerts only
	}
	if !al.StartsAt.IsZero() {
		t := al.StartsAt
		p.ActiveAt = &t
	}
	return p
}

func (a *API) getAlerts(w http.ResponseWriter, req *http.Request) {
	role := a.auth(w, req)
	if role == nil {
		return
	}
	out := []promAlert{}
	for _, al := range a.alerts() {
		if role.Scope.Contains(func(k string) string { return al.Labels[k] }) {
			out = append(out, toPromAlert(&al))
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(success{Status: "success", Data: map[string]any{"alerts": out}})
}

// silenceMatcher is Alertmanager v2's matcher.
type silenceMatcher struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	IsRegex bool   `json:"isRegex"`
	IsEqual *bool  `json:"isEqual,omitempty"`
}

// Silence is Alertmanager v2's postable silence.
type Silence struct {
	ID        string           `json:"id,omitempty"`
	Matchers  []silenceMatcher `json:"matchers"`
	StartsAt  time.Time        `json:"startsAt"`
	EndsAt    time.Time        `json:"endsAt"`
	CreatedBy string           `json:"createdBy"`
	Comment   string           `json:"comment"`
}

var errForbidden = errors.New("forbidden")

// scopeSilence adds the scope's matchers to s, refusing (errForbidden) a
// silence that names a value outside the scope or updates an existing one.
func scopeSilence(role *Role, s *Silence) error {
	if s.ID != "" {
		return fmt.Errorf("%w: updating a silence by id is not allowed; create a new one", errForbidden)
	}
	if len(s.Matchers) == 0 {
		return errors.New("a silence needs at least one matcher")
	}
	if role.Scope.All {
		return nil
	}
	if role.Scope.empty() {
		return fmt.Errorf("%w: role %s has no API scope", errForbidden, role.Name)
	}
	for _, l := range role.Scope.lists() {
		if len(l.values) == 0 {
			continue
		}
		for _, m := range s.Matchers {
			equal := m.IsEqual == nil || *m.IsEqual
			if m.Name == l.label && !m.IsRegex && equal && !slices.Contains(l.values, m.Value) {
				return fmt.Errorf("%w: %s=%q is outside role %s's scope %v", errForbidden, l.label, m.Value, role.Name, l.values)
			}
		}
		quoted := make([]string, len(l.values))
		for i, v := range l.values {
			quoted[i] = regexp.QuoteMeta(v)
		}
		s.Matchers = append(s.Matchers, silenceMatcher{Name: l.label, Value: strings.Join(quoted, "|"), IsRegex: true})
	}
	return nil
}

func (a *API) postSilence(w http.ResponseWriter, req *http.Request) {
	role := a.auth(w, req)
	if role == nil {
		return
	}
	var s Silence
	dec := json.NewDecoder(io.LimitReader(req.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		apiError(w, http.StatusBadRequest, "bad silence: "+err.Error())
		return
	}
	if err := scopeSilence(role, &s); err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, errForbidden) {
			code = http.StatusForbidden
		}
		a.r.log.Warn("audit: silence refused", "role", role.Name, "remote", req.RemoteAddr, "reason", err.Error())
		apiError(w, code, err.Error())
		return
	}
	s.CreatedBy = role.Name + ": " + s.CreatedBy
	body, _ := json.Marshal(s)
	var lastErr error
	for _, am := range a.r.cfg.Alertmanagers {
		// Silences are gossiped within an HA group: one member is enough.
		id, code, err := a.forward(req, am, body)
		if err != nil {
			lastErr = err
			if code/100 == 4 {
				apiError(w, code, err.Error())
				return
			}
			continue
		}
		a.r.log.Info("audit: silence created", "role", role.Name, "remote", req.RemoteAddr,
			"silence_id", id, "alertmanager", am, "matchers", matcherText(s.Matchers),
			"starts_at", s.StartsAt, "ends_at", s.EndsAt, "created_by", s.CreatedBy, "comment", s.Comment)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"silenceID": id})
		return
	}
	if lastErr == nil {
		lastErr = errors.New("no Alertmanager configured")
	}
	apiError(w, http.StatusBadGateway, lastErr.Error())
}

func (a *API) forward(req *http.Request, am string, body []byte) (id string, code int, err error) {
	out, err := http.NewRequestWithContext(req.Context(), http.MethodPost,
		strings.TrimSuffix(am, "/")+"/api/v2/silences", bytes.NewReader(body))
	if err != nil {
		return "", 0, err
	}
	out.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(out)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return "", resp.StatusCode, fmt.Errorf("alertmanager %s: %s: %s", am, resp.Status, bytes.TrimSpace(b))
	}
	var ok struct {
		SilenceID string `json:"silenceID"`
	}
	if err := json.Unmarshal(b, &ok); err != nil {
		return "", resp.StatusCode, fmt.Errorf("alertmanager %s: %v", am, err)
	}
	return ok.SilenceID, resp.StatusCode, nil
}

func matcherText(ms []silenceMatcher) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		eq := m.IsEqual == nil || *m.IsEqual
		op := "!="
		switch {
		case m.IsRegex && eq:
			op = "=~"
		case m.IsRegex:
			op = "!~"
		case eq:
			op = "="
		}
		parts[i] = m.Name + op + strconv.Quote(m.Value)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

var _ http.Handler = (*API)(nil)
