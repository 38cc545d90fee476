package anonymize

import (
	"net/netip"
	"strings"
)

// endsWord reports whether a match may end at j: at the end of s, or before
// a byte that is not part of a word and not the start of a decimal tail.
func endsWord(s string, j int) bool {
	if j >= len(s) {
		return true
	}
	c := s[j]
	if isWord(c) {
		return false
	}
	return !(c == '.' && isDigit(at(s, j+1)))
}

// email handles an '@' (atLen 1) or a URL-encoded "%40" (atLen 3) at i:
// the local part is found by looking back, the domain by looking ahead.
func (sc *scanner) email(s string, i, atLen int) int {
	j := i
	for j > sc.floor && ctab[s[j-1]]&cLocal != 0 && s[j-1] != '%' && i-j <= 64 {
		j--
	}
	for j < i && (s[j] == '.' || s[j] == '-' || s[j] == '+') {
		j++
	}
	if j == i || i-j > 64 {
		return i
	}
	k := i + atLen
	// the domain ends after its last label that is a valid top-level
	// domain: "a@example.com.AKIA…" ends at ".com"
	labels, end, firstEnd := 0, 0, 0
	for {
		e := runEnd(s, k, cLabel)
		if e == k || e-k > 63 || s[k] == '-' {
			break
		}
		labels++
		if labels == 1 {
			firstEnd = e
		}
		label := s[k:e]
		if labels >= 2 {
			if validTLD(label) && s[e-1] != '-' {
				end = e
			} else if h := strings.IndexByte(label, '-'); h > 0 && !strings.HasPrefix(label, "xn--") && validTLD(label[:h]) {
				end = k + h // "a@example.com-----BEGIN …"
				break
			}
		}
		if at(s, e) == '.' && ctab[at(s, e+1)]&cLabel != 0 {
			k = e + 1
			continue
		}
		break
	}
	if end == 0 {
		return i
	}
	// "logo@2x.png": an image density suffix, not an address
	if first := s[i+atLen : firstEnd]; len(first) >= 2 && first[len(first)-1] == 'x' && allDigits(first[:len(first)-1]) {
		return i
	}
	// hash the address as it is written unencoded and in lower case, so one
	// address gives one pseudonym wherever and however it appears
	n := sc.tmp[:0]
	for p := j; p < end; p++ {
		if p == i && atLen == 3 {
			n = append(n, '@')
			p += 2
			continue
		}
		n = append(n, lower(s[p]))
	}
	sc.tmp = n
	sc.replace(s, j, end, &sc.a.det[detEmail], n)
	return end
}

func validTLD(t string) bool {
	if len(t) < 2 {
		return false
	}
	if strings.HasPrefix(t, "xn--") {
		return true
	}
	for i := 0; i < len(t); i++ {
		if !isAlpha(t[i]) && t[i] < 0x80 {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return len(s) > 0
}

// parseIPv4 reads a dotted quad at i (no leading zeros) and returns its end.
func parseIPv4(s string, i int) (int, bool) {
	j := i
	for part := 0; part < 4; part++ {
		if part > 0 {
			if at(s, j) != '.' {
				return 0, false
			}
			j++
		}
		d := digitsEnd(s, j)
		n := d - j
		if n == 0 || n > 3 || n > 1 && s[j] == '0' {
			return 0, false
		}
		v := 0
		for k := j; k < d; k++ {
			v = v*10 + int(s[k]-'0')
		}
		if v > 255 {
			return 0, false
		}
		j = d
	}
	return j, true
}

func (sc *scanner) ipv4(s string, i int) int {
	end, ok := parseIPv4(s, i)
	if !ok || !endsWord(s, end) {
		return i
	}
	if versionContext(s, i, sc.floor) {
		sc.skipTo(end)
		return end
	}
	if benignIPv4(s, i) {
		sc.skipTo(end)
	} else {
		sc.replace(s, i, end, &sc.a.det[detIP], nil)
	}
	return sc.clfUser(s, end)
}

// clfUser handles the user of a Common Log Format line ("<ip> - alice
// [22/Nov/2026:…]", nginx's and Apache's access log) after the address
// that ends at i, and returns where to go on.
func (sc *scanner) clfUser(s string, i int) int {
	if !sc.a.on[detUser] || !strings.HasPrefix(s[i:], " - ") {
		return i
	}
	j := i + 3
	e := j
	for e < len(s) && s[e] != ' ' && s[e] != '[' && s[e] != '"' && e-j <= 128 {
		e++
	}
	if e == j || at(s, e) != ' ' || at(s, e+1) != '[' || e-j > 128 || s[j:e] == "-" {
		return i
	}
	v := s[j:e]
	if sc.alreadyScrubbed(v) || sc.a.keys.system[sc.lowerString(v)] {
		sc.skipTo(e)
		return e
	}
	sc.replace(s, j, e, &sc.a.det[detUser], nil)
	return e
}

// benignIPv4: loopback, "this network" and 255.x (netmasks, broadcast)
// identify no one.
func benignIPv4(s string, i int) bool {
	return strings.HasPrefix(s[i:], "127.") || strings.HasPrefix(s[i:], "0.") || strings.HasPrefix(s[i:], "255.")
}

// versionWords are words after which a dotted quad is a version number.
var versionWords = map[string]bool{
	"version": true, "ver": true, "vers": true, "v": true, "release": true,
	"build": true, "firmware": true, "fw": true, "kernel": true,
	"revision": true, "rev": true,
}

// versionContext reports whether the dotted quad at i reads as a version:
// after a word such as "version" ("version 1.2.3.4", "Version: 1.2.3.4")
// or as the version of a product token ("Chrome/120.0.6099.1").
func versionContext(s string, i, floor int) bool {
	j := i
	if j > floor && s[j-1] == '/' && j-1 > floor && isAlpha(s[j-2]) {
		k := j - 2
		for k > floor && isAlnum(s[k-1]) {
			k--
		}
		return k == 0 || s[k-1] == ' ' || s[k-1] == '(' || s[k-1] == '"'
	}
	for n := 0; j > floor && n < 3; n++ {
		if c := s[j-1]; c == ' ' || c == '=' || c == ':' || c == '"' || c == '\'' || c == '\t' {
			j--
			continue
		}
		break
	}
	if j == i {
		return false
	}
	k := j
	for k > floor && isAlpha(s[k-1]) && j-k <= 8 {
		k--
	}
	if k == j || j-k > 8 {
		return false
	}
	var b [8]byte
	for p := k; p < j; p++ {
		b[p-k] = lower(s[p])
	}
	return versionWords[string(b[:j-k])]
}

// ipv6End reads an IPv6 address at i (which may start with "::") and returns
// its end, or -1. It accepts what netip accepts, requires a digit (so that
// "add::bad" in a code path is no address) and ends before a zone or port.
// A last group that runs on into a word ("1111::ffff:AKIA…") is not part
// of the address.
func ipv6End(s string, i int) int {
	type state struct {
		j, groups     int
		double, digit bool
	}
	st := state{j: i}
	if at(s, i) == ':' {
		if at(s, i+1) != ':' {
			return -1
		}
		st.double = true
		st.j = i + 2
	}
	prev := st
	ok := func(st state) bool {
		return st.digit && st.groups > 0 && st.groups <= 8 && (st.groups == 8) != st.double
	}
	for {
		j := st.j
		h := j
		for h < len(s) && h-j < 5 && isHex(s[h]) {
			h++
		}
		n := h - j
		if n == 0 {
			break
		}
		if n > 4 {
			st = prev
			break
		}
		next := st
		if at(s, h) == '.' {
			e, good := parseIPv4(s, j)
			if !good || st.groups > 6 {
				st = prev
				break
			}
			next.groups += 2
			next.j = e
			next.digit = true
			st = next
			break
		}
		for k := j; k < h; k++ {
			if isDigit(s[k]) {
				next.digit = true
			}
		}
		next.groups++
		next.j = h
		if isWord(at(s, h)) {
			st = prev
			break
		}
		prev, st = next, next
		if at(s, h) != ':' {
			break
		}
		if at(s, h+1) == ':' {
			if st.double {
				break
			}
			st.double = true
			st.j = h + 2
			prev = st
			continue
		}
		if isHex(at(s, h+1)) {
			st.j = h + 1
			continue
		}
		break
	}
	if !ok(st) {
		return -1
	}
	if c := at(s, st.j); isWord(c) || c == '.' && isDigit(at(s, st.j+1)) {
		return -1
	}
	return st.j
}

func (sc *scanner) ipv6(s string, i int) int {
	end := ipv6End(s, i)
	if end < 0 {
		return i
	}
	addr, err := netip.ParseAddr(s[i:end])
	if err != nil {
		return i
	}
	if addr.IsLoopback() || addr.IsUnspecified() || addr.Is4In6() && benignIPv4(addr.Unmap().String(), 0) {
		sc.skipTo(end)
	} else {
		sc.replace(s, i, end, &sc.a.det[detIP], nil)
	}
	return sc.clfUser(s, end)
}

// appendTruncatedIP appends the address ip with its host part zeroed.
func (a *Anonymizer) appendTruncatedIP(dst []byte, ip string) ([]byte, bool) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return dst, false
	}
	var p netip.Prefix
	switch {
	case addr.Is4():
		p, err = addr.Prefix(a.v4bits)
	case addr.Is4In6():
		p, err = addr.Prefix(96 + a.v4bits)
	default:
		p, err = addr.WithZone("").Prefix(a.v6bits)
	}
	if err != nil {
		return dst, false
	}
	return p.Addr().AppendTo(dst), true
}

// macEnd reads a MAC address at i: six colon- or dash-separated hex pairs
// (also eight, EUI-64, and fourteen, as iptables logs MAC= with both
// addresses and the type), or three dot-separated hex quads (Cisco).
func macEnd(s string, i int) int {
	if isHex(at(s, i)) && isHex(at(s, i+1)) {
		if sep := at(s, i+2); sep == ':' || sep == '-' {
			groups, j := 1, i+2
			for at(s, j) == sep && isHex(at(s, j+1)) && isHex(at(s, j+2)) && !isHex(at(s, j+3)) {
				groups++
				j += 3
			}
			// a seventh group would make it something else; a word after
			// the separator ("…:5e:AKIA…") does not
			if (groups == 6 || groups == 8 || groups == 14) && !isWord(at(s, j)) && !(at(s, j) == sep && isHex(at(s, j+1)) && !isWord(at(s, runEnd(s, j+1, cHex)))) {
				return j
			}
			return -1
		}
	}
	j := i
	for g := 0; g < 3; g++ {
		if g > 0 {
			if at(s, j) != '.' {
				return -1
			}
			j++
		}
		for k := 0; k < 4; k++ {
			if !isHex(at(s, j)) {
				return -1
			}
			j++
		}
	}
	if !endsWord(s, j) || at(s, j) == '.' && isHex(at(s, j+1)) {
		return -1
	}
	return j
}

func (sc *scanner) mac(s string, i int) int {
	end := macEnd(s, i)
	if end < 0 {
		return i
	}
	// all zeros and all ones are placeholders and broadcast, not devices
	zero, ones := true, true
	for k := i; k < end; k++ {
		if c := lower(s[k]); isHex(c) {
			zero = zero && c == '0'
			ones = ones && c == 'f'
		}
	}
	if zero || ones {
		sc.skipTo(end)
		return end
	}
	sc.replace(s, i, end, &sc.a.det[detMAC], nil)
	return end
}

// uuidEnd returns the end of a UUID (8-4-4-4-12 hex digits) at i, or -1.
func uuidEnd(s string, i int) int {
	j := i
	for g, n := range [5]int{8, 4, 4, 4, 12} {
		if g > 0 {
			if at(s, j) != '-' {
				return -1
			}
			j++
		}
		for k := 0; k < n; k++ {
			if !isHex(at(s, j)) {
				return -1
			}
			j++
		}
	}
	if isWord(at(s, j)) {
		return -1
	}
	return j
}

// urlCredentials handles "://" at i: the user:password before the host.
func (sc *scanner) urlCredentials(s string, i int) int {
	j := i
	for j > sc.floor && (isAlnum(s[j-1]) || s[j-1] == '+' || s[j-1] == '.' || s[j-1] == '-') && i-j <= 32 {
		j--
	}
	if j == i || !isAlpha(s[j]) {
		return i
	}
	k := i + 3
	colon, lastAt := -1, -1
	for e := k; e < len(s) && e-k < 512; e++ {
		c := s[e]
		if c == '@' {
			lastAt = e
			continue
		}
		if c == ':' && colon < 0 {
			colon = e
		}
		// '?' and '#' belong to the query and fragment, but a password
		// written into a DSN by hand may hold them: an '@' before the first
		// '/' still ends the credentials
		if c == '/' || c <= ' ' || c == '"' || c == '\'' || c == '<' || c == '>' || c == '\\' {
			break
		}
	}
	if lastAt < 0 || colon < 0 || colon > lastAt || lastAt == k {
		return i
	}
	if sc.alreadyScrubbed(s[k:lastAt]) {
		// "scheme://email:k1:…@host": a pseudonym holds colons too
		sc.skipTo(lastAt)
		return lastAt
	}
	sc.replace(s, k, lastAt, &sc.a.det[detURLCredentials], nil)
	return lastAt
}
