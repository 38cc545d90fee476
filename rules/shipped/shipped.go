// Package shipped holds the rule files leitstand ships (node load,
// PostgreSQL, MongoDB replica sets, leitstand itself) and their unit tests
// in promtool's format (tests/*_test.yml), which pass both with `promtool
// test rules` (Prometheus 2.42 and later) and `leitstand rules test`.
//
// Operators copy the files they want next to their own rules (or point
// rule_files at this folder); FS lets the binary write them out.
package shipped

import "embed"

// FS holds the shipped rule files (*.rules.yml) and their tests
// (tests/*_test.yml).
//
//go:embed *.rules.yml tests/*_test.yml
var FS embed.FS
