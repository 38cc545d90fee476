package anonymize

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/leitstand/leitstand/collector"
)

var update = flag.Bool("update", false, "regenerate testdata/corpus.txt")

const corpusFile = "testdata/corpus.txt"

// span is one marked value of a corpus line.
type span struct {
	typ, val string
	pii      bool
}

// parseCorpusLine strips the markup and returns the plain line and its spans.
func parseCorpusLine(line string) (string, []span) {
	var b strings.Builder
	var spans []span
	for {
		i := strings.IndexAny(line, "⟦⟪")
		if i < 0 {
			b.WriteString(line)
			return b.String(), spans
		}
		b.WriteString(line[:i])
		open, _ := utf8.DecodeRuneInString(line[i:])
		closer := "⟧"
		if open == '⟪' {
			closer = "⟫"
		}
		rest := line[i+utf8.RuneLen(open):]
		j := strings.Index(rest, closer)
		if j < 0 {
			panic("unclosed span in corpus: " + line)
		}
		body := rest[:j]
		colon := strings.IndexByte(body, ':')
		sp := span{typ: body[:colon], val: body[colon+1:], pii: open == '⟦'}
		spans = append(spans, sp)
		b.WriteString(sp.val)
		line = rest[j+len(closer):]
	}
}

func isSentryLine(plain string) bool {
	return strings.HasPrefix(plain, "{") && strings.Contains(plain, `"event_id"`)
}

// scrubCorpusLine scrubs a line the way the daemon would: a Sentry event
// through Process, anything else as text.
func scrubCorpusLine(t testing.TB, a *Anonymizer, plain string) string {
	if !isSentryLine(plain) {
		return a.ScrubString(plain)
	}
	b := collector.NewBatch("corpus")
	defer b.Release()
	e := b.Next()
	e.Fields = append(e.Fields, flattenJSON(t, []byte(plain))...)
	e.AddString(collector.FieldDataset, "sentry.error")
	a.Process(b)
	return encode(e)
}

type tally struct{ total, hit int }

// TestCorpus measures recall (personal data removed) and the false
// positive rate (look-alikes altered) on the labelled corpus.
func TestCorpus(t *testing.T) {
	if *update {
		text := generateCorpus()
		if err := os.WriteFile(corpusFile, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		writeFuzzSeeds(t, text)
	}
	f, err := os.Open(corpusFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a := newTestAnonymizer(t)
	recall := map[string]*tally{}
	fp := map[string]*tally{}
	var misses, falsePositives []string
	lines := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		lines++
		plain, spans := parseCorpusLine(line)
		out := scrubCorpusLine(t, a, plain)
		if !utf8.ValidString(out) {
			t.Errorf("invalid UTF-8 out of %q", plain)
		}
		if !isSentryLine(plain) {
			if again := a.ScrubString(out); again != out {
				t.Errorf("not idempotent:\n once %q\ntwice %q", out, again)
			}
		}
		for _, s := range spans {
			m := fp
			if s.pii {
				m = recall
			}
			if m[s.typ] == nil {
				m[s.typ] = &tally{}
			}
			m[s.typ].total++
			if s.pii {
				if !strings.Contains(out, s.val) {
					m[s.typ].hit++
				} else {
					misses = append(misses, fmt.Sprintf("%s %q in %q", s.typ, s.val, out))
				}
				continue
			}
			// a look-alike must be in the output as often as in the input
			// (its JSON encoding for Sentry events)
			want := strings.Count(plain, s.val)
			if strings.Count(out, s.val) < want {
				m[s.typ].hit++
				falsePositives = append(falsePositives, fmt.Sprintf("%s %q in %q", s.typ, s.val, out))
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	sum := func(m map[string]*tally) (tot, hit int, report []string) {
		for typ, c := range m {
			tot += c.total
			hit += c.hit
			report = append(report, fmt.Sprintf("%s %d/%d", typ, c.hit, c.total))
		}
		sort.Strings(report)
		return
	}
	pt, ph, pr := sum(recall)
	bt, bh, br := sum(fp)
	r := float64(ph) / float64(pt)
	fpr := float64(bh) / float64(bt)
	t.Logf("corpus: %d lines, %d personal-data spans, %d look-alike spans", lines, pt, bt)
	t.Logf("recall %.4f (%d/%d removed): %s", r, ph, pt, strings.Join(pr, ", "))
	t.Logf("false positives %.4f (%d/%d altered): %s", fpr, bh, bt, strings.Join(br, ", "))
	for i, m := range misses {
		if i == 20 {
			t.Logf("… %d more misses", len(misses)-20)
			break
		}
		t.Logf("miss: %s", m)
	}
	for i, m := range falsePositives {
		if i == 20 {
			t.Logf("… %d more false positives", len(falsePositives)-20)
			break
		}
		t.Logf("false positive: %s", m)
	}
	if lines < 2000 {
		t.Errorf("corpus has %d lines, want at least 2000", lines)
	}
	if r < 0.99 {
		t.Errorf("recall %.4f is below 0.99", r)
	}
	if fpr > 0.005 {
		t.Errorf("false positive rate %.4f is above 0.005", fpr)
	}
}

// writeFuzzSeeds keeps every 97th corpus line, without markup, as a seed of
// FuzzScrub in testdata/fuzz/FuzzScrub.
func writeFuzzSeeds(t *testing.T, text string) {
	dir := filepath.Join("testdata", "fuzz", "FuzzScrub")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(text, "\n") {
		if i%97 != 5 || line == "" {
			continue
		}
		plain, _ := parseCorpusLine(line)
		seed := "go test fuzz v1\nstring(" + strconv.Quote(plain) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("corpus-%04d", i)), []byte(seed), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
