package sentry

import (
	"crypto/rand"
	"math"
	"time"
)

// parseTime reads a Sentry timestamp: RFC 3339 text (a missing zone means
// UTC, as Relay reads it) or, when num is set, seconds since the epoch with
// a fraction. It does not allocate.
func parseTime(s string, num bool) (time.Time, bool) {
	if num {
		return parseEpoch(s)
	}
	// YYYY-MM-DDTHH:MM:SS
	if len(s) < 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' || s[16] != ':' {
		// some SDKs send epoch seconds as a string
		if len(s) > 0 && s[0] >= '0' && s[0] <= '9' {
			return parseEpoch(s)
		}
		return time.Time{}, false
	}
	year, ok1 := digits(s[0:4])
	month, ok2 := digits(s[5:7])
	day, ok3 := digits(s[8:10])
	hour, ok4 := digits(s[11:13])
	minute, ok5 := digits(s[14:16])
	sec, ok6 := digits(s[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 60 {
		return time.Time{}, false
	}
	rest := s[19:]
	nsec := 0
	if len(rest) > 0 && rest[0] == '.' {
		i := 1
		scale := 100000000
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			nsec += int(rest[i]-'0') * scale
			scale /= 10
			i++
		}
		if i == 1 {
			return time.Time{}, false
		}
		rest = rest[i:]
	}
	offset := 0
	switch {
	case rest == "" || rest == "Z" || rest == "z":
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, ok1 := digits(rest[1:3])
		om, ok2 := digits(rest[4:6])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return time.Time{}, false
		}
		offset = (oh*60 + om) * 60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if offset != 0 {
		t = t.Add(-time.Duration(offset) * time.Second)
	}
	return t, true
}

func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// parseEpoch reads seconds since the epoch, exactly to the nanosecond
// (a float64 would round away microseconds).
func parseEpoch(s string) (time.Time, bool) {
	if s == "" || len(s) > 40 {
		return time.Time{}, false
	}
	i := 0
	var sec int64
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		if sec > math.MaxInt64/10/1_000_000_000 {
			return time.Time{}, false
		}
		sec = sec*10 + int64(s[i]-'0')
		i++
	}
	if i == 0 {
		return time.Time{}, false
	}
	var nsec int64
	if i < len(s) && s[i] == '.' {
		i++
		scale := int64(100000000)
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			nsec += int64(s[i]-'0') * scale
			scale /= 10
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		return time.Time{}, false // 1.7e9 is valid JSON but no SDK writes it; refuse rather than misread
	}
	if i != len(s) {
		return time.Time{}, false
	}
	return time.Unix(sec, nsec).UTC(), true
}

// normalizeID turns a Sentry id (32 hex digits, or a UUID with dashes, any
// case) into 32 lower-case hex digits in dst. It returns false for anything
// else.
func normalizeID(dst *[32]byte, s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9' || c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			c += 'a' - 'A'
		case c == '-' && len(s) == 36 && (i == 8 || i == 13 || i == 18 || i == 23):
			continue
		default:
			return false
		}
		if n == 32 {
			return false
		}
		dst[n] = c
		n++
	}
	return n == 32
}

// isLowerHex32 reports whether s is already in the normal form.
func isLowerHex32(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// newEventID returns a random version 4 UUID as 32 hex digits, for events
// that came without an id.
func newEventID(dst *[32]byte) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hexd = "0123456789abcdef"
	for i, v := range b {
		dst[2*i] = hexd[v>>4]
		dst[2*i+1] = hexd[v&0xf]
	}
}
