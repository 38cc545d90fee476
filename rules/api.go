package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
)

// APIPrefix is where Handler expects to be mounted.
const APIPrefix = "/api/v1/"

// Handler serves the Prometheus-compatible HTTP API subset under
// /api/v1/: query, query_range, series, labels, label/<name>/values,
// rules, alerts, metadata, query_exemplars, status/buildinfo, and write
// (remote_write 1.0 and 2.0, embedded mode with remote_write_receiver
// enabled). Mount it with mux.Handle(rules.APIPrefix, e.Handler()). In
// remote mode the read endpoints are forwarded to the remote datasource.
// While the engine is stopped every endpoint answers 503.
func (e *Engine) Handler() http.Handler {
	return http.HandlerFunc(e.serveAPI)
}

// Register mounts Handler on mux at /api/v1/.
func (e *Engine) Register(mux *http.ServeMux) { mux.Handle(APIPrefix, e.Handler()) }

type apiError struct {
	typ    string
	status int
	err    error
}

func (a *apiError) Error() string { return a.err.Error() }

func badData(format string, args ...any) *apiError {
	return &apiError{typ: "bad_data", status: http.StatusBadRequest, err: fmt.Errorf(format, args...)}
}

type apiResult struct {
	data     any
	warnings annotations.Annotations
	err      *apiError
}

func (e *Engine) serveAPI(w http.ResponseWriter, req *http.Request) {
	path := strings.TrimPrefix(req.URL.Path, strings.TrimSuffix(APIPrefix, "/"))
	r := e.current()
	if r == nil {
		writeAPI(w, apiResult{err: &apiError{typ: "unavailable", status: http.StatusServiceUnavailable, err: ErrNotRunning}})
		return
	}
	if path == "/write" {
		if r.write == nil {
			http.Error(w, "remote_write is not accepted here: the receiver is off or leitstand runs in remote mode", http.StatusNotFound)
			return
		}
		if req.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "remote_write takes POST", http.StatusMethodNotAllowed)
			return
		}
		r.write.ServeHTTP(w, req)
		return
	}
	switch path {
	case "/rules":
		writeAPI(w, e.apiRules(req))
		return
	case "/alerts":
		writeAPI(w, apiResult{data: map[string]any{"alerts": e.apiAlerts()}})
		return
	case "/status/buildinfo":
		writeAPI(w, apiResult{data: map[string]string{
			"version": "3.16.0", "revision": "", "branch": "", "buildUser": "", "buildDate": "",
			"goVersion": "", "application": "leitstand",
		}})
		return
	}
	if r.proxy != nil {
		switch {
		case path == "/query", path == "/query_range", path == "/series", path == "/labels",
			path == "/metadata", path == "/query_exemplars", strings.HasPrefix(path, "/label/"):
			r.proxy.ServeHTTP(w, req)
			return
		}
	}
	if req.Method != http.MethodGet && req.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		writeAPI(w, apiResult{err: &apiError{typ: "bad_data", status: http.StatusMethodNotAllowed, err: errors.New("use GET or POST")}})
		return
	}
	if err := req.ParseForm(); err != nil {
		writeAPI(w, apiResult{err: badData("cannot parse the form: %v", err)})
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), e.cfg.Query.Timeout)
	defer cancel()
	var res apiResult
	switch {
	case path == "/query":
		res = e.apiQuery(ctx, r, req)
	case path == "/query_range":
		res = e.apiQueryRange(ctx, r, req)
	case path == "/series":
		res = apiSeries(ctx, r.queryable, req)
	case path == "/labels":
		res = apiLabelNames(ctx, r.queryable, req)
	case strings.HasPrefix(path, "/label/") && strings.HasSuffix(path, "/values"):
		name := strings.TrimSuffix(strings.TrimPrefix(path, "/label/"), "/values")
		res = apiLabelValues(ctx, r.queryable, req, name)
	case path == "/metadata":
		res = apiResult{data: map[string]any{}}
	case path == "/query_exemplars":
		res = apiResult{data: []any{}}
	default:
		res = apiResult{err: &apiError{typ: "not_found", status: http.StatusNotFound, err: fmt.Errorf("unknown endpoint %s%s", strings.TrimSuffix(APIPrefix, "/"), path)}}
	}
	writeAPI(w, res)
}

func writeAPI(w http.ResponseWriter, res apiResult) {
	w.Header().Set("Content-Type", "application/json")
	body := map[string]any{"status": "success"}
	status := http.StatusOK
	if res.err != nil {
		body["status"] = "error"
		body["errorType"] = res.err.typ
		body["error"] = res.err.err.Error()
		status = res.err.status
	} else {
		body["data"] = res.data
	}
	if warns, infos := res.warnings.AsStrings("", 10, 10); len(warns) > 0 || len(infos) > 0 {
		if len(warns) > 0 {
			body["warnings"] = warns
		}
		if len(infos) > 0 {
			body["infos"] = infos
		}
	}
	b, err := json.Marshal(body)
	if err != nil {
		http.Error(w, `{"status":"error","errorType":"internal","error":"cannot encode the result"}`, http.StatusInternalServerError)
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// queryError maps a PromQL error to the status Prometheus answers with.
func queryError(err error) *apiError {
	var (
		eqc promql.ErrQueryCanceled
		eqt promql.ErrQueryTimeout
		es  promql.ErrStorage
	)
	switch {
	case errors.As(err, &eqc):
		return &apiError{typ: "canceled", status: 499, err: err}
	case errors.As(err, &eqt), errors.Is(err, context.DeadlineExceeded):
		return &apiError{typ: "timeout", status: http.StatusServiceUnavailable, err: err}
	case errors.As(err, &es):
		return &apiError{typ: "internal", status: http.StatusInternalServerError, err: err}
	}
	return &apiError{typ: "execution", status: http.StatusUnprocessableEntity, err: err}
}

type queryData struct {
	ResultType string `json:"resultType"`
	Result     any    `json:"result"`
}

func (e *Engine) apiQuery(ctx context.Context, r *running, req *http.Request) apiResult {
	ts := time.Now()
	if s := req.FormValue("time"); s != "" {
		t, err := parseTime(s)
		if err != nil {
			return apiResult{err: badData("invalid parameter \"time\": %v", err)}
		}
		ts = t
	}
	ctx, cancel, aerr := withTimeout(ctx, req)
	defer cancel()
	if aerr != nil {
		return apiResult{err: aerr}
	}
	q, err := r.engine.NewInstantQuery(ctx, r.queryable, nil, req.FormValue("query"), ts)
	if err != nil {
		return apiResult{err: badData("invalid parameter \"query\": %v", err)}
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return apiResult{err: queryError(res.Err), warnings: res.Warnings}
	}
	return apiResult{data: queryData{ResultType: string(res.Value.Type()), Result: res.Value}, warnings: res.Warnings}
}

func (e *Engine) apiQueryRange(ctx context.Context, r *running, req *http.Request) apiResult {
	start, err := parseTime(req.FormValue("start"))
	if err != nil {
		return apiResult{err: badData("invalid parameter \"start\": %v", err)}
	}
	end, err := parseTime(req.FormValue("end"))
	if err != nil {
		return apiResult{err: badData("invalid parameter \"end\": %v", err)}
	}
	if end.Before(start) {
		return apiResult{err: badData("invalid parameter \"end\": end timestamp must not be before start time")}
	}
	step, err := parseDuration(req.FormValue("step"))
	if err != nil {
		return apiResult{err: badData("invalid parameter \"step\": %v", err)}
	}
	if step <= 0 {
		return apiResult{err: badData("zero or negative query resolution step widths are not accepted. Try a positive integer")}
	}
	if end.Sub(start)/step > 11000 {
		return apiResult{err: badData("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)")}
	}
	ctx, cancel, aerr := withTimeout(ctx, req)
	defer cancel()
	if aerr != nil {
		return apiResult{err: aerr}
	}
	q, err := r.engine.NewRangeQuery(ctx, r.queryable, nil, req.FormValue("query"), start, end, step)
	if err != nil {
		return apiResult{err: badData("invalid parameter \"query\": %v", err)}
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return apiResult{err: queryError(res.Err), warnings: res.Warnings}
	}
	return apiResult{data: queryData{ResultType: string(res.Value.Type()), Result: res.Value}, warnings: res.Warnings}
}

// withTimeout applies the request's timeout parameter, if any.
func withTimeout(ctx context.Context, req *http.Request) (context.Context, context.CancelFunc, *apiError) {
	s := req.FormValue("timeout")
	if s == "" {
		return ctx, func() {}, nil
	}
	d, err := parseDuration(s)
	if err != nil {
		return ctx, func() {}, badData("invalid parameter \"timeout\": %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	return ctx, cancel, nil
}

var (
	minTime = time.Unix(math.MinInt64/1000+62135596801, 0).UTC()
	maxTime = time.Unix(math.MaxInt64/1000-62135596801, 999999999).UTC()
)

// parseTime accepts Unix seconds (with fractions) and RFC 3339, as
// Prometheus does.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("missing")
	}
	if t, err := strconv.ParseFloat(s, 64); err == nil {
		sec, frac := math.Modf(t)
		return time.Unix(int64(sec), int64(math.Round(frac*1000))*int64(time.Millisecond)).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

func parseDuration(s string) (time.Duration, error) {
	if d, err := strconv.ParseFloat(s, 64); err == nil {
		ts := d * float64(time.Second)
		if ts > float64(math.MaxInt64) || ts < float64(math.MinInt64) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration. It overflows int64", s)
		}
		return time.Duration(ts), nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
}

// timeRange reads start and end, defaulting to all time.
func timeRange(req *http.Request) (int64, int64, *apiError) {
	start, end := minTime, maxTime
	var err error
	if s := req.FormValue("start"); s != "" {
		if start, err = parseTime(s); err != nil {
			return 0, 0, badData("invalid parameter \"start\": %v", err)
		}
	}
	if s := req.FormValue("end"); s != "" {
		if end, err = parseTime(s); err != nil {
			return 0, 0, badData("invalid parameter \"end\": %v", err)
		}
	}
	return timestamp.FromTime(start), timestamp.FromTime(end), nil
}

func matcherSets(req *http.Request) ([][]*labels.Matcher, *apiError) {
	p := newParser()
	var out [][]*labels.Matcher
	for _, s := range req.Form["match[]"] {
		ms, err := p.ParseMetricSelector(s)
		if err != nil {
			return nil, badData("invalid parameter \"match[]\": %v", err)
		}
		out = append(out, ms)
	}
	return out, nil
}

func limitParam(req *http.Request) (int, *apiError) {
	s := req.FormValue("limit")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, badData("invalid parameter \"limit\": want a whole number >= 0")
	}
	return n, nil
}

func apiSeries(ctx context.Context, qa storage.Queryable, req *http.Request) apiResult {
	sets, aerr := matcherSets(req)
	if aerr != nil {
		return apiResult{err: aerr}
	}
	if len(sets) == 0 {
		return apiResult{err: badData("no match[] parameter provided")}
	}
	mint, maxt, aerr := timeRange(req)
	if aerr != nil {
		return apiResult{err: aerr}
	}
	limit, aerr := limitParam(req)
	if aerr != nil {
		return apiResult{err: aerr}
	}
	q, err := qa.Querier(mint, maxt)
	if err != nil {
		return apiResult{err: &apiError{typ: "internal", status: http.StatusInternalServerError, err: err}}
	}
	defer q.Close()
	hints := &storage.SelectHints{Start: mint, End: maxt, Func: "series", Limit: limit}
	var sets2 []storage.SeriesSet
	for _, ms := range sets {
		sets2 = append(sets2, q.Select(ctx, len(sets) > 1, hints, ms...))
	}
	set := storage.NewMergeSeriesSet(sets2, 0, storage.ChainedSeriesMerge)
	out := []labels.Labels{}
	for set.Next() {
		out = append(out, set.At().Labels())
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	if err := set.Err(); err != nil {
		return apiResult{err: queryError(err)}
	}
	return apiResult{data: out, warnings: set.Warnings()}
}

func apiLabelNames(ctx context.Context, qa storage.Queryable, req *http.Request) apiResult {
	return labelQuery(ctx, qa, req, func(q storage.Querier, hints *storage.LabelHints, ms []*labels.Matcher) ([]string, annotations.Annotations, error) {
		return q.LabelNames(ctx, hints, ms...)
	})
}

func apiLabelValues(ctx context.Context, qa storage.Queryable, req *http.Request, name string) apiResult {
	if strings.HasPrefix(name, "U__") {
		name = model.UnescapeName(name, model.ValueEncodingEscaping)
	}
	if !model.UTF8Validation.IsValidLabelName(name) {
		return apiResult{err: badData("invalid label name: %q", name)}
	}
	return labelQuery(ctx, qa, req, func(q storage.Querier, hints *storage.LabelHints, ms []*labels.Matcher) ([]string, annotations.Annotations, error) {
		return q.LabelValues(ctx, name, hints, ms...)
	})
}

// labelQuery runs a label names or values query once per match[] set (or
// once without matchers) and merges the results.
func labelQuery(_ context.Context, qa storage.Queryable, req *http.Request,
	f func(storage.Querier, *storage.LabelHints, []*labels.Matcher) ([]string, annotations.Annotations, error),
) apiResult {
	sets, aerr := matcherSets(req)
	if aerr != nil {
		return apiResult{err: aerr}
	}
	mint, maxt, aerr := timeRange(req)
	if aerr != nil {
		return apiResult{err: aerr}
	}
	limit, aerr := limitParam(req)
	if aerr != nil {
		return apiResult{err: aerr}
	}
	q, err := qa.Querier(mint, maxt)
	if err != nil {
		return apiResult{err: &apiError{typ: "internal", status: http.StatusInternalServerError, err: err}}
	}
	defer q.Close()
	hints := &storage.LabelHints{Limit: limit}
	if len(sets) == 0 {
		sets = [][]*labels.Matcher{nil}
	}
	all := map[string]bool{}
	var warnings annotations.Annotations
	for _, ms := range sets {
		names, w, err := f(q, hints, ms)
		if err != nil {
			return apiResult{err: queryError(err)}
		}
		warnings.Merge(w)
		for _, n := range names {
			all[n] = true
		}
	}
	out := sortedKeys(all)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return apiResult{data: out, warnings: warnings}
}

// The JSON shapes of Prometheus' /api/v1/rules and /api/v1/alerts.
type apiAlert struct {
	Labels          labels.Labels `json:"labels"`
	Annotations     labels.Labels `json:"annotations"`
	State           string        `json:"state"`
	ActiveAt        *time.Time    `json:"activeAt,omitempty"`
	KeepFiringSince *time.Time    `json:"keepFiringSince,omitempty"`
	Value           string        `json:"value"`
}

type apiRuleGroup struct {
	Name           string    `json:"name"`
	File           string    `json:"file"`
	Rules          []any     `json:"rules"`
	Interval       float64   `json:"interval"`
	Limit          int       `json:"limit"`
	EvaluationTime float64   `json:"evaluationTime"`
	LastEvaluation time.Time `json:"lastEvaluation"`
}

type apiAlertingRule struct {
	State          string        `json:"state"`
	Name           string        `json:"name"`
	Query          string        `json:"query"`
	Duration       float64       `json:"duration"`
	KeepFiringFor  float64       `json:"keepFiringFor"`
	Labels         labels.Labels `json:"labels"`
	Annotations    labels.Labels `json:"annotations"`
	Alerts         []apiAlert    `json:"alerts"`
	Health         string        `json:"health"`
	LastError      string        `json:"lastError,omitempty"`
	EvaluationTime float64       `json:"evaluationTime"`
	LastEvaluation time.Time     `json:"lastEvaluation"`
	Type           string        `json:"type"`
}

type apiRecordingRule struct {
	Name           string        `json:"name"`
	Query          string        `json:"query"`
	Labels         labels.Labels `json:"labels"`
	Health         string        `json:"health"`
	LastError      string        `json:"lastError,omitempty"`
	EvaluationTime float64       `json:"evaluationTime"`
	LastEvaluation time.Time     `json:"lastEvaluation"`
	Type           string        `json:"type"`
}

func toAPIAlert(a *promrules.Alert) apiAlert {
	out := apiAlert{Labels: a.Labels, Annotations: a.Annotations, State: a.State.String(),
		Value: strconv.FormatFloat(a.Value, 'e', -1, 64)}
	if !a.ActiveAt.IsZero() {
		t := a.ActiveAt
		out.ActiveAt = &t
	}
	if !a.KeepFiringSince.IsZero() {
		t := a.KeepFiringSince
		out.KeepFiringSince = &t
	}
	return out
}

func (e *Engine) apiAlerts() []apiAlert {
	out := []apiAlert{}
	for _, a := range e.ActiveAlerts() {
		out = append(out, toAPIAlert(a))
	}
	for _, src := range e.alertSources() {
		for _, a := range src() {
			out = append(out, toAPIAlert(a))
		}
	}
	sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].Labels, out[j].Labels) < 0 })
	return out
}

func (e *Engine) apiRules(req *http.Request) apiResult {
	_ = req.ParseForm()
	typ := strings.ToLower(req.FormValue("type"))
	if typ != "" && typ != "alert" && typ != "record" {
		return apiResult{err: badData("invalid parameter \"type\": want alert or record, got %q", typ)}
	}
	names := map[string]bool{}
	for _, n := range req.Form["rule_name[]"] {
		names[n] = true
	}
	groupNames := map[string]bool{}
	for _, n := range req.Form["rule_group[]"] {
		groupNames[n] = true
	}
	files := map[string]bool{}
	for _, n := range req.Form["file[]"] {
		files[n] = true
	}
	groups := []apiRuleGroup{}
	for _, g := range e.RuleGroups() {
		if (len(groupNames) > 0 && !groupNames[g.Name()]) || (len(files) > 0 && !files[g.File()]) {
			continue
		}
		ag := apiRuleGroup{Name: g.Name(), File: g.File(), Interval: g.Interval().Seconds(), Limit: g.Limit(),
			EvaluationTime: g.GetEvaluationTime().Seconds(), LastEvaluation: g.GetLastEvaluation(), Rules: []any{}}
		for _, rule := range g.Rules() {
			if len(names) > 0 && !names[rule.Name()] {
				continue
			}
			lastErr := ""
			if err := rule.LastError(); err != nil {
				lastErr = err.Error()
			}
			switch rule := rule.(type) {
			case *promrules.AlertingRule:
				if typ == "record" {
					continue
				}
				alerts := []apiAlert{}
				for _, a := range rule.ActiveAlerts() {
					alerts = append(alerts, toAPIAlert(a))
				}
				ag.Rules = append(ag.Rules, apiAlertingRule{
					State: rule.State().String(), Name: rule.Name(), Query: rule.Query().String(),
					Duration: rule.HoldDuration().Seconds(), KeepFiringFor: rule.KeepFiringFor().Seconds(),
					Labels: rule.Labels(), Annotations: rule.Annotations(), Alerts: alerts,
					Health: string(rule.Health()), LastError: lastErr,
					EvaluationTime: rule.GetEvaluationDuration().Seconds(), LastEvaluation: rule.GetEvaluationTimestamp(),
					Type: "alerting",
				})
			case *promrules.RecordingRule:
				if typ == "alert" {
					continue
				}
				ag.Rules = append(ag.Rules, apiRecordingRule{
					Name: rule.Name(), Query: rule.Query().String(), Labels: rule.Labels(),
					Health: string(rule.Health()), LastError: lastErr,
					EvaluationTime: rule.GetEvaluationDuration().Seconds(), LastEvaluation: rule.GetEvaluationTimestamp(),
					Type: "recording",
				})
			}
		}
		if len(ag.Rules) > 0 || (typ == "" && len(names) == 0) {
			groups = append(groups, ag)
		}
	}
	return apiResult{data: map[string]any{"groups": groups}}
}
