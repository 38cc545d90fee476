package main

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/leitstand/leitstand/internal/peers"
)

// TestSyslogThroughTheDaemon sends with util-linux logger over TCP (octet
// counting) and UDP to the running daemon and finds the messages parsed and
// anonymized in the event files: no sender address, no e-mail address.
func TestSyslogThroughTheDaemon(t *testing.T) {
	d := startDaemon(t, "")
	host, port, _ := net.SplitHostPort(d.syslog)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := peers.Logger(ctx, "--rfc5424", "-n", host, "-P", port, "-T", "--octet-count",
		"-t", "shop-api", "-p", "auth.warning", "--msgid", "LOGIN",
		"--sd-id", "origin@32473", "--sd-param", `ip="198.51.100.23"`,
		"login failed for anna.berg@example.org")
	peers.Check(t, err)
	if _, err := peers.Logger(ctx, "--rfc3164", "-n", host, "-P", port, "-d", "-t", "cron", "-p", "cron.info", "job done"); err != nil {
		t.Fatal(err)
	}
	var events []map[string]any
	deadline := time.Now().Add(15 * time.Second)
	for len(events) < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		events = readEvents(t, d.data)
	}
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	events = readEvents(t, d.data)
	if len(events) != 2 {
		t.Fatalf("%d events, want 2", len(events))
	}
	var tcp, udp map[string]any
	for _, e := range events {
		if strings.Contains(e["message"].(string), "login failed") {
			tcp = e
		} else {
			udp = e
		}
	}
	if tcp == nil || udp == nil {
		t.Fatalf("events: %v", events)
	}
	get := func(e map[string]any, path string) any {
		var v any = e
		for _, k := range strings.Split(path, ".") {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		}
		return v
	}
	for path, want := range map[string]any{
		"event.dataset":            "syslog",
		"log.syslog.severity.name": "Warning", // ECS spells names capitalised
		"log.syslog.facility.name": "auth",
		"process.name":             "shop-api",
		"log.syslog.msgid":         "LOGIN",
		"log.level":                "warning",
		"leitstand.scrub.email":    float64(1),
	} {
		if got := get(tcp, path); got != want {
			t.Errorf("tcp event %s = %v, want %v", path, got, want)
		}
	}
	if strings.Contains(tcp["message"].(string), "anna.berg@example.org") {
		t.Errorf("e-mail address stored: %v", tcp["message"])
	}
	// Loopback is not personal data; the anonymizer keeps it (docs/anonymize.md).
	if ip, _ := get(tcp, "source.ip").(string); ip != "127.0.0.1" {
		t.Errorf("source.ip = %q, want the sender's 127.0.0.1", ip)
	}
	if got := get(udp, "process.name"); got != "cron" {
		t.Errorf("udp event process.name = %v", got)
	}
	all := d.stderr.String()
	for _, e := range events {
		b, _ := jsonMarshal(e)
		all += string(b)
	}
	if strings.Contains(all, "198.51.100.23") {
		t.Error("the IP in structured data was stored untruncated")
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
