package podlog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
)

func TestPositionsRoundTripAndCorruption(t *testing.T) {
	dir := t.TempDir()
	st, err := openState(dir, "node-1")
	if err != nil || !st.previous.IsZero() {
		t.Fatalf("fresh state: %v %v", st.previous, err)
	}
	st.add(&record{ID: "a1", Family: "f/c/0.log", Offset: 1234, Win: 0, Cnt: 17, Seen: time.Now()})
	st.add(&record{ID: "b2", Family: "f/c/0.log", Offset: 99, Finished: true, Seen: time.Now()})
	if err := st.save(false); err != nil {
		t.Fatal(err)
	}
	again, err := openState(dir, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	if r := again.get("a1"); r == nil || r.Offset != 1234 || r.Cnt != 17 || again.previous.IsZero() {
		t.Fatalf("reloaded %+v, previous %v", r, again.previous)
	}
	if r := again.get("b2"); r == nil || !r.Finished {
		t.Fatalf("reloaded %+v", r)
	}
	// No temporary file is left behind.
	if _, err := os.Stat(filepath.Join(dir, positionsFile+".tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left: %v", err)
	}

	// A flipped byte is caught by the checksum; the file is moved aside.
	path := filepath.Join(dir, positionsFile)
	data, _ := os.ReadFile(path)
	data[len(data)-5] ^= 0x20
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	st3, err := openState(dir, "node-1")
	if err == nil || !errors.Is(err, errCorruptPositions) || st3 == nil || st3.len() != 0 {
		t.Fatalf("corrupt file: %v", err)
	}
	aside, _ := filepath.Glob(filepath.Join(dir, positionsFile+".corrupt-*"))
	if len(aside) != 1 {
		t.Errorf("corrupt file not moved aside: %v", aside)
	}

	// A closed store writes nothing (an abandoned agent).
	st3.add(&record{ID: "c3", Seen: time.Now()})
	st3.close()
	if err := st3.save(true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Error("a closed store wrote the positions")
	}
}

func TestPruneAndForget(t *testing.T) {
	st, _ := openState(t.TempDir(), "n")
	now := time.Now()
	st.add(&record{ID: "old", Family: "x", Seen: now.Add(-2 * time.Hour)})
	st.add(&record{ID: "new", Family: "x", Seen: now})
	st.add(&record{ID: "other", Family: "y", Seen: now})
	st.prune(time.Hour, now)
	if st.get("old") != nil || st.get("new") == nil {
		t.Error("prune")
	}
	st.forgetFamily("x")
	if st.get("new") != nil || st.get("other") == nil {
		t.Error("forgetFamily")
	}
}

// TestCursorCounting checks that a cursor built by counting lines in a
// file (start_at end) gives the ids that reading from the start gives.
func TestCursorCounting(t *testing.T) {
	var data []byte
	var starts []int64
	for i := 0; int64(len(data)) < 3<<winShift+12345; i++ {
		starts = append(starts, int64(len(data)))
		data = append(data, strings.Repeat("x", i%300)...)
		data = append(data, '\n')
	}
	ra := bytes.NewReader(data)
	c := cursor{}
	checked := 0
	for k, s := range starts {
		c.off = s
		if k%997 == 0 || (s > 0 && s>>winShift != (s-1)>>winShift) {
			got, err := countedCursor(ra, s)
			if err != nil {
				t.Fatal(err)
			}
			running := c
			gw, gn := got.take()
			cw, cn := running.take()
			if gw != cw || gn != cn {
				t.Fatalf("line at %d: counted %d:%d, read %d:%d", s, gw, gn, cw, cn)
			}
			checked++
		}
		c.take()
	}
	if checked < 10 {
		t.Fatalf("checked %d lines", checked)
	}
}

func TestGzipSourceReadsByOffset(t *testing.T) {
	var plain bytes.Buffer
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&plain, "line %d\n", i)
	}
	path := filepath.Join(t.TempDir(), "0.log.1.gz")
	f, _ := os.Create(path)
	zw := gzip.NewWriter(f)
	zw.Write(plain.Bytes())
	zw.Close()
	f.Close()
	src, _, err := openSource(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	want := plain.Bytes()
	buf := make([]byte, 4096)
	for _, off := range []int64{0, 100, 50, 5000, 4990, 120000, 3, int64(len(want)) - 10, int64(len(want)) + 5} {
		n, err := src.ReadAt(buf, off)
		end := min(off+int64(len(buf)), int64(len(want)))
		if off >= int64(len(want)) {
			if n != 0 || !errors.Is(err, io.EOF) {
				t.Errorf("ReadAt past the end: %d %v", n, err)
			}
			continue
		}
		if !bytes.Equal(buf[:n], want[off:end]) {
			t.Errorf("ReadAt(%d) = %d bytes, not the content", off, n)
		}
		if (end-off < int64(len(buf))) != errors.Is(err, io.EOF) {
			t.Errorf("ReadAt(%d): err %v", off, err)
		}
	}
}

func TestStartAtEndOnAFirstStart(t *testing.T) {
	cfg := testConfig(t)
	cfg.StartAt = StartEnd
	dir := containerDir(t, cfg.Roots[0], "ns", "pod", "c")
	w := newLineWriter(t, dir, "before")
	w.write(1000)
	h := newHarness(t, cfg)
	w2 := &lineWriter{t: t, dir: dir, base: "0.log", f: w.f, tag: "after"}
	w2.write(10)
	h.waitLines("after", 10)
	for _, m := range h.sink.messages() {
		if strings.HasPrefix(m, "before ") && m != "before line 000999" {
			t.Fatalf("start_at end read %q", m)
		}
	}
	// The ids agree with what reading from the start gives.
	h.stop()
	if err := os.RemoveAll(cfg.StateDir); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, e := range h.sink.events() {
		ids[e.Message()] = e.ID
	}
	cfg.StartAt = StartBeginning
	h2 := newHarness(t, cfg)
	h2.waitLines("after", 10)
	for _, e := range h2.sink.events() {
		if id, ok := ids[e.Message()]; ok && id != e.ID {
			t.Errorf("%q: id %s from the end, %s from the start", e.Message(), id, e.ID)
		}
	}
}
