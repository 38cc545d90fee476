package collector

import (
	"encoding/binary"
	"errors"
	"unicode/utf16"
	"unicode/utf8"
)

// Why AppendUnescapedJSONString stopped. They are values, so a refused
// string costs no allocation.
var (
	ErrJSONUnterminated  = errors.New("unterminated string")
	ErrJSONControlChar   = errors.New("control character in string")
	ErrJSONEscape        = errors.New("invalid escape")
	ErrJSONUnicodeEscape = errors.New(`invalid \u escape`)
)

// jsonStop marks the bytes that end a run to copy as it is: the closing
// quote, a backslash, and control characters, which JSON does not allow
// unescaped.
var jsonStop = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// stopsRun reports whether any of the eight bytes in x is a quote, a
// backslash or a control character; which one is the byte loop's business.
// The bit tricks are exact as a yes or no for limits up to 0x80
// ("Determine if a word has a byte less than n", Bit Twiddling Hacks).
func stopsRun(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	lt := func(x, n uint64) uint64 { return (x - ones*n) & ^x & highs } // some byte < n
	return (lt(x, 0x20) | lt(x^(ones*'"'), 1) | lt(x^(ones*'\\'), 1)) != 0
}

// AppendUnescapedJSONString reads the JSON string at the start of src,
// which begins after the string's opening quote (or anywhere inside its
// body), appends its value to dst and returns dst and the number of bytes
// of src the rest of the string took, closing quote included. It allocates
// only when dst must grow.
//
// The value is what encoding/json decodes, with one exception: bytes that
// are not UTF-8 are copied as they are, where encoding/json puts U+FFFD
// for each; callers that need valid UTF-8 check the whole value once. As
// in encoding/json, a \u escape of a lone surrogate gives U+FFFD, and a
// high surrogate whose next escape is not a low one gives U+FFFD and
// leaves that escape to be read on its own.
//
// On an error, n is the offset in src of the problem (len(src) for an
// unterminated string) and err one of the ErrJSON values; dst holds what
// was unescaped before it.
func AppendUnescapedJSONString(dst, src []byte) (out []byte, n int, err error) {
	i := 0
	for {
		start := i
		// Eight bytes at a time while none of them ends the run.
		for i+8 <= len(src) && !stopsRun(binary.LittleEndian.Uint64(src[i:])) {
			i += 8
		}
		for i < len(src) && !jsonStop[src[i]] {
			i++
		}
		dst = append(dst, src[start:i]...)
		if i >= len(src) {
			return dst, len(src), ErrJSONUnterminated
		}
		switch src[i] {
		case '"':
			return dst, i + 1, nil
		case '\\':
		default:
			return dst, i, ErrJSONControlChar
		}
		if i+1 >= len(src) {
			return dst, len(src), ErrJSONUnterminated
		}
		switch e := src[i+1]; e {
		case '"', '\\', '/':
			dst = append(dst, e)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(src, i+2)
			if !ok {
				return dst, i + 2, ErrJSONUnicodeEscape
			}
			i += 6
			if utf16.IsSurrogate(r) {
				lo, ok := rune(0), false
				if i+1 < len(src) && src[i] == '\\' && src[i+1] == 'u' {
					lo, ok = hex4(src, i+2)
				}
				if r = utf16.DecodeRune(r, lo); ok && r != utf8.RuneError {
					i += 6 // the pair's second half
				}
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default:
			return dst, i, ErrJSONEscape
		}
		i += 2
	}
}

// hex4 reads the four hex digits of a \u escape at src[i:].
func hex4(src []byte, i int) (rune, bool) {
	if i+4 > len(src) {
		return 0, false
	}
	var r rune
	for _, c := range src[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
