package anonymize

import "strings"

// jwt reads a JSON Web Token at i: "eyJ" header, '.', "eyJ" payload, '.',
// signature (which may be empty for alg none).
func (sc *scanner) jwt(s string, i int) int {
	j := runEnd(s, i, cB64)
	if j-i < 10 || at(s, j) != '.' || !strings.HasPrefix(s[j+1:], "eyJ") {
		return i
	}
	k := runEnd(s, j+1, cB64)
	if k-(j+1) < 10 || at(s, k) != '.' {
		return i
	}
	end := runEnd(s, k+1, cB64)
	if isWord(at(s, end)) {
		return i
	}
	sc.replace(s, i, end, &sc.a.det[detJWT], nil)
	return end
}

// authScheme reads "Bearer <token>" or "Basic <credentials>" at i and
// replaces the credential, keeping the scheme. A bearer token must look like
// one (at least 12 characters with a digit, or 20); basic credentials must
// decode to "user:password", so "Basic auth failed" is left alone.
func (sc *scanner) authScheme(s string, i int) int {
	var j int
	basic := false
	switch {
	case hasPrefixFold(s, i, "bearer"):
		j = i + 6
	case hasPrefixFold(s, i, "basic"):
		j, basic = i+5, true
	default:
		return i
	}
	if at(s, j) != ' ' {
		return i
	}
	for at(s, j) == ' ' && j-i < 12 {
		j++
	}
	cls := cTok
	if basic {
		cls = cB64Std
	}
	e := runEnd(s, j, cls)
	for at(s, e) == '=' && e-j < 4096 {
		e++
	}
	// '=' padding ends a credential even when a word follows it
	if e == j || isWord(at(s, e)) && s[e-1] != '=' || basic && at(s, e) == '-' && at(s, e+1) != '-' {
		return i
	}
	tok := s[j:e]
	if basic {
		if len(tok) < 8 || !basicCredentials(tok) {
			return i
		}
	} else if len(tok) < 12 || len(tok) < 20 && countDigits(tok) == 0 {
		return i
	}
	sc.replace(s, j, e, &sc.a.det[detCredential], nil)
	return e
}

// basicCredentials reports whether t is standard base64 of printable text
// that holds a ':', as "user:password" does.
func basicCredentials(t string) bool {
	var acc uint32
	bits, colon := 0, false
	for i := 0; i < len(t); i++ {
		c := t[i]
		var v byte
		switch {
		case c >= 'A' && c <= 'Z':
			v = c - 'A'
		case c >= 'a' && c <= 'z':
			v = c - 'a' + 26
		case c >= '0' && c <= '9':
			v = c - '0' + 52
		case c == '+':
			v = 62
		case c == '/':
			v = 63
		case c == '=':
			return colon && i >= len(t)-2
		default:
			return false
		}
		acc = acc<<6 | uint32(v)
		bits += 6
		if bits >= 8 {
			bits -= 8
			b := byte(acc >> bits)
			if b < 0x20 || b == 0x7f {
				return false
			}
			colon = colon || b == ':'
		}
	}
	return colon
}

// keyPrefix describes one kind of API key: a literal prefix, then a run of
// one character class whose length lies in [min, max].
type keyPrefix struct {
	prefix   string
	cls      uint16
	min, max int
}

// apiKeyPrefixes are the API keys recognised by their prefix, indexed by
// their first byte so a word start costs one table load.
var apiKeyPrefixes = func() (t [256][]keyPrefix) {
	const alnum = cDigit | cAlpha
	for _, k := range []keyPrefix{
		// AWS access key ids (and other AWS unique ids)
		{"AKIA", cUpDig, 16, 16}, {"ASIA", cUpDig, 16, 16}, {"ABIA", cUpDig, 16, 16},
		{"ACCA", cUpDig, 16, 16}, {"AGPA", cUpDig, 16, 16}, {"AIDA", cUpDig, 16, 16},
		{"AIPA", cUpDig, 16, 16}, {"ANPA", cUpDig, 16, 16}, {"ANVA", cUpDig, 16, 16},
		{"AROA", cUpDig, 16, 16}, {"APKA", cUpDig, 16, 16},
		// Google API keys and OAuth access tokens
		{"AIza", cB64, 35, 35}, {"ya29.", cTok, 20, 4096},
		// GitHub
		{"ghp_", alnum, 36, 36}, {"gho_", alnum, 36, 36}, {"ghu_", alnum, 36, 36},
		{"ghs_", alnum, 36, 36}, {"ghr_", alnum, 36, 36}, {"github_pat_", cB64, 22, 255},
		// GitLab
		{"glpat-", cB64, 20, 64}, {"gldt-", cB64, 20, 64}, {"glrt-", cB64, 20, 64},
		// Slack
		{"xoxb-", cB64, 10, 255}, {"xoxp-", cB64, 10, 255}, {"xoxa-", cB64, 10, 255},
		{"xoxr-", cB64, 10, 255}, {"xoxs-", cB64, 10, 255}, {"xoxe-", cB64, 10, 255},
		{"xapp-", cB64, 10, 255},
		// Stripe (secret and restricted keys, webhook secrets)
		{"sk_live_", alnum, 16, 255}, {"rk_live_", alnum, 16, 255},
		{"sk_test_", alnum, 16, 255}, {"rk_test_", alnum, 16, 255}, {"whsec_", alnum, 24, 255},
		// OpenAI, Anthropic
		{"sk-proj-", cB64, 20, 255}, {"sk-ant-", cB64, 32, 255}, {"sk-", alnum, 32, 64},
		// SendGrid, npm, PyPI, Hugging Face, DigitalOcean, Shopify, Mailgun
		{"SG.", cTok, 60, 80}, {"npm_", alnum, 36, 36}, {"pypi-", cB64, 50, 255},
		{"hf_", alnum, 30, 40}, {"dop_v1_", cHex, 64, 64}, {"doo_v1_", cHex, 64, 64},
		{"shpat_", cHex, 32, 32}, {"shpss_", cHex, 32, 32}, {"shpca_", cHex, 32, 32},
		{"key-", cHex, 32, 32},
	} {
		t[k.prefix[0]] = append(t[k.prefix[0]], k)
	}
	return t
}()

// apiKeyStart has, for each first byte of a prefix, the bits of its second
// bytes (mod 64): a filter that most words fail after two loads.
var apiKeyStart = func() (t [256]uint64) {
	for c, list := range apiKeyPrefixes {
		for _, k := range list {
			t[c] |= 1 << (k.prefix[1] & 63)
		}
	}
	return t
}()

func (sc *scanner) apiKey(s string, i int) int {
	for _, k := range apiKeyPrefixes[s[i]] {
		if !strings.HasPrefix(s[i:], k.prefix) {
			continue
		}
		j := i + len(k.prefix)
		e := runEnd(s, j, k.cls)
		if n := e - j; n < k.min || n > k.max || isWord(at(s, e)) {
			continue
		}
		sc.replace(s, i, e, &sc.a.det[detAPIKey], nil)
		return e
	}
	return i
}

// maxPEM bounds how far the END line of a private key block is looked for.
const maxPEM = 32 << 10

// pem handles "-----BEGIN … PRIVATE KEY-----" at i: the whole block up to
// its END line, or to the end of the key material when the END is cut off.
func (sc *scanner) pem(s string, i int) int {
	if !strings.HasPrefix(s[i:], "-----BEGIN ") {
		return i
	}
	j := i + 11
	h := strings.Index(s[j:min(len(s), j+48)], "-----")
	if h < 0 {
		return i
	}
	label := s[j : j+h]
	if !strings.HasSuffix(label, "PRIVATE KEY") && !strings.HasSuffix(label, "PRIVATE KEY BLOCK") {
		return i
	}
	k := j + h + 5
	end := -1
	// a key block is a few KiB; looking further would make a text of many
	// BEGIN lines without END quadratic
	if e := strings.Index(s[k:min(len(s), k+maxPEM)], "-----END "); e >= 0 {
		f := k + e + 9
		if g := strings.Index(s[f:min(len(s), f+48)], "-----"); g >= 0 {
			end = f + g + 5
		}
	}
	if end < 0 {
		end = k
		for end < len(s) {
			c := s[end]
			if ctab[c]&cB64Std != 0 || c == '=' || c == '\n' || c == '\r' || c == ' ' || c == '\\' || c == ':' || c == '-' || c == ',' {
				end++
				continue
			}
			break
		}
	}
	sc.replace(s, i, end, &sc.a.det[detPrivateKey], nil)
	return end
}

// homeSlash handles "/home/<user>" and "/Users/<user>" (also after "C:")
// at the start of a path.
func (sc *scanner) homeSlash(s string, i int) int {
	var p int
	switch {
	case strings.HasPrefix(s[i:], "/home/"):
		p = i + 6
	case strings.HasPrefix(s[i:], "/Users/"):
		p = i + 7
	default:
		return i
	}
	if i > 0 && i != sc.floor {
		// inside a URL or a longer path ("/srv/home/x", "example.com/home/x")
		c := s[i-1]
		if isWord(c) || c == '.' || c == '-' || c == '_' || c == '~' || c == ']' || c == '/' && !strings.HasSuffix(s[:i], "file://") {
			return i
		}
	}
	e := p
	for e < len(s) && (isWord(s[e]) || s[e] == '.' || s[e] == '_' || s[e] == '-') && e-p <= 64 {
		e++
	}
	if e == p || e-p > 64 {
		return i
	}
	if benignHome(s[p:e]) {
		sc.skipTo(e)
		return e
	}
	sc.replace(s, p, e, &sc.a.det[detHomePath], nil)
	return e
}

// homeBackslash handles "X:\Users\<user>", also JSON-escaped
// ("C:\\Users\\max"); a name with spaces counts up to the next backslash.
func (sc *scanner) homeBackslash(s string, i int) int {
	if i < 2 || s[i-1] != ':' || !isAlpha(s[i-2]) {
		return i
	}
	j := i
	for at(s, j) == '\\' && j-i < 2 {
		j++
	}
	if !hasPrefixFold(s, j, "users") {
		return i
	}
	j += 5
	p := j
	for at(s, p) == '\\' && p-j < 2 {
		p++
	}
	if p == j {
		return i
	}
	name := func(space bool) int {
		e := p
		for e < len(s) && e-p <= 64 && (isWord(s[e]) || s[e] == '.' || s[e] == '_' || s[e] == '-' || space && s[e] == ' ') {
			e++
		}
		return e
	}
	e := name(false)
	if e2 := name(true); e2 > e && at(s, e2) == '\\' {
		e = e2
	}
	if e == p || e-p > 64 {
		return i
	}
	if benignHome(s[p:e]) {
		sc.skipTo(e)
		return e
	}
	sc.replace(s, p, e, &sc.a.det[detHomePath], nil)
	return e
}

// benignHome lists directory names under /home and C:\Users that belong to
// no person.
func benignHome(n string) bool {
	switch strings.ToLower(n) {
	case "public", "default", "default user", "all users", "shared", "defaultapppool":
		return true
	}
	return false
}

// pseudonym recognises a pseudonym this anonymizer (with any key) made,
// "<type>:<key id>:<16 base64url>", so that a second pass leaves it alone.
// Pseudonyms written back to back ("email:k1:…user:k1:…") are one run.
func (sc *scanner) pseudonym(s string, i int) int {
	for n := 0; ; n++ {
		end := sc.pseudonymAt(s, i)
		if end < 0 {
			return -1
		}
		if ctab[at(s, end)]&cB64 == 0 || n == 8 {
			return end
		}
		if sc.pseudonymAt(s, end) < 0 {
			return -1
		}
		i = end
	}
}

// pseudonymAt returns the end of the pseudonym at i (ignoring what follows
// its 16 hash characters), or -1.
func (sc *scanner) pseudonymAt(s string, i int) int {
	j := i
	for j < len(s) && (isLower(s[j]) || s[j] == '_' || isDigit(s[j])) && j-i <= 32 {
		j++
	}
	if at(s, j) != ':' || !sc.a.tags[s[i:j]] {
		return -1
	}
	k := j + 1
	e := k
	for e < len(s) && (isLower(s[e]) || isDigit(s[e])) && e-k <= 16 {
		e++
	}
	if e == k || e-k > 16 || at(s, e) != ':' {
		return -1
	}
	g := runEnd(s, e+1, cB64)
	if g-(e+1) < hashChars {
		return -1
	}
	return e + 1 + hashChars
}
