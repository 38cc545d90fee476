package sentry

import (
	"strconv"
	"unsafe"

	"github.com/leitstand/leitstand/collector"
)

// maxDepth bounds JSON nesting. SDKs normalise their payloads to a depth of
// about ten; the anonymizer walks raw JSON to a depth of 100, so nothing we
// accept is left for it to scrub as flat text.
const maxDepth = 64

// scanner reads JSON without building a tree: the normaliser asks for the
// members it maps and skips (validating) the rest. Strings without escapes
// point into the payload, which the batch keeps alive; unescaped strings
// and compacted raw values go into the batch's arena. The first error is
// kept and every method after it returns at once, so callers check s.err
// once per item instead of after every call.
type scanner struct {
	data  []byte
	pos   int
	depth int
	err   *syntaxError
	arena *collector.Arena
	// spaces counts the runs of insignificant whitespace passed, so mark
	// and since can tell whether a value must be compacted.
	spaces int
	// keyBuf holds an unescaped member name until the next one is read;
	// keyEscaped says the last name is there rather than in data.
	keyBuf     []byte
	keyEscaped bool
}

// syntaxError is a payload's problem and the byte offset it was found at.
type syntaxError struct {
	pos int
	msg string
}

func (e *syntaxError) Error() string {
	return e.msg + " at byte " + strconv.Itoa(e.pos+1)
}

func (s *scanner) reset(data []byte, arena *collector.Arena) {
	s.data, s.pos, s.depth, s.err, s.arena = data, 0, 0, nil, arena
}

func (s *scanner) fail(msg string) {
	if s.err == nil {
		s.err = &syntaxError{pos: s.pos, msg: msg}
	}
	s.pos = len(s.data)
}

// ws skips whitespace.
func (s *scanner) ws() {
	if s.pos >= len(s.data) {
		return
	}
	switch s.data[s.pos] {
	case ' ', '\t', '\r', '\n':
	default:
		return
	}
	s.spaces++
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\r', '\n':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the next significant byte, or 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

// end checks that nothing but whitespace follows the value just read.
func (s *scanner) end() {
	s.ws()
	if s.err == nil && s.pos != len(s.data) {
		s.fail("unexpected text after the JSON value")
	}
}

// object consumes the '{' of an object. If the value is not an object, it
// is skipped (null quietly, anything else too, reporting false) so that a
// member of an unexpected type costs nothing but its own value.
func (s *scanner) object() bool {
	if s.peek() != '{' {
		s.skip()
		return false
	}
	s.pos++
	s.depth++
	if s.depth > maxDepth {
		s.fail("JSON nested deeper than " + strconv.Itoa(maxDepth) + " levels")
		return false
	}
	return true
}

// member reads the next member name of an object opened by object and the
// colon after it. It returns false at the closing brace (which it consumes)
// or on error. first must be true for the first call on an object. The
// name is valid until the next call.
func (s *scanner) member(first *bool) ([]byte, bool) {
	if s.err != nil {
		return nil, false
	}
	c := s.peek()
	if c == '}' {
		s.pos++
		s.depth--
		return nil, false
	}
	if !*first {
		if c != ',' {
			s.fail("expected ',' or '}' after an object member")
			return nil, false
		}
		s.pos++
		c = s.peek()
	}
	*first = false
	if c != '"' {
		s.fail("expected a quoted member name")
		return nil, false
	}
	s.pos++
	start := s.pos
	var key []byte
	s.keyEscaped = false
	if end, simple := s.scanString(); simple {
		key = s.data[start:end]
	} else if s.err == nil {
		s.keyBuf = unescape(s.keyBuf[:0], s.data[start:end+1])
		key = s.keyBuf
		s.keyEscaped = true
	}
	if s.peek() != ':' {
		s.fail("expected ':' after a member name")
		return nil, false
	}
	s.pos++
	s.ws()
	return key, s.err == nil
}

// array consumes the '[' of an array; like object it skips other values.
func (s *scanner) array() bool {
	if s.peek() != '[' {
		s.skip()
		return false
	}
	s.pos++
	s.depth++
	if s.depth > maxDepth {
		s.fail("JSON nested deeper than " + strconv.Itoa(maxDepth) + " levels")
		return false
	}
	return true
}

// element moves to the next element of an array opened by array; false at
// the closing bracket (consumed) or on error.
func (s *scanner) element(first *bool) bool {
	if s.err != nil {
		return false
	}
	c := s.peek()
	if c == ']' {
		s.pos++
		s.depth--
		return false
	}
	if !*first {
		if c != ',' {
			s.fail("expected ',' or ']' after an array element")
			return false
		}
		s.pos++
		s.ws()
	}
	*first = false
	return true
}

// scanString moves past a string whose opening quote is consumed and
// returns the offset of the closing quote and whether the string has no
// escapes. It checks escapes and control characters; UTF-8 validity is
// checked once per payload.
func (s *scanner) scanString() (int, bool) {
	d := s.data
	i := s.pos
	simple := true
	for i < len(d) {
		// The common case, plain text, in a tight loop of table lookups.
		for i+4 <= len(d) && !stringStop[d[i]] && !stringStop[d[i+1]] && !stringStop[d[i+2]] && !stringStop[d[i+3]] {
			i += 4
		}
		for i < len(d) && !stringStop[d[i]] {
			i++
		}
		if i >= len(d) {
			break
		}
		c := d[i]
		if c == '"' {
			s.pos = i + 1
			return i, simple
		}
		if c == '\\' {
			simple = false
			if i+1 >= len(d) {
				break
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(d) || !isHex(d[i+2]) || !isHex(d[i+3]) || !isHex(d[i+4]) || !isHex(d[i+5]) {
					s.pos = i
					s.fail(`invalid \u escape in a string`)
					return 0, false
				}
				i += 6
			default:
				s.pos = i
				s.fail("invalid escape in a string")
				return 0, false
			}
			continue
		}
		if c < 0x20 {
			s.pos = i
			s.fail("control character in a string")
			return 0, false
		}
		i++
	}
	s.pos = len(d)
	s.fail("unterminated string")
	return 0, false
}

// stringStop marks the bytes that end a run of plain string text: the
// quote, the backslash and control characters.
var stringStop = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// unescape appends the value of a string that scanString has checked;
// quoted is its body and closing quote.
func unescape(dst, quoted []byte) []byte {
	dst, _, _ = collector.AppendUnescapedJSONString(dst, quoted)
	return dst
}

// view returns p as a string without copying; p points into the payload,
// which lives as long as the batch.
func view(p []byte) string {
	if len(p) == 0 {
		return ""
	}
	return unsafe.String(&p[0], len(p))
}

// str reads a string value. Numbers and booleans come back as their text
// (tags and attributes are often numbers); null, objects and arrays give
// false, and are skipped.
func (s *scanner) str() (string, bool) {
	switch c := s.peek(); {
	case c == '"':
		s.pos++
		start := s.pos
		end, simple := s.scanString()
		if s.err != nil {
			return "", false
		}
		if simple {
			return view(s.data[start:end]), true
		}
		buf := s.arena.Builder(end - start)
		return s.arena.Commit(unescape(buf, s.data[start:end+1])), true
	case c == '-' || c >= '0' && c <= '9' || c == 't' || c == 'f':
		start := s.pos
		s.skip()
		return view(s.data[start:s.pos]), s.err == nil
	}
	s.skip()
	return "", false
}

// number reads a number value as its JSON text; other values are skipped.
func (s *scanner) number() (string, bool) {
	if c := s.peek(); c == '-' || c >= '0' && c <= '9' {
		start := s.pos
		s.numberLit()
		return view(s.data[start:s.pos]), s.err == nil
	}
	s.skip()
	return "", false
}

// boolean reads true or false; other values are skipped.
func (s *scanner) boolean() (bool, bool) {
	switch s.peek() {
	case 't':
		s.literal("true")
		return true, s.err == nil
	case 'f':
		s.literal("false")
		return false, s.err == nil
	}
	s.skip()
	return false, false
}

// raw reads any value and returns its JSON text, compacted when it held
// insignificant whitespace (a raw field must be one line of NDJSON).
func (s *scanner) raw() string {
	start, spaces := s.mark()
	s.skip()
	return s.since(start, spaces)
}

// mark is where a value starts, for since.
func (s *scanner) mark() (int, int) {
	s.ws()
	return s.pos, s.spaces
}

// since returns the JSON text read since mark, compacted when needed.
func (s *scanner) since(start, spaces int) string {
	if s.err != nil || s.pos <= start {
		return ""
	}
	p := s.data[start:s.pos]
	if s.spaces == spaces {
		return view(p)
	}
	return s.arena.Commit(compact(s.arena.Builder(len(p)), p))
}

// stableKey returns a member name that stays valid after the next member
// is read.
func (s *scanner) stableKey(k []byte) string {
	if s.keyEscaped {
		return s.arena.String(k)
	}
	return view(k)
}

// compact appends p without whitespace outside strings.
func compact(dst, p []byte) []byte {
	in := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		if in {
			dst = append(dst, c)
			switch c {
			case '\\':
				i++
				dst = append(dst, p[i])
			case '"':
				in = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '"':
			in = true
		}
		dst = append(dst, c)
	}
	return dst
}

// skip validates and skips one value.
func (s *scanner) skip() {
	switch c := s.peek(); {
	case c == '"':
		s.pos++
		s.scanString()
	case c == '{':
		if !s.object() {
			return
		}
		first := true
		for _, ok := s.member(&first); ok; _, ok = s.member(&first) {
			s.skip()
		}
	case c == '[':
		if !s.array() {
			return
		}
		first := true
		for s.element(&first) {
			s.skip()
		}
	case c == 't':
		s.literal("true")
	case c == 'f':
		s.literal("false")
	case c == 'n':
		s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		s.numberLit()
	case c == 0 && s.pos >= len(s.data):
		s.fail("unexpected end of JSON, expected a value")
	default:
		s.fail("invalid JSON value")
	}
}

// null consumes a null and reports whether there was one.
func (s *scanner) null() bool {
	if s.peek() == 'n' {
		s.literal("null")
		return true
	}
	return false
}

func (s *scanner) literal(lit string) {
	if len(s.data)-s.pos >= len(lit) && string(s.data[s.pos:s.pos+len(lit)]) == lit {
		s.pos += len(lit)
		return
	}
	s.fail("invalid literal")
}

func (s *scanner) numberLit() {
	d := s.data
	p := s.pos
	if p < len(d) && d[p] == '-' {
		p++
	}
	first := p
	for p < len(d) && d[p] >= '0' && d[p] <= '9' {
		p++
	}
	if p == first || p-first > 1 && d[first] == '0' {
		s.pos = first
		s.fail("invalid number")
		return
	}
	if p < len(d) && d[p] == '.' {
		p++
		f := p
		for p < len(d) && d[p] >= '0' && d[p] <= '9' {
			p++
		}
		if p == f {
			s.pos = p
			s.fail("invalid number")
			return
		}
	}
	if p < len(d) && (d[p] == 'e' || d[p] == 'E') {
		p++
		if p < len(d) && (d[p] == '+' || d[p] == '-') {
			p++
		}
		f := p
		for p < len(d) && d[p] >= '0' && d[p] <= '9' {
			p++
		}
		if p == f {
			s.pos = p
			s.fail("invalid number")
			return
		}
	}
	s.pos = p
}
