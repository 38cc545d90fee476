package collector

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestAppendJSONNestsDottedKeys(t *testing.T) {
	e := Event{Timestamp: time.Date(2026, 11, 22, 8, 15, 0, 123456789, time.FixedZone("CET", 3600))}
	e.AddString("message", "hello \"world\"\n\x01")
	e.AddString("log.level", "info")
	e.Add("http.response.status_code", KindNumber, "200")
	e.AddString("event.dataset", "app")
	e.Add("labels.ok", KindBool, "true")
	e.AddString("log.logger", "main")
	e.Add("tags", KindRaw, `["a","b"]`)
	e.AddString("event-x", "sorts before event.dataset") // '-' < '.'
	e.Normalize()
	got := string(e.AppendJSON(nil))
	want := `{"@timestamp":"2026-11-22T07:15:00.123456789Z","event-x":"sorts before event.dataset","event":{"dataset":"app"},"http":{"response":{"status_code":200}},"labels":{"ok":true},"log":{"level":"info","logger":"main"},"message":"hello \"world\"\n\u0001","tags":["a","b"]}`
	if got != want {
		t.Fatalf("encoding:\n got %s\nwant %s", got, want)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(got), &v); err != nil {
		t.Fatalf("not valid JSON: %v", err)
	}
}

func TestNormalizeKeepsLastAndResolvesConflicts(t *testing.T) {
	e := Event{}
	e.AddString("a", "scalar")
	e.AddString("b", "first")
	e.AddString("a.b", "child")
	e.AddString("b", "second")
	e.Normalize()
	var keys, vals []string
	for _, f := range e.Fields {
		keys = append(keys, f.Key)
		vals = append(vals, f.Str)
	}
	if want := []string{"a.b", "a.value", "b"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("keys = %v, want %v", keys, want)
	}
	if want := []string{"child", "scalar", "second"}; !reflect.DeepEqual(vals, want) {
		t.Fatalf("values = %v, want %v", vals, want)
	}
	var v map[string]any
	if err := json.Unmarshal(e.AppendJSON(nil), &v); err != nil {
		t.Fatalf("not valid JSON: %v", err)
	}
}

func TestAppendJSONStringReplacesInvalidUTF8(t *testing.T) {
	got := string(AppendJSONString(nil, "ok\xffä\u2028"))
	if want := "\"ok\uFFFDä\u2028\""; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestArenaStringsSurviveGrowth(t *testing.T) {
	var a Arena
	var got []string
	for i := 0; i < 5000; i++ {
		got = append(got, a.String([]byte("0123456789abcdef")))
	}
	b := a.Builder(4)
	b = append(b, "built"...)
	s := a.Commit(b)
	after := a.String([]byte("next"))
	for _, g := range got {
		if g != "0123456789abcdef" {
			t.Fatalf("arena string changed: %q", g)
		}
	}
	if s != "built" || after != "next" {
		t.Fatalf("builder string %q, next %q", s, after)
	}
}

func TestEventAllocations(t *testing.T) {
	b := NewBatch("test")
	defer b.Release()
	buf := make([]byte, 0, 1024)
	allocs := testing.AllocsPerRun(100, func() {
		e := b.Next()
		e.Timestamp = time.Now()
		e.AddString("message", "a message of some length")
		e.AddString("log.level", "info")
		e.AddString("event.dataset", "app")
		e.Normalize()
		buf = e.AppendJSON(buf[:0])
		b.Drop()
	})
	if allocs > 0 {
		t.Fatalf("building, normalizing and encoding a reused event allocates %.1f times", allocs)
	}
}
