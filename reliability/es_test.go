package reliability

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// esDocs is what Elasticsearch holds for one scenario: how often each
// message is stored and under which document ids.
type esDocs struct {
	byMessage map[string]int
	ids       map[string]string // _id → message
	count     int               // _count of the index pattern
}

// readDocs scrolls through every document of index (a pattern) and counts
// them by message; it also asks _count, so the scroll is checked against
// Elasticsearch's own figure.
func readDocs(t testing.TB, index string) esDocs {
	t.Helper()
	d := esDocs{byMessage: map[string]int{}, ids: map[string]string{}}
	if resp, err := http.Post(es.URL+"/"+index+"/_refresh?ignore_unavailable=true&allow_no_indices=true", "application/json", nil); err == nil {
		resp.Body.Close()
	}
	var c struct {
		Count int `json:"count"`
	}
	if err := esCall(http.MethodGet, "/"+index+"/_count?ignore_unavailable=true&allow_no_indices=true", "", &c); err != nil {
		t.Fatal(err)
	}
	d.count = c.Count
	var r scrollPage
	err := esCall(http.MethodPost, "/"+index+"/_search?scroll=2m&ignore_unavailable=true&allow_no_indices=true",
		`{"size":10000,"_source":["message"],"sort":["_doc"]}`, &r)
	if err != nil {
		t.Fatal(err)
	}
	for len(r.Hits.Hits) > 0 {
		for _, h := range r.Hits.Hits {
			d.byMessage[h.Source.Message]++
			d.ids[h.ID] = h.Source.Message
		}
		id := r.ScrollID
		r = scrollPage{}
		if err := esCall(http.MethodPost, "/_search/scroll", fmt.Sprintf(`{"scroll":"2m","scroll_id":%q}`, id), &r); err != nil {
			t.Fatal(err)
		}
	}
	if r.ScrollID != "" {
		esCall(http.MethodDelete, "/_search/scroll", fmt.Sprintf(`{"scroll_id":%q}`, r.ScrollID), nil)
	}
	return d
}

type scrollPage struct {
	ScrollID string `json:"_scroll_id"`
	Hits     struct {
		Hits []struct {
			ID     string `json:"_id"`
			Source struct {
				Message string `json:"message"`
			} `json:"_source"`
		} `json:"hits"`
	} `json:"hits"`
}

// esCall sends one request to Elasticsearch and decodes a 2xx answer into
// out (nil: ignore the body).
func esCall(method, path, body string, out any) error {
	req, err := http.NewRequest(method, es.URL+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	c := &http.Client{Timeout: 2 * time.Minute}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e json.RawMessage
		json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("elasticsearch %s %s: %s %s", method, path, resp.Status, e)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// tally compares what clients know with what Elasticsearch holds.
type tally struct {
	Sent, Acked, Found, Lost, Duplicated int
	// Unacked are events sent but never acknowledged that are stored
	// anyway (their request died with the process): allowed, at most once.
	Unacked int
}

// total is the number of documents the scroll read.
func (d esDocs) total() int {
	n := 0
	for _, c := range d.byMessage {
		n += c
	}
	return n
}

// reconcile waits until every acknowledged message is in index (or the
// timeout passes) and counts. acked and sent map message → expected _id
// ("" when the scenario does not fix ids).
func reconcile(t testing.TB, index string, sent, acked map[string]string, timeout time.Duration) tally {
	t.Helper()
	c, _ := reconcileWhere(t, index, sent, acked, timeout, nil)
	return c
}

// reconcileWhere is reconcile for an index that also holds events of
// other senders: documents whose message other accepts are counted in
// others (by message) and otherwise left alone.
func reconcileWhere(t testing.TB, index string, sent, acked map[string]string, timeout time.Duration, other func(string) bool) (tally, map[string]int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var docs esDocs
	for {
		docs = readDocs(t, index)
		missing := 0
		for m := range acked {
			if docs.byMessage[m] == 0 {
				missing++
			}
		}
		// The scroll and _count must agree too: while the last batches
		// are still being indexed a refresh between the two makes them
		// differ, and the next read settles it.
		if (missing == 0 && docs.total() == docs.count) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	r := tally{Sent: len(sent), Acked: len(acked)}
	for m, want := range acked {
		n := docs.byMessage[m]
		if n == 0 {
			r.Lost++
			if r.Lost <= 5 {
				t.Errorf("acknowledged event %q is not in Elasticsearch", m)
			}
			continue
		}
		r.Found++
		if want != "" {
			if got, ok := docs.ids[want]; !ok || got != m {
				t.Errorf("event %q is not stored under its id %q", m, want)
			}
		}
	}
	others := map[string]int{}
	for m, n := range docs.byMessage {
		if other != nil && other(m) {
			others[m] = n
			continue
		}
		if n > 1 {
			r.Duplicated += n - 1
			if r.Duplicated <= 5 {
				t.Errorf("event %q stored %d times", m, n)
			}
		}
		if _, ok := acked[m]; !ok {
			if _, ok := sent[m]; ok {
				r.Unacked++
			} else {
				t.Errorf("Elasticsearch holds %q, which no client sent", m)
			}
		}
	}
	if total := docs.total(); total != docs.count {
		t.Errorf("the scroll read %d documents, _count says %d", total, docs.count)
	}
	if r.Lost > 0 {
		t.Errorf("%d of %d acknowledged events lost", r.Lost, r.Acked)
	}
	if r.Duplicated > 0 {
		t.Errorf("%d duplicates", r.Duplicated)
	}
	return r, others
}
