package alerting

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/leitstand/leitstand/collector"
)

// ESTransport sends one request to Elasticsearch. The request's URL holds
// only the path and query; the transport picks the node and adds the
// credentials, as go-elasticsearch's clients do (*elasticsearch.Client and
// the sink package's SearchClient are ESTransports).
type ESTransport interface {
	Perform(*http.Request) (*http.Response, error)
}

// EventSearch configures GET /events/search (WithEventSearch).
type EventSearch struct {
	// Transport reaches the cluster the Elasticsearch sink writes to.
	// Required: without it the endpoint answers 501.
	Transport ESTransport
	// Indices are the index patterns searched, e.g. the sink config's
	// SearchIndices(): leitstand's data streams and dated indices, the
	// dead-letter indices excluded. Required: without them the endpoint
	// answers 501 (searching "all indices" is never the fallback).
	Indices []string
	// Timeout bounds one search, in Elasticsearch and on the wire.
	// Default 30s.
	Timeout time.Duration
	// DefaultSize is how many events a search without size returns.
	// Default 100.
	DefaultSize int
	// MaxSize is the largest size a caller may ask for. Default 1000.
	MaxSize int
	// DefaultRange is how far back a search without from looks.
	// Default 24h.
	DefaultRange time.Duration
	// MaxResponseBytes caps Elasticsearch's answer read into memory; a
	// larger one is refused with 400 and the advice to lower size.
	// Default 32MiB.
	MaxResponseBytes int64
}

// WithEventSearch turns on GET /events/search with the caller's scope
// forced into every query.
func WithEventSearch(s EventSearch) APIOption {
	return func(a *API) {
		if s.Timeout <= 0 {
			s.Timeout = 30 * time.Second
		}
		if s.MaxSize <= 0 {
			s.MaxSize = 1000
		}
		if s.DefaultSize <= 0 {
			s.DefaultSize = min(100, s.MaxSize)
		}
		if s.DefaultRange <= 0 {
			s.DefaultRange = 24 * time.Hour
		}
		if s.MaxResponseBytes <= 0 {
			s.MaxResponseBytes = 32 << 20
		}
		a.search = &eventSearch{EventSearch: s}
		_, _ = rand.Read(a.search.auditKey[:])
	}
}

type eventSearch struct {
	EventSearch
	// auditKey keys the hash of q in audit lines: without a key a short q
	// (a name) could be recovered from its hash by guessing. Random per
	// process, so equal searches correlate within one process only.
	auditKey [32]byte
}

// searchFields are the fields q is matched against. Keyword fields match
// whole values; message and error.message are analysed text.
var searchFields = []string{
	collector.FieldMessage, "error.message", "error.type", collector.FieldLevel,
	collector.FieldHostName, collector.FieldService, collector.FieldNamespace,
	"kubernetes.pod.name", "kubernetes.container.name", collector.FieldDataset,
}

// searchFlags are the simple_query_string operators a caller may use:
// boolean operators, phrases and prefixes, but no fuzzy, slop or near
// queries (costly, and no help with log lines).
const searchFlags = "AND|OR|NOT|PHRASE|PRECEDENCE|PREFIX|WHITESPACE|ESCAPE"

const (
	maxQueryBytes = 1024
	maxValueBytes = 256
	// totalHitsCap bounds the counting work: beyond it total is a lower
	// bound ("total_relation":"gte").
	totalHitsCap = 10000
)

// searchParams are a search request's parameters, checked.
type searchParams struct {
	q        string
	want     [len(scopeDims)][]string // per scope dimension: values asked for
	from, to time.Time
	size     int
	asc      bool
}

var searchParamNames = []string{"q", "namespace", "service", "dataset", "from", "to", "size", "sort"}

func (s *eventSearch) parse(v url.Values, now time.Time) (searchParams, error) {
	var p searchParams
	for k := range v {
		if !slices.Contains(searchParamNames, k) {
			return p, fmt.Errorf("unknown parameter %q (want %s)", k, strings.Join(searchParamNames, ", "))
		}
	}
	for _, k := range []string{"q", "from", "to", "size", "sort"} {
		if len(v[k]) > 1 {
			return p, fmt.Errorf("%s: give it once", k)
		}
	}
	p.q = strings.TrimSpace(v.Get("q"))
	if len(p.q) > maxQueryBytes {
		return p, fmt.Errorf("q: at most %d bytes, got %d", maxQueryBytes, len(p.q))
	}
	for i, d := range scopeDims {
		for _, raw := range v[d.label] {
			for _, val := range strings.Split(raw, ",") {
				val = strings.TrimSpace(val)
				if val == "" || len(val) > maxValueBytes {
					return p, fmt.Errorf("%s: want comma-separated values of 1 to %d bytes, got %q", d.label, maxValueBytes, raw)
				}
				if !slices.Contains(p.want[i], val) {
					p.want[i] = append(p.want[i], val)
				}
			}
		}
	}
	var err error
	p.to = now
	if s := v.Get("to"); s != "" {
		if p.to, err = parseSearchTime(s, now); err != nil {
			return p, fmt.Errorf("to: %v", err)
		}
	}
	p.from = p.to.Add(-s.DefaultRange)
	if s := v.Get("from"); s != "" {
		if p.from, err = parseSearchTime(s, now); err != nil {
			return p, fmt.Errorf("from: %v", err)
		}
	}
	if !p.from.Before(p.to) {
		return p, fmt.Errorf("from (%s) must be before to (%s)", p.from.Format(time.RFC3339Nano), p.to.Format(time.RFC3339Nano))
	}
	p.size = s.DefaultSize
	if raw := v.Get("size"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 0 || n > s.MaxSize {
			return p, fmt.Errorf("size: want a number from 0 to %d, got %q", s.MaxSize, raw)
		}
		p.size = n
	}
	switch v.Get("sort") {
	case "", "desc":
	case "asc":
		p.asc = true
	default:
		return p, fmt.Errorf("sort: want desc (newest first, the default) or asc, got %q", v.Get("sort"))
	}
	return p, nil
}

// parseSearchTime reads RFC 3339 ("2026-11-22T08:00:00Z"), "now", or a
// duration back from now ("15m", "now-15m", "7d").
func parseSearchTime(s string, now time.Time) (time.Time, error) {
	if s == "now" {
		return now, nil
	}
	if d, err := model.ParseDuration(strings.TrimPrefix(s, "now-")); err == nil {
		return now.Add(-time.Duration(d)), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want RFC 3339 (2026-11-22T08:00:00Z), now, or a duration back from now (15m, now-2h, 7d), got %q", s)
	}
	return t, nil
}

// scopeFilters returns the bool filters that hold the search to role's
// scope and the values asked for, or errForbidden when the caller asks for
// a value outside its scope (an explicit refusal, not an empty answer).
func scopeFilters(role *Role, p *searchParams) ([]any, error) {
	if !role.Scope.All && role.Scope.empty() {
		return nil, fmt.Errorf("%w: role %s has no API scope", errForbidden, role.Name)
	}
	var out []any
	for i, l := range role.Scope.lists() {
		if !role.Scope.All && len(l.values) > 0 {
			for _, v := range p.want[i] {
				if !slices.Contains(l.values, v) {
					return nil, fmt.Errorf("%w: %s=%q is outside role %s's scope %v", errForbidden, l.label, v, role.Name, l.values)
				}
			}
			out = append(out, map[string]any{"terms": map[string]any{l.field: l.values}})
		}
		if len(p.want[i]) > 0 {
			out = append(out, map[string]any{"terms": map[string]any{l.field: p.want[i]}})
		}
	}
	return out, nil
}

// query builds the search body. The scope sits in the bool query's filter
// beside the caller's q, which is one simple_query_string leaf in must:
// whatever q says, it can only narrow what the filter lets through.
func (s *eventSearch) query(p *searchParams, scope []any) ([]byte, error) {
	filter := append([]any{
		map[string]any{"range": map[string]any{"@timestamp": map[string]any{
			"gte": p.from.UTC().Format(time.RFC3339Nano), "lte": p.to.UTC().Format(time.RFC3339Nano),
			"format": "strict_date_optional_time_nanos"}}},
		// Documents leitstand wrote (every receiver sets it), so events of
		// other writers in the same data streams, which never passed the
		// anonymizer, stay out.
		map[string]any{"exists": map[string]any{"field": collector.FieldReceiver}},
	}, scope...)
	boolQ := map[string]any{"filter": filter}
	if p.q != "" {
		boolQ["must"] = []any{map[string]any{"simple_query_string": map[string]any{
			"query": p.q, "fields": searchFields, "flags": searchFlags,
			"default_operator": "and", "lenient": true,
		}}}
	}
	order := "desc"
	if p.asc {
		order = "asc"
	}
	return json.Marshal(map[string]any{
		"query":            map[string]any{"bool": boolQ},
		"size":             p.size,
		"track_total_hits": totalHitsCap,
		"timeout":          strconv.FormatInt(s.Timeout.Milliseconds(), 10) + "ms",
		"sort": []any{map[string]any{"@timestamp": map[string]any{
			"order": order, "unmapped_type": "date_nanos", "numeric_type": "date_nanos"}}},
	})
}

// searchError is a failed search with the HTTP status and metric result
// it answers with.
type searchError struct {
	code   int
	result string
	msg    string
}

func (e *searchError) Error() string { return e.msg }

type searchResult struct {
	Total         int64             `json:"total"`
	TotalRelation string            `json:"total_relation"`
	Events        []json.RawMessage `json:"events"`
	took          int64
}

// run sends the search and reads the answer. Errors are *searchError.
func (s *eventSearch) run(ctx context.Context, body []byte) (*searchResult, string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "/", bytes.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	req.URL = &url.URL{
		Path: "/" + strings.Join(s.Indices, ",") + "/_search",
		RawQuery: url.Values{
			// A pattern that matches nothing (no dated indices, say) is
			// not an error; every other problem is.
			"ignore_unavailable": {"true"}, "allow_no_indices": {"true"},
			"filter_path": {"took,timed_out,_shards.failed,_shards.failures,hits.total,hits.hits._source"},
		}.Encode(),
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.Transport.Perform(req)
	peer := "(no node)"
	if req.URL.Host != "" {
		peer = req.URL.Scheme + "://" + req.URL.Host
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, peer, &searchError{http.StatusGatewayTimeout, "timeout",
				fmt.Sprintf("Elasticsearch did not answer within %s; narrow the search (from/to, dataset)", s.Timeout)}
		}
		return nil, peer, &searchError{http.StatusServiceUnavailable, "unavailable", "Elasticsearch unreachable: " + err.Error()}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, s.MaxResponseBytes+1))
	if err != nil {
		code, result := http.StatusBadGateway, "error"
		if errors.Is(err, context.DeadlineExceeded) {
			code, result = http.StatusGatewayTimeout, "timeout"
		}
		return nil, peer, &searchError{code, result, "reading Elasticsearch's answer: " + err.Error()}
	}
	if int64(len(data)) > s.MaxResponseBytes {
		return nil, peer, &searchError{http.StatusBadRequest, "too_large",
			fmt.Sprintf("the answer is larger than %d bytes; lower size or narrow the search", s.MaxResponseBytes)}
	}
	if resp.StatusCode != http.StatusOK {
		reason := esReason(data)
		switch {
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
			return nil, peer, &searchError{http.StatusServiceUnavailable, "unavailable",
				fmt.Sprintf("Elasticsearch is overloaded or not ready (%s): %s", resp.Status, reason)}
		default:
			return nil, peer, &searchError{http.StatusBadGateway, "error",
				fmt.Sprintf("Elasticsearch refused the search (%s): %s", resp.Status, reason)}
		}
	}
	var res struct {
		Took     int64 `json:"took"`
		TimedOut bool  `json:"timed_out"`
		Shards   struct {
			Failed   int `json:"failed"`
			Failures []struct {
				Index  string `json:"index"`
				Reason struct {
					Type   string `json:"type"`
					Reason string `json:"reason"`
				} `json:"reason"`
			} `json:"failures"`
		} `json:"_shards"`
		Hits struct {
			Total struct {
				Value    int64  `json:"value"`
				Relation string `json:"relation"`
			} `json:"total"`
			Hits []struct {
				Source json.RawMessage `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, peer, &searchError{http.StatusBadGateway, "error", "Elasticsearch's answer is not a search result: " + err.Error()}
	}
	if res.TimedOut {
		return nil, peer, &searchError{http.StatusGatewayTimeout, "timeout",
			fmt.Sprintf("the search took longer than %s; narrow it (from/to, dataset)", s.Timeout)}
	}
	if res.Shards.Failed > 0 {
		// Partial results would look like fewer events; say so instead.
		msg := fmt.Sprintf("%d shards failed", res.Shards.Failed)
		if len(res.Shards.Failures) > 0 {
			f := res.Shards.Failures[0]
			msg += fmt.Sprintf(", first in %s: %s: %s", f.Index, f.Reason.Type, f.Reason.Reason)
		}
		return nil, peer, &searchError{http.StatusBadGateway, "error", "Elasticsearch: " + msg}
	}
	out := &searchResult{Total: res.Hits.Total.Value, TotalRelation: res.Hits.Total.Relation,
		Events: make([]json.RawMessage, 0, len(res.Hits.Hits)), took: res.Took}
	if out.TotalRelation == "" {
		out.TotalRelation = "eq"
	}
	for _, h := range res.Hits.Hits {
		out.Events = append(out.Events, h.Source)
	}
	return out, peer, nil
}

// esReason is the reason of an Elasticsearch error answer.
func esReason(data []byte) string {
	var e struct {
		Error struct {
			RootCause []struct {
				Type   string `json:"type"`
				Reason string `json:"reason"`
			} `json:"root_cause"`
			Type   string `json:"type"`
			Reason string `json:"reason"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error.Type != "" {
		if len(e.Error.RootCause) > 0 && e.Error.RootCause[0].Reason != "" {
			return e.Error.RootCause[0].Type + ": " + e.Error.RootCause[0].Reason
		}
		return e.Error.Type + ": " + e.Error.Reason
	}
	const maxRaw = 512
	if len(data) > maxRaw {
		data = data[:maxRaw]
	}
	return string(bytes.TrimSpace(data))
}

func (a *API) searchEvents(w http.ResponseWriter, req *http.Request) {
	role := a.auth(w, req)
	if role == nil {
		a.r.m.searches.WithLabelValues("unauthorized").Inc()
		return
	}
	s := a.search
	if s == nil || s.Transport == nil || len(s.Indices) == 0 {
		a.r.m.searches.WithLabelValues("not_configured").Inc()
		apiError(w, http.StatusNotImplemented, "event search is not configured: it needs the Elasticsearch sink (sinks.elasticsearch)")
		return
	}
	p, err := s.parse(req.URL.Query(), time.Now())
	if err != nil {
		a.r.m.searches.WithLabelValues("bad_request").Inc()
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	// The query text may name a person (searching for an address that the
	// anonymizer has long replaced); the audit line keeps a keyed hash only.
	qsum := ""
	if p.q != "" {
		h := hmac.New(sha256.New, s.auditKey[:])
		h.Write([]byte(p.q))
		qsum = hex.EncodeToString(h.Sum(nil)[:8])
	}
	audit := []any{"role", role.Name, "remote", req.RemoteAddr, "q_hash", qsum, "q_bytes", len(p.q),
		"namespace", p.want[0], "service", p.want[1], "dataset", p.want[2],
		"from", p.from.UTC().Format(time.RFC3339), "to", p.to.UTC().Format(time.RFC3339), "size", p.size}
	scope, err := scopeFilters(role, &p)
	if err != nil {
		a.r.m.searches.WithLabelValues("forbidden").Inc()
		a.r.log.Warn("audit: event search refused", append(audit, "reason", err.Error())...)
		apiError(w, http.StatusForbidden, err.Error())
		return
	}
	body, err := s.query(&p, scope)
	if err != nil {
		a.r.m.searches.WithLabelValues("error").Inc()
		apiError(w, http.StatusInternalServerError, err.Error())
		return
	}
	res, peer, err := s.run(req.Context(), body)
	if err != nil {
		if req.Context().Err() != nil {
			a.r.m.searches.WithLabelValues("canceled").Inc()
			return // the caller left; nobody reads an answer
		}
		var se *searchError
		if !errors.As(err, &se) {
			se = &searchError{http.StatusBadGateway, "error", err.Error()}
		}
		a.r.m.searches.WithLabelValues(se.result).Inc()
		if se.result != "too_large" {
			a.r.log.Warn("event search failed", "elasticsearch", peer, "status", se.code, "err", se.msg)
		}
		if se.code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "5")
		}
		apiError(w, se.code, se.msg)
		return
	}
	a.r.m.searches.WithLabelValues("ok").Inc()
	a.r.log.Info("audit: event search", append(audit, "total", res.Total, "returned", len(res.Events), "took_ms", res.took)...)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(success{Status: "success", Data: res})
}
