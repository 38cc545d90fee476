package collector

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAppendUnescapedJSONString(t *testing.T) {
	for _, c := range []struct {
		src  string // after the opening quote
		want string
		n    int // bytes read; -1: all of src
		err  error
	}{
		{src: `"`, want: "", n: 1},
		{src: `plain" rest`, want: "plain", n: 6},
		{src: `a\"b\\c\/d\be\ff\ng\rh\ti"`, want: "a\"b\\c/d\be\ff\ng\rh\ti", n: -1},
		{src: `\u00e4\u00C4\u20ac"`, want: "äÄ€", n: -1},
		{src: `\ud83d\ude00"`, want: "😀", n: -1},
		{src: `\ud83d"`, want: "\uFFFD", n: -1},              // lone high surrogate
		{src: `\ude00x"`, want: "\uFFFDx", n: -1},            // lone low surrogate
		{src: `\ud83d\u0041"`, want: "\uFFFDA", n: -1},       // high surrogate, then not a low one
		{src: `\ud83d\ud83d\ude00"`, want: "\uFFFD😀", n: -1}, // two highs, then a low
		{src: `\u0000"`, want: "\x00", n: -1},
		{src: "\xff\xfe\"", want: "\xff\xfe", n: -1}, // not UTF-8: copied as it is
		{src: `abc`, want: "abc", n: 3, err: ErrJSONUnterminated},
		{src: `abc\`, want: "abc", n: 4, err: ErrJSONUnterminated},
		{src: "ab\tc\"", want: "ab", n: 2, err: ErrJSONControlChar},
		{src: `ab\x"`, want: "ab", n: 2, err: ErrJSONEscape},
		{src: `ab\u12"`, want: "ab", n: 4, err: ErrJSONUnicodeEscape},
		{src: `ab\u12g4"`, want: "ab", n: 4, err: ErrJSONUnicodeEscape},
		{src: `\ud83d\uzzzz"`, want: "\uFFFD", n: 8, err: ErrJSONUnicodeEscape},
	} {
		want := c.n
		if want < 0 {
			want = len(c.src)
		}
		prefix := []byte("dst:")
		got, n, err := AppendUnescapedJSONString(prefix, []byte(c.src))
		if string(got) != "dst:"+c.want || n != want || !errors.Is(err, c.err) {
			t.Errorf("%q: got %q, %d, %v; want %q, %d, %v", c.src, got, n, err, "dst:"+c.want, want, c.err)
		}
	}
}

// TestAppendUnescapedJSONStringFindsEveryStop puts each byte that ends a
// plain run at every offset of the eight-byte steps.
func TestAppendUnescapedJSONStringFindsEveryStop(t *testing.T) {
	for k := 0; k < 20; k++ {
		plain := strings.Repeat("é", k/2) + strings.Repeat("a", k%2) // multi-byte UTF-8 too
		for _, c := range []struct {
			stop, want string
			err        error
		}{
			{stop: `"tail`, want: plain},
			{stop: `\""tail`, want: plain + `"`},
			{stop: "\x7f\"", want: plain + "\x7f"}, // DEL is not a control character for JSON
			{stop: "\x1f\"", want: plain, err: ErrJSONControlChar},
			{stop: "\x00\"", want: plain, err: ErrJSONControlChar},
		} {
			src := plain + c.stop + strings.Repeat("b", 16)
			got, _, err := AppendUnescapedJSONString(nil, []byte(src))
			if string(got) != c.want || err != c.err {
				t.Errorf("%q: got %q, %v; want %q, %v", src, got, err, c.want, c.err)
			}
		}
	}
}

func TestAppendUnescapedJSONStringAllocatesNothing(t *testing.T) {
	src := []byte(`a \"quoted\" \u00e4 \ud83d\ude00 tab\t and more text"`)
	dst := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { dst, _, _ = AppendUnescapedJSONString(dst[:0], src) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// FuzzAppendUnescapedJSONString: a string is accepted exactly when
// encoding/json accepts it, and gives the same value (once bytes that are
// not UTF-8 are replaced as encoding/json does).
func FuzzAppendUnescapedJSONString(f *testing.F) {
	for _, s := range []string{`plain"`, `esc \" \\ \/ \b \f \n \r \t"`, `\u00e4 \ud83d\ude00 \udc00 \ud800\u0041"`,
		`unterminated`, "ctl \x01\"", `\x"`, `\u12"`, "\xff\xfe\"", `\ud83d\ud83d\ude00"`, `a"b"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		got, n, err := AppendUnescapedJSONString(nil, src)
		if n < 0 || n > len(src) {
			t.Fatalf("n %d outside 0..%d", n, len(src))
		}
		var want string
		jerr := json.Unmarshal(append([]byte{'"'}, src...), &want)
		// encoding/json takes white space after the closing quote.
		ok := err == nil && len(bytes.TrimLeft(src[n:], " \t\r\n")) == 0
		if ok != (jerr == nil) {
			t.Fatalf("%q: ours n=%d err=%v, encoding/json %v", src, n, err, jerr)
		}
		if jerr != nil {
			if err == nil {
				// The string ended early; what follows is not ours.
				var v string
				if jerr := json.Unmarshal(append([]byte{'"'}, src[:n]...), &v); jerr != nil || replaceInvalid(got) != v {
					t.Fatalf("%q: ours %q for its first %d bytes, encoding/json %q, %v", src, got, n, v, jerr)
				}
			}
			return
		}
		if replaceInvalid(got) != want {
			t.Fatalf("%q: ours %q, encoding/json %q", src, got, want)
		}
		if len(got) > len(src) {
			t.Fatalf("%q: value of %d bytes is longer than its source", src, len(got))
		}
	})
}

// replaceInvalid puts U+FFFD for each byte that is not UTF-8, as
// encoding/json does when it decodes a string.
func replaceInvalid(b []byte) string {
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		out = utf8.AppendRune(out, r)
		b = b[size:]
	}
	return string(out)
}

// BenchmarkAppendUnescapedJSONString: a log line as Docker's json-file
// writes it, a few escapes in a long run of plain text.
func BenchmarkAppendUnescapedJSONString(b *testing.B) {
	src := []byte(`2026-11-22T08:15:00Z GET /api/v1/orders?page=2 status=200 took=12ms\tbytes=5120 cache=miss msg=\"the quick brown fox\" jumps over the lazy dog \u00e4 and on and on\n","stream":"stdout"}`)
	dst := make([]byte, 0, len(src))
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		dst, _, _ = AppendUnescapedJSONString(dst[:0], src)
	}
}
