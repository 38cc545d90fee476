package loadgen

import (
	"bytes"
	"time"
)

// Latency marks. With Options.MarkEvery set, every MarkEvery-th message
// (syslog and NDJSON) ends its text with a mark: MarkPrefix, the digit 1
// and MarkDigits digits. The input is prepared with zeros there; just
// before the message is written to the socket the digits are overwritten
// with the nanoseconds since the run's start (Report.Started, read from
// the monotonic clock), so whoever reads the output and knows when the
// run started can tell how long each marked message took.
//
// The leading 1 and the length keep the mark clear of the anonymizer's
// detectors: no card starts with 1, a phone number without '+' or a
// leading 0 needs separators, and there is no dot or colon for an IP
// address. The mark is plain text, so every daemon carries it into its
// output as it does the rest of the message.
const (
	MarkPrefix = "lsbt=1"
	MarkDigits = 15 // nanoseconds: enough for 11 days
)

// markPlaceholder is what a marked message carries until it is sent.
var markPlaceholder = MarkPrefix + "000000000000000"

// DefaultMarkEvery is the share of marked messages leitstand-load uses
// unless told otherwise: one in 50.
const DefaultMarkEvery = 50

// stamper writes send times into marks.
type stamper struct{ epoch time.Time }

// stamp overwrites the MarkDigits digits at b[0:] with the time since the
// epoch.
func (s stamper) stamp(b []byte) {
	ns := time.Since(s.epoch).Nanoseconds()
	if ns < 0 {
		ns = 0
	}
	if ns >= 1e15 {
		ns = 1e15 - 1
	}
	for i := MarkDigits - 1; i >= 0; i-- {
		b[i] = byte('0' + ns%10)
		ns /= 10
	}
}

// ScanMarks calls fn with the send time (nanoseconds since the run's
// start) of every mark in b. A mark cut off at the end of b is skipped:
// callers pass whole lines.
func ScanMarks(b []byte, fn func(sentNS int64)) {
	prefix := []byte(MarkPrefix)
	for {
		i := bytes.Index(b, prefix)
		if i < 0 {
			return
		}
		b = b[i+len(prefix):]
		if len(b) < MarkDigits {
			return
		}
		var ns int64
		ok := true
		for _, c := range b[:MarkDigits] {
			if c < '0' || c > '9' {
				ok = false
				break
			}
			ns = ns*10 + int64(c-'0')
		}
		if ok && (len(b) == MarkDigits || b[MarkDigits] < '0' || b[MarkDigits] > '9') {
			fn(ns)
			b = b[MarkDigits:]
		}
	}
}
