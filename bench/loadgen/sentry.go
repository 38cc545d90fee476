package loadgen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// SentryRequest is one request a real SDK sent, as captured in the sample
// files of bench/testdata/sentry (copied from shared/samples/sentry).
type SentryRequest struct {
	// Name is the sample file and request, e.g. "sentry-go-envelope.txt#req-001".
	Name string
	// Path is the request target, query string included
	// (/api/42/envelope/?sentry_key=…).
	Path string
	// Header holds the headers that matter to the receiver: authentication,
	// content type, content encoding, user agent.
	Header http.Header
	// Body is the decoded body; Gzip says the SDK compressed it.
	Body []byte
	Gzip bool
	// Chunked says the SDK sent the body without Content-Length
	// (@sentry/node does).
	Chunked bool
	// EventID is the envelope header's event_id, "" when it has none.
	EventID string
	// Events is how many events leitstand makes of the request: one per
	// event and check-in, a transaction and each of its spans, each record
	// of log and span containers; none for sessions, client reports and
	// attachments (docs of collector/sentry).
	Events int
}

// LoadSentrySamples reads every complete request ("######## req-NNN"
// sections with their whole decoded body) of the *.txt files in dir.
func LoadSentrySamples(dir string) ([]SentryRequest, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var reqs []SentryRequest
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		rs, err := parseSamples(filepath.Base(f), data)
		if err != nil {
			return nil, err
		}
		reqs = append(reqs, rs...)
	}
	if len(reqs) == 0 {
		return nil, fmt.Errorf("no Sentry samples in %s", dir)
	}
	return reqs, nil
}

const (
	reqMarker     = "######## req-"
	decodedMarker = "# decoded body: "
)

// parseSamples cuts a capture file into its requests. A request section is
// the marker, the request line, the headers, a blank line, comment lines
// about the body and then exactly as many body bytes as "# decoded body: N
// bytes" says.
func parseSamples(file string, data []byte) ([]SentryRequest, error) {
	var reqs []SentryRequest
	for {
		i := bytes.Index(data, []byte(reqMarker))
		if i < 0 {
			return reqs, nil
		}
		data = data[i:]
		nl := bytes.IndexByte(data, '\n')
		if nl < 0 {
			return nil, fmt.Errorf("%s: truncated section", file)
		}
		name := file + "#" + strings.TrimSuffix(strings.TrimPrefix(string(data[:nl]), "######## "), ".txt")
		data = data[nl+1:]
		var r SentryRequest
		r.Name = name
		r.Header = http.Header{}
		// Request line, then headers up to the blank line.
		lines := 0
		for {
			nl := bytes.IndexByte(data, '\n')
			if nl < 0 {
				return nil, fmt.Errorf("%s: no end of headers", name)
			}
			line := strings.TrimRight(string(data[:nl]), "\r")
			data = data[nl+1:]
			if line == "" {
				break
			}
			if lines == 0 {
				f := strings.Fields(line)
				if len(f) != 3 || f[0] != "POST" {
					return nil, fmt.Errorf("%s: request line %q", name, line)
				}
				r.Path = f[1]
			} else {
				k, v, ok := strings.Cut(line, ":")
				if !ok {
					return nil, fmt.Errorf("%s: header line %q", name, line)
				}
				k, v = http.CanonicalHeaderKey(strings.TrimSpace(k)), strings.TrimSpace(v)
				switch k {
				case "Content-Encoding":
					r.Gzip = v == "gzip"
					if !r.Gzip && v != "" {
						return nil, fmt.Errorf("%s: content encoding %q", name, v)
					}
				case "Transfer-Encoding":
					r.Chunked = v == "chunked"
				case "X-Sentry-Auth", "Content-Type", "User-Agent", "Authorization":
					r.Header.Set(k, v)
				}
			}
			lines++
		}
		j := bytes.Index(data, []byte(decodedMarker))
		if j < 0 {
			return nil, fmt.Errorf("%s: no %q line", name, decodedMarker)
		}
		data = data[j+len(decodedMarker):]
		nl = bytes.IndexByte(data, '\n')
		n, err := strconv.Atoi(strings.TrimSuffix(string(data[:nl]), " bytes"))
		if err != nil || nl+1+n > len(data) {
			return nil, fmt.Errorf("%s: body length: %q", name, data[:nl])
		}
		r.Body = append([]byte(nil), data[nl+1:nl+1+n]...)
		data = data[nl+1+n:]
		if !strings.Contains(r.Path, "/envelope/") {
			return nil, fmt.Errorf("%s: not an envelope request: %s", name, r.Path)
		}
		r.EventID, r.Events, err = countEnvelope(r.Body)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", name, err)
		}
		reqs = append(reqs, r)
	}
}

// countEnvelope reads an envelope's header and items and returns its
// event_id and the number of events the items make.
func countEnvelope(body []byte) (string, int, error) {
	line, rest := cutLine(body)
	var head struct {
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(line, &head); err != nil {
		return "", 0, fmt.Errorf("envelope header: %v", err)
	}
	events := 0
	for len(bytes.TrimSpace(rest)) > 0 {
		line, rest = cutLine(rest)
		var item struct {
			Type        string `json:"type"`
			Length      *int   `json:"length"`
			ContentType string `json:"content_type"`
		}
		if err := json.Unmarshal(line, &item); err != nil {
			return "", 0, fmt.Errorf("item header %q: %v", line, err)
		}
		var payload []byte
		if item.Length != nil {
			if *item.Length > len(rest) {
				return "", 0, fmt.Errorf("item %s: length %d beyond the body", item.Type, *item.Length)
			}
			payload, rest = rest[:*item.Length], rest[*item.Length:]
			if len(rest) > 0 && rest[0] == '\n' {
				rest = rest[1:]
			}
		} else {
			payload, rest = cutLine(rest)
		}
		var body struct {
			Spans []json.RawMessage `json:"spans"`
			Items []json.RawMessage `json:"items"`
		}
		switch item.Type {
		case "event", "check_in":
			events++
		case "transaction":
			if err := json.Unmarshal(payload, &body); err != nil {
				return "", 0, fmt.Errorf("transaction: %v", err)
			}
			events += 1 + len(body.Spans)
		case "span":
			if !strings.Contains(item.ContentType, "span.v2") {
				events++
				break
			}
			fallthrough
		case "log":
			if err := json.Unmarshal(payload, &body); err != nil {
				return "", 0, fmt.Errorf("%s: %v", item.Type, err)
			}
			events += len(body.Items)
		}
	}
	return head.EventID, events, nil
}

func cutLine(b []byte) (line, rest []byte) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, nil
}

// PII returns the personal data of the sample: e-mail addresses at
// reserved domains (also URL-encoded) and IPv4 addresses of the
// documentation ranges, which is how the SDK captures put a user's data
// into them. Loopback addresses, version numbers and the credentials of
// URLs (user:pw@host, masked by another detector) are not counted.
func (r *SentryRequest) PII() []PII {
	var out []PII
	seen := map[string]bool{}
	scanCandidates(r.Body, func(kind string, v []byte) {
		s := string(v)
		ok := false
		switch kind {
		case "email":
			_, domain, _ := strings.Cut(strings.Replace(s, "%40", "@", 1), "@")
			ok = (domain == "example.com" || domain == "example.org" || domain == "example.net") &&
				!bytes.Contains(r.Body, []byte(":"+s)) // user:pw@host is a URL credential
		case "ipv4":
			for _, n := range v4Nets {
				ok = ok || strings.HasPrefix(s, n)
			}
		}
		if ok && !seen[s] {
			seen[s] = true
			out = append(out, PII{kind, s})
		}
	})
	return out
}
