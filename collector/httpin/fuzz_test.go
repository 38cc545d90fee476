package httpin

import (
	"encoding/json"
	"testing"

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
