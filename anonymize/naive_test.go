package anonymize

import (
	"encoding/json"
	"regexp"

	"github.com/leitstand/leitstand/collector"
)

// naiveAnonymizer is the baseline the benchmarks compare against: one Go
// regular expression per detector, each run over every string, the way a
// straight port of Sentry Relay's PII rules would work; raw JSON is decoded,
// walked and encoded again. Validators (Luhn, mod 97, the tax id check) run
// on regexp matches, so it finds about what the real anonymizer finds.
type naiveAnonymizer struct {
	rules  []naiveRule
	secret *regexp.Regexp
}

type naiveRule struct {
	re    *regexp.Regexp
	valid func(string) bool
	tag   string
}

func newNaive() *naiveAnonymizer {
	r := func(tag, expr string, valid func(string) bool) naiveRule {
		return naiveRule{re: regexp.MustCompile(expr), valid: valid, tag: "[" + tag + "]"}
	}
	digits := func(s string) []byte {
		var d []byte
		for i := 0; i < len(s); i++ {
			if isDigit(s[i]) {
				d = append(d, s[i])
			}
		}
		return d
	}
	return &naiveAnonymizer{
		rules: []naiveRule{
			r("private_key", `(?s)-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----`, nil),
			r("secret", `(?i)\b(?:password|passwd|pwd|secret|token|api_?key|auth|authorization|credentials|private_?key|session(?:id)?|cookie)["']?\s*[:=]\s*["']?[^\s"'&,;]+`, nil),
			r("jwt", `eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*`, nil),
			r("credential", `(?i)\b(?:bearer|basic)\s+[A-Za-z0-9._~+/-]{8,}=*`, nil),
			r("url_credentials", `\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:@/]+:[^\s@/]+@`, nil),
			r("api_key", `\b(?:AKIA|ASIA)[A-Z0-9]{16}\b|\bgh[pousr]_[A-Za-z0-9]{36}\b|github_pat_[A-Za-z0-9_]{22,}|\bxox[abposr]-[A-Za-z0-9-]{10,}|\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}|\bAIza[0-9A-Za-z_-]{35}|glpat-[A-Za-z0-9_-]{20,}|\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}|\bnpm_[A-Za-z0-9]{36}\b`, nil),
			r("email", `[a-zA-Z0-9.!#$%&'*+/=?^_{|}~-]+@[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*\.[a-zA-Z]{2,}`, nil),
			r("iban", `\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b`, func(s string) bool {
				return newIBANCheck(s)
			}),
			r("card", `\b(?:\d[ -]?){12,18}\d\b`, func(s string) bool {
				d := digits(s)
				return len(d) >= 13 && luhn(d) && cardPrefix(d)
			}),
			r("tax_id", `\b[1-9]\d(?: ?\d{3}){3}\b`, func(s string) bool {
				d := digits(s)
				var b [11]byte
				return len(d) == 11 && copy(b[:], d) == 11 && validTaxID(&b)
			}),
			r("ip", `(?i)(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}|(?:[0-9a-f]{1,4}:){1,7}:|(?:[0-9a-f]{1,4}:){1,6}:[0-9a-f]{1,4}|(?:[0-9a-f]{1,4}:){1,5}(?::[0-9a-f]{1,4}){1,2}|(?:[0-9a-f]{1,4}:){1,4}(?::[0-9a-f]{1,4}){1,3}|(?:[0-9a-f]{1,4}:){1,3}(?::[0-9a-f]{1,4}){1,4}|(?:[0-9a-f]{1,4}:){1,2}(?::[0-9a-f]{1,4}){1,5}|[0-9a-f]{1,4}:(?::[0-9a-f]{1,4}){1,6}|::(?:ffff:)?(?:\d{1,3}\.){3}\d{1,3}`, nil),
			r("ip", `\b(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\b`, nil),
			r("mac", `\b[0-9a-fA-F]{2}(?:[:-][0-9a-fA-F]{2}){5}\b`, nil),
			r("phone", `(?:\+|\b00)[1-9]\d{0,2}[ /-]?(?:\(0\) ?)?\d{2,5}(?:[ /-]?\d{2,8}){1,3}\b|\b0[1-9]\d{1,4}[ /-]?\d{3,8}\b`, nil),
			r("user", `(/home/|/Users/|[A-Za-z]:\\Users\\)[^/\\\s"']+`, nil),
		},
		secret: regexp.MustCompile(`(?i)password|passwd|pwd|secret|token|api_?key|auth|credentials|private_?key|session|cookie`),
	}
}

func newIBANCheck(s string) bool {
	var buf [34]byte
	n := 0
	for i := 0; i < len(s) && n < 34; i++ {
		if s[i] != ' ' {
			buf[n] = s[i]
			n++
		}
	}
	if n < 15 {
		return false
	}
	r := 0
	for k := 0; k < n; k++ {
		c := buf[(k+4)%n]
		if isDigit(c) {
			r = (r*10 + int(c-'0')) % 97
		} else {
			r = (r*100 + int(c-'A') + 10) % 97
		}
	}
	return r == 1
}

func (n *naiveAnonymizer) scrub(s string) string {
	for _, r := range n.rules {
		s = r.re.ReplaceAllStringFunc(s, func(m string) string {
			if r.valid != nil && !r.valid(m) {
				return m
			}
			return r.tag
		})
	}
	return s
}

func (n *naiveAnonymizer) walk(v any) any {
	switch t := v.(type) {
	case string:
		return n.scrub(t)
	case []any:
		for i := range t {
			t[i] = n.walk(t[i])
		}
	case map[string]any:
		for k, x := range t {
			if n.secret.MatchString(k) {
				t[k] = "[Filtered]"
				continue
			}
			t[k] = n.walk(x)
		}
	}
	return v
}

// Process scrubs a batch the naive way.
func (n *naiveAnonymizer) Process(b *collector.Batch) {
	for ei := range b.Events {
		e := &b.Events[ei]
		for i := range e.Fields {
			f := &e.Fields[i]
			if f.Key == collector.FieldDataset || f.Key == collector.FieldIngested {
				continue
			}
			if n.secret.MatchString(f.Key) {
				f.Str = "[Filtered]"
				f.Kind = collector.KindString
				continue
			}
			switch f.Kind {
			case collector.KindString:
				f.Str = n.scrub(f.Str)
			case collector.KindRaw:
				var v any
				if err := json.Unmarshal([]byte(f.Str), &v); err != nil {
					f.Str = n.scrub(f.Str)
					continue
				}
				out, _ := json.Marshal(n.walk(v))
				f.Str = string(out)
			}
		}
	}
}
