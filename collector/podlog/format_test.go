package podlog

import (
	"testing"
	"time"
)

func TestParseCRI(t *testing.T) {
	ts := time.Date(2026, 11, 22, 8, 15, 0, 123456789, time.UTC)
	cases := []struct {
		line    string
		raw     bool
		stream  int
		partial bool
		text    string
		ts      time.Time
	}{
		{line: "2026-11-22T08:15:00.123456789Z stdout F hello world", stream: streamStdout, text: "hello world", ts: ts},
		{line: "2026-11-22T08:15:00.123456789Z stderr P part one ", stream: streamStderr, partial: true, text: "part one ", ts: ts},
		{line: "2026-11-22T09:15:00.123456789+01:00 stdout F zone", text: "zone", ts: ts},
		{line: "2026-11-22T08:15:00.1234Z stdout F short fraction", text: "short fraction", ts: time.Date(2026, 11, 22, 8, 15, 0, 123400000, time.UTC)},
		{line: "2026-11-22T08:15:00Z stdout F no fraction", text: "no fraction", ts: time.Date(2026, 11, 22, 8, 15, 0, 0, time.UTC)},
		{line: "2026-11-22T08:15:00.123456789Z stdout F", text: "", ts: ts},
		{line: "2026-11-22T08:15:00.123456789Z stdout F ", text: "", ts: ts},
		{line: "2026-11-22T08:15:00.123456789Z stdout F:x tagged", text: "tagged", ts: ts},
		{line: "2026-11-22T08:15:00.123456789Z stdout F  two spaces", text: " two spaces", ts: ts},
		{line: "not a cri line", raw: true, text: "not a cri line"},
		{line: "2026-11-22T08:15:00.123456789Z stdin F x", raw: true, text: "2026-11-22T08:15:00.123456789Z stdin F x"},
		{line: "2026-11-22T08:15:00.123456789Z stdout X x", raw: true, text: "2026-11-22T08:15:00.123456789Z stdout X x"},
		{line: "", raw: true},
	}
	for _, c := range cases {
		var pl physLine
		parseCRI([]byte(c.line), &pl)
		if pl.raw != c.raw || string(pl.text) != c.text || (!c.raw && (pl.stream != c.stream || pl.partial != c.partial || !pl.ts.Equal(c.ts))) {
			t.Errorf("parseCRI(%q) = raw %v stream %d partial %v text %q ts %v", c.line, pl.raw, pl.stream, pl.partial, pl.text, pl.ts)
		}
	}
}

func TestParseDocker(t *testing.T) {
	ts := time.Date(2026, 11, 22, 8, 15, 0, 123456789, time.UTC)
	cases := []struct {
		line    string
		raw     bool
		stream  int
		partial bool
		text    string
	}{
		{line: `{"log":"hello\n","stream":"stdout","time":"2026-11-22T08:15:00.123456789Z"}`, text: "hello"},
		{line: `{"log":"tab\there \"q\" \u00e4 \ud83d\ude00\n","stream":"stderr","time":"2026-11-22T08:15:00.123456789Z"}`, stream: streamStderr, text: "tab\there \"q\" ä 😀"},
		{line: `{"log":"first part","stream":"stdout","time":"2026-11-22T08:15:00.123456789Z"}`, partial: true, text: "first part"},
		{line: `{"log":"x\n","attrs":{"a":[1,{"b":null}],"c":"d"},"stream":"stdout","time":"2026-11-22T08:15:00.123456789Z"}`, text: "x"},
		{line: `{"stream":"stdout","time":"2026-11-22T08:15:00.123456789Z"}`, raw: true},
		{line: `{"log":"unterminated`, raw: true},
		{line: `{"log":"bad \x escape"}`, raw: true},
		{line: "{\"log\":\"a raw\ttab, which JSON and json-file never have\"}", raw: true},
		{line: `not json`, raw: true},
	}
	for _, c := range cases {
		var pl physLine
		parseDocker([]byte(c.line), &pl, nil)
		if pl.raw != c.raw {
			t.Errorf("parseDocker(%s): raw %v, want %v", c.line, pl.raw, c.raw)
			continue
		}
		if c.raw {
			if string(pl.text) != c.line {
				t.Errorf("parseDocker(%s): raw text %q", c.line, pl.text)
			}
			continue
		}
		if string(pl.text) != c.text || pl.stream != c.stream || pl.partial != c.partial || !pl.ts.Equal(ts) {
			t.Errorf("parseDocker(%s) = stream %d partial %v text %q ts %v", c.line, pl.stream, pl.partial, pl.text, pl.ts)
		}
	}
}

func TestParseTimeAgreesWithTimeParse(t *testing.T) {
	for _, s := range []string{
		"2026-11-22T08:15:00.123456789Z", "2026-11-22T08:15:00Z", "2026-01-02T03:04:05.5-07:30",
		"2026-02-29T00:00:00Z", "1999-12-31T23:59:59.999999999+14:00", "2026-11-22T08:15:00.1234567891Z",
	} {
		got, ok := parseTime([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if ok != (err == nil) || (ok && !got.Equal(want)) {
			t.Errorf("parseTime(%q) = %v %v, time.Parse: %v %v", s, got, ok, want, err)
		}
	}
	for _, s := range []string{"", "2026-11-22", "2026-11-22T08:15:00", "2026-13-22T08:15:00Z", "2026-11-22T08:15:00.Z", "garbage-and-more-text"} {
		if _, ok := parseTime([]byte(s)); ok {
			t.Errorf("parseTime(%q) accepted", s)
		}
	}
}

func TestParsePodDir(t *testing.T) {
	pd, ok := parsePodDir("default_web-7d8b5_0f3c4c2e-1d7b-4c8f-9a53-2b5f2ad3e8a1")
	if !ok || pd.Namespace != "default" || pd.Pod != "web-7d8b5" || pd.UID != "0f3c4c2e-1d7b-4c8f-9a53-2b5f2ad3e8a1" {
		t.Fatalf("parsePodDir = %+v %v", pd, ok)
	}
	for _, bad := range []string{"nounderscores", "a_b", "_b_c", "a__c", "a_b_c_d"} {
		if _, ok := parsePodDir(bad); ok {
			t.Errorf("parsePodDir(%q) accepted", bad)
		}
	}
	if n, ok := restartNumber("12.log"); !ok || n != 12 {
		t.Errorf("restartNumber(12.log) = %d %v", n, ok)
	}
	if _, ok := restartNumber("app.log"); ok {
		t.Error("restartNumber(app.log) accepted")
	}
}

func TestSelectorAndRotatedNames(t *testing.T) {
	s := newSelector([]string{"kube-system", "leitstand/leitstand-*", "*/*/istio-proxy"})
	for _, c := range []struct {
		ns, pod, container string
		want               bool
	}{
		{"kube-system", "coredns-1", "coredns", true},
		{"leitstand", "leitstand-agent-x", "agent", true},
		{"leitstand", "other", "agent", false},
		{"shop", "web", "istio-proxy", true},
		{"shop", "web", "web", false},
	} {
		if got := s.match(c.ns, c.pod, c.container); got != c.want {
			t.Errorf("match(%s/%s/%s) = %v", c.ns, c.pod, c.container, got)
		}
	}
	if newSelector(nil).match("a", "b", "c") {
		t.Error("an empty selector matched")
	}
	for name, want := range map[string]bool{
		"0.log.20261122-081500": true, "0.log.20261122-081500.gz": true, "0.log.1": true,
		"0.log.20261122-081500.gz.tmp": false, "0.log": false, "10.log.1": false, "0.logx": false,
	} {
		if got := rotatedOf(name, "0.log"); got != want {
			t.Errorf("rotatedOf(%q) = %v", name, got)
		}
	}
}
