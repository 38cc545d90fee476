package anonymize

import (
	"strings"
	"testing"
	"time"
)

// TestPathologicalInputsStayLinear scrubs 1 MiB of repeated fragments
// that make detectors look far ahead or back; each takes a few
// milliseconds. The limit is not a benchmark: it is two orders of magnitude
// above that, so only a quadratic scan (minutes on 1 MiB) trips it, however
// busy the machine.
func TestPathologicalInputsStayLinear(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	a := newTestAnonymizer(t)
	for _, frag := range []string{
		"a:", "a=", "@", "::", "1:", "1.", "0 ", "+1 ", "(0", "token=\"", "token='", "password: ", "Cookie: a=b",
		"-----BEGIN RSA PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY----- x ", "http://", "a://b:c", "a@b.", "%40",
		"/home/", "C:\\Users\\", "Bearer ", "eyJ", "eyJaaaaaaaaaaaa.", "AKIA", "DE89 ", "4111 ", "00:", "ff:", "1a2b:",
		"\"password\":{", "x\\\"token\\\":\\\"",
	} {
		s := strings.Repeat(frag, (1<<20)/len(frag))
		start := time.Now()
		a.ScrubString(s)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%q × %d took %v", frag, len(s)/len(frag), d)
		} else if d > 200*time.Millisecond {
			t.Logf("%q × %d took %v", frag, len(s)/len(frag), d)
		}
	}
}
