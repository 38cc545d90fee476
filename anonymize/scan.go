package anonymize

import (
	"hash"
	"strings"
)

// The value detectors, in the order of their counters.
const (
	detEmail = iota
	detIP
	detMAC
	detCard
	detIBAN
	detPhone
	detJWT
	detCredential
	detURLCredentials
	detAPIKey
	detPrivateKey
	detTaxID
	detHomePath
	detSecret
	detUser
	numDetectors
)

// detectorNames are the config keys, metric labels and scrub count names.
var detectorNames = [numDetectors]string{
	detEmail: "email", detIP: "ip", detMAC: "mac", detCard: "card",
	detIBAN: "iban", detPhone: "phone", detJWT: "jwt",
	detCredential: "credential", detURLCredentials: "url_credentials",
	detAPIKey: "api_key", detPrivateKey: "private_key", detTaxID: "tax_id",
	detHomePath: "home_path", detSecret: "secret", detUser: "user",
}

// detectorTags are the type tags of mask and hash: "[email]", "email:k1:…".
// A home directory's owner is a user name, so it shares the user tag and
// its pseudonym correlates with user=… values.
var detectorTags = [numDetectors]string{
	detEmail: "email", detIP: "ip", detMAC: "mac", detCard: "card",
	detIBAN: "iban", detPhone: "phone", detJWT: "jwt",
	detCredential: "credential", detURLCredentials: "credentials",
	detAPIKey: "api_key", detPrivateKey: "private_key", detTaxID: "tax_id",
	detHomePath: "user", detSecret: "secret", detUser: "user",
}

// method is Method as a small integer, for tables.
type method uint8

const (
	mMask method = iota
	mHash
	mTruncate
	mDrop
	mReplace
	mKeep
	mScrub
	numMethods
)

var methodNames = [numMethods]string{"mask", "hash", "truncate", "drop", "replace", "keep", "scrub"}

func parseMethod(m Method) method {
	for i, n := range methodNames {
		if string(m) == n {
			return method(i)
		}
	}
	return mMask
}

// action is what to do with a value of one type: how a detector or a rule
// replaces what it matched.
type action struct {
	method method
	mask   string // "[email]"
	repl   string // the replace method's text
	tag    string // pseudonym prefix: "email"
	count  int    // index of the type in Anonymizer.types

	scalarOnly bool // a key class: applies to strings and arrays, not objects
	skipSystem bool // a user: system accounts (root, www-data) are no one
}

// scanner is the per-call state of a scrub: output buffers, counters and the
// HMAC. Scanners are pooled; one serves one goroutine at a time.
type scanner struct {
	a *Anonymizer

	// Text scan state: s[copied:] is not yet in out; floor is the end of the
	// last match or recognised pseudonym, which no detector may reach back
	// across.
	out     []byte
	copied  int
	floor   int
	changed bool
	drop    bool // a detector whose method is drop matched
	glued   bool // a replacement touches a word or a detector's punctuation
	alt     []byte

	counts []uint32   // per event, by type
	batch  [][]uint32 // per batch, by type and method, for metrics

	hmac hash.Hash
	sum  []byte
	tmp  []byte
	dec  []byte // a JSON string, unescaped
	js   []byte // raw JSON being rebuilt
	path []byte // lower-cased path of the JSON member being walked
	key  []byte // lower-cased key being classified

	fields   map[string]*fieldInfo
	recent   [64]struct{ fi *fieldInfo }
	datasets map[string]uint64
	keyCache *[1024]keyCacheEntry
	members  map[string]memberInfo
	mkey     []byte
	hashes   *hashCache

	// found, when not nil, collects what was detected (for tests).
	found *[]detection
}

// detection is one value the detectors found, for tests.
type detection struct {
	Type  string
	Value string
}

// scan scrubs s into sc.out and reports whether the output differs from s.
// It is one pass: at every word start the first byte picks the detectors to
// try, and a few punctuation bytes ('@', ':', '=', '/', …) trigger the
// detectors that hinge on them; everything else is skipped a word at a time.
func (sc *scanner) scan(s string) bool {
	sc.out = sc.out[:0]
	sc.copied, sc.floor, sc.changed, sc.drop, sc.glued = 0, 0, false, false, false
	n := len(s)
	i := 0
	for i < n {
		c := ctab[s[i]]
		if c&(cWord|cTrig) == 0 {
			i++
			continue
		}
		if c&cWord != 0 {
			i = sc.word(s, i)
			continue
		}
		// What follows a match starts afresh, even inside a word: a second
		// pass sees the replacement there, which ends a word.
		if end := sc.trigger(s, i); end > i {
			i = end
			continue
		}
		i++
	}
	if !sc.changed {
		return false
	}
	sc.out = append(sc.out, s[sc.copied:]...)
	return true
}

// scrub scrubs s into sc.out and reports whether it changed. When a
// replacement landed glued to its neighbours ("…@b.de4111…", "x:[mac]:y"),
// a second pass could read the new text differently from the first, so
// scrub goes on until a pass changes nothing (at most four passes): what it
// returns is a fixed point, and scrubbing it again changes nothing. Text
// whose replacements stand between spaces, quotes or '=' takes one pass.
func (sc *scanner) scrub(s string) bool {
	if !sc.scan(s) {
		return false
	}
	drop := sc.drop
	for pass := 1; sc.glued && pass < 4; pass++ {
		sc.out, sc.alt = sc.alt, sc.out
		if !sc.scan(unsafeString(sc.alt)) {
			sc.out, sc.alt = sc.alt, sc.out
			break
		}
		drop = drop || sc.drop
	}
	sc.drop = drop
	return true
}

// glue reports whether c, next to a replacement, could let a detector see
// the replacement as part of something (a word, an address, a path).
func glue(c byte) bool {
	return ctab[c]&cWord != 0 || c == ':' || c == '/' || c == '.' || c == '-' || c == '_' || c == '@' || c == '%' || c == '+' || c == '\\'
}

// word handles a word starting at i and returns where to go on.
func (sc *scanner) word(s string, i int) int {
	c := s[i]
	we := runEnd(s, i+1, cWord)
	var end int
	if isDigit(c) {
		end = sc.atDigit(s, i, we)
	} else if c < 0x80 {
		end = sc.atLetter(s, i, we)
	}
	if end > i {
		return end
	}
	return we
}

// trigger handles a punctuation byte that may start or anchor a detection.
// It returns the position to go on from, or i when nothing matched.
func (sc *scanner) trigger(s string, i int) int {
	a := sc.a
	switch s[i] {
	case '@':
		if a.on[detEmail] {
			return sc.email(s, i, 1)
		}
	case '%':
		if at(s, i+1) == '4' && at(s, i+2) == '0' && a.on[detEmail] {
			return sc.email(s, i, 3)
		}
	case ':':
		if at(s, i+1) == '/' && at(s, i+2) == '/' {
			if a.on[detURLCredentials] {
				if end := sc.urlCredentials(s, i); end > i {
					return end
				}
			}
			return i + 3
		}
		if at(s, i+1) == ':' {
			if at(s, i+2) == ':' {
				// ":::" is no address; skip the colons
				e := i + 3
				for at(s, e) == ':' {
					e++
				}
				return e
			}
			if a.on[detIP] && sc.boundaryBefore(s, i) {
				if end := sc.ipv6(s, i); end > i {
					return end
				}
				if end := hexColonEnd(s, i); end > i+2 && isHex(s[i+2]) {
					sc.skipTo(end)
					return end
				}
			}
			return i + 2
		}
		return sc.keyValue(s, i)
	case '=':
		if at(s, i+1) == '=' {
			return i + 2
		}
		if p := at(s, i-1); p == '!' || p == '<' || p == '>' || p == '=' {
			return i + 1
		}
		return sc.keyValue(s, i)
	case '+':
		if a.on[detPhone] && sc.boundaryBefore(s, i) {
			return sc.phone(s, i)
		}
	case '(':
		if a.on[detPhone] {
			return sc.phone(s, i)
		}
	case '/':
		if a.on[detHomePath] {
			return sc.homeSlash(s, i)
		}
	case '\\':
		if a.on[detHomePath] {
			return sc.homeBackslash(s, i)
		}
	case '-':
		if a.on[detPrivateKey] && at(s, i+1) == '-' {
			return sc.pem(s, i)
		}
	}
	return i
}

// atDigit tries the detectors that start with a digit: IPv4, IPv6 and MAC
// addresses, UUIDs (recognised so that their digit groups are left alone),
// cards, tax ids and phone numbers.
func (sc *scanner) atDigit(s string, i, we int) int {
	a := sc.a
	// A digit run right after "<digit>." or "<digit>," is the tail of a
	// decimal number or of a longer dotted sequence (an OID, a version).
	if i >= 2 && i-2 >= sc.floor && (s[i-1] == '.' || s[i-1] == ',') && isDigit(s[i-2]) {
		return i
	}
	d := digitsEnd(s, i)
	if d-i == 2 && at(s, d) == ':' {
		// every log line has a time: "08:15:33.123", settled at once
		if end := timeEnd(s, i); end > 0 {
			sc.skipTo(end)
			return end
		}
	}
	h := runEnd(s, d, cHex)
	next := at(s, h)
	if next == ':' || next == '-' || next == '.' && h-i == 4 {
		if end := sc.hexWord(s, i, h); end != i {
			return abs(end)
		}
	}
	if h > d {
		return i // a hex word such as a digest, not a number
	}
	if next == '.' && isDigit(at(s, h+1)) {
		if a.on[detIP] && d-i <= 3 {
			if end := sc.ipv4(s, i); end > i {
				return end
			}
		}
		return i
	}
	if we > d {
		return i // "150ms", "3x": a number glued to a word is none of the below
	}
	// Cheap shape tests before the detectors: a card has 13 or more digits
	// or starts with a group of four; a tax id has 11 or starts with two; a
	// phone number here starts with 0 or is 3-3-4.
	n := d - i
	sep := next == ' ' || next == '-' || next == '/'
	if a.on[detCard] && (n >= 13 || n == 4 && sep) {
		if end := sc.card(s, i); end > i {
			return end
		}
	}
	if a.on[detTaxID] && (n == 11 || n == 2 && next == ' ') {
		if end := sc.taxID(s, i); end > i {
			return end
		}
	}
	if a.on[detPhone] && (s[i] == '0' && (n >= 9 || sep || next == '(') || n == 3 && next == '-') {
		if end := sc.phone(s, i); end > i {
			return end
		}
	}
	return i
}

// timeEnd returns the end of a time of day at i, "HH:MM", "HH:MM:SS" with
// an optional fraction, or -1. Hex digits or another colon after it make
// it something else (a MAC or IPv6 address).
func timeEnd(s string, i int) int {
	j := i + 2
	for groups := 1; groups < 3 && at(s, j) == ':' && isDigit(at(s, j+1)) && isDigit(at(s, j+2)); groups++ {
		j += 3
	}
	if j == i+2 {
		return -1
	}
	if c := at(s, j); (c == '.' || c == ',') && isDigit(at(s, j+1)) {
		j = digitsEnd(s, j+1)
	}
	if c := at(s, j); isHex(c) || c == ':' || c == '.' && isDigit(at(s, j+1)) {
		return -1
	}
	return j
}

func abs(i int) int {
	if i < 0 {
		return -i
	}
	return i
}

// hexWord tries what starts with a run of hex digits followed by ':', '-'
// or '.': a UUID (skipped, returned as its negated end), a MAC or an IPv6
// address. h is the end of the hex run.
func (sc *scanner) hexWord(s string, i, h int) int {
	if h-i == 8 && at(s, h) == '-' {
		if end := uuidEnd(s, i); end > 0 {
			sc.skipTo(end)
			return -end
		}
	}
	if sc.a.on[detMAC] {
		if end := sc.mac(s, i); end > i {
			return end
		}
	}
	if at(s, h) == ':' && sc.a.on[detIP] {
		if h-i <= 4 {
			if end := sc.ipv6(s, i); end > i {
				return end
			}
		}
		// A run of hex digits and colons that is no address as a whole
		// ("12:30:45", "a:b:c:d:e:f:0:1:2") is settled as a whole: taking
		// an address out of its middle would not survive a second pass.
		if end := hexColonEnd(s, i); end > h+1 {
			sc.skipTo(end)
			return -end
		}
	}
	return i
}

// hexColonEnd returns the end of the run of hex digits, colons and dotted
// decimals that starts at i.
func hexColonEnd(s string, i int) int {
	j := i
	for j < len(s) {
		c := s[j]
		if isHex(c) || c == ':' || c == '.' && isDigit(at(s, j+1)) && j > i && isDigit(s[j-1]) {
			j++
			continue
		}
		break
	}
	if j < len(s) && j > i && isWord(s[j]) && isWord(s[j-1]) {
		// the last group runs on into a word ("::ffff:email:…"): leave
		// that word to be a word of its own
		for j > i && s[j-1] != ':' {
			j--
		}
	}
	for j > i && s[j-1] == ':' {
		j--
	}
	return j
}

// atLetter tries the detectors that start with a letter.
func (sc *scanner) atLetter(s string, i, we int) int {
	a := sc.a
	c := s[i]
	if isLower(c) && (at(s, we) == ':' || at(s, we) == '_') {
		if end := sc.pseudonym(s, i); end > i {
			sc.skipTo(end)
			return end
		}
	}
	switch c {
	case 'e':
		if a.on[detJWT] && at(s, i+1) == 'y' && at(s, i+2) == 'J' {
			if end := sc.jwt(s, i); end > i {
				return end
			}
		}
	case 'B', 'b':
		if a.on[detCredential] {
			if end := sc.authScheme(s, i); end > i {
				return end
			}
		}
	}
	if a.on[detAPIKey] && apiKeyStart[c]&(1<<(at(s, i+1)&63)) != 0 {
		if end := sc.apiKey(s, i); end > i {
			return end
		}
	}
	if a.on[detIBAN] && isAlpha(at(s, i+1)) && isDigit(at(s, i+2)) && isDigit(at(s, i+3)) {
		if end := sc.iban(s, i); end > i {
			return end
		}
	}
	if isHex(c) {
		h := runEnd(s, i, cHex)
		if next := at(s, h); next == ':' || next == '-' || next == '.' {
			if end := sc.hexWord(s, i, h); end != i {
				return abs(end)
			}
		}
	}
	return i
}

// boundaryBefore reports whether a detection may start at i: at the start,
// after a byte that is no word byte, or right after a match, whose
// replacement the next pass will see instead of the original's last byte.
func (sc *scanner) boundaryBefore(s string, i int) bool {
	return i == 0 || i == sc.floor || !isWord(s[i-1])
}

// skipTo marks s[:end] as settled: nothing may reach back into it.
func (sc *scanner) skipTo(end int) {
	if end > sc.floor {
		sc.floor = end
	}
}

// replace emits the replacement of s[start:end] by act and moves past it.
// norm, when not nil, is the value to hash instead of s[start:end].
func (sc *scanner) replace(s string, start, end int, act *action, norm []byte) {
	orig := s[start:end]
	mark := len(sc.out)
	sc.out = append(sc.out, s[sc.copied:start]...)
	base := len(sc.out)
	sc.out = sc.appendAction(sc.out, act, orig, norm)
	if string(sc.out[base:]) == orig {
		sc.out = sc.out[:mark] // truncating an already truncated address
		sc.skipTo(end)
		return
	}
	sc.copied = end
	sc.skipTo(end)
	sc.changed = true
	if start > 0 && glue(s[start-1]) || end < len(s) && glue(s[end]) && !(s[end] == ':' && isDigit(at(s, end+1))) {
		sc.glued = true
	}
	if act.method == mDrop {
		sc.drop = true
	}
	sc.count(act)
	if sc.found != nil {
		*sc.found = append(*sc.found, detection{Type: sc.a.types[act.count], Value: strings.Clone(orig)})
	}
}

// appendAction appends what act makes of the value orig (hashing norm
// instead when it is not nil).
func (sc *scanner) appendAction(dst []byte, act *action, orig string, norm []byte) []byte {
	switch act.method {
	case mHash:
		return sc.appendHash(dst, act.tag, orig, norm)
	case mReplace:
		return append(dst, act.repl...)
	case mTruncate:
		if out, ok := sc.a.appendTruncatedIP(dst, orig); ok {
			return out
		}
		return append(dst, act.mask...)
	default: // mask, and drop where there is no field to drop
		return append(dst, act.mask...)
	}
}

// count records one value scrubbed by act, for the event and the batch.
func (sc *scanner) count(act *action) {
	sc.counts[act.count]++
	sc.batch[act.count][act.method]++
}
