package sentry

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/leitstand/leitstand/collector"
)

// envelopeHeader is what leitstand reads from an envelope's first line.
type envelopeHeader struct {
	eventID string
	dsn     string
	sdkName string
	sdkVer  string
	// release, environment and traceID come from the dynamic sampling
	// context ("trace"), the fallback for items that carry none.
	release     string
	environment string
	traceID     string
}

// itemHeader is one item's header line.
type itemHeader struct {
	typ         string
	length      int // -1 when absent
	contentType string
	filename    string
	attachType  string
	itemCount   int
	// raw is the header line as sent, for forwarding.
	raw []byte
}

// item is one envelope item; payload points into the body.
type item struct {
	hdr     itemHeader
	payload []byte
}

// envelopeError is an envelope we refuse, with its status.
type envelopeError struct {
	status int
	reason string
}

func (e *envelopeError) Error() string { return e.reason }

func badEnvelope(format string, args ...any) error {
	return &envelopeError{400, fmt.Sprintf(format, args...)}
}

// parseEnvelope splits body into its header and items, checking structure
// only: item payloads are read by the normaliser. items is reused.
func parseEnvelope(body []byte, s *scanner, arena *collector.Arena, maxItems int, items []item) (envelopeHeader, []item, error) {
	var h envelopeHeader
	items = items[:0]
	line, rest := cutLine(body)
	if len(bytes.TrimSpace(line)) == 0 {
		return h, items, badEnvelope("the envelope header (the first line) must be a JSON object")
	}
	if err := h.parse(line, s, arena); err != nil {
		return h, items, badEnvelope("envelope header: %v", err)
	}
	n := 0
	for len(rest) > 0 {
		// Tolerate blank lines between items, as Relay does.
		if rest[0] == '\n' {
			rest = rest[1:]
			continue
		}
		if rest[0] == '\r' && len(rest) > 1 && rest[1] == '\n' {
			rest = rest[2:]
			continue
		}
		n++
		if n > maxItems {
			return h, items, &envelopeError{413, fmt.Sprintf("the envelope has more than %d items (max_items)", maxItems)}
		}
		line, rest = cutLine(rest)
		var it item
		if err := it.hdr.parse(line, s, arena); err != nil {
			return h, items, badEnvelope("item %d header: %v", n, err)
		}
		if it.hdr.length >= 0 {
			if it.hdr.length > len(rest) {
				return h, items, badEnvelope("item %d (%s) declares a length of %d bytes but only %d follow", n, it.hdr.typ, it.hdr.length, len(rest))
			}
			it.payload = rest[:it.hdr.length]
			rest = rest[it.hdr.length:]
			switch {
			case len(rest) == 0:
			case rest[0] == '\n':
				rest = rest[1:]
			case rest[0] == '\r' && len(rest) > 1 && rest[1] == '\n':
				rest = rest[2:]
			default:
				return h, items, badEnvelope("item %d (%s): no newline after its %d bytes of payload; is its length right?", n, it.hdr.typ, it.hdr.length)
			}
		} else {
			it.payload, rest = cutLine(rest)
		}
		items = append(items, it)
	}
	return h, items, nil
}

// cutLine returns the text up to the next '\n' (without a '\r' before it)
// and the text after it.
func cutLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		line, rest = b, nil
	} else {
		line, rest = b[:i], b[i+1:]
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

func (h *envelopeHeader) parse(line []byte, s *scanner, arena *collector.Arena) error {
	s.reset(line, arena)
	if s.peek() != '{' {
		return fmt.Errorf("want a JSON object")
	}
	s.object()
	first := true
	for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
		switch string(k) {
		case "event_id":
			h.eventID, _ = s.str()
		case "dsn":
			h.dsn, _ = s.str()
		case "sdk":
			if s.object() {
				f := true
				for k, ok := s.member(&f); ok; k, ok = s.member(&f) {
					switch string(k) {
					case "name":
						h.sdkName, _ = s.str()
					case "version":
						h.sdkVer, _ = s.str()
					default:
						s.skip()
					}
				}
			}
		case "trace":
			if s.object() {
				f := true
				for k, ok := s.member(&f); ok; k, ok = s.member(&f) {
					switch string(k) {
					case "release":
						h.release, _ = s.str()
					case "environment":
						h.environment, _ = s.str()
					case "trace_id":
						h.traceID, _ = s.str()
					default:
						s.skip()
					}
				}
			}
		default:
			s.skip()
		}
	}
	s.end()
	if s.err != nil {
		return s.err
	}
	return nil
}

func (h *itemHeader) parse(line []byte, s *scanner, arena *collector.Arena) error {
	*h = itemHeader{length: -1, raw: line}
	s.reset(line, arena)
	if s.peek() != '{' {
		return fmt.Errorf("want a JSON object")
	}
	s.object()
	first := true
	for k, ok := s.member(&first); ok; k, ok = s.member(&first) {
		switch string(k) {
		case "type":
			h.typ, _ = s.str()
		case "length":
			if s.null() {
				break
			}
			num, ok := s.number()
			if !ok {
				if s.err == nil {
					return fmt.Errorf(`"length" must be a number`)
				}
				break
			}
			n, err := strconv.Atoi(num)
			if err != nil || n < 0 {
				return fmt.Errorf(`"length" must be a whole number of bytes, got %.20s`, num)
			}
			h.length = n
		case "content_type":
			h.contentType, _ = s.str()
		case "filename":
			h.filename, _ = s.str()
		case "attachment_type":
			h.attachType, _ = s.str()
		case "item_count":
			if num, ok := s.number(); ok {
				h.itemCount, _ = strconv.Atoi(num)
			}
		default:
			s.skip()
		}
	}
	s.end()
	if s.err != nil {
		return s.err
	}
	if h.typ == "" {
		return fmt.Errorf(`"type" is missing`)
	}
	return nil
}
