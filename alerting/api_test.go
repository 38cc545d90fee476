package alerting

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leitstand/leitstand/internal/peers"
)

var apiAlerts = []Alert{
	{Labels: map[string]string{"alertname": "PostgresDown", "service": "postgres", "namespace": "db", "role": "dba"}},
	{Labels: map[string]string{"alertname": "PaymentsErrors", "namespace": "payments", "role": "dev/payments"}},
	{Labels: map[string]string{"alertname": "PaymentsDB", "namespace": "payments", "service": "postgres", "role": "dba"}},
	{Labels: map[string]string{"alertname": "NodeDown", "namespace": "kube-system", "role": "platform-ops"}},
}

type silenceRecorder struct {
	mu  sync.Mutex
	got []Silence
}

func newAPI(t *testing.T, am string, log io.Writer) *API {
	t.Helper()
	cfg, err := loadConfig(t, "testdata/api.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Alertmanagers = []string{am}
	r, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return r.NewAPI(func() []Alert { return apiAlerts })
}

func TestAPIScopes(t *testing.T) {
	rec := &silenceRecorder{}
	am := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var s Silence
		if err := json.NewDecoder(r.Body).Decode(&s); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		rec.mu.Lock()
		rec.got = append(rec.got, s)
		rec.mu.Unlock()
		_, _ = io.WriteString(w, `{"silenceID":"abc"}`)
	}))
	defer am.Close()
	var audit bytes.Buffer
	api := newAPI(t, am.URL, &audit)
	srv := httptest.NewServer(http.StripPrefix("/api/v1", api))
	defer srv.Close()

	now := time.Now()
	silence := func(ms ...string) string {
		var out []silenceMatcher
		for i := 0; i+1 < len(ms); i += 2 {
			out = append(out, silenceMatcher{Name: ms[i], Value: ms[i+1]})
		}
		b, _ := json.Marshal(Silence{Matchers: out, StartsAt: now, EndsAt: now.Add(time.Hour), CreatedBy: "me", Comment: "test"})
		return string(b)
	}
	for _, c := range []struct {
		name, token, method, path, body string
		code                            int
		alerts                          []string // GET: alertnames seen
		forced                          string   // POST: matcher text AM received
	}{
		{name: "no token", method: "GET", path: "/alerts", code: 401},
		{name: "bad token", token: "nope", method: "GET", path: "/alerts", code: 401},
		{name: "no token silence", method: "POST", path: "/silences", body: silence("alertname", "X"), code: 401},
		{name: "ops sees all", token: "ops-token", method: "GET", path: "/alerts", code: 200,
			alerts: []string{"NodeDown", "PaymentsDB", "PaymentsErrors", "PostgresDown"}},
		{name: "dba sees postgres", token: "dba-token", method: "GET", path: "/alerts", code: 200,
			alerts: []string{"PaymentsDB", "PostgresDown"}},
		{name: "payments sees payments", token: "payments-token", method: "GET", path: "/alerts", code: 200,
			alerts: []string{"PaymentsDB", "PaymentsErrors"}},
		{name: "security without scope sees nothing", token: "security-token", method: "GET", path: "/alerts", code: 200,
			alerts: []string{}},
		{name: "dba silences in scope", token: "dba-token", method: "POST", path: "/silences", code: 200,
			body: silence("alertname", "PostgresDown"), forced: `{alertname="PostgresDown",service=~"postgres"}`},
		{name: "dba silences another service", token: "dba-token", method: "POST", path: "/silences", code: 403,
			body: silence("service", "payments-api")},
		{name: "payments silences kube-system", token: "payments-token", method: "POST", path: "/silences", code: 403,
			body: silence("namespace", "kube-system", "alertname", "NodeDown")},
		{name: "payments silences own namespace", token: "payments-token", method: "POST", path: "/silences", code: 200,
			body: silence("namespace", "payments"), forced: `{namespace="payments",namespace=~"payments|payments-stage"}`},
		{name: "security cannot silence", token: "security-token", method: "POST", path: "/silences", code: 403,
			body: silence("alertname", "X")},
		{name: "update by id refused", token: "dba-token", method: "POST", path: "/silences", code: 403,
			body: `{"id":"other","matchers":[{"name":"a","value":"b","isRegex":false}],"startsAt":"2026-01-01T00:00:00Z","endsAt":"2026-01-02T00:00:00Z","createdBy":"x","comment":"y"}`},
		{name: "ops silences anything", token: "ops-token", method: "POST", path: "/silences", code: 200,
			body: silence("alertname", "NodeDown"), forced: `{alertname="NodeDown"}`},
		{name: "garbage", token: "ops-token", method: "POST", path: "/silences", code: 400, body: `{"matchers":`},
		{name: "read silences not offered", token: "ops-token", method: "GET", path: "/silences", code: 405},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec.mu.Lock()
			before := len(rec.got)
			rec.mu.Unlock()
			req, _ := http.NewRequest(c.method, srv.URL+"/api/v1"+c.path, strings.NewReader(c.body))
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.code, body)
			}
			if c.alerts != nil {
				var out struct {
					Data struct{ Alerts []Alert } `json:"data"`
				}
				if err := json.Unmarshal(body, &out); err != nil {
					t.Fatal(err)
				}
				got := []string{}
				for _, a := range out.Data.Alerts {
					got = append(got, a.Labels["alertname"])
				}
				slices.Sort(got)
				if !slices.Equal(got, c.alerts) {
					t.Errorf("saw %v, want %v", got, c.alerts)
				}
			}
			rec.mu.Lock()
			sent := rec.got[before:]
			rec.mu.Unlock()
			if c.forced == "" && len(sent) > 0 {
				t.Fatalf("a refused request reached Alertmanager: %+v", sent)
			}
			if c.forced != "" {
				if len(sent) != 1 {
					t.Fatalf("%d silences reached Alertmanager", len(sent))
				}
				if got := matcherText(sent[0].Matchers); got != c.forced {
					t.Errorf("Alertmanager got %s, want %s", got, c.forced)
				}
				if !strings.HasSuffix(sent[0].CreatedBy, ": me") || !strings.Contains(audit.String(), "audit: silence created") {
					t.Errorf("no audit line: %s", audit.String())
				}
			}
		})
	}
	if n := strings.Count(audit.String(), "audit: silence created"); n != 3 {
		t.Errorf("%d audit lines for 3 silences:\n%s", n, audit.String())
	}
	if n := strings.Count(audit.String(), "audit: silence refused"); n != 4 {
		t.Errorf("%d refusal audit lines, want 4:\n%s", n, audit.String())
	}
}

// TestAPISilenceAtRealAlertmanager: the scoped silence is accepted by a
// real Alertmanager and holds the forced matcher.
func TestAPISilenceAtRealAlertmanager(t *testing.T) {
	peers.Slow(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	am, err := peers.StartAlertmanager(ctx, peers.AlertmanagerOptions{})
	peers.Check(t, err)
	peers.Cleanup(t, am)
	api := newAPI(t, am.URL, io.Discard)
	srv := httptest.NewServer(http.StripPrefix("/api/v1", api))
	defer srv.Close()
	now := time.Now().UTC()
	body := `{"matchers":[{"name":"alertname","value":"PostgresDown","isRegex":false}],"startsAt":"` + now.Format(time.RFC3339) +
		`","endsAt":"` + now.Add(time.Hour).Format(time.RFC3339) + `","createdBy":"ann","comment":"maintenance"}`
	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/silences", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer dba-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	resp, err = http.Get(am.URL + "/api/v2/silences")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got []Silence
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || matcherText(got[0].Matchers) != `{alertname="PostgresDown",service=~"postgres"}` || got[0].CreatedBy != "dba: ann" {
		t.Fatalf("Alertmanager holds %+v", got)
	}
}
