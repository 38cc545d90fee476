package syslog

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // zone names resolve on machines without /usr/share/zoneinfo

	"github.com/leitstand/leitstand/collector"
	gosyslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/rfc5424"
)

// fastCases are RFC 5424 messages the fast path must take, each checked
// field by field against go-syslog.
var fastCases = []string{
	`<165>1 2026-11-22T08:15:00.123456Z web-01.example.org shop-api 12345 ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] GET /api/v1/items/42 returned 200`,
	`<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - 'su root' failed for lonvick on /dev/pts/8`,
	`<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.`,
	`<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]`,
	`<13>1 - - - - - -`,
	`<0>1 2026-02-28T23:59:59+14:00 h a p m - pri zero`,
	`<191>999 2024-02-29T00:00:00Z h a p m - leap day, top priority, top version`,
	`<13>1 2026-11-22T08:15:00Z h a - - [x@1 a="q\"b\]c\\d"] escapes`,
	`<13>1 2026-11-22T08:15:00Z h a - - [x@1 a="1" a="2"] repeated parameter: the last wins`,
	`<13>1 2026-11-22T08:15:00Z h a - - [x@1 a=""] empty value`,
	`<13>1 2026-11-22T08:15:00Z h a - - [x@1 a="Grüße ✓"] UTF-8 value`,
	`<13>1 2026-11-22T08:15:00Z h a - - [x@1] `,
	`<13>1 2026-11-22T08:15:00Z -- -- -- -- - dashes are values when doubled`,
	"<13>1 2026-11-22T08:15:00Z h a - - - bad \xff UTF-8 in MSG is fine",
	"<13>1 2026-11-22T08:15:00Z h a - - - multi\nline\nmessage",
	"<13>1 2026-11-22T08:15:00Z h a - - - \xef\xbb\xbfBOM message",
}

// slowCases are not taken by the fast path; go-syslog decides.
var slowCases = []string{
	`<13>1 2026-11-22T08:15:00Z h a - - [x@1 a="1"][x@1 b="2"] repeated SD-ID`,
	`<13>1 2026-11-22T08:15:00Z h a - - [x@1 a="\x"] bad escape`,
	`<13>1 2026-11-22T08:15:00.1234567Z h a - - - seven fraction digits`,
	`<13>1 2026-02-30T08:15:00Z h a - - - 30 February`,
	`<13>1 2026-11-22T24:00:00Z h a - - - hour 24`,
	`<13>1 2026-11-22 08:15:00Z h a - - - space in stamp`,
	`<013>1 2026-11-22T08:15:00Z h a - - - leading zero`,
	`<192>1 2026-11-22T08:15:00Z h a - - - priority 192`,
	`<13>01 2026-11-22T08:15:00Z h a - - - version 01`,
	`<13>1 2026-11-22T08:15:00Z h a - - [x@1 a="v"]trailing`,
	`<13>1 2026-11-22T08:15:00Z h a - -`,
	`<13>1 2026-11-22T08:15:00Z h ` + strings.Repeat("a", 49) + ` - - - app-name of 49`,
	"<13>1 2026-11-22T08:15:00Z h a - - [x@1 a=\"\xff\"] bad UTF-8 in a value",
}

func TestFastParserAgreesWithGoSyslog(t *testing.T) {
	for _, c := range fastCases {
		var arena collector.Arena
		var scratch []byte
		m := message{pri: -1}
		if !parse5424([]byte(c), &arena, &scratch, &m) {
			t.Errorf("fast path declined %q", c)
			continue
		}
		if err := sameAsGoSyslog([]byte(c), &m); err != "" {
			t.Errorf("%q: %s", c, err)
		}
	}
	for _, c := range slowCases {
		var arena collector.Arena
		var scratch []byte
		m := message{pri: -1}
		if parse5424([]byte(c), &arena, &scratch, &m) {
			t.Errorf("fast path took %q, which go-syslog must decide", c)
		}
	}
}

// sameAsGoSyslog compares a fast-path result with go-syslog's strict
// parse of the same input; it returns "" when they agree.
func sameAsGoSyslog(input []byte, fast *message) string {
	gm, err := rfc5424.NewMachine().Parse(input)
	if gm == nil || err != nil {
		return "go-syslog refuses what the fast path took: " + errString(err)
	}
	var arena collector.Arena
	slow := message{pri: -1}
	p := newParser(RFC3164Config{Timezone: "UTC"})
	p.fill(gm, &arena, time.Now(), &slow)
	var diffs []string
	if fast.pri != slow.pri || fast.version != slow.version {
		diffs = append(diffs, "pri/version")
	}
	if fast.hasTS != slow.hasTS || !fast.ts.Equal(slow.ts) {
		diffs = append(diffs, "timestamp "+fast.ts.String()+" vs "+slow.ts.String())
	}
	if fast.host != slow.host || fast.app != slow.app || fast.procid != slow.procid || fast.msgid != slow.msgid {
		diffs = append(diffs, "header fields")
	}
	if fast.hasMsg != slow.hasMsg || fast.msg != slow.msg {
		diffs = append(diffs, "message")
	}
	if !sameJSON(fast.sd, slow.sd) {
		diffs = append(diffs, "structured data "+fast.sd+" vs "+slow.sd)
	}
	return strings.Join(diffs, "; ")
}

func sameJSON(a, b string) bool {
	if a == "" || b == "" {
		return a == b
	}
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// FuzzParse5424 holds the fast path to go-syslog: whatever it takes,
// go-syslog takes with the same fields, and whatever go-syslog takes, it
// takes too unless the structured data is beyond its fixed bounds.
func FuzzParse5424(f *testing.F) {
	for _, c := range fastCases {
		f.Add([]byte(c))
	}
	for _, c := range slowCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var arena collector.Arena
		var scratch []byte
		m := message{pri: -1}
		fast := parse5424(data, &arena, &scratch, &m)
		if fast {
			if diff := sameAsGoSyslog(data, &m); diff != "" {
				t.Fatalf("%q: %s", data, diff)
			}
			if m.sd != "" && !json.Valid([]byte(m.sd)) {
				t.Fatalf("%q: structured data is not JSON: %s", data, m.sd)
			}
			return
		}
		gm, err := rfc5424.NewMachine().Parse(data)
		if gm != nil && err == nil && bytes.Count(data, []byte(`="`)) <= maxSDElements && bytes.Count(data, []byte("[")) <= maxSDElements {
			t.Fatalf("fast path declined %q, which go-syslog takes", data)
		}
	})
}

func TestRFC3164Variants(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err) // time/tzdata is linked in: this cannot be missing
	}
	received := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name, in string
		want     message
	}{
		{"RFC 3164 example", "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
			message{pri: 34, ts: time.Date(2026, 10, 11, 22, 14, 15, 0, berlin), host: "mymachine", app: "su", msg: "'su root' failed for lonvick on /dev/pts/8"}},
		{"pid", "<30>Nov 22 08:15:00 web-01 systemd[1]: Started Session 42.",
			message{pri: 30, ts: time.Date(2026, 11, 22, 8, 15, 0, 0, berlin), host: "web-01", app: "systemd", procid: "1", msg: "Started Session 42."}},
		{"missing hostname (BSD local)", "<13>Nov 22 08:15:00 sshd[812]: Accepted publickey",
			message{pri: 13, ts: time.Date(2026, 11, 22, 8, 15, 0, 0, berlin), app: "sshd", procid: "812", msg: "Accepted publickey"}},
		{"space-padded day", "<13>Nov  2 08:15:00 host prog: x",
			message{pri: 13, ts: time.Date(2026, 11, 2, 8, 15, 0, 0, berlin), host: "host", app: "prog", msg: "x"}},
		{"zero-padded day", "<13>Nov 02 08:15:00 host prog: x",
			message{pri: 13, ts: time.Date(2026, 11, 2, 8, 15, 0, 0, berlin), host: "host", app: "prog", msg: "x"}},
		{"fractions of a second", "<13>Nov 22 08:15:00.250 host prog: x",
			message{pri: 13, ts: time.Date(2026, 11, 22, 8, 15, 0, 250e6, berlin), host: "host", app: "prog", msg: "x"}},
		{"RFC 3339 stamp (rsyslog forward format)", "<13>2026-11-22T08:15:00.123456+01:00 web-01 app[7]: forwarded",
			message{pri: 13, ts: time.Date(2026, 11, 22, 7, 15, 0, 123456000, time.UTC), host: "web-01", app: "app", procid: "7", msg: "forwarded"}},
		{"RFC 3339 stamp without fraction", "<13>2026-11-22T08:15:00Z web-01 app: plain",
			message{pri: 13, ts: time.Date(2026, 11, 22, 8, 15, 0, 0, time.UTC), host: "web-01", app: "app", msg: "plain"}},
		{"Cisco IOS counter and star", "<189>237: *Jan  8 19:46:03.295: %SYS-5-CONFIG_I: Configured from console",
			message{pri: 189, ts: time.Date(2027, 1, 8, 19, 46, 3, 295e6, berlin), app: "%SYS-5-CONFIG_I", msg: "Configured from console"}},
		{"Cisco IOS counter, sequence and origin host", "<189>237: 000485: router1: *Nov 22 08:15:00.295: %LINK-3-UPDOWN: Interface up",
			message{pri: 189, ts: time.Date(2026, 11, 22, 8, 15, 0, 295e6, berlin), host: "router1", app: "%LINK-3-UPDOWN", msg: "Interface up"}},
		{"tag with PID but no colon (rsyslog forwarding RFC 5424 input)", "<156>2026-11-22T08:15:00.123456Z web-01 shop-api[4242] marker with text",
			message{pri: 156, ts: time.Date(2026, 11, 22, 8, 15, 0, 123456000, time.UTC), host: "web-01", app: "shop-api", procid: "4242", msg: "marker with text"}},
		{"Cisco IOS colon after the time", "<187>Nov 22 08:15:00: %LINK-3-UPDOWN: Interface down",
			message{pri: 187, ts: time.Date(2026, 11, 22, 8, 15, 0, 0, berlin), app: "%LINK-3-UPDOWN", msg: "Interface down"}},
	}
	p := newParser(RFC3164Config{Timezone: "Europe/Berlin"})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var arena collector.Arena
			var m message
			p.parse([]byte(c.in), &arena, received, &m)
			if m.err != nil {
				t.Fatalf("parse error: %v", m.err)
			}
			w := c.want
			if m.pri != w.pri || !m.ts.Equal(w.ts) || m.host != w.host || m.app != w.app || m.procid != w.procid || m.msg != w.msg {
				t.Errorf("got pri=%d ts=%s host=%q app=%q procid=%q msg=%q\nwant pri=%d ts=%s host=%q app=%q procid=%q msg=%q",
					m.pri, m.ts, m.host, m.app, m.procid, m.msg, w.pri, w.ts, w.host, w.app, w.procid, w.msg)
			}
		})
	}
}

func TestRFC3164YearAroundNewYear(t *testing.T) {
	p := newParser(RFC3164Config{Timezone: "UTC"})
	cases := []struct {
		in       string
		received time.Time
		want     time.Time
	}{
		// Sent just before midnight, received just after: last year.
		{"<13>Dec 31 23:59:58 h p: x", time.Date(2027, 1, 1, 0, 0, 1, 0, time.UTC), time.Date(2026, 12, 31, 23, 59, 58, 0, time.UTC)},
		// A sender's clock slightly ahead across New Year: next year.
		{"<13>Jan  1 00:00:02 h p: x", time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 2, 0, time.UTC)},
		// An ordinary day: this year.
		{"<13>Jun 15 12:00:00 h p: x", time.Date(2026, 6, 15, 12, 0, 5, 0, time.UTC), time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)},
		// 29 February exists only in leap years.
		{"<13>Feb 29 10:00:00 h p: x", time.Date(2028, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2028, 2, 29, 10, 0, 0, 0, time.UTC)},
	}
	for _, c := range cases {
		var arena collector.Arena
		var m message
		p.parse([]byte(c.in), &arena, c.received, &m)
		if m.err != nil || !m.ts.Equal(c.want) {
			t.Errorf("%q received %s: got %s (err %v), want %s", c.in, c.received, m.ts, m.err, c.want)
		}
	}
	fixed := newParser(RFC3164Config{Timezone: "UTC", Year: 2019})
	var arena collector.Arena
	var m message
	fixed.parse([]byte("<13>Dec 31 23:59:58 h p: x"), &arena, time.Date(2027, 1, 1, 0, 0, 1, 0, time.UTC), &m)
	if want := time.Date(2019, 12, 31, 23, 59, 58, 0, time.UTC); !m.ts.Equal(want) {
		t.Errorf("fixed year: got %s, want %s", m.ts, want)
	}
}

func TestParseFailuresKeepWhatTheyCan(t *testing.T) {
	p := newParser(RFC3164Config{Timezone: "UTC"})
	for _, c := range []struct {
		in      string
		wantPri int
	}{
		{"no priority at all", -1},
		{"<999>1 priority out of range", -1},
		{`<13>1 2026-11-22T08:15:00Z host app - - [broken sd`, 13},
		{"<13>", 13},
		{"", -1},
	} {
		var arena collector.Arena
		var m message
		p.parse([]byte(c.in), &arena, time.Now(), &m)
		if m.err == nil {
			t.Errorf("%q parsed without error", c.in)
		}
		if m.pri != c.wantPri {
			t.Errorf("%q: pri %d, want %d (best effort keeps the header)", c.in, m.pri, c.wantPri)
		}
	}
}

var _ gosyslog.Machine = rfc5424.NewMachine()
