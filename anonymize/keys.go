package anonymize

import "strings"

// keyClass says what a key's name tells about its value.
type keyClass uint8

const (
	kSecret keyClass = 1 << iota // the value is a secret, whatever it looks like
	kWeak                        // …but after "name: " in running text only if it looks like one
	kLine                        // after "name:" the value runs to the end of the line (headers)
	kUser                        // the value is a user name or id
	kAuth                        // after "name:" the value is a scheme and a credential
)

// Built-in key words. Keys are split into lower-case words at '_', '-',
// '.', other punctuation and camelCase humps ("X-Api-Key" → x api key,
// "accessToken" → access token) before they are looked up.
var (
	// secretAnyWord: a key with one of these words anywhere is secret.
	secretAnyWord = []string{
		"password", "passwords", "passwd", "passwort", "kennwort", "passphrase",
		"secret", "secrets", "credential", "credentials", "creds",
		"apikey", "apikeys", "privatekey", "secretkey", "accesskey", "accountkey",
		"authorization", "sessionid", "sessid", "phpsessid", "jsessionid", "aspsessionid",
		"csrftoken", "xsrftoken", "authtoken", "accesstoken", "refreshtoken", "idtoken",
		"ssn", "pwd",
	}
	// secretLastWord: a key whose last word is one of these is secret; they
	// are common words, so running text needs a secret-looking value.
	secretLastWord = []string{
		"token", "auth", "session", "cookie", "cookies", "pass", "sid", "otp",
		"signature", "sig", "bearer", "dsn", "pin",
	}
	// secretPairs: a key ending in one of these word pairs is secret.
	secretPairs = []string{
		"api_key", "private_key", "secret_key", "access_key", "account_key", "session_id",
		"session_key", "auth_key", "signing_key", "encryption_key", "master_key", "app_key",
		"client_key", "shared_key", "ssh_key", "deploy_key", "webhook_key", "license_key",
		"set_cookie", "x_api", "api_token", "pin_code",
	}
	// secretSubstrings: a word containing one of these is secret
	// ("pgpassword", "mysqlpasswd").
	secretSubstrings = []string{"password", "passwd", "passwort", "kennwort"}
	// lineKeys: header names whose value runs to the end of the line.
	lineKeys = []string{"cookie", "set_cookie"}
	// userLastWord and userPairs name keys whose value is a user.
	userLastWord = []string{"user", "username", "userid", "benutzer", "benutzername", "fullname", "firstname", "lastname", "vorname", "nachname", "holder", "cardholder", "kontoinhaber", "inhaber"}
	userPairs    = []string{"user_id", "user_name", "full_name", "first_name", "last_name", "remote_user", "customer_id", "login_name", "user_login", "customer_name", "account_holder", "card_holder"}
	// systemUsers are accounts of no person; a user key with one of them as
	// its value is left alone.
	systemUsers = []string{
		"root", "nobody", "daemon", "bin", "sys", "www-data", "www", "nginx", "apache",
		"postgres", "mysql", "redis", "system", "admin", "administrator", "anonymous",
		"guest", "unknown", "none", "null", "nil", "true", "false", "sshd", "syslog",
		"-", "n/a",
	}
)

// Word flags in keyTable.words.
const (
	wAny      uint8 = 1 << iota // secret anywhere in a key
	wLast                       // secret as a key's last word
	wPairTail                   // the last word of some pair: look the pair up
	wPair                       // a secret pair ("api_key")
	wUserLast                   // a user as a key's last word
	wUserPair                   // a user pair ("user_id")
	wLine                       // a header whose value runs to the end of the line
)

// keyTable holds the key words. Nearly every key a log line holds is none
// of them, so a bit filter answers most lookups before the map is asked.
type keyTable struct {
	words  map[string]uint8
	filter [1 << 10]uint64
	system map[string]bool
	substr []string
}

func wordHash(w string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(w); i++ {
		h ^= uint32(w[i])
		h *= 16777619
	}
	return h
}

func (t *keyTable) add(w string, f uint8) {
	t.words[w] |= f
	h := wordHash(w) & (1<<16 - 1)
	t.filter[h>>6] |= 1 << (h & 63)
}

func (t *keyTable) lookup(w string) uint8 {
	h := wordHash(w) & (1<<16 - 1)
	if t.filter[h>>6]&(1<<(h&63)) == 0 {
		return 0
	}
	return t.words[w]
}

func newKeyTable(extraSecret, extraUser []string) *keyTable {
	t := &keyTable{words: map[string]uint8{}, system: map[string]bool{}, substr: secretSubstrings}
	for _, w := range secretAnyWord {
		t.add(w, wAny)
	}
	for _, w := range secretLastWord {
		t.add(w, wLast)
	}
	addPair := func(p string, f uint8) {
		t.add(p, f)
		t.add(p[strings.LastIndexByte(p, '_')+1:], wPairTail)
	}
	for _, p := range secretPairs {
		addPair(p, wPair)
	}
	for _, w := range userLastWord {
		t.add(w, wUserLast)
	}
	for _, p := range userPairs {
		addPair(p, wUserPair)
	}
	for _, w := range lineKeys {
		t.add(w, wLine)
	}
	for _, u := range systemUsers {
		t.system[u] = true
	}
	// configured names: one word counts anywhere, several as a key's ending
	var sc scanner
	for _, k := range extraSecret {
		words := sc.normalizeKey(k)
		if i := strings.LastIndexByte(words, '_'); i < 0 {
			t.add(strings.Clone(words), wAny)
		} else if j := strings.LastIndexByte(words[:i], '_'); j < 0 {
			addPair(strings.Clone(words), wPair)
		} else {
			t.add(strings.Clone(words[j+1:]), wPair) // the last two words
			t.add(strings.Clone(words[i+1:]), wPairTail)
		}
	}
	for _, k := range extraUser {
		words := sc.normalizeKey(k)
		if i := strings.LastIndexByte(words, '_'); i < 0 {
			t.add(strings.Clone(words), wUserLast)
		} else {
			addPair(strings.Clone(words[strings.LastIndexByte(words[:i], '_')+1:]), wUserPair)
		}
	}
	return t
}

// normalizeKey writes key's words, lower-case and joined by '_', into
// sc.key and returns them (pointing into sc.key: valid until the next call).
func (sc *scanner) normalizeKey(key string) string {
	b := sc.key[:0]
	prevLower, prevUpper := false, false
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !isAlnum(c) {
			if len(b) > 0 && b[len(b)-1] != '_' {
				b = append(b, '_')
			}
			prevLower, prevUpper = false, false
			continue
		}
		up := isUpper(c)
		if up && len(b) > 0 && b[len(b)-1] != '_' {
			// a hump: "accessToken", or the end of an acronym: "APIKey"
			if prevLower || prevUpper && i+1 < len(key) && isLower(key[i+1]) {
				b = append(b, '_')
			}
		}
		b = append(b, lower(c))
		prevLower = isLower(c) || isDigit(c)
		prevUpper = up
	}
	for len(b) > 0 && b[len(b)-1] == '_' {
		b = b[:len(b)-1]
	}
	sc.key = b
	return unsafeString(b)
}

// classify looks key up. key may be a dotted field path: its last two
// segments count ("request.headers.Authorization" → headers authorization).
// It splits, lower-cases and hashes the words in one pass and asks the map
// only about words that pass the bit filter: it runs for every '=' and ':'
// of every line.
func (sc *scanner) classify(key string) keyClass {
	if len(key) == 0 || len(key) > 128 {
		return 0
	}
	if d := strings.LastIndexByte(key, '.'); d >= 0 {
		if d2 := strings.LastIndexByte(key[:d], '.'); d2 >= 0 {
			key = key[d2+1:]
		}
	}
	t := sc.a.keys
	var bufs [2][64]byte
	var lens [2]int
	cur := 0
	n := 0
	h := uint32(2166136261)
	var win uint32
	sub := false
	var cls keyClass
	var last uint8
	words := 0
	endWord := func() {
		if n == 0 {
			return
		}
		word := bufs[cur][:n]
		f := uint8(0)
		if hb := h & (1<<16 - 1); t.filter[hb>>6]&(1<<(hb&63)) != 0 {
			f = t.words[string(word)]
		}
		if f&wAny != 0 {
			cls = kSecret
		}
		if sub && n >= 7 && cls == 0 {
			for _, s := range t.substr {
				if strings.Contains(unsafeString(word), s) {
					cls = kSecret
					break
				}
			}
		}
		last = f
		lens[cur] = n
		cur ^= 1
		words++
		n, h, win, sub = 0, 2166136261, 0, false
	}
	prevLower, prevUpper := false, false
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !isAlnum(c) {
			endWord()
			prevLower, prevUpper = false, false
			continue
		}
		up := isUpper(c)
		if up && n > 0 && (prevLower || prevUpper && i+1 < len(key) && isLower(key[i+1])) {
			endWord() // a hump: "accessToken", or an acronym's end: "APIKey"
		}
		lc := lower(c)
		if n < len(bufs[cur]) {
			bufs[cur][n] = lc
			n++
			h = (h ^ uint32(lc)) * 16777619
			win = win<<8 | uint32(lc)
			sub = sub || win == 'p'<<24|'a'<<16|'s'<<8|'s' || win == 'w'<<24|'o'<<16|'r'<<8|'t'
		}
		prevLower = isLower(c) || isDigit(c)
		prevUpper = up
	}
	endWord()
	if words == 0 {
		return 0
	}
	if cls == 0 && last&wLast != 0 {
		cls = kSecret | kWeak
	}
	var pair uint8
	if words >= 2 && last&wPairTail != 0 {
		// the last word is in bufs[cur^1], the one before in bufs[cur]
		var pb [129]byte
		p := copy(pb[:], bufs[cur][:lens[cur]])
		pb[p] = '_'
		p++
		p += copy(pb[p:], bufs[cur^1][:lens[cur^1]])
		pair = t.lookup(unsafeString(pb[:p]))
		if pair&wPair != 0 {
			cls = kSecret
		}
	}
	if cls != 0 && (last&wLine != 0 && words == 1 || pair&wLine != 0) {
		cls |= kLine
	}
	if cls != 0 && (words == 1 && lens[cur^1] == 13 || words == 2 && lens[cur^1] == 13 && lens[cur] == 5) &&
		string(bufs[cur^1][:13]) == "authorization" {
		cls |= kAuth // "Authorization: Bearer x", "Proxy-Authorization: Basic y"
	}
	if cls == 0 && (last&wUserLast != 0 || pair&wUserPair != 0) {
		cls = kUser
	}
	return cls
}

// classifyCached is classify behind a per-scanner cache: the keys of
// key=value pairs repeat from line to line. The cache is direct-mapped by
// length and a few bytes, so a hit costs a few loads and one comparison and
// nothing is ever allocated.
func (sc *scanner) classifyCached(key string) keyClass {
	if len(key) > len(keyCacheEntry{}.key) || len(key) == 0 {
		return sc.classify(key)
	}
	e := &sc.keyCache[(len(key)*31+int(key[0])*7+int(key[len(key)-1])*13+int(key[len(key)/2])*3)&(len(sc.keyCache)-1)]
	if int(e.n) == len(key) && string(e.key[:e.n]) == key {
		return e.cls
	}
	cls := sc.classify(key)
	e.n = uint8(copy(e.key[:], key))
	e.cls = cls
	return cls
}

type keyCacheEntry struct {
	n   uint8
	cls keyClass
	key [30]byte
}

// looksSecret tells a secret-looking value ("hunter2", "a8f3…") from a word
// of running text ("expired", "ok"): it has a digit or a symbol, or is long.
func looksSecret(v string) bool {
	if len(v) >= 16 {
		return true
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !isAlpha(c) && c < 0x80 {
			return true
		}
	}
	return false
}

// alreadyScrubbed reports whether v is what an anonymizer leaves behind: a
// tag like "[secret]" or Sentry's "[Filtered]", a run of '*', a pseudonym,
// or a configured replacement.
func (sc *scanner) alreadyScrubbed(v string) bool {
	if len(v) >= 3 && v[0] == '[' && v[len(v)-1] == ']' {
		for i := 1; i < len(v)-1; i++ {
			if c := v[i]; !isAlnum(c) && c != '_' && c != ' ' && c != '-' {
				return false
			}
		}
		return true
	}
	if strings.Trim(v, "*") == "" {
		return true
	}
	if isLower(v[0]) && sc.pseudonym(v, 0) == len(v) {
		return true
	}
	return sc.a.replacements[v]
}

// keyValue handles a ':' or '=' at i: when the key before it says secret
// or user, the value after it is replaced whatever it looks like.
func (sc *scanner) keyValue(s string, i int) int {
	a := sc.a
	if !a.on[detSecret] && !a.on[detUser] {
		return i
	}
	j := i
	for j > sc.floor && (s[j-1] == ' ' || s[j-1] == '\t') && i-j < 4 {
		j--
	}
	quotedKey := false
	if j > sc.floor && (s[j-1] == '"' || s[j-1] == '\'') {
		j--
		quotedKey = true
		if j > sc.floor && s[j-1] == '\\' {
			j--
		}
	}
	ke := j
	for j > sc.floor && ctab[s[j-1]]&cKey != 0 && ke-j <= 64 {
		j--
	}
	if j == ke || ke-j > 64 {
		return i
	}
	cls := sc.classifyCached(s[j:ke])
	if cls == 0 {
		return i
	}
	act := &a.det[detSecret]
	if cls&kUser != 0 {
		if !a.on[detUser] {
			return i
		}
		act = &a.det[detUser]
	} else if !a.on[detSecret] {
		return i
	}
	v := i + 1
	for v < len(s) && (s[v] == ' ' || s[v] == '\t') && v-i <= 4 {
		v++
	}
	vs, ve := v, -1
	quoted := false
	switch c := at(s, v); {
	case c == '"' || c == '\'':
		vs = v + 1
		for e := vs; e < len(s) && e-vs < 8192; e++ {
			if s[e] == c {
				ve = e
				break
			}
			if s[e] == '\\' {
				if at(s, e+1) == c {
					break // an escaped quote: the value is quoted JSON inside a string
				}
				e++
			}
		}
		quoted = ve >= 0
	case c == '\\' && at(s, v+1) == '"':
		vs = v + 2
		if e := strings.Index(s[vs:min(len(s), vs+8192)], `\"`); e >= 0 {
			ve = vs + e
			quoted = true
		}
	case c == '<' && s[i] == '=':
		// dovecot and postfix write user=<a@b> and session=<x>
		if e := strings.IndexByte(s[v+1:min(len(s), v+1+512)], '>'); e > 0 {
			vs, ve, quoted = v+1, v+1+e, true
		}
	case c == '{' || c == '[':
		return i + 1 // structured: the detectors look inside
	}
	if ve < 0 {
		vs, ve = v, v
		// a key inside quotes ('Authorization: x') ends its value there
		var open byte
		if j > 0 && (s[j-1] == '\'' || s[j-1] == '"') {
			open = s[j-1]
		}
		line := cls&kLine != 0 && s[i] == ':'
		spaces := 0
		if cls&kAuth != 0 && s[i] == ':' {
			spaces = 1 // the scheme, a space, the credential
		}
		for ve < len(s) && ve-vs < 8192 {
			c := s[ve]
			if c == '\n' || c == '\r' || c == '"' || c == '\\' || c == open {
				break
			}
			if line {
				if c == '}' || c == ']' {
					break
				}
			} else if c == ' ' && spaces > 0 && ve > vs {
				spaces--
			} else if c == ' ' || c == '\t' || c == ',' || c == ';' || c == '&' || c == ')' || c == ']' || c == '}' || c == '\'' || c == '<' || c == '>' || c == '|' {
				break
			}
			ve++
		}
		if line {
			for ve > vs && (s[ve-1] == ' ' || s[ve-1] == '\t') {
				ve--
			}
		}
	}
	if ve <= vs {
		return i + 1
	}
	val := s[vs:ve]
	if sc.alreadyScrubbed(val) {
		sc.skipTo(ve)
		return ve
	}
	if cls&kUser != 0 {
		// an address is left to the email detector, so that it gets the
		// same pseudonym here as anywhere else
		if len(val) > 256 || a.keys.system[sc.lowerString(val)] || isSingleEmail(val) {
			return i + 1
		}
	} else if cls&kWeak != 0 && cls&kLine == 0 && s[i] == ':' && !quoted && !quotedKey && (!looksSecret(val) || strings.ContainsAny(val, ".:=/")) {
		// "auth: ok", "token: expired", "session: 10.0.0.1:443": a common
		// word before a colon in running text is a label more often than a
		// key; its value must look like a secret, not an address or a path
		return i + 1
	}
	sc.replace(s, vs, ve, act, nil)
	return ve
}

// lowerString returns s in lower case, in sc.tmp (valid until its next use).
func (sc *scanner) lowerString(s string) string {
	b := sc.tmp[:0]
	for i := 0; i < len(s); i++ {
		b = append(b, lower(s[i]))
	}
	sc.tmp = b
	return unsafeString(b)
}
