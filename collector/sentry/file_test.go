package sentry

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/sink/file"
)

// TestNoPersonalDataAtRest sends every sample through the real pipeline,
// the real anonymizer and the real file sink (the embedded default's
// store), then reads the files: every line is a JSON document, every
// dataset has its file, and nothing personal is on disk.
func TestNoPersonalDataAtRest(t *testing.T) {
	dir := t.TempDir()
	fcfg := file.DefaultConfig()
	fcfg.Dir = dir
	fcfg.Fsync = file.FsyncAlways
	sink := file.New(fcfg, prometheus.NewRegistry(), testLogger())
	f := newFixture(t, fixtureOpt{sinks: []collector.Sink{sink}})
	files, _ := filepath.Glob("testdata/samples/*.envelope")
	for _, name := range files {
		path, hdrs := envPath, authHeader()
		if strings.Contains(name, "node") {
			path, hdrs = envPath+"?sentry_key="+testKey, nil
		}
		if code, _, h := f.post(t, path, readSample(t, filepath.Base(name)), hdrs...); code != 200 {
			t.Fatalf("%s: %d %s", name, code, h.Get("X-Sentry-Error"))
		}
	}
	if err := sink.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	written, _ := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	datasets := map[string]int{}
	for _, w := range written {
		data, err := os.ReadFile(w)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var doc map[string]any
			if err := json.Unmarshal([]byte(line), &doc); err != nil {
				t.Fatalf("%s: not JSON: %v\n%s", w, err, line)
			}
			datasets[doc["event"].(map[string]any)["dataset"].(string)]++
			if left := containsAny(line, personal...); len(left) > 0 {
				t.Errorf("%s holds %q:\n%s", filepath.Base(w), left, line)
			}
		}
	}
	want := map[string]int{dsError: 3, dsMessage: 3, dsTransaction: 2, dsSpan: 2, dsLog: 2, dsCheckIn: 2}
	for ds, n := range want {
		if datasets[ds] != n {
			t.Errorf("%s: %d events on disk, want %d (all: %v)", ds, datasets[ds], n, datasets)
		}
	}
}
