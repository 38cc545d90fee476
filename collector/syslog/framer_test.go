package syslog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/leitstand/leitstand/collector"
)

// cut feeds stream to a framer chunk bytes at a time, as a connection's
// reads would, and returns the frames (copied) and the framer.
func cut(stream []byte, max, chunk int) ([]frame, *framer) {
	f := &framer{max: max}
	var out []frame
	var buf []byte
	start := 0
	if chunk <= 0 {
		chunk = len(stream) + 1
	}
	drain := func(eof bool) {
		for {
			fr, n, ok := f.next(buf[start:], eof)
			start += n
			if ok {
				out = append(out, frame{data: append([]byte(nil), fr.data...), flags: fr.flags})
			} else if n == 0 {
				return
			}
		}
	}
	for len(stream) > 0 {
		k := min(chunk, len(stream))
		buf = append(buf, stream[:k]...)
		stream = stream[k:]
		drain(false)
	}
	drain(true)
	return out, f
}

func frameStrings(frames []frame) []string {
	var s []string
	for _, f := range frames {
		tag := ""
		if f.flags&frameTruncated != 0 {
			tag += "T"
		}
		if f.flags&frameJunk != 0 {
			tag += "J"
		}
		if f.flags&frameIncomplete != 0 {
			tag += "I"
		}
		if tag != "" {
			tag = "[" + tag + "]"
		}
		s = append(s, tag+string(f.data))
	}
	return s
}

func octet(msgs ...string) string {
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&b, "%d %s", len(m), m)
	}
	return b.String()
}

func TestFramer(t *testing.T) {
	cases := []struct {
		name   string
		stream string
		max    int
		want   []string
	}{
		{"octet counting", octet("<13>1 - - - - - - one", "<13>1 - - - - - - two"), 100,
			[]string{"<13>1 - - - - - - one", "<13>1 - - - - - - two"}},
		{"octet counting keeps LF inside a frame", octet("<13>1 - - - - - - multi\nline"), 100,
			[]string{"<13>1 - - - - - - multi\nline"}},
		{"LF framing, CRLF and a last line without LF", "<13>one\n<13>two\r\n<13>three", 100,
			[]string{"<13>one", "<13>two\r", "<13>three"}},
		{"trailer LF after octet frames", octet("<13>a") + "\n" + octet("<13>b") + "\n", 100,
			[]string{"<13>a", "<13>b"}},
		{"mixed framing on one connection", octet("<13>a") + "<13>line\n" + octet("<13>b"), 100,
			[]string{"<13>a", "<13>line", "<13>b"}},
		{"a line that starts with digits is a line on an LF stream", "2026 was a year\n<13>next\n", 100,
			[]string{"2026 was a year", "<13>next"}},
		{"count too short: the rest is junk, the next frame is found", "5 <13>hello world" + octet("<13>next"), 100,
			[]string{"<13>h", "[J]ello world", "<13>next"}},
		{"count too long swallows the next frame, then resync", "12 <13>hi" + octet("<13>next one") + "garbage\n" + octet("<13>after"), 100,
			[]string{"<13>hi12 <13", "[J]>next onegarbage\n", "<13>after"}},
		{"garbage on an octet stream is skipped up to the next frame", octet("<13>a") + "\x00\x8f\x12random" + octet("<13>b"), 100,
			[]string{"<13>a", "[J]\x8f\x12random", "<13>b"}},
		{"over-long octet frame: cut, the rest skipped", octet("<13>"+strings.Repeat("x", 50)) + octet("<13>ok"), 20,
			[]string{"[T]<13>" + strings.Repeat("x", 16), "<13>ok"}},
		{"over-long line: cut, the rest of the line skipped", "<13>" + strings.Repeat("y", 50) + "\n<13>ok\n", 20,
			[]string{"[T]<13>" + strings.Repeat("y", 16), "<13>ok"}},
		{"stream ends inside an octet frame", "100 <13>half a fra", 200,
			[]string{"[I]<13>half a fra"}},
		{"junk at the end of an octet stream", octet("<13>a") + "trailing junk", 100,
			[]string{"<13>a", "[J]trailing junk"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, chunk := range []int{0, 1, 3, 7} {
				frames, _ := cut([]byte(c.stream), c.max, chunk)
				got := frameStrings(frames)
				if strings.Join(got, "|") != strings.Join(c.want, "|") {
					t.Errorf("chunk %d:\n got %q\nwant %q", chunk, got, c.want)
				}
			}
		})
	}
}

func TestFramerTenMegabyteFrame(t *testing.T) {
	const size = 10 << 20
	body := "<13>1 - - - - - - " + strings.Repeat("z", size-18)
	stream := []byte(octet(body) + octet("<13>1 - - - - - - next"))
	frames, f := cut(stream, 64<<10, 64<<10)
	got := frameStrings(frames)
	if len(got) != 2 || len(frames[0].data) != 64<<10 || frames[0].flags != frameTruncated || got[1] != "<13>1 - - - - - - next" {
		t.Fatalf("got %d frames, first %d bytes flags %b, second %.40q", len(frames), len(frames[0].data), frames[0].flags, got[len(got)-1])
	}
	if d := f.takeDiscarded(); d != size-64<<10 {
		t.Errorf("discarded %d bytes, want %d", d, size-64<<10)
	}
}

// FuzzFramer cuts arbitrary streams into frames and turns every frame into
// an event: it must never panic, never lose or invent bytes, cut frames the
// same way however the stream is split into reads, and every event must
// encode to valid JSON.
func FuzzFramer(f *testing.F) {
	f.Add([]byte(octet("<165>1 2026-11-22T08:15:00Z h a 1 m [x@1 a=\"b\"] msg", "<13>Nov 22 08:15:00 h p[1]: x")), uint16(5), uint8(64))
	f.Add([]byte("<13>one\n<13>two\r\n<13>three"), uint16(1), uint8(16))
	f.Add([]byte("5 <13>hello world"+octet("<13>next")), uint16(3), uint8(32))
	f.Add([]byte(octet("<13>a")+"\x00\x8f\x12random"+octet("<13>b")), uint16(2), uint8(8))
	f.Add([]byte("99999999999 <13>x\n12345678901 <"), uint16(4), uint8(16))
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint16, max uint8) {
		limit := int(max)%200 + 8
		whole, wf := cut(stream, limit, 0)
		split, sf := cut(stream, limit, int(chunk)%64+1)
		total := 0
		for _, fr := range whole {
			if len(fr.data) > limit {
				t.Fatalf("frame of %d bytes over the limit %d", len(fr.data), limit)
			}
			total += len(fr.data)
		}
		if total > len(stream) {
			t.Fatalf("frames hold %d bytes of a %d-byte stream", total, len(stream))
		}
		// Junk longer than a buffer is cut where the buffer ends, so only
		// short streams must frame identically however they are read.
		if len(stream) <= limit && strings.Join(frameStrings(whole), "\x00|") != strings.Join(frameStrings(split), "\x00|") {
			t.Fatalf("framing depends on the reads:\nwhole %q\nsplit %q", frameStrings(whole), frameStrings(split))
		}
		if wf.discard != 0 || sf.discard != 0 {
			// A truncated frame's remainder is still expected: fine at EOF.
			_ = wf
		}
		d := decoder{p: newParser(RFC3164Config{Timezone: "UTC"}), transport: "tcp"}
		b := collector.NewBatch("fuzz")
		defer b.Release()
		for _, fr := range whole {
			d.add(b, fr, "192.0.2.1")
		}
		var out []byte
		for i := range b.Events {
			e := &b.Events[i]
			e.Normalize()
			out = e.AppendJSON(out[:0])
			if !json.Valid(out) {
				t.Fatalf("event is not valid JSON: %s", out)
			}
			if !bytes.Contains(out, []byte(`"event":{"created"`)) {
				t.Fatalf("event lacks event.created: %s", out)
			}
		}
	})
}
