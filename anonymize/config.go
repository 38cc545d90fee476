package anonymize

import (
	"strings"

	"github.com/leitstand/leitstand/internal/config"
)

// Method says what happens to a value that a detector or a rule matched.
type Method string

// The methods. Detectors take mask, hash, drop and replace (and the ip
// detector truncate); field rules take all of them plus keep and scrub.
const (
	// MethodMask replaces the value with its type tag, e.g. "[email]".
	MethodMask Method = "mask"
	// MethodHash replaces the value with a keyed pseudonym,
	// "<type>:<key id>:<16 base64url characters>" (HMAC-SHA256, 96 bits kept).
	MethodHash Method = "hash"
	// MethodTruncate keeps the network part of an IP address (ipv4_prefix,
	// ipv6_prefix) and zeroes the host part.
	MethodTruncate Method = "truncate"
	// MethodDrop removes the whole field (in text without a field, such as
	// ScrubString's, it masks).
	MethodDrop Method = "drop"
	// MethodReplace replaces the value with a fixed text.
	MethodReplace Method = "replace"
	// MethodKeep leaves a field alone (field rules only).
	MethodKeep Method = "keep"
	// MethodScrub runs the value detectors over a field, as for any field no
	// rule names (field rules only).
	MethodScrub Method = "scrub"
)

// Config configures the anonymizer: the `anonymize` section of the daemon's
// config. Start from DefaultConfig; every zero value here is meaningful.
type Config struct {
	// HashKeyFile is a file whose content (without a trailing newline, at
	// least 16 bytes) is the HMAC key of the hash method. Every replica must
	// read the same key for pseudonyms to correlate across them.
	// Default "": a random 32-byte key is generated once and kept in
	// <data dir>/anonymize.key (mode 0600), so pseudonyms survive restarts.
	HashKeyFile string `yaml:"hash_key_file"`
	// HashKeyID is embedded in every pseudonym ("email:k1:…") so values
	// hashed with different keys can be told apart after a rotation: 1 to 16
	// lower-case letters and digits. Default "": derived from the key
	// ("k" and four base32 characters), so a new key gets a new id by itself.
	HashKeyID string `yaml:"hash_key_id"`
	// IPv4Prefix is how many leading bits of an IPv4 address truncate keeps.
	// Default 24.
	IPv4Prefix int `yaml:"ipv4_prefix"`
	// IPv6Prefix is how many leading bits of an IPv6 address truncate keeps.
	// Default 48.
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// Detectors configures each value detector. Defaults: see Detectors.
	Detectors Detectors `yaml:"detectors"`
	// SecretKeys adds key names to the built-in list of names that say
	// "secret" (password, token, api_key, cookie, …; see docs/anonymize.md).
	// A field, JSON member or key=value pair with such a name has its whole
	// value replaced by the secret detector's method. Keys are compared as
	// lower-case words: a one-word name counts anywhere in a key ("tan"
	// makes "sms_tan" and "tanCode" secret), a longer one as the key's
	// ending ("recovery_code"). Default: none.
	SecretKeys []string `yaml:"secret_keys"`
	// UserKeys adds key names to the built-in list of names whose value is
	// a user name or id (user, username, user_id, …), handled by the user
	// detector. Default: none.
	UserKeys []string `yaml:"user_keys"`
	// SkipFields lists fields (dotted keys, '*' matches any run of
	// characters) that are never scrubbed because the pipeline itself sets
	// them. Default ["event.ingested", "event.dataset", "leitstand.*"].
	SkipFields []string `yaml:"skip_fields"`
	// BuiltinRules turns on the built-in field rules (Sentry's user.*,
	// request cookies, stack frame variables; see docs/anonymize.md).
	// FieldRules are checked before them. Default true.
	BuiltinRules bool `yaml:"builtin_rules"`
	// FieldRules are per-dataset rules for whole fields and JSON members,
	// checked in order; the first match wins. Default: none.
	FieldRules []FieldRule `yaml:"field_rules"`
}

// Detectors configures the value detectors. Each is on by default.
type Detectors struct {
	// Email: e-mail addresses, also URL-encoded (%40). Default method hash.
	Email DetectorConfig `yaml:"email"`
	// IP: IPv4 and IPv6 addresses (compressed, v4-mapped, with ports, in
	// URLs). Default method truncate.
	IP DetectorConfig `yaml:"ip"`
	// MAC: MAC addresses (colon, dash and Cisco dot forms). Default mask.
	MAC DetectorConfig `yaml:"mac"`
	// Card: payment card numbers (issuer prefix, length, Luhn). Default mask.
	Card DetectorConfig `yaml:"card"`
	// IBAN: IBANs of every country (length, mod-97 checksum). Default mask.
	IBAN DetectorConfig `yaml:"iban"`
	// Phone: phone numbers (E.164, German and common international forms).
	// Default mask.
	Phone DetectorConfig `yaml:"phone"`
	// JWT: JSON Web Tokens. Default mask.
	JWT DetectorConfig `yaml:"jwt"`
	// Credential: the credential after "Bearer" or "Basic". Default mask.
	Credential DetectorConfig `yaml:"credential"`
	// URLCredentials: the user:password part of a URL. Default mask.
	URLCredentials DetectorConfig `yaml:"url_credentials"`
	// APIKey: API keys with a known prefix (AWS, GitHub, GitLab, Slack,
	// Stripe, Google, SendGrid, npm, …). Default mask.
	APIKey DetectorConfig `yaml:"api_key"`
	// PrivateKey: PEM private key blocks. Default mask.
	PrivateKey DetectorConfig `yaml:"private_key"`
	// TaxID: German tax identification numbers (Steuer-ID, checksum).
	// Default mask.
	TaxID DetectorConfig `yaml:"tax_id"`
	// HomePath: the user name in /home/<user>, /Users/<user> and
	// C:\Users\<user>. Default mask (the tag is [user]).
	HomePath DetectorConfig `yaml:"home_path"`
	// Secret: the value of a key whose name says secret (see SecretKeys).
	// Default mask.
	Secret DetectorConfig `yaml:"secret"`
	// User: the value of a key whose name says user (see UserKeys).
	// Default hash.
	User DetectorConfig `yaml:"user"`
}

// DetectorConfig configures one value detector.
type DetectorConfig struct {
	// Enabled runs the detector. Default true.
	Enabled bool `yaml:"enabled"`
	// Method is one of mask, hash, drop, replace (and truncate for ip).
	// Default: see Detectors.
	Method Method `yaml:"method"`
	// Replacement is the text of the replace method. Default "[redacted]".
	Replacement string `yaml:"replacement"`
}

// FieldRule applies one method to whole fields, or JSON members inside raw
// fields, by name.
type FieldRule struct {
	// Datasets are globs on event.dataset ('*' matches any run of
	// characters) the rule applies to. Default: none, meaning every dataset.
	Datasets []string `yaml:"datasets"`
	// Fields are globs on the dotted field path, matched case-insensitively.
	// Inside a raw JSON field a member's path is the field key plus the
	// member names, arrays left out: "exception.stacktrace.frames.vars".
	// Required.
	Fields []string `yaml:"fields"`
	// Method is what to do with a matching value: mask, hash, truncate,
	// drop, replace, keep or scrub. Under an object or array it applies to
	// every string inside (numbers become 0, booleans stay). Required.
	Method Method `yaml:"method"`
	// Type names what was found: the mask tag ("[type]"), the pseudonym
	// prefix and the scrub count (leitstand.scrub.<type>); lower-case
	// letters, digits and '_'. Default "redacted".
	Type string `yaml:"type"`
	// Replacement is the text of the replace method. Default "[redacted]".
	Replacement string `yaml:"replacement"`
}

// DefaultReplacement is the text of the replace method when none is set.
const DefaultReplacement = "[redacted]"

// DefaultConfig returns the safe defaults: e-mail addresses and user names
// hashed, IP addresses truncated, everything else masked, built-in rules on.
func DefaultConfig() Config {
	on := func(m Method) DetectorConfig {
		return DetectorConfig{Enabled: true, Method: m, Replacement: DefaultReplacement}
	}
	return Config{
		IPv4Prefix: 24,
		IPv6Prefix: 48,
		Detectors: Detectors{
			Email:          on(MethodHash),
			IP:             on(MethodTruncate),
			MAC:            on(MethodMask),
			Card:           on(MethodMask),
			IBAN:           on(MethodMask),
			Phone:          on(MethodMask),
			JWT:            on(MethodMask),
			Credential:     on(MethodMask),
			URLCredentials: on(MethodMask),
			APIKey:         on(MethodMask),
			PrivateKey:     on(MethodMask),
			TaxID:          on(MethodMask),
			HomePath:       on(MethodMask),
			Secret:         on(MethodMask),
			User:           on(MethodHash),
		},
		SkipFields:   []string{"event.ingested", "event.dataset", "leitstand.*"},
		BuiltinRules: true,
	}
}

// detectorConfigs lists the detectors with their config names, in the order
// of the detector ids.
func (d *Detectors) list() [numDetectors]*DetectorConfig {
	return [numDetectors]*DetectorConfig{
		detEmail: &d.Email, detIP: &d.IP, detMAC: &d.MAC, detCard: &d.Card,
		detIBAN: &d.IBAN, detPhone: &d.Phone, detJWT: &d.JWT,
		detCredential: &d.Credential, detURLCredentials: &d.URLCredentials,
		detAPIKey: &d.APIKey, detPrivateKey: &d.PrivateKey, detTaxID: &d.TaxID,
		detHomePath: &d.HomePath, detSecret: &d.Secret, detUser: &d.User,
	}
}

// maxRules bounds the number of field rules (user and built-in), because
// the rules that apply to an event's dataset are kept in a bit set.
const maxRules = 64

// Validate reports every problem of the config at once, with key paths
// relative to the anonymize section.
func (c *Config) Validate() error {
	var errs config.Errors
	if c.HashKeyFile != "" {
		// Read it here too, so `leitstand check` reports a missing or short
		// key instead of the start-up.
		if _, err := loadKey(c, ""); err != nil {
			errs.Nest("", err)
		}
	}
	if c.HashKeyID != "" && !validKeyID(c.HashKeyID) {
		errs.Addf("hash_key_id", "%q is not 1 to 16 lower-case letters and digits", c.HashKeyID)
	}
	if c.IPv4Prefix < 0 || c.IPv4Prefix > 32 {
		errs.Addf("ipv4_prefix", "%d is out of range (want 0 to 32)", c.IPv4Prefix)
	}
	if c.IPv6Prefix < 0 || c.IPv6Prefix > 128 {
		errs.Addf("ipv6_prefix", "%d is out of range (want 0 to 128)", c.IPv6Prefix)
	}
	for id, d := range c.Detectors.list() {
		path := "detectors." + detectorNames[id]
		switch d.Method {
		case MethodMask, MethodHash, MethodDrop:
		case MethodReplace:
			if d.Replacement == "" {
				errs.Addf(path+".replacement", "the replace method needs a replacement text")
			}
		case MethodTruncate:
			if id != detIP {
				errs.Addf(path+".method", "truncate only applies to the ip detector (want mask, hash, drop, replace)")
			}
		default:
			if id == detIP {
				errs.Addf(path+".method", "unknown method %q (want mask, hash, truncate, drop, replace)", d.Method)
			} else {
				errs.Addf(path+".method", "unknown method %q (want mask, hash, drop, replace)", d.Method)
			}
		}
	}
	for i, k := range c.SecretKeys {
		if !validKeyWord(k) {
			errs.Addf(config.JoinPath("secret_keys", indexPath(i)), "%q is not a key name (letters, digits, '_', '-', '.')", k)
		}
	}
	for i, k := range c.UserKeys {
		if !validKeyWord(k) {
			errs.Addf(config.JoinPath("user_keys", indexPath(i)), "%q is not a key name (letters, digits, '_', '-', '.')", k)
		}
	}
	for i, f := range c.SkipFields {
		if strings.TrimSpace(f) == "" {
			errs.Addf(config.JoinPath("skip_fields", indexPath(i)), "empty field name")
		}
	}
	if n := len(c.FieldRules) + len(builtinRules()); n > maxRules {
		errs.Addf("field_rules", "%d rules with the built-in ones; at most %d are supported", n, maxRules)
	}
	for i, r := range c.FieldRules {
		r.validate(&errs, config.JoinPath("field_rules", indexPath(i)))
	}
	return errs.Err()
}

func (r *FieldRule) validate(errs *config.Errors, path string) {
	if len(r.Fields) == 0 {
		errs.Addf(path+".fields", "a rule needs at least one field")
	}
	for i, f := range r.Fields {
		if strings.TrimSpace(f) == "" {
			errs.Addf(config.JoinPath(path, "fields", indexPath(i)), "empty field pattern")
		}
	}
	for i, d := range r.Datasets {
		if strings.TrimSpace(d) == "" {
			errs.Addf(config.JoinPath(path, "datasets", indexPath(i)), "empty dataset pattern")
		}
	}
	switch r.Method {
	case MethodMask, MethodHash, MethodTruncate, MethodDrop, MethodKeep, MethodScrub:
	case MethodReplace:
		if r.Replacement == "" {
			errs.Addf(path+".replacement", "the replace method needs a replacement text")
		}
	case "":
		errs.Addf(path+".method", "missing (want mask, hash, truncate, drop, replace, keep, scrub)")
	default:
		errs.Addf(path+".method", "unknown method %q (want mask, hash, truncate, drop, replace, keep, scrub)", r.Method)
	}
	if r.Type != "" && !validType(r.Type) {
		errs.Addf(path+".type", "%q is not a type name (lower-case letters, digits, '_', at most 32)", r.Type)
	}
}

func indexPath(i int) string { return "[" + itoa(i) + "]" }

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	neg := i < 0
	if neg {
		i = -i
	}
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	if neg {
		n--
		b[n] = '-'
	}
	return string(b[n:])
}

func validKeyID(s string) bool {
	if len(s) == 0 || len(s) > 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func validType(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return s[0] >= 'a' && s[0] <= 'z'
}

func validKeyWord(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

var _ config.Validator = (*Config)(nil)
