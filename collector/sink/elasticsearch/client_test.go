package elasticsearch

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

func TestSearchIndices(t *testing.T) {
	cfg := DefaultConfig()
	if got, want := cfg.SearchIndices(), []string{"logs-*-default", "leitstand-events-*", "-leitstand-deadletter-*"}; !slices.Equal(got, want) {
		t.Errorf("defaults: %v, want %v", got, want)
	}
	cfg.Mode, cfg.Namespace, cfg.IndexPrefix, cfg.DeadLetterIndex = ModeIndex, "prod", "events", "dlq"
	if got, want := cfg.SearchIndices(), []string{"logs-*-prod", "events-*", "-dlq-*"}; !slices.Equal(got, want) {
		t.Errorf("index mode: %v, want %v", got, want)
	}
}

// TestSearchClientCredentials: the search client sends the sink's
// credentials and reads a rotated key file after a 401.
func TestSearchClientCredentials(t *testing.T) {
	var mu sync.Mutex
	var auths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		if r.Header.Get("Authorization") != "ApiKey new-key" {
			w.WriteHeader(http.StatusUnauthorized)
		}
		_, _ = io.WriteString(w, `{}`)
	}))
	defer srv.Close()
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Enabled = true
	cfg.URLs = []string{srv.URL}
	cfg.APIKeyFile = keyFile
	c, err := NewSearchClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send := func() int {
		req, _ := http.NewRequest(http.MethodPost, "/logs-*-default/_search", nil)
		res, err := c.Perform(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := send(); code != http.StatusUnauthorized {
		t.Fatalf("with the old key: %d", code)
	}
	// A different size: the client notices the change even where the
	// file system's clock is coarse.
	if err := os.WriteFile(keyFile, []byte("new-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code := send(); code != http.StatusOK {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("after rotation: %d, sent %v", code, auths)
	}
	mu.Lock()
	defer mu.Unlock()
	if auths[0] != "ApiKey old" {
		t.Errorf("first request sent %q", auths[0])
	}
}
