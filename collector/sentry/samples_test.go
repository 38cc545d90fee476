package sentry

import (
	"os"
	"strings"
	"testing"
)

func TestSamplesExplore(t *testing.T) {
	f := newFixture(t, fixtureOpt{})
	names, _ := os.ReadDir("testdata/samples")
	for _, n := range names {
		body := readSample(t, n.Name())
		hdr := authHeader()
		if strings.HasPrefix(n.Name(), "node") {
			hdr = nil
		}
		path := "/api/42/envelope/"
		if strings.HasPrefix(n.Name(), "node") {
			path += "?sentry_version=7&sentry_key=" + testKey
		}
		code, resp, h := f.post(t, path, body, hdr...)
		t.Logf("%s: %d %+v %s", n.Name(), code, resp, h.Get("X-Sentry-Error"))
	}
	waitFor(t, 5e9, "events", func() bool { return len(f.sink.all()) > 5 })
	for _, e := range f.sink.all() {
		t.Logf("%s %s\n%s\n", e.ID, e.Dataset, e.JSON)
	}
}
