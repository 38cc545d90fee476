package podlog

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/leitstand/leitstand/collector/httpin"
)

// TestNoPersonalDataLeavesTheNode runs the agent's pipeline (with the
// anonymizer) and looks at the raw request bodies the aggregator gets.
func TestNoPersonalDataLeavesTheNode(t *testing.T) {
	var mu sync.Mutex
	var bodies bytes.Buffer
	dec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	defer dec.Close()
	lines := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		plain, err := dec.DecodeAll(raw, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n := 0
		for _, l := range bytes.Split(plain, []byte{'\n'}) {
			if len(l) > 0 {
				n++
			}
		}
		mu.Lock()
		bodies.Write(plain)
		lines += n
		mu.Unlock()
		_, _ = io.WriteString(w, `{"accepted":`+strconv.Itoa(n)+`}`)
	}))
	defer srv.Close()

	tmp := t.TempDir()
	root := filepath.Join(tmp, "pods")
	dir := containerDir(t, root, "shop", "web", "app")
	cfg, fc := agentConfigs(root, filepath.Join(tmp, "state"), srv.URL+httpin.Path)
	agent := startAgent(t, cfg, fc, tmp)
	defer agent.stop(t)
	appendFile(t, filepath.Join(dir, "0.log"),
		criLine("stdout", "F", "login ok user=alice@example.com from 203.0.113.77"),
		criLine("stdout", "F", "card 4111 1111 1111 1111 declined for bob@example.org"),
		criLine("stderr", "F", "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl"),
	)
	waitFor(t, "three lines at the aggregator", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return lines >= 3
	})
	mu.Lock()
	got := bodies.String()
	mu.Unlock()
	for _, secret := range []string{"alice@example.com", "bob@example.org", "203.0.113.77", "4111 1111 1111 1111", "eyJhbGciOiJIUzI1NiJ9"} {
		if strings.Contains(got, secret) {
			t.Errorf("%q left the node", secret)
		}
	}
	if !strings.Contains(got, "203.0.113.0") {
		t.Errorf("the IP address was not truncated: %s", got)
	}
}
