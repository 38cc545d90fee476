package rules

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// fakePrometheus answers every instant query with one sample of
// up{job="node",instance="n1"} (value 1), or with an error while failing
// is set. The real Prometheus is in peers_test.go; this one is for unit
// tests and fault injection.
func fakePrometheus(t *testing.T) (*httptest.Server, *atomic.Bool, *atomic.Int64) {
	t.Helper()
	var failing atomic.Bool
	var queries atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries.Add(1)
		if r.URL.Path != "/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		if failing.Load() {
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprint(w, `{"status":"error","errorType":"execution","error":"boom"}`)
			return
		}
		_ = r.ParseForm()
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"node","instance":"n1"},"value":[%s,"1"]}]}}`, r.Form.Get("time"))
	}))
	t.Cleanup(srv.Close)
	return srv, &failing, &queries
}

func TestRemoteModeStateFile(t *testing.T) {
	srv, failing, _ := fakePrometheus(t)
	cfg := testConfig(t, "testdata/remote-pending.rules.yml")
	cfg.Datasource = DatasourceRemote
	cfg.Remote.URL = srv.URL
	cfg.Remote.StateFile = filepath.Join(t.TempDir(), "state.json")
	e := newEngine(t, cfg, Options{})
	start(t, e)
	var before time.Time
	eventually(t, 15*time.Second, "pending alert in the state file", func() error {
		a := findAlert(alerts(t, e), "NodeUpForLong")
		if a == nil || a.State != "pending" {
			return errors.New("not pending")
		}
		before = a.ActiveAt
		b, err := os.ReadFile(cfg.Remote.StateFile)
		if err != nil || !strings.Contains(string(b), "NodeUpForLong") {
			return fmt.Errorf("state file: %v", err)
		}
		return nil
	})
	// Pending for a while: the restore shifts activeAt by the time from
	// the last evaluation before the stop to the restore, a few seconds.
	time.Sleep(5 * time.Second)
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	restart := time.Now()
	start(t, e)
	eventually(t, 15*time.Second, "restored pending alert", func() error {
		a := findAlert(alerts(t, e), "NodeUpForLong")
		if a == nil || a.ActiveAt.After(restart) {
			return fmt.Errorf("not restored yet: %+v", a)
		}
		if d := a.ActiveAt.Sub(before); d < 0 || d > 10*time.Second {
			t.Fatalf("activeAt moved by %v over the restart", d)
		}
		return nil
	})

	// A failing datasource is a rule error, not a crash; the API says so.
	failing.Store(true)
	eventually(t, 10*time.Second, "rule error visible", func() error {
		var rules struct {
			Groups []struct {
				Rules []struct {
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		}
		apiGet(t, e, "/api/v1/rules", &rules)
		if len(rules.Groups) != 1 || rules.Groups[0].Rules[0].Health != "err" || !strings.Contains(rules.Groups[0].Rules[0].LastError, "boom") {
			return fmt.Errorf("%+v", rules)
		}
		return nil
	})
}

// TestRemoteModeWriteURL: in remote mode the results of recording rules
// and the ALERTS series go to remote.write_url by remote_write.
func TestRemoteModeWriteURL(t *testing.T) {
	query, _, _ := fakePrometheus(t)
	var got sync.Map
	write := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		raw, err := snappy.Decode(nil, body)
		if err != nil || r.Header.Get("Content-Encoding") != "snappy" {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		var req prompb.WriteRequest
		if err := req.Unmarshal(raw); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, ts := range req.Timeseries {
			for _, l := range ts.Labels {
				if l.Name == "__name__" {
					got.Store(l.Value, true)
				}
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(write.Close)
	cfg := testConfig(t, "testdata/fire.rules.yml")
	cfg.Datasource = DatasourceRemote
	cfg.Remote.URL = query.URL
	cfg.Remote.WriteURL = write.URL + "/api/v1/write"
	cfg.Remote.StateFile = filepath.Join(t.TempDir(), "state.json")
	e := newEngine(t, cfg, Options{})
	start(t, e)
	eventually(t, 15*time.Second, "recording rule and ALERTS at write_url", func() error {
		for _, name := range []string{"job:test_metric:max", "ALERTS", "ALERTS_FOR_STATE"} {
			if _, ok := got.Load(name); !ok {
				return fmt.Errorf("no %s yet", name)
			}
		}
		return nil
	})
}
