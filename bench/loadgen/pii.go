package loadgen

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"strings"
)

// PIISet is the personal data that went into a run, by value. Scan finds
// which of it came out again.
type PIISet map[string]string // value → kind

// Add records pieces of personal data.
func (s PIISet) Add(ps ...PII) {
	for _, p := range ps {
		s[p.Value] = p.Kind
	}
}

// Kinds counts the values of each kind.
func (s PIISet) Kinds() map[string]int {
	n := map[string]int{}
	for _, k := range s {
		n[k]++
	}
	return n
}

// Found is the result of a scan.
type Found struct {
	// Occurrences counts every value of the set found in the output, by
	// kind.
	Occurrences map[string]int `json:"occurrences"`
	// Distinct counts the different values found, by kind.
	Distinct map[string]int `json:"distinct"`
	// Examples holds up to three values found, for the report.
	Examples []string `json:"examples,omitempty"`

	seen map[string]bool
}

func newFound() *Found {
	return &Found{Occurrences: map[string]int{}, Distinct: map[string]int{}, seen: map[string]bool{}}
}

// ScanFiles reads files (gzip when the name ends in .gz) and reports which
// values of the set occur in them.
func (s PIISet) ScanFiles(paths []string) (*Found, error) {
	f := newFound()
	for _, p := range paths {
		if err := s.scanFile(p, f); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (s PIISet) scanFile(path string, f *Found) error {
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	var r io.Reader = fh
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(fh)
		if err != nil {
			return err
		}
		r = zr
	}
	br := bufio.NewReaderSize(r, 1<<20)
	var line []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		line = append(line, chunk...)
		if err == nil && isPrefix {
			continue
		}
		if len(line) > 0 {
			s.scan(line, f)
		}
		line = line[:0]
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Scan reports which values of the set occur in b.
func (s PIISet) Scan(b []byte) *Found {
	f := newFound()
	s.scan(b, f)
	return f
}

func (s PIISet) scan(b []byte, f *Found) {
	scanCandidates(b, func(_ string, v []byte) {
		kind, ok := s[string(v)]
		if !ok {
			return
		}
		f.Occurrences[kind]++
		if !f.seen[string(v)] {
			f.seen[string(v)] = true
			f.Distinct[kind]++
			if len(f.Examples) < 3 {
				f.Examples = append(f.Examples, string(v))
			}
		}
	})
}

func isLocal(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '+' || c == '-'
}

func isDomain(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-'
}

func isDigitDot(c byte) bool { return c >= '0' && c <= '9' || c == '.' }

func isHexColon(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':'
}

// scanCandidates calls fn with every string in b that could be an e-mail
// address (local@domain, also local%40domain), an IPv4 address (a maximal
// run of digits and dots with three inner dots) or an IPv6 address (a
// maximal run of hex digits and colons with at least two colons). It
// over-reports on purpose: the caller looks the candidates up in a set.
func scanCandidates(b []byte, fn func(kind string, v []byte)) {
	runs(b, isDigitDot, func(v []byte) {
		if v = bytes.Trim(v, "."); bytes.Count(v, []byte{'.'}) == 3 {
			fn("ipv4", v)
		}
	})
	runs(b, isHexColon, func(v []byte) {
		if bytes.Count(v, []byte{':'}) >= 2 {
			fn("ipv6", v)
		}
	})
	for i := 0; i < len(b); i++ {
		sep := 0
		switch {
		case b[i] == '@':
			sep = 1
		case b[i] == '%' && bytes.HasPrefix(b[i:], []byte("%40")):
			sep = 3
		default:
			continue
		}
		l := i
		for l > 0 && isLocal(b[l-1]) {
			l--
		}
		r := i + sep
		for r < len(b) && isDomain(b[r]) {
			r++
		}
		for r > i+sep && b[r-1] == '.' {
			r--
		}
		if l < i && r > i+sep {
			fn("email", b[l:r])
		}
	}
}

// runs calls fn with every maximal run of bytes in b for which in is true.
func runs(b []byte, in func(byte) bool, fn func([]byte)) {
	for i := 0; i < len(b); {
		if !in(b[i]) {
			i++
			continue
		}
		j := i + 1
		for j < len(b) && in(b[j]) {
			j++
		}
		fn(b[i:j])
		i = j
	}
}
