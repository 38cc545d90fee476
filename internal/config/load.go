package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaulter is implemented by config types that fill in their own defaults;
// Decode calls it on elements it creates (list items, map values, pointers),
// since those have no default from the enclosing config.
type Defaulter interface {
	SetDefaults()
}

// Source remembers where each key of a decoded file stands, so errors
// found later (by Validate) can name the file and line too.
type Source struct {
	File  string
	lines map[string]int
}

// Annotate adds file and line to every FieldError in err, using the line of
// the error's key path or, when that key is not in the file (a missing
// required key), of its nearest parent that is.
func (s *Source) Annotate(err error) error {
	var out []error
	for _, one := range Flatten(err) {
		var fe *FieldError
		if !errors.As(one, &fe) {
			out = append(out, &FieldError{File: s.File, Err: one})
			continue
		}
		c := *fe
		if c.File == "" {
			c.File = s.File
		}
		if c.Line == 0 {
			c.Line = s.Line(c.Path)
		}
		out = append(out, &c)
	}
	return errors.Join(out...)
}

// Line returns the line of path or of its nearest parent in the file (0 when
// none is there).
func (s *Source) Line(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := s.lines[p]; ok {
			return l
		}
	}
	return 0
}

func parentPath(p string) string {
	if i := strings.LastIndexAny(p, ".["); i >= 0 {
		return p[:i]
	}
	return ""
}

// LoadFile reads and decodes the YAML file at path into dst, which must
// point to a config struct already holding its defaults. Every problem found
// is returned at once, each with file, line and key path.
func LoadFile(path string, dst any) (*Source, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return &Source{File: path}, err
	}
	return Decode(path, data, dst)
}

// Decode is LoadFile for YAML already in memory; name is used in errors.
func Decode(name string, data []byte, dst any) (*Source, error) {
	src := &Source{File: name, lines: map[string]int{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return src, syntaxError(name, err)
	}
	if len(doc.Content) == 0 {
		return src, nil // an empty file means "all defaults"
	}
	d := &decoder{src: src}
	d.value(doc.Content[0], reflect.ValueOf(dst).Elem(), "")
	return src, errors.Join(d.errs...)
}

type decoder struct {
	src  *Source
	errs []error
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{File: d.src.File, Line: n.Line, Path: path, Err: fmt.Errorf(format, args...)})
}

var (
	durationType    = reflect.TypeOf(time.Duration(0))
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	defaulterType   = reflect.TypeOf((*Defaulter)(nil)).Elem()
)

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // "key:" with no value keeps the default
	}
	if n.Kind == yaml.ScalarNode {
		expanded, err := expandEnv(n.Value)
		if err != nil {
			d.fail(n, path, "%v", err)
			return
		}
		if expanded != n.Value {
			c := *n
			c.Value = expanded
			if c.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 {
				c.Tag = "" // unquoted: read the expanded text as if it had been written there
			}
			n = &c
		}
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.fail(n, path, "%v", cleanYAMLError(err))
		}
		return
	}
	switch {
	case v.Type() == durationType:
		d.duration(n, v, path)
	case v.Kind() == reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
			setDefaults(v)
		}
		d.value(n, v.Elem(), path)
	case v.Kind() == reflect.Struct:
		d.structure(n, v, path)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() != reflect.Uint8:
		d.sequence(n, v, path)
	case v.Kind() == reflect.Map:
		d.mapping(n, v, path)
	default:
		d.scalar(n, v, path)
	}
}

func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping of keys, got %s", describe(n))
		return
	}
	fields := yamlFields(v.Type())
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := JoinPath(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.fail(k, p, "key %q appears twice (first on line %d)", k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		idx, ok := fields[k.Value]
		if !ok {
			d.fail(k, p, "unknown key %q%s", k.Value, suggest(k.Value, fields))
			continue
		}
		d.src.lines[p] = k.Line
		d.value(val, v.Field(idx), p)
	}
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "want a list, got %s", describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		p := path + "[" + strconv.Itoa(i) + "]"
		d.src.lines[p] = item.Line
		setDefaults(s.Index(i).Addr())
		d.value(item, s.Index(i), p)
	}
	v.Set(s)
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping, got %s", describe(n))
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		d.fail(n, path, "internal: map keys must be strings")
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := JoinPath(path, k.Value)
		if v.MapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key())).IsValid() && d.src.lines[p] != 0 {
			d.fail(k, p, "key %q appears twice (first on line %d)", k.Value, d.src.lines[p])
			continue
		}
		d.src.lines[p] = k.Line
		elem := reflect.New(v.Type().Elem())
		setDefaults(elem)
		d.value(val, elem.Elem(), p)
		v.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), elem.Elem())
	}
}

func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "want %s, got %s", kindName(v), describe(n))
		return
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		d.fail(n, path, "want %s, got %q", kindName(v), n.Value)
	}
}

func (d *decoder) duration(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "want a duration such as 30s or 5m, got %s", describe(n))
		return
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		if n.Value == "0" {
			v.SetInt(0)
			return
		}
		d.fail(n, path, "want a duration such as 30s or 5m, got %q", n.Value)
		return
	}
	v.SetInt(int64(dur))
}

func setDefaults(ptr reflect.Value) {
	if ptr.Type().Implements(defaulterType) {
		ptr.Interface().(Defaulter).SetDefaults()
	}
}

// yamlFields maps YAML key to field index; fields tagged "-" or unexported
// are not settable from YAML.
func yamlFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		if name := yamlName(t.Field(i)); name != "" {
			m[name] = i
		}
	}
	return m
}

func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

func kindName(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	}
	return v.Type().String()
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

// suggest names the closest known key, for the typo that is the most
// common config error.
func suggest(key string, fields map[string]int) string {
	best, bestDist := "", len(key)/2+1
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if dist := levenshtein(key, name); dist < bestDist {
			best, bestDist = name, dist
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return fmt.Sprintf(" (known keys: %s)", strings.Join(names, ", "))
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// syntaxError turns the parser's "yaml: line 3: …" into file:3: ….
func syntaxError(name string, err error) error {
	msg := cleanYAMLError(err).Error()
	var line int
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, after, ok := strings.Cut(rest, ": "); ok {
			if l, err := strconv.Atoi(num); err == nil {
				line, msg = l, after
			}
		}
	}
	return &FieldError{File: name, Line: line, Err: errors.New("YAML syntax: " + msg)}
}

// cleanYAMLError drops the "yaml: " prefix; the file name says it is YAML.
func cleanYAMLError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	return errors.New(msg)
}

// expandEnv replaces ${NAME} and ${NAME:-default} with the environment's
// values; $$ stands for a literal $. It works on decoded scalar values, not
// on the file's text, so a value can never inject YAML structure.
func expandEnv(s string) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '$' {
			b.WriteByte('$')
			i++
			continue
		}
		if i+1 >= len(s) || s[i+1] != '{' {
			b.WriteByte('$')
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unterminated ${ in %q", s)
		}
		expr := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(expr, ":-")
		if !validEnvName(name) {
			return "", fmt.Errorf("invalid environment variable name %q in ${%s}", name, expr)
		}
		val, ok := os.LookupEnv(name)
		switch {
		case ok && val != "":
			b.WriteString(val)
		case hasDef:
			b.WriteString(def)
		case ok:
			// set but empty: an empty value is what the user asked for
		default:
			return "", fmt.Errorf("environment variable %s is not set (write ${%s:-default} for a fallback)", name, name)
		}
		i += end
	}
	return b.String(), nil
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r != '_' && (r < 'A' || r > 'Z') && (r < 'a' || r > 'z') && (i == 0 || r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// Keys lists every key path a config type accepts, for the documentation
// test: lists appear as "key[]", maps as "key.<name>".
func Keys(t reflect.Type) []string {
	var out []string
	keys(t, "", &out, map[reflect.Type]bool{})
	sort.Strings(out)
	return out
}

func keys(t reflect.Type, path string, out *[]string, seen map[reflect.Type]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType || reflect.PointerTo(t).Implements(unmarshalerType) {
		*out = append(*out, path)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if seen[t] {
			return
		}
		seen[t] = true
		defer delete(seen, t)
		if path != "" {
			*out = append(*out, path)
		}
		for i := 0; i < t.NumField(); i++ {
			if name := yamlName(t.Field(i)); name != "" {
				keys(t.Field(i).Type, JoinPath(path, name), out, seen)
			}
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct || t.Elem().Kind() == reflect.Pointer {
			*out = append(*out, path)
			keys(t.Elem(), path+"[]", out, seen)
			return
		}
		*out = append(*out, path)
	case reflect.Map:
		*out = append(*out, path)
		if t.Elem().Kind() == reflect.Struct || t.Elem().Kind() == reflect.Pointer {
			keys(t.Elem(), path+".<name>", out, seen)
		}
	default:
		*out = append(*out, path)
	}
}
