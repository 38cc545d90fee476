package anonymize

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
)

// The labelled corpus (testdata/corpus.txt) is generated from a seed by
// this file: go test -run TestCorpus -update ./anonymize/
//
// Markup: ⟦type:value⟧ is personal data that must not survive, ⟪type:value⟫
// a look-alike that must survive unchanged. A line starting with '{' and
// holding "event_id" is a Sentry event and goes through Process as one;
// every other line goes through ScrubString.

const corpusSeed = 20261122

// gen builds corpus lines.
type gen struct {
	r *rand.Rand
}

func (g *gen) pick(list ...string) string { return list[g.r.IntN(len(list))] }
func (g *gen) n(lo, hi int) int           { return lo + g.r.IntN(hi-lo+1) }
func (g *gen) chance(p float64) bool      { return g.r.Float64() < p }

func pii(typ, v string) string    { return "⟦" + typ + ":" + v + "⟧" }
func benign(typ, v string) string { return "⟪" + typ + ":" + v + "⟫" }

var (
	firstNames = []string{"anna", "ben", "clara", "deniz", "emil", "fatma", "greta", "hannes", "ilyas", "jana", "jonas", "katarzyna", "lea", "luca", "mia", "mehmet", "noah", "olga", "paul", "sophie", "tim", "ursula", "viktor", "yusuf", "zoe", "jürgen", "björn", "chloé", "michael", "sarah", "james", "emily", "oliver", "aisha"}
	lastNames  = []string{"mueller", "schmidt", "schneider", "fischer", "weber", "meyer", "wagner", "becker", "yilmaz", "kaya", "nowak", "kowalski", "novak", "smith", "johnson", "brown", "garcia", "rossi", "dubois", "jansen", "hoffmann", "schäfer", "koch", "richter", "klein", "wolf"}
	domains    = []string{"example.com", "example.org", "example.net", "schule-nord.example.de", "gymnasium-mitte.example.de", "mail.example.co.uk", "uni.example.edu", "webmail.example.de", "t-online.example.de", "kunde.example.at", "students.example.ch"}
	services   = []string{"moodle", "nextcloud", "ocr-worker", "mail-frontend", "api-gateway", "billing", "auth", "docs-search", "thumbnailer", "scheduler"}
	namespaces = []string{"school-nord", "school-mitte", "docai-prod", "webmail", "platform", "ingress-nginx", "monitoring"}
	hosts      = []string{"node-1", "node-2", "node-3", "k8s-worker-07", "mx01", "imap02", "web-frontend-3", "db-primary"}
	hexDigits  = "0123456789abcdef"
	alnumChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b64url     = alnumChars + "-_"
)

func (g *gen) str(chars string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = chars[g.r.IntN(len(chars))]
	}
	return string(b)
}

func (g *gen) digits(n int) string { return g.str("0123456789", n) }
func (g *gen) hex(n int) string    { return g.str(hexDigits, n) }

func (g *gen) username() string {
	f, l := g.pick(firstNames...), g.pick(lastNames...)
	switch g.r.IntN(4) {
	case 0:
		return asciiFold(f) + "." + asciiFold(l)
	case 1:
		return asciiFold(f[:1] + l)
	case 2:
		return asciiFold(f) + fmt.Sprint(g.n(1, 99))
	}
	return asciiFold(l) + "_" + asciiFold(f[:2])
}

func asciiFold(s string) string {
	return strings.NewReplacer("ü", "ue", "ö", "oe", "ä", "ae", "é", "e", "ß", "ss").Replace(s)
}

func (g *gen) fullName() string {
	cap := func(s string) string { return strings.ToUpper(s[:1]) + s[1:] }
	return cap(g.pick(firstNames...)) + " " + cap(g.pick(lastNames...))
}

func (g *gen) email() string {
	f, l := g.pick(firstNames...), g.pick(lastNames...)
	var local string
	switch g.r.IntN(6) {
	case 0:
		local = f + "." + l
	case 1:
		local = asciiFold(f) + "." + asciiFold(l)
	case 2:
		local = asciiFold(f[:1] + l + fmt.Sprint(g.n(1, 999)))
	case 3:
		local = asciiFold(f) + "+" + g.pick("news", "moodle", "test", "billing")
	case 4:
		local = strings.ToUpper(asciiFold(f[:1])) + asciiFold(f[1:]) + "." + strings.ToUpper(asciiFold(l[:1])) + asciiFold(l[1:])
	default:
		local = asciiFold(l) + "_" + asciiFold(f) + fmt.Sprint(g.n(70, 99))
	}
	return local + "@" + g.pick(domains...)
}

func (g *gen) ipv4() string {
	for {
		a := g.pick("203.0.113", "198.51.100", "192.0.2", fmt.Sprintf("%d.%d.%d", g.n(1, 223), g.n(0, 255), g.n(0, 255)), fmt.Sprintf("10.%d.%d", g.n(0, 255), g.n(0, 255)), fmt.Sprintf("192.168.%d", g.n(0, 255)), fmt.Sprintf("172.%d.%d", g.n(16, 31), g.n(0, 255)))
		if strings.HasPrefix(a, "127.") {
			continue
		}
		return fmt.Sprintf("%s.%d", a, g.n(1, 254))
	}
}

func (g *gen) ipv6() string {
	h := func() string { return fmt.Sprintf("%x", g.n(1, 0xffff)) }
	switch g.r.IntN(6) {
	case 0:
		return fmt.Sprintf("2001:db8:%s:%s:%s:%s:%s:%s", h(), h(), h(), h(), h(), h())
	case 1:
		return fmt.Sprintf("2001:db8:%s::%s", h(), h())
	case 2:
		return fmt.Sprintf("2a02:8108:%s:%s::%s", h(), h(), h())
	case 3:
		return fmt.Sprintf("fe80::%s:%sff:fe%s:%s", h(), g.hex(2), g.hex(2), h())
	case 4:
		return "::ffff:" + g.ipv4()
	}
	return fmt.Sprintf("2003:e8:%s:%s:%s:%s:%s:%s", h(), h(), h(), h(), h(), h())
}

func (g *gen) mac() string {
	b := make([]string, 6)
	for i := range b {
		b[i] = g.hex(2)
	}
	b[0] = g.pick("00", "02", "3c", "52", "a4", "f0", "b8")
	switch g.r.IntN(4) {
	case 0:
		return strings.ToUpper(strings.Join(b, "-"))
	case 1:
		return strings.Join(b, "")[:4] + "." + strings.Join(b, "")[4:8] + "." + strings.Join(b, "")[8:]
	}
	return strings.Join(b, ":")
}

// luhnComplete appends the check digit that makes p pass Luhn.
func luhnComplete(p string) string {
	for d := byte('0'); d <= '9'; d++ {
		if luhn([]byte(p + string(d))) {
			return p + string(d)
		}
	}
	panic("unreachable")
}

func (g *gen) cardNumber() string {
	switch g.r.IntN(6) {
	case 0:
		return luhnComplete("4" + g.digits(14))
	case 1:
		return luhnComplete(fmt.Sprint(g.n(51, 55)) + g.digits(13))
	case 2:
		return luhnComplete(g.pick("34", "37") + g.digits(12))
	case 3:
		return luhnComplete("6011" + g.digits(11))
	case 4:
		return luhnComplete(fmt.Sprint(g.n(2221, 2720)) + g.digits(11))
	}
	return luhnComplete("4" + g.digits(14))
}

func (g *gen) card() string {
	c := g.cardNumber()
	if len(c) == 15 && g.chance(0.5) {
		return c[:4] + " " + c[4:10] + " " + c[10:]
	}
	if len(c) == 16 {
		switch g.r.IntN(3) {
		case 0:
			return c[:4] + " " + c[4:8] + " " + c[8:12] + " " + c[12:]
		case 1:
			return c[:4] + "-" + c[4:8] + "-" + c[8:12] + "-" + c[12:]
		}
	}
	return c
}

// ibanFor builds a valid IBAN for country cc with the BBAN shape given by
// the pattern (n: digit, a: upper-case letter, c: either).
func (g *gen) ibanFor(cc, pattern string) string {
	var bban strings.Builder
	for _, p := range pattern {
		switch p {
		case 'n':
			bban.WriteString(g.digits(1))
		case 'a':
			bban.WriteString(g.str("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 1))
		default:
			bban.WriteString(g.str("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 1))
		}
	}
	b := bban.String()
	r := 0
	for _, c := range b + cc + "00" {
		if c >= '0' && c <= '9' {
			r = (r*10 + int(c-'0')) % 97
		} else {
			r = (r*100 + int(c-'A') + 10) % 97
		}
	}
	return fmt.Sprintf("%s%02d%s", cc, 98-r, b)
}

func (g *gen) ibanRaw() string {
	switch g.r.IntN(8) {
	case 0, 1, 2:
		return g.ibanFor("DE", "nnnnnnnnnnnnnnnnnn")
	case 3:
		return g.ibanFor("AT", "nnnnnnnnnnnnnnnn")
	case 4:
		return g.ibanFor("GB", "aaaannnnnnnnnnnnnn")
	case 5:
		return g.ibanFor("NL", "aaaannnnnnnnnn")
	case 6:
		return g.ibanFor("FR", "nnnnnnnnnncccccccccccnn")
	}
	return g.ibanFor("CH", "nnnnncccccccccccc")
}

func spaced4(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i += 4 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s[i:min(len(s), i+4)])
	}
	return b.String()
}

func (g *gen) iban() string {
	s := g.ibanRaw()
	if g.chance(0.55) {
		return spaced4(s)
	}
	return s
}

func (g *gen) phone() string {
	mobile := g.pick("151", "152", "157", "160", "170", "171", "176", "179")
	area := g.pick("30", "40", "89", "221", "69", "711", "351", "4171", "6221")
	sub := g.digits(g.n(6, 8))
	switch g.r.IntN(12) {
	case 0:
		return "+49 " + mobile + " " + g.digits(8)
	case 1:
		return "+49" + mobile + g.digits(8)
	case 2:
		return "0" + mobile + " " + g.digits(8)
	case 3:
		return "0" + mobile + "-" + g.digits(7)
	case 4:
		return "0" + area + "/" + sub
	case 5:
		return "(0" + area + ") " + sub
	case 6:
		return "+49 (0)" + area + " " + sub
	case 7:
		return "0049 " + area + " " + sub
	case 8:
		return fmt.Sprintf("+1 %d-555-%04d", g.n(201, 989), g.n(100, 9999))
	case 9:
		return fmt.Sprintf("+44 20 %04d %04d", g.n(1000, 9999), g.n(1000, 9999))
	case 10:
		return "0" + area + " " + sub[:2] + " " + sub[2:4] + " " + sub[4:]
	}
	return fmt.Sprintf("+43 %d %s", g.n(650, 699), g.digits(7))
}

func (g *gen) taxID() string {
	for {
		// ten digits, the first not 0, exactly one digit twice
		perm := g.r.Perm(10)
		d := make([]byte, 0, 11)
		for _, p := range perm[:9] {
			d = append(d, byte('0'+p))
		}
		d = append(d, d[g.r.IntN(9)])
		g.r.Shuffle(len(d), func(i, j int) { d[i], d[j] = d[j], d[i] })
		if d[0] == '0' {
			continue
		}
		for c := byte('0'); c <= '9'; c++ {
			var b [11]byte
			copy(b[:], d)
			b[10] = c
			if validTaxID(&b) {
				s := string(b[:])
				if g.chance(0.4) {
					return s[:2] + " " + s[2:5] + " " + s[5:8] + " " + s[8:]
				}
				return s
			}
		}
	}
}

func (g *gen) jwt() string {
	enc := base64.RawURLEncoding
	h := enc.EncodeToString([]byte(g.pick(`{"alg":"HS256","typ":"JWT"}`, `{"alg":"RS256","kid":"`+g.hex(8)+`"}`)))
	p := enc.EncodeToString([]byte(fmt.Sprintf(`{"sub":"%s","exp":%d,"email":"%s"}`, g.hex(12), 1763000000+g.n(0, 999999), g.email())))
	return h + "." + p + "." + g.str(b64url, 43)
}

func (g *gen) bearer() string { return g.str(alnumChars, g.n(24, 48)) }

func (g *gen) basic() string {
	return base64.StdEncoding.EncodeToString([]byte(g.username() + ":" + g.password()))
}

func (g *gen) password() string {
	return g.pick("hunter", "Sommer", "geheim", "Passw0rt", "letmein", "Schule", "qwertz", "Dragon") + g.digits(g.n(1, 4)) + g.pick("", "!", "#", "$", "?")
}

func (g *gen) secretValue() string {
	switch g.r.IntN(4) {
	case 0:
		return g.password()
	case 1:
		return g.hex(32)
	case 2:
		return g.str(alnumChars, 24)
	}
	return g.str(b64url, 40)
}

func (g *gen) apiKey() string {
	switch g.r.IntN(10) {
	case 0:
		return "AKIA" + g.str("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
	case 1:
		return g.pick("ghp_", "gho_", "ghs_") + g.str(alnumChars, 36)
	case 2:
		return "github_pat_" + g.str(alnumChars, 22) + "_" + g.str(alnumChars, 59)
	case 3:
		return g.pick("xoxb-", "xoxp-") + g.digits(12) + "-" + g.digits(13) + "-" + g.str(alnumChars, 24)
	case 4:
		return g.pick("sk_live_", "rk_live_") + g.str(alnumChars, 24)
	case 5:
		return "AIza" + g.str(b64url, 35)
	case 6:
		return "glpat-" + g.str(b64url, 20)
	case 7:
		return "SG." + g.str(b64url, 22) + "." + g.str(b64url, 43)
	case 8:
		return "npm_" + g.str(alnumChars, 36)
	}
	return "sk-proj-" + g.str(b64url, 48)
}

func (g *gen) pem() string {
	kind := g.pick("RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY")
	body := make([]string, g.n(2, 5))
	for i := range body {
		body[i] = g.str(alnumChars+"+/", 64)
	}
	return "-----BEGIN " + kind + "-----\\n" + strings.Join(body, "\\n") + "\\n-----END " + kind + "-----"
}

func (g *gen) urlCreds() (scheme, creds, host string) {
	scheme = g.pick("postgres", "mysql", "redis", "amqp", "https", "mongodb", "smtp")
	host = g.pick("db.example.com", "db-primary.platform.svc", "mq.example.org", "cache:6379", "smtp.example.de:587")
	return scheme, g.username() + ":" + g.password(), host
}

// benign look-alikes

func (g *gen) uuid() string {
	return g.hex(8) + "-" + g.hex(4) + "-4" + g.hex(3) + "-" + g.pick("8", "9", "a", "b") + g.hex(3) + "-" + g.hex(12)
}

func (g *gen) ts() string {
	return fmt.Sprintf("2026-%02d-%02dT%02d:%02d:%02d.%03dZ", g.n(1, 12), g.n(1, 28), g.n(0, 23), g.n(0, 59), g.n(0, 59), g.n(0, 999))
}

func (g *gen) version() string {
	return fmt.Sprintf("%d.%d.%d", g.n(0, 30), g.n(0, 40), g.n(0, 200))
}

func (g *gen) duration() string {
	return g.pick(fmt.Sprintf("%dms", g.n(1, 9999)), fmt.Sprintf("%d.%ds", g.n(0, 120), g.n(0, 999)), fmt.Sprintf("%dm%ds", g.n(1, 59), g.n(0, 59)), fmt.Sprintf("%dµs", g.n(1, 999)))
}

func (g *gen) podName(svc string) string {
	return svc + "-" + g.str("bcdfghjklmnpqrstvwxz2456789", 9) + "-" + g.str("bcdfghjklmnpqrstvwxz2456789", 5)
}

// randomID is a numeric id of any length: nothing keeps it from looking
// like a card, a phone or a tax id by chance, as in real logs.
func (g *gen) randomID() string {
	return fmt.Sprint(g.n(1, 9)) + g.digits(g.n(5, 17))
}

// notLuhn is a 16-digit number starting like a card that fails Luhn.
func (g *gen) notLuhn() string {
	for {
		c := "4" + g.digits(15)
		if !luhn([]byte(c)) {
			return c
		}
	}
}

// badIBAN is IBAN-shaped with a wrong checksum.
func (g *gen) badIBAN() string {
	for {
		s := g.ibanRaw()
		check := (int(s[2]-'0')*10+int(s[3]-'0')+g.n(1, 90))%97 + 2
		bad := fmt.Sprintf("%s%02d%s", s[:2], check%100, s[4:])
		if !ibanValid(bad) {
			return bad
		}
	}
}

func ibanValid(s string) bool {
	r := 0
	for _, c := range s[4:] + s[:4] {
		if c >= '0' && c <= '9' {
			r = (r*10 + int(c-'0')) % 97
		} else {
			r = (r*100 + int(c-'A') + 10) % 97
		}
	}
	return r == 1
}

// ean13 is a product code (GS1 prefixes 400–440 are German) with its own
// check digit: 13 digits that can pass Luhn by chance.
func (g *gen) ean13() string {
	d := fmt.Sprint(g.n(400, 440)) + g.digits(9)
	sum := 0
	for i, c := range d {
		w := 1
		if i%2 == 1 {
			w = 3
		}
		sum += int(c-'0') * w
	}
	return d + fmt.Sprint((10-sum%10)%10)
}

func (g *gen) benignValue() string {
	switch g.r.IntN(38) {
	case 30:
		return "ean=" + benign("ean", g.ean13())
	case 31:
		return benign("gomod", fmt.Sprintf("v0.0.0-2025%02d%02d%06d-%s", g.n(1, 12), g.n(1, 28), g.n(0, 235959), g.hex(12)))
	case 32:
		return "resourceVersion=" + benign("number", fmt.Sprint(g.n(100000, 999999999)))
	case 33:
		return "at " + benign("coords", fmt.Sprintf("%d.%06d, %d.%06d", g.n(47, 55), g.n(0, 999999), g.n(6, 15), g.n(0, 999999)))
	case 34:
		return "container " + benign("container_id", g.hex(64))
	case 35:
		return "total " + benign("price", fmt.Sprintf("%d.%03d,%02d €", g.n(1, 99), g.n(0, 999), g.n(0, 99)))
	case 36:
		return "invoice " + benign("invoice", fmt.Sprintf("RE-%d-%06d", g.n(2020, 2026), g.n(1, 999999)))
	case 37:
		return "order " + benign("order", fmt.Sprintf("%d-%04d-%04d", g.n(1000, 9999), g.n(0, 9999), g.n(0, 9999)))
	case 0:
		return benign("uuid", g.uuid())
	case 1:
		return benign("trace_id", g.hex(32))
	case 2:
		return benign("span_id", g.hex(16))
	case 3:
		return benign("sha256", "sha256:"+g.hex(64))
	case 4:
		return benign("git", g.hex(40))
	case 5:
		return benign("version", "v"+g.version())
	case 6:
		return "version " + benign("version", fmt.Sprintf("%d.%d.%d.%d", g.n(1, 20), g.n(0, 9), g.n(0, 9999), g.n(0, 99)))
	case 7:
		return benign("timestamp", g.ts())
	case 8:
		return benign("duration", g.duration())
	case 9:
		return "port " + benign("port", fmt.Sprint(g.n(1024, 65535)))
	case 10:
		return "epoch_ms=" + benign("epoch", fmt.Sprint(1763000000000+g.n(0, 99999999)))
	case 11:
		return "bytes=" + benign("number", fmt.Sprint(g.n(0, 99999999)))
	case 12:
		return benign("loopback", g.pick("127.0.0.1", "::1", "0.0.0.0", "127.0.0.53", "255.255.255.0"))
	case 13:
		return "oid " + benign("oid", fmt.Sprintf("1.3.6.1.4.1.%d.%d.%d", g.n(1, 60000), g.n(1, 9), g.n(1, 99)))
	case 14:
		return "ref " + benign("not_card", g.notLuhn())
	case 15:
		return benign("not_iban", g.badIBAN())
	case 16:
		return "am " + benign("date", fmt.Sprintf("%02d.%02d.%d", g.n(1, 28), g.n(1, 12), g.n(2000, 2030)))
	case 17:
		return "um " + benign("time", fmt.Sprintf("%02d:%02d:%02d", g.n(0, 23), g.n(0, 59), g.n(0, 59)))
	case 18:
		return benign("image", g.pick("logo@2x.png", "icon@3x.webp", "avatar@2x.jpg"))
	case 19:
		return benign("package", g.pick("@grafana/ui@", "lodash@", "probe@", "react@")+g.version())
	case 20:
		return benign("code", g.pick("std::vector", "Foo::Bar", "std::map", "Illuminate\\Support\\Str", "fmt::Display", "ActiveRecord::Base"))
	case 21:
		return "id=" + benign("number", g.randomID())
	case 22:
		return benign("pod", g.podName(g.pick(services...)))
	case 23:
		return benign("image", "registry.example.org/"+g.pick(services...)+"@sha256:"+g.hex(64))
	case 24:
		return benign("cve", fmt.Sprintf("CVE-%d-%d", g.n(2015, 2026), g.n(1000, 49999)))
	case 25:
		return "took " + benign("number", fmt.Sprintf("%d.%d", g.n(0, 999), g.n(0, 999999)))
	case 26:
		return benign("mac_zero", g.pick("00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"))
	case 27:
		return "ISBN " + benign("isbn", fmt.Sprintf("978-3-%d-%d-%d", g.n(10, 99), g.n(100000, 999999), g.n(0, 9)))
	case 28:
		return benign("hostport", g.pick(hosts...)+":"+fmt.Sprint(g.n(1024, 65535)))
	}
	return "seq=" + benign("number", fmt.Sprintf("%09d", g.n(0, 999999)))
}

// lines of each kind

func (g *gen) syslogPrefix() string {
	return fmt.Sprintf("%s %2d %02d:%02d:%02d %s", g.pick("Nov", "Dec", "Jan"), g.n(1, 28), g.n(0, 23), g.n(0, 59), g.n(0, 59), g.pick(hosts...))
}

func (g *gen) syslogLine() string {
	p := g.syslogPrefix()
	pid := g.n(100, 65000)
	switch g.r.IntN(14) {
	case 0:
		return fmt.Sprintf("%s sshd[%d]: Accepted publickey for deploy from %s port %s ssh2: RSA SHA256:%s", p, pid, pii("ip", g.ipv4()), benign("port", fmt.Sprint(g.n(30000, 65000))), g.str(alnumChars, 43))
	case 1:
		return fmt.Sprintf("%s sshd[%d]: Failed password for invalid user admin from %s port %d ssh2", p, pid, pii("ip", g.ipv4()), g.n(30000, 65000))
	case 2:
		return fmt.Sprintf("%s sshd[%d]: Connection closed by authenticating user root %s port %d [preauth]", p, pid, pii("ip", g.ipv6()), g.n(30000, 65000))
	case 3:
		return fmt.Sprintf("%s postfix/smtpd[%d]: %s: client=unknown[%s], sasl_method=PLAIN, sasl_username=%s", p, pid, strings.ToUpper(g.hex(10)), pii("ip", g.ipv4()), pii("email", g.email()))
	case 4:
		return fmt.Sprintf("%s postfix/smtp[%d]: %s: to=<%s>, relay=mx.example.net[%s]:25, delay=%d.%d, status=sent (250 2.0.0 OK)", p, pid, strings.ToUpper(g.hex(10)), pii("email", g.email()), pii("ip", g.ipv4()), g.n(0, 9), g.n(0, 99))
	case 5:
		return fmt.Sprintf("%s dovecot: imap-login: Login: user=<%s>, method=PLAIN, rip=%s, lip=10.0.0.5, mpid=%d, TLS, session=<%s>", p, pii("email", g.email()), pii("ip", g.ipv4()), pid, pii("secret", g.str(alnumChars+"+/", 16)))
	case 6:
		return fmt.Sprintf("%s kernel: [%d.%06d] IN=eth0 OUT= MAC=%s SRC=%s DST=10.0.0.5 LEN=60 TTL=%d PROTO=TCP SPT=%d DPT=22", p, g.n(1000, 99999), g.n(0, 999999), pii("mac", strings.Join([]string{g.mac6colon(), g.mac6colon(), "08:00"}, ":")), pii("ip", g.ipv4()), g.n(30, 128), g.n(1024, 65000))
	case 7:
		return fmt.Sprintf("%s dhcpd[%d]: DHCPACK on %s to %s (%s) via eth1", p, pid, pii("ip", g.ipv4()), pii("mac", g.mac6colon()), g.pick("laptop", "android-"+g.hex(8), "iPad"))
	case 8:
		return fmt.Sprintf("%s CRON[%d]: (root) CMD (/usr/local/bin/backup.sh --target %s)", p, pid, benign("hostport", "backup.example.org:873"))
	case 9:
		return fmt.Sprintf("%s systemd[1]: Started %s.service - %s %s.", p, g.pick(services...), g.pick("Moodle cron", "OCR worker", "Nightly export"), benign("version", g.version()))
	case 10:
		return fmt.Sprintf("%s sudo[%d]: pam_unix(sudo:session): session opened for user root(uid=0) by (uid=%d)", p, pid, g.n(1000, 1100))
	case 11:
		return fmt.Sprintf("%s nextcloud[%d]: {\"reqId\":\"%s\",\"level\":2,\"remoteAddr\":\"%s\",\"user\":\"%s\",\"app\":\"core\",\"message\":\"Login failed: %s (Remote IP: %s)\"}", p, pid, g.str(alnumChars, 20), pii("ip", g.ipv4()), pii("user", g.username()), pii("email", g.email()), pii("ip", g.ipv4()))
	case 12:
		return fmt.Sprintf("%s kubelet[%d]: I1122 %02d:%02d:%02d.%06d %d kubelet.go:%d] \"SyncLoop UPDATE\" source=\"api\" pods=[\"%s/%s\"] podUID=%s", p, pid, g.n(0, 23), g.n(0, 59), g.n(0, 59), g.n(0, 999999), pid, g.n(100, 2999), g.pick(namespaces...), benign("pod", g.podName(g.pick(services...))), benign("uuid", g.uuid()))
	}
	return fmt.Sprintf("%s ntpd[%d]: adjusting local clock by %s %s", p, pid, benign("number", fmt.Sprintf("%d.%06ds", g.n(0, 2), g.n(0, 999999))), g.benignValue())
}

func (g *gen) mac6colon() string {
	b := make([]string, 6)
	for i := range b {
		b[i] = g.hex(2)
	}
	b[0] = g.pick("00", "52", "a4", "3c")
	return strings.Join(b, ":")
}

func (g *gen) accessLogLine() string {
	ip := pii("ip", g.pick(g.ipv4(), g.ipv4(), g.ipv6()))
	user := "-"
	if g.chance(0.3) {
		user = pii("user", g.username())
	}
	paths := []string{
		fmt.Sprintf("/login/index.php?username=%s", pii("user", g.username())),
		fmt.Sprintf("/api/v1/users?email=%s", pii("email", g.email())),
		fmt.Sprintf("/reset?token=%s&lang=de", pii("secret", g.str(b64url, 32))),
		fmt.Sprintf("/webmail/?_task=mail&_uid=%d&_mbox=INBOX", g.n(1, 99999)),
		fmt.Sprintf("/course/view.php?id=%d", g.n(1, 9999)),
		fmt.Sprintf("/static/js/app.%s.js", g.hex(8)),
		fmt.Sprintf("/share/%s?access_token=%s", benign("uuid", g.uuid()), pii("secret", g.str(alnumChars, 40))),
		fmt.Sprintf("/api/v2/documents/%d/pages/%d", g.n(1, 99999), g.n(1, 300)),
	}
	ua := g.pick(`Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/`+benign("version", fmt.Sprintf("120.0.%d.%d", g.n(1000, 6999), g.n(10, 199)))+` Safari/537.36`,
		`Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1`,
		`curl/`+benign("version", g.version()), `okhttp/4.12.0`, `Moodle/4.3 (+https://moodle.org)`)
	return fmt.Sprintf(`%s - %s [22/Nov/2026:%02d:%02d:%02d +0100] "%s %s HTTP/1.1" %s %d "-" "%s" rt=%s`, ip, user, g.n(0, 23), g.n(0, 59), g.n(0, 59), g.pick("GET", "POST", "GET", "PUT"), g.pick(paths...), g.pick("200", "200", "302", "404", "500", "401"), g.n(0, 99999), ua, benign("number", fmt.Sprintf("%d.%03d", g.n(0, 9), g.n(0, 999))))
}

func (g *gen) appLine() string {
	ts := benign("timestamp", g.ts())
	svc := g.pick(services...)
	switch g.r.IntN(22) {
	case 0:
		return fmt.Sprintf("time=%s level=info msg=\"login ok\" user_id=%s email=%s client_ip=%s trace_id=%s", ts, pii("user", "u-"+g.digits(6)), pii("email", g.email()), pii("ip", g.ipv4()), benign("trace_id", g.hex(32)))
	case 1:
		return fmt.Sprintf("time=%s level=error msg=\"db connect failed\" dsn=\"%s\" err=\"dial tcp %s: i/o timeout\"", ts, func() string {
			s, c, h := g.urlCreds()
			return s + "://" + pii("url_credentials", c) + "@" + h + "/app?sslmode=require"
		}(), pii("ip", g.ipv4())+":5432")
	case 2:
		return fmt.Sprintf(`{"ts":"%s","level":"warn","service":"%s","msg":"payment declined","card":"%s","amount":%d.%02d,"currency":"EUR","request_id":"%s"}`, ts, svc, pii("card", g.card()), g.n(1, 999), g.n(0, 99), benign("uuid", g.uuid()))
	case 3:
		return fmt.Sprintf(`{"ts":"%s","level":"info","msg":"SEPA mandate created","iban":"%s","holder":"%s","mandate":"%s"}`, ts, pii("iban", g.iban()), pii("user", g.fullName()), benign("uuid", g.uuid()))
	case 4:
		return fmt.Sprintf("%s DEBUG http: outgoing request GET https://api.example.com/v1/me headers={Authorization: Bearer %s, Accept: application/json}", ts, pii("credential", g.bearer()))
	case 5:
		return fmt.Sprintf("%s INFO  auth: issued token=%s for sub=%s exp=%d", ts, pii("secret", g.jwt()), benign("span_id", g.hex(16)), 1763000000+g.n(0, 99999))
	case 6:
		return fmt.Sprintf("%s WARN  config: loaded settings {smtp_host: smtp.example.de, smtp_password: %s, api_key: %s, debug: false}", ts, pii("secret", g.password()), pii("secret", g.secretValue()))
	case 7:
		return fmt.Sprintf("%s ERROR github: request failed using %s: 401 Bad credentials", ts, pii("api_key", g.apiKey()))
	case 8:
		return fmt.Sprintf("%s ERROR tls: could not parse key %s: asn1: structure error", ts, pii("private_key", g.pem()))
	case 9:
		return fmt.Sprintf("Traceback (most recent call last):  File \"/home/%s/venv/lib/python3.12/site-packages/django/core/handlers/base.py\", line %d, in _get_response", pii("home_path", g.username()), g.n(10, 400))
	case 10:
		return fmt.Sprintf("panic: runtime error: index out of range [%d] with length %d goroutine %d [running]: main.handler(...) /Users/%s/src/%s/main.go:%d +0x%s", g.n(1, 9), g.n(0, 9), g.n(1, 999), pii("home_path", g.username()), svc, g.n(10, 999), g.hex(3))
	case 11:
		return fmt.Sprintf("%s ERROR System.IO.FileNotFoundException: Could not find file 'C:\\Users\\%s\\AppData\\Local\\Temp\\export-%d.xlsx'", ts, pii("home_path", g.pick("Max Mustermann", "erika.musterfrau", "AdminLehrer", "s.yilmaz")), g.n(1, 9999))
	case 12:
		return fmt.Sprintf("%s INFO  sms: sent verification code to %s (provider=%s, id=%s)", ts, pii("phone", g.phone()), g.pick("twilio", "messagebird"), benign("uuid", g.uuid()))
	case 13:
		return fmt.Sprintf("%s INFO  hr-export: employee %s tax_id_check ok for %s", ts, benign("number", fmt.Sprint(g.n(1000, 99999))), pii("tax_id", g.taxID()))
	case 14:
		return fmt.Sprintf("%s INFO  network: device %s registered from %s (fw %s)", ts, pii("mac", g.mac()), pii("ip", g.ipv6()), benign("version", g.version()))
	case 15:
		return fmt.Sprintf("level=debug ts=%s caller=%s.go:%d component=session msg=\"created\" session_id=%s user=%s duration=%s", ts, svc, g.n(10, 900), pii("secret", g.hex(32)), pii("user", g.username()), benign("duration", g.duration()))
	case 16:
		return fmt.Sprintf("%s ERROR SMTP auth failed: 535 5.7.8 for %s, AUTH PLAIN with Basic %s", ts, pii("email", g.email()), pii("credential", g.basic()))
	case 17:
		return fmt.Sprintf("%s WARN  webhook: POST https://hooks.example.com/notify?secret=%s failed after %s (status %s)", ts, pii("secret", g.hex(40)), benign("duration", g.duration()), g.pick("500", "502", "503"))
	case 18:
		return fmt.Sprintf("%s INFO  %s: %s %s %s", ts, svc, g.benignValue(), g.benignValue(), g.benignValue())
	case 19:
		return fmt.Sprintf(`%s ERROR request body: {"username":"%s","password":"%s","remember":true}`, ts, pii("user", g.username()), pii("secret", g.password()))
	case 20:
		return fmt.Sprintf("%s INFO  env: HOME=/home/%s PGPASSWORD=%s AWS_SECRET_ACCESS_KEY=%s LANG=de_DE.UTF-8", ts, pii("home_path", g.username()), pii("secret", g.password()), pii("secret", g.str(alnumChars+"/+", 40)))
	}
	return fmt.Sprintf("%s INFO  upload: %s stored by %s from %s in %s", ts, benign("sha256", "sha256:"+g.hex(64)), pii("email", g.email()), pii("ip", g.ipv4()), benign("duration", g.duration()))
}

// sentryLine is one Sentry event on a line, as the sentry receiver would
// store it before flattening.
func (g *gen) sentryLine() string {
	eid := g.hex(32)
	user := fmt.Sprintf(`{"id":"%s","email":"%s","ip_address":"%s","username":"%s"}`, pii("user", "u-"+g.digits(g.n(3, 8))), pii("email", g.email()), pii("ip", g.ipv4()), pii("user", g.username()))
	crumbs := fmt.Sprintf(`[{"category":"auth","message":"login for %s from %s","level":"info","timestamp":"%s"},{"type":"http","category":"http","data":{"method":"GET","status_code":%s,"url":"https://api.example.com/v1/users?email=%s"},"timestamp":"%s"}]`,
		pii("email", g.email()), pii("ip", g.ipv4()), benign("timestamp", g.ts()), g.pick("200", "404", "500"), pii("email", g.email()), benign("timestamp", g.ts()))
	vars := fmt.Sprintf(`{"customer":"%s","note":"%s","attempt":%d}`, pii("var", g.fullName()), pii("var", "call back "+g.hex(6)), g.n(1, 5))
	exc := fmt.Sprintf(`[{"type":"%s","value":"%s","stacktrace":{"frames":[{"function":"charge","module":"billing","abs_path":"/home/%s/src/billing/charge.go","lineno":%d,"in_app":true,"vars":%s}]}}]`,
		g.pick("*errors.errorString", "ValueError", "TypeError"), g.pick("failed to charge card "+pii("card", g.card()), "no account for "+pii("email", g.email()), "invalid IBAN checksum for "+benign("not_iban", g.badIBAN()), "timeout after "+benign("duration", g.duration())),
		pii("home_path", g.username()), g.n(1, 500), vars)
	req := fmt.Sprintf(`{"url":"https://shop.example.com/checkout","method":"POST","query_string":"email=%s&token=%s","cookies":"theme=dark; sessionid=%s","headers":{"Authorization":"Bearer %s","Content-Type":"application/json","X-Forwarded-For":"%s","User-Agent":"Mozilla/5.0"},"env":{"REMOTE_ADDR":"%s"}}`,
		pii("email", strings.Replace(g.email(), "@", "%40", 1)), pii("secret", g.str(alnumChars, 24)), pii("secret", g.hex(32)), pii("secret", g.bearer()), pii("ip", g.ipv4()), pii("ip", g.ipv4()))
	return fmt.Sprintf(`{"event_id":"%s","timestamp":"%s","level":"error","platform":"%s","release":"%s","environment":"production","server_name":"%s","user":%s,"request":%s,"breadcrumbs":%s,"exception":%s,"contexts":{"trace":{"trace_id":"%s","span_id":"%s"},"runtime":{"name":"go","version":"%s"}},"tags":{"customer_phone":"%s","iban":"%s"}}`,
		benign("event_id", eid), benign("timestamp", g.ts()), g.pick("go", "python", "node"), benign("package", g.pick(services...)+"@"+g.version()), g.pick(hosts...), user, req, crumbs, exc, benign("trace_id", g.hex(32)), benign("span_id", g.hex(16)), benign("version", "go1."+fmt.Sprint(g.n(20, 26))+"."+fmt.Sprint(g.n(0, 9))), pii("phone", g.phone()), pii("iban", g.iban()))
}

func (g *gen) germanText() string {
	name := g.fullName()
	switch g.r.IntN(10) {
	case 0:
		return fmt.Sprintf("Sehr geehrte Damen und Herren, bitte buchen Sie den Beitrag von meinem Konto %s ab. Mit freundlichen Grüßen, %s", pii("iban", g.iban()), name)
	case 1:
		return fmt.Sprintf("Hallo, ich komme nicht mehr in Moodle rein. Meine Adresse ist %s, erreichbar unter %s. Danke!", pii("email", g.email()), pii("phone", g.phone()))
	case 2:
		return fmt.Sprintf("Bitte Rückruf an Frau %s unter %s wegen der Rechnung vom %s.", strings.Split(name, " ")[1], pii("phone", g.phone()), benign("date", fmt.Sprintf("%02d.%02d.%d", g.n(1, 28), g.n(1, 12), 2026)))
	case 3:
		return fmt.Sprintf("Meine Steuer-ID lautet %s, die Lohnsteuerbescheinigung kam an %s.", pii("tax_id", g.taxID()), pii("email", g.email()))
	case 4:
		return fmt.Sprintf("Das neue Passwort für den Schulrechner ist passwort: %s – bitte nicht weitergeben.", pii("secret", g.password()))
	case 5:
		return fmt.Sprintf("Der Drucker im Lehrerzimmer hat die MAC %s und bekommt per DHCP die %s.", pii("mac", g.mac()), pii("ip", g.ipv4()))
	case 6:
		return fmt.Sprintf("Zahlung mit Kreditkarte %s ist fehlgeschlagen, bitte prüfen (Vorgang %s).", pii("card", g.card()), benign("uuid", g.uuid()))
	case 7:
		return fmt.Sprintf("Update auf Version %s am %s eingespielt, Dauer %s, keine Fehler.", benign("version", g.version()), benign("date", fmt.Sprintf("%02d.%02d.%d", g.n(1, 28), g.n(1, 12), 2026)), benign("duration", g.duration()))
	case 8:
		return fmt.Sprintf("Die Eltern von %s haben die Einverständniserklärung per Mail von %s geschickt, Telefon %s.", g.pick(firstNames...), pii("email", g.email()), pii("phone", g.phone()))
	}
	return fmt.Sprintf("Ticket %s: Benutzer meldet Fehler %s beim Upload um %s, Server %s.", benign("number", fmt.Sprintf("#%d", g.n(1000, 99999))), benign("code", fmt.Sprintf("E%d", g.n(100, 999))), benign("time", fmt.Sprintf("%02d:%02d", g.n(0, 23), g.n(0, 59))), g.pick(hosts...))
}

func (g *gen) englishText() string {
	switch g.r.IntN(10) {
	case 0:
		return fmt.Sprintf("Hi team, please reset the account for %s, they can be reached at %s.", pii("email", g.email()), pii("phone", g.phone()))
	case 1:
		return fmt.Sprintf("I was charged twice on card %s, please refund to IBAN %s.", pii("card", g.card()), pii("iban", g.iban()))
	case 2:
		return fmt.Sprintf("The VPN gave me %s but the portal shows %s as my address.", pii("ip", g.ipv4()), pii("ip", g.ipv6()))
	case 3:
		return fmt.Sprintf("Our CI leaked the token %s in a public log, rotate it please.", pii("api_key", g.apiKey()))
	case 4:
		return fmt.Sprintf("Use `curl -H 'Authorization: Bearer %s' https://api.example.com` to reproduce.", pii("secret", g.bearer()))
	case 5:
		return fmt.Sprintf("Release %s fixes %s and lowers p99 latency to %s.", benign("version", "v"+g.version()), benign("cve", fmt.Sprintf("CVE-%d-%d", g.n(2020, 2026), g.n(1000, 49999))), benign("duration", g.duration()))
	case 6:
		return fmt.Sprintf("The export in /home/%s/exports/grades-%d.csv contains the class list.", pii("home_path", g.username()), g.n(2020, 2026))
	case 7:
		return fmt.Sprintf("Connect with %s and check build %s at %s.", func() string {
			s, c, h := g.urlCreds()
			return s + "://" + pii("url_credentials", c) + "@" + h
		}(), benign("git", g.hex(40)), benign("timestamp", g.ts()))
	case 8:
		return fmt.Sprintf("After %s the client retried with Cookie: %s", benign("duration", g.duration()), pii("secret", "SESSID="+g.hex(26)))
	}
	return fmt.Sprintf("Nothing personal here: %s, %s and %s.", g.benignValue(), g.benignValue(), g.benignValue())
}

func (g *gen) lookalikeLine() string {
	n := g.n(2, 5)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = g.benignValue()
	}
	return fmt.Sprintf("%s %s %s", benign("timestamp", g.ts()), g.pick("INFO", "DEBUG", "WARN"), strings.Join(parts, " "))
}

// generateCorpus returns the corpus text.
func generateCorpus() string {
	g := &gen{r: rand.New(rand.NewPCG(corpusSeed, 5))}
	var b strings.Builder
	b.WriteString("# leitstand anonymizer corpus, generated by corpusgen_test.go (seed 20261122); do not edit.\n")
	b.WriteString("# ⟦type:value⟧ personal data that must go; ⟪type:value⟫ look-alikes that must stay.\n")
	kinds := []struct {
		n int
		f func() string
	}{
		{450, g.syslogLine}, {250, g.accessLogLine}, {500, g.appLine}, {200, g.sentryLine},
		{300, g.germanText}, {300, g.englishText}, {400, g.lookalikeLine},
	}
	for _, k := range kinds {
		for i := 0; i < k.n; i++ {
			b.WriteString(k.f())
			b.WriteByte('\n')
		}
	}
	return b.String()
}
