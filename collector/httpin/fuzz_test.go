package httpin

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/leitstand/leitstand/collector"
)

// FuzzDecodeLine: whatever a sender puts on a line, the decoder does not
// panic, and a line it accepts encodes to valid JSON that decodes again to
// the same fields.
func FuzzDecodeLine(f *testing.F) {
	for _, seed := range []string{
		`{"message":"hello","log":{"level":"info"}}`,
		`{"message":"esc \" \\ \/ \b \f \n \r \t \u00e4 \ud83d\ude00 \udc00","a.b":[1,{"c":null}],"n":-1.5e+10}`,
		`{"@timestamp":1732262400000,"message":"x","t":true,"f":false,"z":null}`,
		`{"message":"x","a":"s","a.b":"conflict"}`,
		`{"message":"\xff\xfe invalid utf8","arr":["\xff"]}`,
		`{"message":"deep","a":{"b":{"c":{"d":{"e":1}}}}}`,
		`{"message":"x","":1}`,
		`{"message":"x","a..b":1}`,
		`{"message":"x"} trailing`,
		`{"message":"x","n":01}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		b := collector.NewBatch("fuzz")
		defer b.Release()
		d := lineDecoder{arena: &b.Arena}
		e := b.Next()
		if err := d.decode(line, e); err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a reason")
			}
			return
		}
		e.Normalize()
		out := e.AppendJSON(nil)
		if !json.Valid(out) {
			t.Fatalf("accepted %q but encoded invalid JSON %q", line, out)
		}
		e2 := b.Next()
		if err := d.decode(out, e2); err != nil {
			t.Fatalf("our own encoding %q of %q does not decode: %v", out, line, err)
		}
		e2.Normalize()
		if got, want := string(e2.AppendJSON(nil)), string(out); got != want {
			t.Fatalf("round trip changed the event:\n first %s\nsecond %s", want, got)
		}
	})
}

// TestEpochMillisecondsRange: epoch milliseconds are taken for the years
// RFC 3339 can write (0000 to 9999) and refused with the reason outside.
func TestEpochMillisecondsRange(t *testing.T) {
	for _, c := range []struct {
		ms   string
		want string // the stored time, or "" for refused
	}{
		{"-62167219200000", "0000-01-01T00:00:00Z"},
		{"-62167219200001", ""},
		{"253402300799999", "9999-12-31T23:59:59.999Z"},
		{"253402300800000", ""},
		{"700000000000000", ""},
	} {
		b := collector.NewBatch("test")
		d := lineDecoder{arena: &b.Arena}
		e := b.Next()
		err := d.decode([]byte(`{"@timestamp":`+c.ms+`,"message":"x"}`), e)
		switch {
		case c.want == "" && (err == nil || !strings.Contains(err.Error(), "outside the years 0000 to 9999")):
			t.Errorf("%s: %v, want refused as out of range", c.ms, err)
		case c.want != "" && err != nil:
			t.Errorf("%s: %v", c.ms, err)
		case c.want != "" && e.Timestamp.UTC().Format(time.RFC3339Nano) != c.want:
			t.Errorf("%s: stored %s, want %s", c.ms, e.Timestamp.UTC().Format(time.RFC3339Nano), c.want)
		}
		b.Release()
	}
}
