package anonymize

import (
	"encoding/json"
	"testing"

	"github.com/leitstand/leitstand/collector"
)

func TestProcessSentryEvent(t *testing.T) {
	a := newTestAnonymizer(t)
	b := collector.NewBatch("test")
	defer b.Release()
	e := b.Next()
	*e = sentryEvent(t)
	a.Process(b)
	out := encode(&b.Events[0])
	t.Log(out)
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("not valid JSON: %v", err)
	}
	if left := contains(out, "jane.doe", "4111", "hunter2", "198.51.100.7", "203.0.113.42",
		"AKIAIOSFODNN7EXAMPLE", "DE89370400440532013000", "user:pw", "jdoe", "078-05-1120", `"u-1"`); len(left) > 0 {
		t.Errorf("personal data survived: %q", left)
	}
	if kept := contains(out, "c77fe52cf803414fb5cd17a22b31144f", "bf0edcf12976b442601346fab470f256", "d31e47de18502c81",
		"2026-11-22T02:48:21.367517833Z", "0.50.0", "go1.26.8", "/srv/shop-server/main.go"); len(kept) != 7 {
		t.Errorf("benign values altered: only %q kept", kept)
	}
}
