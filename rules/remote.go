package rules

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// readToken reads the bearer token file, if any.
func readToken(c RemoteConfig) (string, error) {
	if c.BearerTokenFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(c.BearerTokenFile)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// newRemoteQueryFunc evaluates rule expressions with instant queries against
// a Prometheus-compatible API (POST /api/v1/query).
func newRemoteQueryFunc(c RemoteConfig, m *metrics) promrules.QueryFunc {
	client := &http.Client{Timeout: c.Timeout}
	endpoint := strings.TrimSuffix(c.URL, "/") + "/api/v1/query"
	return func(ctx context.Context, q string, t time.Time) (promql.Vector, error) {
		v, err := remoteInstantQuery(ctx, client, endpoint, c, q, t)
		if err != nil {
			m.remoteQueries.WithLabelValues("error").Inc()
			return nil, err
		}
		m.remoteQueries.WithLabelValues("ok").Inc()
		return v, nil
	}
}

type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
}

type apiSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func remoteInstantQuery(ctx context.Context, client *http.Client, endpoint string, c RemoteConfig, q string, t time.Time) (promql.Vector, error) {
	form := url.Values{"query": {q}, "time": {strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	token, err := readToken(c)
	if err != nil {
		return nil, fmt.Errorf("remote datasource: bearer token: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("remote datasource %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("remote datasource %s: reading the answer: %w", c.URL, err)
	}
	var ar apiResponse
	if err := json.Unmarshal(body, &ar); err != nil {
		return nil, fmt.Errorf("remote datasource %s: HTTP %d, not a Prometheus API answer: %.200s", c.URL, resp.StatusCode, body)
	}
	if ar.Status != "success" {
		return nil, fmt.Errorf("remote datasource %s: %s: %s", c.URL, ar.ErrorType, ar.Error)
	}
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(ar.Data, &data); err != nil {
		return nil, fmt.Errorf("remote datasource %s: %w", c.URL, err)
	}
	ts := t.UnixMilli()
	switch data.ResultType {
	case "vector":
		var samples []apiSample
		if err := json.Unmarshal(data.Result, &samples); err != nil {
			return nil, fmt.Errorf("remote datasource %s: %w", c.URL, err)
		}
		out := make(promql.Vector, 0, len(samples))
		for _, s := range samples {
			f, err := parseAPIValue(s.Value)
			if err != nil {
				return nil, fmt.Errorf("remote datasource %s: %w", c.URL, err)
			}
			out = append(out, promql.Sample{Metric: labels.FromMap(s.Metric), T: ts, F: f})
		}
		return out, nil
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(data.Result, &v); err != nil {
			return nil, fmt.Errorf("remote datasource %s: %w", c.URL, err)
		}
		f, err := parseAPIValue(v)
		if err != nil {
			return nil, err
		}
		return promql.Vector{{Metric: labels.EmptyLabels(), T: ts, F: f}}, nil
	default:
		return nil, fmt.Errorf("remote datasource %s: rule result is a %s, not a vector or scalar", c.URL, data.ResultType)
	}
}

func parseAPIValue(v [2]any) (float64, error) {
	s, ok := v[1].(string)
	if !ok {
		return 0, fmt.Errorf("sample value %v is not a string (native histograms are not supported in remote mode)", v[1])
	}
	return strconv.ParseFloat(s, 64)
}

// newQueryProxy forwards the read endpoints of the query API to the remote
// datasource, so Grafana can point at leitstand in either mode.
func newQueryProxy(target *url.URL, c RemoteConfig) http.Handler {
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = target.Host
			if token, err := readToken(c); err == nil && token != "" {
				pr.Out.Header.Set("Authorization", "Bearer "+token)
			}
		},
	}
	return p
}

// stateStore keeps the ALERTS_FOR_STATE samples of the remote mode in a
// local file and serves them back to the rule manager's `for` restore,
// which queries them like it would query a TSDB.
type stateStore struct {
	path string

	mu         sync.Mutex
	series     map[string]stateEntry // by labels.String()
	dirty      bool
	structural bool // series added or removed since the last save
	saved      time.Time
}

type stateEntry struct {
	Labels labels.Labels     `json:"-"`
	Map    map[string]string `json:"labels"`
	T      int64             `json:"t"`
	V      float64           `json:"v"`
}

type stateFile struct {
	Version int          `json:"version"`
	Series  []stateEntry `json:"alerts_for_state"`
}

// stateSaveEvery bounds how often an unchanged set of alerts is written
// (only the timestamps moved); additions and removals are written at once.
const stateSaveEvery = 10 * time.Second

func openStateStore(path string) (*stateStore, error) {
	s := &stateStore{path: path, series: map[string]stateEntry{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("alert state file: %w", err)
	}
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("alert state file %s: %w (remove it to start without alert state)", path, err)
	}
	for _, e := range f.Series {
		e.Labels = labels.FromMap(e.Map)
		s.series[e.Labels.String()] = e
	}
	return s, nil
}

func (s *stateStore) put(ls labels.Labels, t int64, v float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := ls.String()
	if value.IsStaleNaN(v) {
		if _, ok := s.series[key]; ok {
			delete(s.series, key)
			s.dirty, s.structural = true, true
		}
		return
	}
	old, ok := s.series[key]
	if ok && old.T > t {
		return
	}
	if !ok {
		s.structural = true
	}
	s.series[key] = stateEntry{Labels: ls.Copy(), Map: ls.Map(), T: t, V: v}
	s.dirty = true
}

// maybeSave writes the file when alerts came or went, or when the last
// write is older than stateSaveEvery.
func (s *stateStore) maybeSave() error {
	s.mu.Lock()
	due := s.dirty && (s.structural || time.Since(s.saved) >= stateSaveEvery)
	s.mu.Unlock()
	if !due {
		return nil
	}
	return s.save()
}

// save writes the state file atomically (temp file, fsync, rename).
func (s *stateStore) save() error {
	s.mu.Lock()
	f := stateFile{Version: 1}
	for _, e := range s.series {
		f.Series = append(f.Series, e)
	}
	s.dirty, s.structural, s.saved = false, false, time.Now()
	s.mu.Unlock()
	sort.Slice(f.Series, func(i, j int) bool { return labels.Compare(f.Series[i].Labels, f.Series[j].Labels) < 0 })
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return fmt.Errorf("alert state file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".rules-state-*")
	if err != nil {
		return fmt.Errorf("alert state file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("alert state file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("alert state file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("alert state file: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("alert state file: %w", err)
	}
	return nil
}

// Querier serves the stored samples that fall into [mint, maxt].
func (s *stateStore) Querier(mint, maxt int64) (storage.Querier, error) {
	return &stateQuerier{s: s, mint: mint, maxt: maxt}, nil
}

type stateQuerier struct {
	s          *stateStore
	mint, maxt int64
}

func (q *stateQuerier) matching(ms []*labels.Matcher) []stateEntry {
	q.s.mu.Lock()
	defer q.s.mu.Unlock()
	var out []stateEntry
	for _, e := range q.s.series {
		if e.T < q.mint || e.T > q.maxt {
			continue
		}
		ok := true
		for _, m := range ms {
			if !m.Matches(e.Labels.Get(m.Name)) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].Labels, out[j].Labels) < 0 })
	return out
}

func (q *stateQuerier) Select(_ context.Context, _ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	entries := q.matching(ms)
	series := make([]storage.Series, 0, len(entries))
	for _, e := range entries {
		series = append(series, storage.NewListSeries(e.Labels, []chunks.Sample{floatSample{t: e.T, f: e.V}}))
	}
	return &sliceSeriesSet{series: series, i: -1}
}

func (q *stateQuerier) LabelValues(_ context.Context, name string, _ *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	set := map[string]bool{}
	for _, e := range q.matching(ms) {
		if v := e.Labels.Get(name); v != "" {
			set[v] = true
		}
	}
	return sortedKeys(set), nil, nil
}

func (q *stateQuerier) LabelNames(_ context.Context, _ *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	set := map[string]bool{}
	for _, e := range q.matching(ms) {
		e.Labels.Range(func(l labels.Label) { set[l.Name] = true })
	}
	return sortedKeys(set), nil, nil
}

func (q *stateQuerier) Close() error { return nil }

func sortedKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type sliceSeriesSet struct {
	series []storage.Series
	i      int
}

func (s *sliceSeriesSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *sliceSeriesSet) At() storage.Series                { return s.series[s.i] }
func (s *sliceSeriesSet) Err() error                        { return nil }
func (s *sliceSeriesSet) Warnings() annotations.Annotations { return nil }

type floatSample struct {
	t int64
	f float64
}

func (s floatSample) T() int64                      { return s.t }
func (s floatSample) ST() int64                     { return 0 }
func (s floatSample) F() float64                    { return s.f }
func (s floatSample) H() *histogram.Histogram       { return nil }
func (s floatSample) FH() *histogram.FloatHistogram { return nil }
func (s floatSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s floatSample) Copy() chunks.Sample           { return s }

// remoteOutput is the rule manager's appendable in remote mode:
// ALERTS_FOR_STATE goes to the state file, everything (recording rules,
// ALERTS, log rule series) to remote.write_url when one is set.
type remoteOutput struct {
	state *stateStore
	rw    *remoteWriter
}

func (o *remoteOutput) AppenderV2(context.Context) storage.AppenderV2 {
	return &remoteAppender{o: o}
}

type remoteAppender struct {
	o       *remoteOutput
	state   []stateEntry
	samples []prompb.TimeSeries
}

func (a *remoteAppender) Append(ref storage.SeriesRef, ls labels.Labels, _, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, _ storage.AppendV2Options) (storage.SeriesRef, error) {
	if h != nil || fh != nil {
		return ref, errors.New("native histograms are not supported in remote mode")
	}
	if ls.Get(model.MetricNameLabel) == alertForStateMetric {
		a.state = append(a.state, stateEntry{Labels: ls.Copy(), T: t, V: v})
	}
	if a.o.rw != nil {
		ts := prompb.TimeSeries{Samples: []prompb.Sample{{Value: v, Timestamp: t}}}
		ls.Range(func(l labels.Label) { ts.Labels = append(ts.Labels, prompb.Label{Name: l.Name, Value: l.Value}) })
		a.samples = append(a.samples, ts)
	}
	return ref, nil
}

func (a *remoteAppender) Commit() error {
	for _, e := range a.state {
		a.o.state.put(e.Labels, e.T, e.V)
	}
	var err error
	if len(a.state) > 0 {
		err = a.o.state.maybeSave()
	}
	if a.o.rw != nil && len(a.samples) > 0 {
		a.o.rw.enqueue(a.samples)
	}
	return err
}

func (a *remoteAppender) Rollback() error { return nil }

// remoteWriter sends samples to remote.write_url with remote_write 1.0,
// from a bounded queue (dropping the newest, counted, when full).
type remoteWriter struct {
	url    string
	cfg    RemoteConfig
	client *http.Client
	queue  chan []prompb.TimeSeries
	m      *metrics
	log    *slog.Logger
}

func newRemoteWriter(c RemoteConfig, m *metrics, log *slog.Logger) *remoteWriter {
	return &remoteWriter{url: c.WriteURL, cfg: c, client: &http.Client{Timeout: c.Timeout},
		queue: make(chan []prompb.TimeSeries, 1024), m: m, log: log}
}

func (w *remoteWriter) enqueue(ts []prompb.TimeSeries) {
	select {
	case w.queue <- ts:
	default:
		w.m.remoteWrite.WithLabelValues("dropped").Add(float64(len(ts)))
	}
}

func (w *remoteWriter) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			// Send what is queued with a short deadline of its own.
			flush, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for {
				select {
				case ts := <-w.queue:
					w.send(flush, ts)
				default:
					return
				}
			}
		case ts := <-w.queue:
		more:
			for len(ts) < 5000 {
				select {
				case next := <-w.queue:
					ts = append(ts, next...)
				default:
					break more
				}
			}
			w.send(ctx, ts)
		}
	}
}

func (w *remoteWriter) send(ctx context.Context, ts []prompb.TimeSeries) {
	req := &prompb.WriteRequest{Timeseries: ts}
	raw, err := req.Marshal()
	if err != nil {
		w.m.remoteWrite.WithLabelValues("failed").Add(float64(len(ts)))
		return
	}
	backoff := 100 * time.Millisecond
	for attempt := 0; attempt < 5; attempt++ {
		status, err := w.post(ctx, snappy.Encode(nil, raw))
		if err == nil && status/100 == 2 {
			w.m.remoteWrite.WithLabelValues("sent").Add(float64(len(ts)))
			return
		}
		if err == nil && status/100 == 4 && status != http.StatusTooManyRequests {
			w.log.Warn("remote write refused the samples", "url", w.url, "status", status)
			break
		}
		w.log.Warn("remote write failed, retrying", "url", w.url, "status", status, "err", err)
		select {
		case <-ctx.Done():
			w.m.remoteWrite.WithLabelValues("failed").Add(float64(len(ts)))
			return
		case <-time.After(backoff):
		}
		backoff = time.Duration(math.Min(float64(backoff*2), float64(5*time.Second)))
	}
	w.m.remoteWrite.WithLabelValues("failed").Add(float64(len(ts)))
}

func (w *remoteWriter) post(ctx context.Context, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	if token, err := readToken(w.cfg); err == nil && token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

var (
	_ storage.Queryable    = (*stateStore)(nil)
	_ storage.AppendableV2 = (*remoteOutput)(nil)
)

// alertForStateMetric is the series the rule manager keeps each active
// alert's activeAt in (unexported in Prometheus' rules package).
const alertForStateMetric = "ALERTS_FOR_STATE"
