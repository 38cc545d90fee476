package elasticsearch

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leitstand/leitstand/collector"
)

// fault is what the proxy does to one bulk request.
type fault struct {
	// refuse answers without forwarding anything: 0 forwards.
	refuse int
	// drop lists the positions of items taken out before forwarding and
	// answered with dropStatus: documents the cluster never saw.
	drop       map[int]bool
	dropStatus int
	// flip lists the positions of items forwarded and indexed whose answer
	// is rewritten to 503: the answer is lost, the document is in.
	flip map[int]bool
	// lose replaces the whole answer of a forwarded request with 503.
	lose bool
	// hangUp closes the connection after forwarding: no answer at all.
	hangUp bool
}

// faultProxy is an httputil.ReverseProxy in front of a real node that
// injects failures into bulk requests as plan says, and records the ids
// each bulk request carried.
type faultProxy struct {
	t    *testing.T
	rp   *httputil.ReverseProxy
	srv  *httptest.Server
	plan func(n int, items int) fault

	mu       sync.Mutex
	n        int
	requests [][]string // ids per bulk request, in order of arrival
	// wantAuth, when set, is the Authorization header every request must
	// carry; others get 401 as from Elasticsearch's security.
	wantAuth string
	denied   int
}

type faultKey struct{}

// faultState travels from the request to ModifyResponse.
type faultState struct {
	f     fault
	items int // items in the original request
}

func newFaultProxy(t *testing.T, target string, plan func(n, items int) fault) *faultProxy {
	p := newProxy(t, target, plan)
	p.srv = httptest.NewServer(p)
	t.Cleanup(p.srv.Close)
	return p
}

// newProxy builds the proxy without a server, for newFaultProxy or a TLS
// server of the test's own.
func newProxy(t *testing.T, target string, plan func(n, items int) fault) *faultProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{t: t, plan: plan}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Header.Del("Accept-Encoding") // plain answers, to rewrite them
		},
		ModifyResponse: p.modify,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			panic(http.ErrAbortHandler) // the client sees the connection close
		},
	}
	return p
}

func (p *faultProxy) URL() string { return p.srv.URL }

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	want := p.wantAuth
	if want != "" && r.Header.Get("Authorization") != want {
		p.denied++
		p.mu.Unlock()
		w.Header().Set("WWW-Authenticate", `Basic realm="security"`)
		writeJSON(w, http.StatusUnauthorized, `{"error":{"type":"security_exception","reason":"unable to authenticate user"},"status":401}`)
		return
	}
	p.mu.Unlock()
	r.Header.Del("Authorization") // the test node runs without security
	if r.URL.Path != "/_bulk" {
		p.rp.ServeHTTP(w, r)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			p.t.Errorf("proxy: %v", err)
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		p.t.Errorf("proxy: %v", err)
		return
	}
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	if len(lines)%2 != 0 {
		p.t.Errorf("proxy: odd number of bulk lines: %d", len(lines))
	}
	items := len(lines) / 2
	var ids []string
	for i := 0; i < items; i++ {
		var action struct {
			Create *struct {
				ID string `json:"_id"`
			} `json:"create"`
		}
		if err := json.Unmarshal([]byte(lines[2*i]), &action); err != nil || action.Create == nil {
			p.t.Errorf("proxy: action %d is not a create: %s", i, lines[2*i])
			continue
		}
		ids = append(ids, action.Create.ID)
	}
	p.mu.Lock()
	n := p.n
	p.n++
	p.requests = append(p.requests, ids)
	p.mu.Unlock()

	f := p.plan(n, items)
	if f.refuse != 0 {
		writeJSON(w, f.refuse, fmt.Sprintf(`{"error":{"type":"injected_refusal","reason":"refused by the fault proxy"},"status":%d}`, f.refuse))
		return
	}
	var kept bytes.Buffer
	for i := 0; i < items; i++ {
		if !f.drop[i] {
			kept.WriteString(lines[2*i] + "\n" + lines[2*i+1] + "\n")
		}
	}
	st := &faultState{f: f, items: items}
	if kept.Len() == 0 { // nothing to forward: answer for the cluster
		out := make([]json.RawMessage, items)
		for i := range out {
			out[i] = injected(f.dropStatus)
		}
		writeItems(w, out)
		return
	}
	r.Body = io.NopCloser(&kept)
	r.ContentLength = int64(kept.Len())
	r.Header.Del("Content-Encoding")
	r.Header.Set("Content-Length", strconv.Itoa(kept.Len()))
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), faultKey{}, st)))
}

func (p *faultProxy) requireAuth(header string) {
	p.mu.Lock()
	p.wantAuth = header
	p.mu.Unlock()
}

func injected(status int) json.RawMessage {
	typ := "es_rejected_execution_exception"
	if status >= 500 {
		typ = "unavailable_shards_exception"
	}
	return json.RawMessage(fmt.Sprintf(`{"create":{"status":%d,"error":{"type":%q,"reason":"injected by the fault proxy"}}}`, status, typ))
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func writeItems(w http.ResponseWriter, items []json.RawMessage) {
	out, _ := json.Marshal(map[string]any{"errors": true, "items": items})
	writeJSON(w, http.StatusOK, string(out))
}

// modify puts the dropped items back into the answer, in their places,
// and applies flip, lose and hangUp.
func (p *faultProxy) modify(res *http.Response) error {
	st, ok := res.Request.Context().Value(faultKey{}).(*faultState)
	if !ok {
		return nil
	}
	if st.f.hangUp {
		return errors.New("hang up")
	}
	raw, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return err
	}
	var ans struct {
		Errors bool              `json:"errors"`
		Items  []json.RawMessage `json:"items"`
	}
	if res.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &ans); err != nil {
			p.t.Errorf("proxy: bulk answer: %v", err)
		}
		out := make([]json.RawMessage, 0, st.items)
		next := 0
		for i := 0; i < st.items; i++ {
			switch {
			case st.f.drop[i]:
				out = append(out, injected(st.f.dropStatus))
			case st.f.flip[i]:
				out = append(out, injected(http.StatusServiceUnavailable))
				next++
			default:
				out = append(out, ans.Items[next])
				next++
			}
		}
		raw, _ = json.Marshal(map[string]any{"errors": true, "items": out})
	}
	if st.f.lose {
		res.StatusCode, res.Status = http.StatusServiceUnavailable, "503 Service Unavailable"
		raw = []byte(`{"error":{"type":"injected_loss","reason":"answer lost by the fault proxy"},"status":503}`)
	}
	res.Body = io.NopCloser(bytes.NewReader(raw))
	res.ContentLength = int64(len(raw))
	res.Header.Set("Content-Length", strconv.Itoa(len(raw)))
	return nil
}

func (p *faultProxy) bulkRequests() [][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]string(nil), p.requests...)
}

// consumeUntilDone calls Consume as the spool's delivery loop does: again
// after an error, once the sink is ready.
func consumeUntilDone(t *testing.T, s *Sink, b *collector.Batch, within time.Duration) (attempts int) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		attempts++
		err := s.Consume(context.Background(), b)
		if err == nil {
			return attempts
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch not delivered after %s: %v", within, err)
		}
		time.Sleep(20 * time.Millisecond)
		waitReady(t, s, within)
	}
}

// TestPartialFailuresResendOnlyFailedItems: documents the cluster never saw
// (429/503 items) are sent again, exactly those and nothing else, and the
// batch ends up indexed once.
func TestPartialFailuresResendOnlyFailedItems(t *testing.T) {
	suite.Require(t)
	p := newFaultProxy(t, shared.URL, func(n, items int) fault {
		if n == 0 { // the first bulk request: every third item rejected
			f := fault{drop: map[int]bool{}, dropStatus: 429}
			for i := 0; i < items; i += 3 {
				f.drop[i] = true
			}
			return f
		}
		if n == 1 { // the retry: half of it fails with 503
			f := fault{drop: map[int]bool{}, dropStatus: 503}
			for i := 0; i < items; i += 2 {
				f.drop[i] = true
			}
			return f
		}
		return fault{}
	})
	cfg := testConfig(t, p.URL())
	cfg.Workers = 1
	s, reg, _ := startSink(t, cfg)
	waitReady(t, s, 30*time.Second)

	const n = 100
	b := makeBatch(0, n, eventSpec{dataset: "partial", idPrefix: "p"})
	defer b.Release()
	if err := s.Consume(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	reqs := p.bulkRequests()
	if len(reqs) != 3 {
		t.Fatalf("%d bulk requests, want 3: %v", len(reqs), reqs)
	}
	var want1, want2 []string
	for i := 0; i < n; i += 3 {
		want1 = append(want1, "p-"+strconv.Itoa(i))
	}
	for i := 0; i < len(want1); i += 2 {
		want2 = append(want2, want1[i])
	}
	if len(reqs[0]) != n || strings.Join(reqs[1], ",") != strings.Join(want1, ",") || strings.Join(reqs[2], ",") != strings.Join(want2, ",") {
		t.Errorf("resent items:\n%v\nwant\n%v\nthen\n%v\nwant\n%v", reqs[1], want1, reqs[2], want2)
	}
	ds := dataStreamName("partial", cfg.Namespace)
	if got := count(t, shared.URL, ds); got != n {
		t.Errorf("%d documents, want %d", got, n)
	}
	if v := metricValue(t, reg, "leitstand_elasticsearch_retries_total", "reason", retryRejected); v != float64(len(want1)) {
		t.Errorf("retries_total{rejected} = %v, want %d", v, len(want1))
	}
	if v := metricValue(t, reg, "leitstand_elasticsearch_retries_total", "reason", retryServerError); v != float64(len(want2)) {
		t.Errorf("retries_total{server_error} = %v, want %d", v, len(want2))
	}
}

// TestFaultsNoDuplicates: many batches through random faults — items
// refused before the cluster saw them, answers lost after it indexed
// them, whole requests refused, connections closed — end up indexed
// exactly once each.
func TestFaultsNoDuplicates(t *testing.T) {
	suite.Require(t)
	var rngMu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	p := newFaultProxy(t, shared.URL, func(n, items int) fault {
		rngMu.Lock()
		defer rngMu.Unlock()
		pick := func(share float64) map[int]bool {
			m := map[int]bool{}
			for i := 0; i < items; i++ {
				if rng.Float64() < share {
					m[i] = true
				}
			}
			return m
		}
		switch x := rng.Float64(); {
		case x < 0.25:
			return fault{drop: pick(0.3), dropStatus: []int{429, 503, 500}[rng.IntN(3)]}
		case x < 0.40:
			return fault{flip: pick(0.3)}
		case x < 0.50:
			return fault{lose: true}
		case x < 0.55:
			return fault{hangUp: true}
		case x < 0.65:
			return fault{refuse: []int{429, 502, 503}[rng.IntN(3)]}
		case x < 0.70: // both at once
			f := fault{drop: pick(0.2), dropStatus: 429, flip: pick(0.2)}
			for i := range f.flip {
				delete(f.drop, i)
			}
			return f
		}
		return fault{}
	})
	cfg := testConfig(t, p.URL())
	cfg.BulkMaxEvents = 300
	s, reg, _ := startSink(t, cfg)
	waitReady(t, s, 30*time.Second)

	const batches, per = 10, 2000
	for i := 0; i < batches; i++ {
		b := makeBatch(i*per, per, eventSpec{dataset: "chaos", idPrefix: "x"})
		consumeUntilDone(t, s, b, time.Minute)
		b.Release()
	}
	ds := dataStreamName("chaos", cfg.Namespace)
	if got := count(t, shared.URL, ds); got != batches*per {
		t.Errorf("%d documents, want %d", got, batches*per)
	}
	if distinct, dup := seqStats(t, shared.URL, ds); distinct != batches*per || dup != 0 {
		t.Errorf("%d distinct events, %d duplicated; want %d and 0", distinct, dup, batches*per)
	}
	for _, r := range []string{retryRejected, retryServerError, retryRequest} {
		if v := metricValue(t, reg, "leitstand_elasticsearch_retries_total", "reason", r); v == 0 {
			t.Errorf("retries_total{%s} = 0: fault not exercised", r)
		}
	}
	if v := metricValue(t, reg, "leitstand_elasticsearch_items_total", "status", "409"); v == 0 {
		t.Error("items_total{409} = 0: no lost answer was resent")
	}
	t.Logf("%d bulk requests through the proxy", len(p.bulkRequests()))
}

// TestTLSAndRotatedPassword: the sink talks https to a server whose CA it
// knows only from ca_file, sends basic authentication from password_file,
// and, when the secret file is rotated and the cluster answers 401, reads
// it again and goes on without losing or doubling anything. The node runs
// without security; a TLS proxy in front of it checks the credentials.
func TestTLSAndRotatedPassword(t *testing.T) {
	suite.Require(t)
	p := newProxy(t, shared.URL, func(int, int) fault { return fault{} })
	srv := httptest.NewTLSServer(p)
	t.Cleanup(srv.Close)
	p.srv = srv
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte("first-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	basic := func(pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte("leitstand:"+pass))
	}
	p.requireAuth(basic("first-secret"))

	cfg := testConfig(t, srv.URL)
	cfg.CAFile, cfg.Username, cfg.PasswordFile = ca, "leitstand", pw
	if !strings.HasPrefix(srv.URL, "https://") {
		t.Fatal(srv.URL)
	}
	s, _, logs := startSink(t, cfg)
	waitReady(t, s, 30*time.Second)
	b1 := makeBatch(0, 100, eventSpec{dataset: "secure", idPrefix: "s"})
	defer b1.Release()
	if err := s.Consume(context.Background(), b1); err != nil {
		t.Fatal(err)
	}

	// Rotation: the cluster now wants the new password; the file has it.
	if err := os.WriteFile(pw, []byte("second-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.requireAuth(basic("second-secret"))
	b2 := makeBatch(100, 100, eventSpec{dataset: "secure", idPrefix: "s"})
	defer b2.Release()
	consumeUntilDone(t, s, b2, 30*time.Second)
	p.mu.Lock()
	denied := p.denied
	p.mu.Unlock()
	if denied == 0 {
		t.Error("no request was denied: the rotation was not exercised")
	}
	if got := count(t, shared.URL, dataStreamName("secure", cfg.Namespace)); got != 200 {
		t.Errorf("%d documents, want 200", got)
	}
	if strings.Contains(logs.String(), "secret") {
		t.Errorf("a secret in the log:\n%s", logs)
	}

	// Without the CA file the server is not trusted.
	cfg.CAFile = ""
	s2, _, _ := startSink(t, cfg)
	if err := s2.Ready(); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Ready() without the CA = %v, want a certificate error", err)
	}
}
