package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

type sample struct {
	Name   string            `yaml:"name"`
	Port   int               `yaml:"port"`
	Wait   time.Duration     `yaml:"wait"`
	Size   ByteSize          `yaml:"size"`
	Token  Secret            `yaml:"token"`
	Items  []item            `yaml:"items"`
	ByName map[string]item   `yaml:"by_name"`
	Labels map[string]string `yaml:"labels"`
	Nested *item             `yaml:"nested"`
}

type item struct {
	Key   string `yaml:"key"`
	Level int    `yaml:"level"`
}

// SetDefaults gives list and map items their own default.
func (i *item) SetDefaults() { i.Level = 3 }

func TestDecodeExpandsEnvAndKeepsDefaults(t *testing.T) {
	t.Setenv("CFG_TEST_PORT", "9090")
	t.Setenv("CFG_TEST_EMPTY", "")
	s := sample{Name: "default-name", Wait: time.Second}
	_, err := Decode("x.yaml", []byte(`
port: ${CFG_TEST_PORT}
size: 64KiB
token: "${CFG_TEST_MISSING:-fallback}$$literal"
labels: {a: "${CFG_TEST_EMPTY}"}
items:
  - key: one
  - key: two
    level: 7
by_name:
  x: {key: ex}
nested: {key: n}
`), &s)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "default-name" || s.Wait != time.Second {
		t.Errorf("defaults lost: %+v", s)
	}
	if s.Port != 9090 || s.Size != 64<<10 || s.Token.Reveal() != "fallback$literal" || s.Labels["a"] != "" {
		t.Errorf("values: %+v token %q", s, s.Token.Reveal())
	}
	if len(s.Items) != 2 || s.Items[0].Level != 3 || s.Items[1].Level != 7 || s.ByName["x"].Level != 3 || s.Nested.Level != 3 {
		t.Errorf("item defaults: %+v %+v %+v", s.Items, s.ByName, s.Nested)
	}
}

func TestDecodeReportsEveryProblemWithLineAndPath(t *testing.T) {
	var s sample
	_, err := Decode("x.yaml", []byte(`
nmae: a
port: eighty
items:
  - key: one
    levle: 2
by_name:
  x: {key: ex, extra: 1}
wait: ${CFG_TEST_SURELY_UNSET}
`), &s)
	got := []string{}
	for _, e := range Flatten(err) {
		got = append(got, e.Error())
	}
	want := []string{
		`x.yaml:2: nmae: unknown key "nmae" (did you mean "name"?)`,
		`x.yaml:3: port: want a whole number, got "eighty"`,
		`x.yaml:6: items[0].levle: unknown key "levle" (did you mean "level"?)`,
		`x.yaml:8: by_name.x.extra: unknown key "extra" (known keys: key, level)`,
		`x.yaml:9: wait: environment variable CFG_TEST_SURELY_UNSET is not set`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}

func TestAnnotateFindsNearestParentLine(t *testing.T) {
	var s sample
	src, err := Decode("x.yaml", []byte("name: a\nnested:\n  key: k\n"), &s)
	if err != nil {
		t.Fatal(err)
	}
	var errs Errors
	errs.Nest("nested", Errorf("level", "must be positive"))
	got := src.Annotate(errs.Err()).Error()
	if got != "x.yaml:2: nested.level: must be positive" {
		t.Fatalf("got %q", got)
	}
	var fe *FieldError
	if !errors.As(src.Annotate(errs.Err()), &fe) {
		t.Fatal("annotated error is not a FieldError")
	}
}

func TestExpandEnvDoesNotInjectYAML(t *testing.T) {
	t.Setenv("CFG_TEST_INJECT", "a\nport: 1")
	var s sample
	if _, err := Decode("x.yaml", []byte("name: ${CFG_TEST_INJECT}\n"), &s); err != nil {
		t.Fatal(err)
	}
	if s.Name != "a\nport: 1" || s.Port != 0 {
		t.Fatalf("expansion changed the structure: %+v", s)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"512": 512, "64KiB": 64 << 10, "16 MiB": 16 << 20, "10MB": 10e6, "1GiB": 1 << 30, "3B": 3} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("%q: %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5GiB", "12 parsecs", "99999999999TiB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
	if s := ByteSize(16 << 20).String(); s != "16MiB" {
		t.Errorf("String() = %q", s)
	}
}

func TestKeys(t *testing.T) {
	got := strings.Join(Keys(typeOf[sample]()), " ")
	want := "by_name by_name.<name> by_name.<name>.key by_name.<name>.level items items[] items[].key items[].level labels name nested nested.key nested.level port size token wait"
	if got != want {
		t.Fatalf("Keys:\n got %s\nwant %s", got, want)
	}
}

func typeOf[T any]() reflect.Type { return reflect.TypeOf((*T)(nil)).Elem() }
