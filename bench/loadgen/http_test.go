package loadgen

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNDJSON(t *testing.T) {
	var lines, calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/ingest" {
			http.NotFound(w, r)
			return
		}
		// The first request is refused as a full pipeline would: it must
		// come again.
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		body, _ := io.ReadAll(r.Body)
		n := 0
		for _, l := range bytes.Split(bytes.TrimSpace(body), []byte{'\n'}) {
			var ev map[string]any
			if err := json.Unmarshal(l, &ev); err != nil {
				t.Errorf("line %q: %v", l, err)
				continue
			}
			n++
		}
		lines.Add(int64(n))
		fmt.Fprintf(w, `{"accepted":%d}`, n)
	}))
	defer srv.Close()
	rep, err := Run(context.Background(), Options{Mode: ModeNDJSON, Target: strings.TrimPrefix(srv.URL, "http://"), Count: 2345, Batch: 100, Seed: 1, PIIShare: 0.2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent != 2345 || rep.Events != 2345 || lines.Load() != 2345 || rep.Retries != 1 || rep.Requests != 25 || rep.Status["200"] != 24 {
		t.Errorf("report %+v, server got %d lines", rep, lines.Load())
	}
}

func TestSentry(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	ids := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				t.Errorf("gzip: %v", err)
				return
			}
			body = zr
		}
		b, _ := io.ReadAll(body)
		var head struct {
			EventID string `json:"event_id"`
		}
		line, _, _ := bytes.Cut(b, []byte{'\n'})
		if err := json.Unmarshal(line, &head); err != nil {
			t.Errorf("envelope header %q: %v", line, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if head.EventID != "" {
			if ids[head.EventID] {
				t.Errorf("event id %s sent twice", head.EventID)
			}
			ids[head.EventID] = true
		}
		kind := "length"
		if r.ContentLength < 0 {
			kind = "chunked"
		}
		seen[kind]++
		if strings.Contains(r.URL.RawQuery, "sentry_key=") || strings.Contains(r.Header.Get("X-Sentry-Auth"), "sentry_key=") {
			seen["key"]++
		}
	}))
	defer srv.Close()
	rep, err := Run(context.Background(), Options{Mode: ModeSentry, Target: strings.TrimPrefix(srv.URL, "http://"), Count: 300, Seed: 2, SentryDir: "../testdata/sentry"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent != 300 || rep.Events < 200 || rep.Events > 400 || seen["key"] != 300 || seen["chunked"] == 0 || seen["length"] == 0 {
		t.Errorf("report %+v, server saw %v", rep, seen)
	}
	if rep.PII["email"] == 0 || rep.PII["ipv4"] == 0 {
		t.Errorf("personal data in the envelopes: %v", rep.PII)
	}
}

func TestUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var got atomic.Int64
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if bytes.HasPrefix(buf[:n], []byte("<")) {
				got.Add(1)
			}
		}
	}()
	rep, err := Run(context.Background(), Options{Mode: ModeSyslogUDP, Target: pc.LocalAddr().String(), Count: 2000, Rate: 20000, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for got.Load() < 2000 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	// Loopback at 20000/s into a reader that does nothing else: nothing
	// should be lost, but UDP promises nothing, so only most must arrive.
	if rep.Sent != 2000 || got.Load() < 1900 {
		t.Errorf("sent %d, received %d", rep.Sent, got.Load())
	}
	if rep.Seconds < 0.05 {
		t.Errorf("2000 datagrams at 20000/s took %.3fs", rep.Seconds)
	}
}
