package podlog

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/internal/config"
)

// FuzzParseCRI: any line decodes without a panic, and decoded text is the
// end of the line.
func FuzzParseCRI(f *testing.F) {
	f.Add([]byte("2026-11-22T08:15:00.123456789Z stdout F hello"))
	f.Add([]byte("2026-11-22T08:15:00Z stderr P "))
	f.Fuzz(func(t *testing.T, line []byte) {
		var pl physLine
		parseCRI(line, &pl)
		if !bytes.HasSuffix(line, pl.text) {
			t.Fatalf("text %q is not the end of %q", pl.text, line)
		}
	})
}

// FuzzParseDocker: any line decodes without a panic.
func FuzzParseDocker(f *testing.F) {
	f.Add([]byte(`{"log":"hello\n","stream":"stdout","time":"2026-11-22T08:15:00.000000001Z"}`))
	f.Add([]byte(`{"log":"\ud83d\ude00 \u0000","attrs":{"a":[1,{"b":null}]}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		var pl physLine
		parseDocker(line, &pl, nil)
		if pl.raw && !bytes.Equal(pl.text, line) {
			t.Fatalf("raw text %q is not the line", pl.text)
		}
	})
}

// FuzzReader feeds arbitrary file content through the reader, multiline
// rule included: no panic, the whole file is consumed, every event has an
// id the forward sink can carry, and no message is longer than allowed.
func FuzzReader(f *testing.F) {
	f.Add([]byte("2026-11-22T08:15:00Z stdout P a\n2026-11-22T08:15:00Z stdout F b\nraw line\n{\"log\":\"x\"}\n"), uint16(300))
	f.Add([]byte(`{"log":"a","stream":"stderr"}`+"\n"+`{"log":"b\n","stream":"stderr"}`+"\n"), uint16(5000))
	f.Add([]byte(strings.Repeat("x", 9000)+"\n\n\n"), uint16(256))
	f.Fuzz(func(t *testing.T, data []byte, maxLine uint16) {
		cfg := DefaultConfig()
		cfg.MaxLineBytes = 256 + configByteSize(maxLine)
		cfg.ReadBufferBytes = 4 << 10
		rule := &multiline{sel: newSelector([]string{"*"}), re: mustRegexp(DefaultStartPattern), maxLines: 5, maxBytes: 2048, maxWait: time.Second}
		path := filepath.Join(t.TempDir(), "0.log")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		rd := bareReader(t, cfg, rule, path)
		buf := make([]byte, cfg.ReadBufferBytes)
		for i := 0; ; i++ {
			if i > 10*len(data)+10 {
				t.Fatal("the reader does not advance")
			}
			b := collector.NewBatch("fuzz")
			rd.batchBytes = 0
			eof, _, err := rd.fill(b, buf, true, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if eof {
				rd.flushDue(b, time.Now(), true)
			}
			for k := range b.Events {
				e := &b.Events[k]
				if _, n, ok := splitID(e.ID); !ok || n < 1 {
					t.Fatalf("id %q", e.ID)
				}
				if len(e.Message()) > 2048+int(cfg.MaxLineBytes) {
					t.Fatalf("message of %d bytes", len(e.Message()))
				}
			}
			b.Release()
			if eof {
				break
			}
		}
		if rd.cur.off != int64(len(data)) || rd.pending() {
			t.Fatalf("read to %d of %d, pending %v", rd.cur.off, len(data), rd.pending())
		}
	})
}

// bareReader is a reader of the file at path without a Receiver around
// it: the test drives fill and flushDue itself, with the clock it chooses.
func bareReader(t testing.TB, cfg Config, rule *multiline, path string) *reader {
	t.Helper()
	r := &Receiver{cfg: cfg, node: "n"}
	fam := &family{r: r, key: "ns_p_u/c/0.log", base: "0.log", pod: podDir{"ns", "p", "u"}, container: "c", ml: rule}
	fam.static = r.staticFields(fam)
	src, file, err := openSource(path, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	head := make([]byte, 1)
	if n, _ := src.ReadAt(head, 0); n == 0 {
		head[0] = 0
	}
	return &reader{f: fam, src: src, file: file, rec: &record{}, id: "0123456789abcdef", format: detectFormat(head[0])}
}

func configByteSize(n uint16) config.ByteSize { return config.ByteSize(n) }

func mustRegexp(s string) *regexp.Regexp { return regexp.MustCompile(s) }

// splitID mirrors forward.SplitID, which the test cannot import without a
// cycle in spirit (the receiver must not know the sink).
func splitID(id string) (string, int, bool) {
	i := strings.LastIndexByte(id, ':')
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(id[i+1:])
	return id[:i], n, err == nil && n <= 1<<20
}
