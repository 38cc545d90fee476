package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	sentrygo "github.com/getsentry/sentry-go"
)

// TestSentrySDKThroughTheDaemon points the real sentry-go SDK at the
// embedded default's DSN and finds its error in the event files, scrubbed.
func TestSentrySDKThroughTheDaemon(t *testing.T) {
	d := startDaemon(t, "")
	dsn := strings.Replace(d.url, "http://", "http://dev@", 1) + "/1"
	if !strings.Contains(d.stderr.String(), "dev@127.0.0.1") {
		t.Errorf("the embedded default's DSN was not printed at start-up:\n%s", d.stderr)
	}
	client, err := sentrygo.NewClient(sentrygo.ClientOptions{Dsn: dsn, Environment: "test", Release: "shop@1.2.3", SendDefaultPII: true})
	if err != nil {
		t.Fatal(err)
	}
	hub := sentrygo.NewHub(client, sentrygo.NewScope())
	hub.Scope().SetUser(sentrygo.User{Email: "lena.koch@example.org", IPAddress: "198.51.100.7"})
	hub.Scope().SetTag("school", "gs-nord")
	hub.CaptureException(errors.New("payment for lena.koch@example.org failed"))
	if !hub.Flush(10 * time.Second) {
		t.Fatal("the SDK did not deliver within 10s")
	}
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	events := readEvents(t, d.data)
	if len(events) != 1 {
		t.Fatalf("%d events, want 1", len(events))
	}
	e := events[0]
	ev, _ := e["event"].(map[string]any)
	errField, _ := e["error"].(map[string]any)
	service, _ := e["service"].(map[string]any)
	if ev["dataset"] != "sentry.error" || service["version"] != "1.2.3" && service["version"] != "shop@1.2.3" {
		t.Errorf("event: %v", e)
	}
	if msg, _ := errField["message"].(string); !strings.Contains(msg, "payment for") || strings.Contains(msg, "lena.koch") {
		t.Errorf("error.message = %q", msg)
	}
	b, _ := jsonMarshal(events)
	for _, secret := range []string{"lena.koch@example.org", "198.51.100.7"} {
		if strings.Contains(string(b)+d.stderr.String(), secret) {
			t.Errorf("%s stored", secret)
		}
	}
}
