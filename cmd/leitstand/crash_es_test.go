package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/leitstand/leitstand/internal/peers"
)

// TestCrashUnderLoadKeepsEveryAcknowledgedEventOnce runs the daemon with a
// real Elasticsearch node behind the spool, kills it with SIGKILL while
// clients post events, restarts it on the same data directory, and then
// requires every event the daemon acknowledged to be in Elasticsearch
// exactly once (events whose request died with the process may be there
// once, or not at all).
func TestCrashUnderLoadKeepsEveryAcknowledgedEventOnce(t *testing.T) {
	peers.Slow(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	es, err := peers.StartElasticsearch(ctx, peers.ElasticsearchOptions{})
	peers.Check(t, err)
	peers.Cleanup(t, es)

	config := fmt.Sprintf(`sinks:
  file:
    enabled: false
  elasticsearch:
    enabled: true
    urls: [%s]
    namespace: crash
spool:
  cursor_sync_interval: 200ms
`, es.URL)
	d := startDaemon(t, config)

	const clients, perRequest = 4, 200
	var acked sync.Map // "client/seq" → true, for events answered 200
	var sent atomic.Int64
	load := func(d *daemonProcess, stop <-chan struct{}, round int) *sync.WaitGroup {
		var wg sync.WaitGroup
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				for req := 0; ; req++ {
					select {
					case <-stop:
						return
					default:
					}
					var body bytes.Buffer
					keys := make([]string, perRequest)
					for i := range keys {
						keys[i] = fmt.Sprintf("r%d-c%d-q%d-%d", round, c, req, i)
						fmt.Fprintf(&body, `{"message":"%s","event":{"dataset":"crashtest"}}`+"\n", keys[i])
					}
					sent.Add(perRequest)
					resp, err := http.Post(d.url+"/v1/ingest", "application/x-ndjson", &body)
					if err != nil {
						return // the daemon is gone
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						for _, k := range keys {
							acked.Store(k, true)
						}
					}
				}
			}(c)
		}
		return &wg
	}

	stop := make(chan struct{})
	wg := load(d, stop, 1)
	time.Sleep(1500 * time.Millisecond)
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.exited
	close(stop)
	wg.Wait()

	// Restart on the same data directory and config, and send some more.
	d2 := restartDaemon(t, d)
	stop2 := make(chan struct{})
	wg2 := load(d2, stop2, 2)
	time.Sleep(500 * time.Millisecond)
	close(stop2)
	wg2.Wait()

	want := 0
	acked.Range(func(any, any) bool { want++; return true })
	if want == 0 {
		t.Fatal("no event was acknowledged")
	}
	// Wait until the spool has delivered everything acknowledged.
	var got map[string]int
	deadline := time.Now().Add(90 * time.Second)
	for {
		got = searchMessages(t, es.URL, "logs-crashtest-crash")
		missing := 0
		acked.Range(func(k, _ any) bool {
			if got[k.(string)] == 0 {
				missing++
			}
			return true
		})
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged events missing from Elasticsearch after 90s:\n%s", missing, want, d2.stderr)
		}
		time.Sleep(time.Second)
	}
	dups := 0
	for k, n := range got {
		if n > 1 {
			dups++
			if dups < 5 {
				t.Errorf("%s stored %d times", k, n)
			}
		}
	}
	if dups > 0 {
		t.Fatalf("%d events stored more than once", dups)
	}
	if code := d2.stop(t); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
	t.Logf("sent %d events, %d acknowledged, %d in Elasticsearch (each once)", sent.Load(), want, len(got))
}

// restartDaemon starts the binary again with the same config, data
// directory and port as d.
func restartDaemon(t *testing.T, d *daemonProcess) *daemonProcess {
	t.Helper()
	bin, _ := buildBinary()
	n := &daemonProcess{url: d.url, syslog: d.syslog, data: d.data, stderr: &bytes.Buffer{}, exited: make(chan error, 1)}
	n.cmd = execCommand(bin, d.cmd.Args[1:]...)
	n.cmd.Stderr = &lockedWriter{w: n.stderr}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.exited <- n.cmd.Wait() }()
	t.Cleanup(func() {
		if n.cmd.ProcessState == nil {
			n.cmd.Process.Kill()
			<-n.exited
		}
	})
	waitReady(t, n)
	return n
}

// searchMessages returns how often each message is stored in index.
func searchMessages(t *testing.T, esURL, index string) map[string]int {
	t.Helper()
	http.Post(esURL+"/"+index+"/_refresh", "application/json", nil)
	got := map[string]int{}
	body := `{"size":5000,"_source":["message"],"sort":["_doc"]}`
	resp, err := http.Post(esURL+"/"+index+"/_search?scroll=1m", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for {
		var r struct {
			ScrollID string `json:"_scroll_id"`
			Hits     struct {
				Hits []struct {
					Source struct {
						Message string `json:"message"`
					} `json:"_source"`
				} `json:"hits"`
			} `json:"hits"`
		}
		err := json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return got // not created yet
		}
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("search %s: %d %v", index, resp.StatusCode, err)
		}
		if len(r.Hits.Hits) == 0 {
			return got
		}
		for _, h := range r.Hits.Hits {
			got[h.Source.Message]++
		}
		resp, err = http.Post(esURL+"/_search/scroll", "application/json",
			strings.NewReader(fmt.Sprintf(`{"scroll":"1m","scroll_id":%q}`, r.ScrollID)))
		if err != nil {
			t.Fatal(err)
		}
	}
}
