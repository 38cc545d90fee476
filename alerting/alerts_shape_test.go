package alerting

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

// TestAlertsPrometheusShape: GET /alerts answers as Prometheus'
// /api/v1/alerts does (Grafana's Prometheus data source reads it with a
// role's token): labels and annotations always objects, state, activeAt,
// value as a string; nothing else.
func TestAlertsPrometheusShape(t *testing.T) {
	active := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	alerts := []Alert{
		{Labels: map[string]string{"alertname": "PostgresDown", "service": "postgres", "role": "dba"},
			Annotations: map[string]string{"summary": "down"}, StartsAt: active, State: "pending", Value: 1},
		{Labels: map[string]string{"alertname": "PostgresSlow", "service": "postgres", "role": "dba"}},
	}
	api := newAPI(t, "http://127.0.0.1:1", io.Discard)
	api.alerts = func() []Alert { return alerts }
	srv := httptest.NewServer(mountV1(api))
	defer srv.Close()
	var out struct {
		Status string `json:"status"`
		Data   struct {
			Alerts []map[string]json.RawMessage `json:"alerts"`
		} `json:"data"`
	}
	if code, body := getJSON(t, srv.URL, "/api/v1/alerts", "dba-token", &out); code != http.StatusOK || out.Status != "success" || len(out.Data.Alerts) != 2 {
		t.Fatalf("%d %s", code, body)
	}
	first, second := out.Data.Alerts[0], out.Data.Alerts[1]
	keys := func(m map[string]json.RawMessage) []string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	if got := keys(first); !slices.Equal(got, []string{"activeAt", "annotations", "labels", "state", "value"}) {
		t.Errorf("keys %v", got)
	}
	if string(first["state"]) != `"pending"` || string(first["value"]) != `"1e+00"` || string(first["activeAt"]) != `"2026-11-22T08:00:00Z"` {
		t.Errorf("first %s %s %s", first["state"], first["value"], first["activeAt"])
	}
	if got := keys(second); !slices.Equal(got, []string{"annotations", "labels", "state", "value"}) || string(second["annotations"]) != `{}` || string(second["state"]) != `"firing"` {
		t.Errorf("second %v %s %s", got, second["annotations"], second["state"])
	}
}
