package anonymize

import (
	"unicode/utf8"

	"github.com/leitstand/leitstand/collector"
)

// maxDepth bounds the nesting the JSON walker follows; deeper documents
// are scrubbed as text.
const maxDepth = 100

// walker rebuilds a raw JSON value with its strings scrubbed. It copies the
// source lazily: out only receives text when something changes.
type walker struct {
	sc      *scanner
	src     string
	out     []byte
	copied  int
	changed bool
	drop    bool // a detector whose method is drop matched a string
	active  uint64
	bad     bool // not valid JSON
}

// scrubRaw scrubs the raw JSON value raw of the field whose lower-case path
// is in sc.path. act, when not nil, applies to every value inside (a rule or
// key class of the field itself). It returns the new text, whether it
// changed and whether the field is to be dropped.
func (sc *scanner) scrubRaw(raw string, act *action, active uint64) (string, bool, bool) {
	w := walker{sc: sc, src: raw, out: sc.js[:0], active: active}
	i := w.value(skipWS(raw, 0), act, 0)
	if w.bad || skipWS(raw, i) != len(raw) {
		// not what the contract promises: scrub it as text rather than not at all
		changed := sc.scrub(raw)
		if changed {
			return unsafeString(sc.out), true, sc.drop
		}
		return raw, false, sc.drop
	}
	drop := w.drop
	sc.js = w.out
	if !w.changed {
		return raw, false, drop
	}
	w.out = append(w.out, raw[w.copied:]...)
	sc.js = w.out
	return unsafeString(w.out), true, drop
}

func skipWS(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r') {
		i++
	}
	return i
}

// edit replaces src[start:end] with repl.
func (w *walker) edit(start, end int, repl []byte) {
	w.out = append(w.out, w.src[w.copied:start]...)
	w.out = append(w.out, repl...)
	w.copied = end
	w.changed = true
}

// editString replaces the string token src[start:end] with s, encoded.
func (w *walker) editString(start, end int, s string) {
	w.out = append(w.out, w.src[w.copied:start]...)
	w.out = collector.AppendJSONString(w.out, s)
	w.copied = end
	w.changed = true
}

// value walks the value at i under act and returns its end.
func (w *walker) value(i int, act *action, depth int) int {
	if w.bad || i >= len(w.src) {
		w.bad = true
		return len(w.src)
	}
	if depth > maxDepth {
		w.bad = true
		return len(w.src)
	}
	switch c := w.src[i]; {
	case c == '{':
		return w.object(i, act, depth)
	case c == '[':
		i = skipWS(w.src, i+1)
		if at(w.src, i) == ']' {
			return i + 1
		}
		for {
			i = skipWS(w.src, w.value(i, act, depth+1))
			switch at(w.src, i) {
			case ',':
				i = skipWS(w.src, i+1)
			case ']':
				return i + 1
			default:
				w.bad = true
				return len(w.src)
			}
		}
	case c == '"':
		end, esc := w.stringEnd(i)
		if w.bad {
			return end
		}
		w.stringValue(i, end, esc, act)
		return end
	default:
		end := i
		for end < len(w.src) && !isJSONDelim(w.src[end]) {
			end++
		}
		if end == i {
			w.bad = true
			return len(w.src)
		}
		if act != nil && (c == '-' || isDigit(c)) {
			switch act.method {
			case mMask, mHash, mReplace:
				if w.src[i:end] != "0" {
					w.edit(i, end, zero)
					w.sc.count(act)
				}
			}
		}
		return end
	}
}

var zero = []byte("0")

func isJSONDelim(c byte) bool {
	return c == ',' || c == '}' || c == ']' || c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == ':' || c == '"'
}

// stringEnd returns the end of the string token at i (after its closing
// quote) and whether it holds escapes.
func (w *walker) stringEnd(i int) (int, bool) {
	esc := false
	for j := i + 1; j < len(w.src); j++ {
		switch w.src[j] {
		case '"':
			return j + 1, esc
		case '\\':
			esc = true
			j++
		}
	}
	w.bad = true
	return len(w.src), esc
}

// text returns the content of the string token src[start:end], unescaped
// (into sc.dec when it has escapes).
func (w *walker) text(start, end int, esc bool) string {
	s := w.src[start+1 : end-1]
	if !esc {
		return s
	}
	w.sc.dec = unescapeJSON(w.sc.dec[:0], s)
	return unsafeString(w.sc.dec)
}

// stringValue scrubs one string value.
func (w *walker) stringValue(start, end int, esc bool, act *action) {
	sc := w.sc
	text := w.text(start, end, esc)
	if act != nil && act.method != mScrub {
		out, changed := sc.wholeValue(act, text)
		if changed {
			w.editString(start, end, out)
		}
		return
	}
	if sc.scrub(text) {
		w.drop = w.drop || sc.drop
		w.editString(start, end, unsafeString(sc.out))
	}
}

// object walks an object, deciding for each member by its path (rules) and
// its name (secret and user keys).
func (w *walker) object(i int, act *action, depth int) int {
	sc := w.sc
	src := w.src
	i = skipWS(src, i+1)
	if at(src, i) == '}' {
		return i + 1
	}
	base := len(sc.path)
	prevEnd := -1 // end of the last member kept
	for {
		if at(src, i) != '"' {
			w.bad = true
			return len(src)
		}
		ks := i
		ke, kesc := w.stringEnd(i)
		if w.bad {
			return ke
		}
		name := w.text(ks, ke, kesc)
		// the member's path: the parent's, a dot, the name in lower case
		if base > 0 {
			sc.path = append(sc.path, '.')
		}
		for k := 0; k < len(name); k++ {
			sc.path = append(sc.path, lower(name[k]))
		}
		mact := act
		if mact == nil {
			mact = sc.memberAction(name, unsafeString(sc.path), w.active)
		}
		i = skipWS(src, ke)
		if at(src, i) != ':' {
			w.bad = true
			return len(src)
		}
		vs := skipWS(src, i+1)
		if mact != nil && mact.method == mDrop {
			ve := w.skipValue(vs, depth)
			sc.count(mact)
			if prevEnd >= 0 {
				w.edit(prevEnd, ve, nil)
				i = skipWS(src, ve)
			} else {
				w.edit(ks, ve, nil)
				i = skipWS(src, ve)
				if at(src, i) == ',' {
					w.edit(i, i+1, nil)
					i = skipWS(src, i+1)
					sc.path = sc.path[:base]
					continue
				}
			}
		} else {
			// a name can hold personal data too ({"jane@example.org": 3})
			if sc.scrub(name) {
				w.drop = w.drop || sc.drop
				w.editString(ks, ke, unsafeString(sc.out))
			}
			vact := mact
			if vact != nil && vact.scalarOnly && (at(src, vs) == '{') {
				vact = nil
			}
			if vact != nil && vact.method == mKeep {
				i = w.skipValue(vs, depth)
			} else {
				if vact != nil && vact.method == mScrub {
					vact = nil
				}
				i = w.value(vs, vact, depth+1)
			}
			prevEnd = i
			i = skipWS(src, i)
		}
		sc.path = sc.path[:base]
		switch at(src, i) {
		case ',':
			i = skipWS(src, i+1)
		case '}':
			return i + 1
		default:
			w.bad = true
			return len(src)
		}
	}
}

// skipValue returns the end of the value at i without changing it.
func (w *walker) skipValue(i int, depth int) int {
	src := w.src
	if depth > maxDepth {
		w.bad = true
		return len(src)
	}
	switch c := at(src, i); c {
	case '{', '[':
		open, close := c, byte('}')
		if c == '[' {
			close = ']'
		}
		n := 0
		for j := i; j < len(src); j++ {
			switch src[j] {
			case '"':
				e, _ := w.stringEnd(j)
				j = e - 1
			case open:
				n++
			case close:
				n--
				if n == 0 {
					return j + 1
				}
			}
		}
		w.bad = true
		return len(src)
	case '"':
		e, _ := w.stringEnd(i)
		return e
	}
	end := i
	for end < len(src) && !isJSONDelim(src[end]) {
		end++
	}
	if end == i {
		w.bad = true
	}
	return end
}

// unescapeJSON appends the unescaped content of a JSON string.
func unescapeJSON(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			dst = append(dst, c)
			continue
		}
		i++
		switch s[i] {
		case 'n':
			dst = append(dst, '\n')
		case 't':
			dst = append(dst, '\t')
		case 'r':
			dst = append(dst, '\r')
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'u':
			r, n := hex4(s, i+1)
			if n == 0 {
				dst = append(dst, '\\', 'u')
				continue
			}
			i += 4
			if utf16IsSurrogate(r) {
				if at(s, i+1) == '\\' && at(s, i+2) == 'u' {
					if r2, n2 := hex4(s, i+3); n2 > 0 && r2 >= 0xDC00 && r2 <= 0xDFFF && r < 0xDC00 {
						r = 0x10000 + (r-0xD800)<<10 + (r2 - 0xDC00)
						i += 6
					} else {
						r = utf8.RuneError
					}
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, s[i])
		}
	}
	return dst
}

func utf16IsSurrogate(r rune) bool { return r >= 0xD800 && r <= 0xDFFF }

func hex4(s string, i int) (rune, int) {
	if i+4 > len(s) {
		return 0, 0
	}
	var r rune
	for k := i; k < i+4; k++ {
		c := s[k]
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, 0
		}
	}
	return r, 4
}
