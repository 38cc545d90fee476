package rules

import (
	"fmt"
	"io"

	"github.com/leitstand/leitstand/rules/ruletest"
)

// RunRuleTests runs unit test files in promtool's format (`leitstand rules
// test FILE…`), writing promtool's report to stdout. failed is true when a
// test failed; err is set when no file could be found at all.
func RunRuleTests(files []string, stdout io.Writer) (failed bool, err error) {
	if len(files) == 0 {
		return true, fmt.Errorf("rules test: no test files given")
	}
	p := newParser()
	return ruletest.Run(stdout, ruletest.Options{Loader: fileLoader{parser: p}, Parser: p}, files...), nil
}
