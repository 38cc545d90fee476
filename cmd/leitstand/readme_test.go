package main

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/leitstand/leitstand/internal/config"
	"gopkg.in/yaml.v3"
)

var readmeRow = regexp.MustCompile("^\\| `([a-z0-9_.\\[\\]<>]+)` \\| *([^|]*?) *\\|")

// documentedKeys reads the configuration reference table of README.md:
// key → documented default.
func documentedKeys(t *testing.T) map[string]string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "## Configuration reference")
	if !ok {
		t.Fatal("README.md has no configuration reference")
	}
	keys := map[string]string{}
	for _, line := range strings.Split(section, "\n") {
		if m := readmeRow.FindStringSubmatch(line); m != nil {
			keys[m[1]] = strings.TrimSpace(m[2])
		}
	}
	return keys
}

// TestREADMEDocumentsEveryConfigKey keeps the reference and the code in
// step: every key the code accepts is documented, every documented key
// exists, and documented defaults are the real ones.
func TestREADMEDocumentsEveryConfigKey(t *testing.T) {
	documented := documentedKeys(t)
	accepted := config.Keys(reflect.TypeOf(Config{}))
	for _, k := range accepted {
		if documentedAs(documented, k) == "" {
			t.Errorf("config key %s is not documented in README.md", k)
		}
	}
	for k := range documented {
		found := false
		for _, a := range accepted {
			found = found || matchKey(k, a)
		}
		if !found {
			t.Errorf("README.md documents %s, which the config does not have", k)
		}
	}
	defaults := DefaultConfig("DATA")
	for k, doc := range documented {
		want, ok := strings.CutPrefix(doc, "`")
		if !ok {
			continue // described in words ("number of CPUs", "none")
		}
		want = strings.TrimSuffix(want, "`")
		for _, a := range accepted {
			if !matchKey(k, a) || strings.Contains(a, "[]") {
				continue // list items have no default of their own
			}
			got, leaf := defaultOf(reflect.ValueOf(defaults), strings.Split(a, "."))
			if !leaf {
				t.Errorf("README.md gives %s a default, but it is a section", a)
				continue
			}
			if got != want {
				t.Errorf("README.md says %s defaults to %q; the code says %q", a, want, got)
			}
		}
	}
}

// defaultOf formats the value at a key path the way the README writes it.
func defaultOf(v reflect.Value, path []string) (string, bool) {
	for _, name := range path {
		if v.Kind() != reflect.Struct {
			return "", false
		}
		found := false
		for i := 0; i < v.NumField(); i++ {
			tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
			if tag == name {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return "", false
		}
	}
	switch x := v.Interface().(type) {
	case time.Duration:
		return x.String(), true
	case fmt.Stringer:
		return x.String(), true
	case []string:
		return strings.Join(x, "`, `"), true // written `a`, `b` in the table
	}
	if v.Kind() == reflect.Struct {
		return "", false
	}
	return fmt.Sprint(v.Interface()), true
}

// TestExampleConfigKeysAreDocumented checks the example config uses only
// documented keys.
func TestExampleConfigKeysAreDocumented(t *testing.T) {
	documented := documentedKeys(t)
	data, err := os.ReadFile("testdata/good/production.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var used []string
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := config.JoinPath(prefix, n.Content[i].Value)
				used = append(used, k)
				walk(n.Content[i+1], k)
			}
		}
	}
	walk(doc.Content[0], "")
	sort.Strings(used)
	if len(used) < 20 {
		t.Fatalf("the example config uses only %d keys; it should show every section", len(used))
	}
	for _, k := range used {
		if documentedAs(documented, k) == "" {
			t.Errorf("example config key %s is not documented", k)
		}
	}
}

// matchKey reports whether the documented key pattern doc names key; a
// segment in angle brackets (<detector>) stands for any one segment.
func matchKey(doc, key string) bool {
	ds, ks := strings.Split(doc, "."), strings.Split(key, ".")
	if len(ds) != len(ks) {
		return false
	}
	for i := range ds {
		if ds[i] != ks[i] && !(strings.HasPrefix(ds[i], "<") && strings.HasSuffix(ds[i], ">") && ds[i] != "<name>") {
			return false
		}
	}
	return true
}

// documentedAs returns the documented pattern that names key, or "".
func documentedAs(documented map[string]string, key string) string {
	if _, ok := documented[key]; ok {
		return key
	}
	for doc := range documented {
		if matchKey(doc, key) {
			return doc
		}
	}
	return ""
}
