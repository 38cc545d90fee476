package anonymize

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/leitstand/leitstand/internal/config"
)

func TestDefaultConfigIsValid(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := DefaultConfig()
	c.HashKeyID = "K 1"
	c.IPv4Prefix = 33
	c.Detectors.Email.Method = "blur"
	c.Detectors.Card.Method = MethodTruncate
	c.Detectors.Phone.Method = MethodReplace
	c.Detectors.Phone.Replacement = ""
	c.SecretKeys = []string{"ok_key", "bad key"}
	c.FieldRules = []FieldRule{{Method: "zap", Type: "Bad-Type"}}
	err := c.Validate()
	var paths []string
	for _, e := range config.Flatten(err) {
		var fe *config.FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("not a FieldError: %v", e)
		}
		paths = append(paths, fe.Path)
	}
	want := []string{"hash_key_id", "ipv4_prefix", "detectors.email.method", "detectors.card.method",
		"detectors.phone.replacement", "secret_keys[1]", "field_rules[0].fields", "field_rules[0].method", "field_rules[0].type"}
	if strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Errorf("error paths:\n got %v\nwant %v\n%v", paths, want, err)
	}
	if !strings.Contains(err.Error(), `unknown method "blur" (want mask, hash, drop, replace)`) {
		t.Errorf("message: %v", err)
	}
}

// TestYAMLKeepsDefaults decodes a partial section the way the daemon does
// (strictly, over the defaults): what is not written keeps its default.
func TestYAMLKeepsDefaults(t *testing.T) {
	c := DefaultConfig()
	dec := yaml.NewDecoder(strings.NewReader(`
hash_key_id: k2
detectors:
  email: {method: mask}
  phone: {enabled: false}
field_rules:
  - datasets: ["moodle.*"]
    fields: ["labels.student"]
    method: hash
    type: student
`))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !c.Detectors.Email.Enabled || c.Detectors.Email.Method != MethodMask || c.Detectors.Phone.Enabled || c.IPv4Prefix != 24 || !c.BuiltinRules {
		t.Errorf("defaults lost: %+v", c)
	}
	dec = yaml.NewDecoder(strings.NewReader("detectors:\n  emial: {method: mask}\n"))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err == nil {
		t.Error("an unknown key was accepted")
	}
}

func TestGeneratedKeyIsKeptAndReused(t *testing.T) {
	dir := t.TempDir()
	a, err := New(DefaultConfig(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "anonymize.key"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	b, err := New(DefaultConfig(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if x, y := a.ScrubString("jane@example.com"), b.ScrubString("jane@example.com"); x != y {
		t.Errorf("pseudonyms differ across restarts: %q, %q", x, y)
	}
	if !strings.HasPrefix(a.keyID, "k") || len(a.keyID) != 5 || !validKeyID(a.keyID) {
		t.Errorf("derived key id %q", a.keyID)
	}
	c, err := New(DefaultConfig(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.keyID == a.keyID || c.ScrubString("jane@example.com") == a.ScrubString("jane@example.com") {
		t.Error("two generated keys gave the same id or pseudonym")
	}
}

func TestHashKeyFile(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("tooshort\n"), 0o600)
	cfg := DefaultConfig()
	cfg.HashKeyFile = short
	if _, err := New(cfg, dir, nil); err == nil || !strings.Contains(err.Error(), "hash_key_file") {
		t.Errorf("short key: %v", err)
	}
	cfg.HashKeyFile = filepath.Join(dir, "missing")
	if _, err := New(cfg, dir, nil); err == nil || !strings.Contains(err.Error(), "hash_key_file") {
		t.Errorf("missing key: %v", err)
	}
	if _, err := New(DefaultConfig(), "", nil); err == nil {
		t.Error("no key file and no data directory was accepted")
	}
	// the same key in two replicas gives the same pseudonyms; a rotated key
	// gives others, under another id
	one, two := filepath.Join(dir, "one"), filepath.Join(dir, "two")
	os.WriteFile(one, bytes.Repeat([]byte("a"), 32), 0o600)
	os.WriteFile(two, bytes.Repeat([]byte("b"), 32), 0o600)
	mk := func(path string) *Anonymizer {
		c := DefaultConfig()
		c.HashKeyFile = path
		a, err := New(c, t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	r1, r2, rot := mk(one), mk(one), mk(two)
	if r1.ScrubString("user=alice") != r2.ScrubString("user=alice") {
		t.Error("replicas with one key disagree")
	}
	x, y := r1.ScrubString("user=alice"), rot.ScrubString("user=alice")
	if x == y || strings.Split(x, ":")[1] == strings.Split(y, ":")[1] {
		t.Errorf("rotation kept the pseudonym or the id: %q, %q", x, y)
	}
}

func TestReplacementMustNotBeScrubbed(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HashKeyFile = ""
	cfg.Detectors.Phone.Method = MethodReplace
	cfg.Detectors.Phone.Replacement = "call 030 1234567"
	if _, err := New(cfg, t.TempDir(), nil); err == nil {
		t.Error("a replacement that is itself a phone number was accepted")
	}
}

func TestExtraKeyNames(t *testing.T) {
	a := newTestAnonymizer(t, func(c *Config) {
		c.SecretKeys = []string{"tan", "recovery_code", "Mandate-Ref"}
		c.UserKeys = []string{"schueler", "student_number"}
	})
	for in, want := range map[string]string{
		"sms_tan=123456":             "sms_tan=[secret]",
		"tanCode: 99x":               "tanCode: [secret]",
		"recovery_code=abcd-efgh":    "recovery_code=[secret]",
		"mandate_ref=M-2026-11":      "mandate_ref=[secret]",
		"schueler=lisa":              "schueler=user:HASH",
		`{"student_number":"s4711"}`: `{"student_number":"user:HASH"}`,
		"code=200 ref=x":             "code=200 ref=x",
	} {
		if got := hideHashes(a.ScrubString(in)); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}
