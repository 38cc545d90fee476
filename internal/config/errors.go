// Package config is leitstand's configuration machinery: strict YAML
// decoding with file, line and key path in every error, ${ENV} expansion,
// secrets read from files, and the error list that Validate methods build.
//
// Component configs live with their components; this package knows none of
// them, only how to decode and check any of them.
package config

import (
	"errors"
	"fmt"
	"strings"
)

// FieldError is a problem with one configuration key. Path is the dotted
// key path from the root ("sinks.file.max_file_bytes"); Line is filled in by
// Load from the YAML position of that key when it knows it.
type FieldError struct {
	File string
	Line int
	Path string
	Err  error
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
		if e.Line > 0 {
			fmt.Fprintf(&b, "%d:", e.Line)
		}
		b.WriteByte(' ')
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

// Errorf returns a FieldError for the key at path.
func Errorf(path, format string, args ...any) error {
	return &FieldError{Path: path, Err: fmt.Errorf(format, args...)}
}

// Errors collects the problems of a config so all of them are reported at
// once. The zero value is ready to use.
type Errors struct {
	list []error
}

// Addf records a problem with the key at path.
func (e *Errors) Addf(path, format string, args ...any) {
	e.list = append(e.list, Errorf(path, format, args...))
}

// Nest records the errors of a sub-config's Validate under prefix: an error
// at "listen" from the http section becomes "http.listen".
func (e *Errors) Nest(prefix string, err error) {
	for _, one := range Flatten(err) {
		var fe *FieldError
		if errors.As(one, &fe) {
			c := *fe
			c.Path = JoinPath(prefix, fe.Path)
			e.list = append(e.list, &c)
			continue
		}
		e.list = append(e.list, &FieldError{Path: prefix, Err: one})
	}
}

// Err returns the collected problems joined, or nil.
func (e *Errors) Err() error { return errors.Join(e.list...) }

// JoinPath joins key path parts with dots, skipping empty ones.
func JoinPath(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		if p == "" {
			continue
		}
		if b.Len() > 0 && !strings.HasPrefix(p, "[") {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

// Flatten undoes errors.Join (recursively), so each problem can be printed
// on a line of its own.
func Flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// Validator is implemented by every component config.
type Validator interface {
	Validate() error
}
