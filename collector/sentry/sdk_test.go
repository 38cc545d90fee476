package sentry

// Real SDKs against the receiver, through the real pipeline and the real
// anonymizer: sentry-go v0.50.0 in process, @sentry/node 11.12.0 and the
// current sentry-sdk for Python as programs of their own. Node and Python
// are installed on first use into ~/.cache/leitstand (outside the
// checkout), keyed by the hash of their lock files; with CI=true a missing
// node, npm or python3 fails the test instead of skipping it.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	sentrygo "github.com/getsentry/sentry-go"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// dsnFor is the DSN of the fixture's listener.
func (f *fixture) dsnFor(key string) string {
	u, _ := url.Parse(f.srv.URL)
	return fmt.Sprintf("http://%s@%s/%d", key, u.Host, testProject)
}

// personal is what the SDK programs send that must not land anywhere.
var personal = []string{"jane.doe@example.com", "jane.doe%40example.com", "203.0.113.42", "198.51.100.7", "hunter2",
	"4111111111111111", "4111 1111 1111 1111", "DE89370400440532013000", "AKIAIOSFODNN7EXAMPLE", "s3cr3t", `"jdoe"`}

func str(e capturedEvent, key string) string { return e.Fields[key].Str }

// assertLanded checks what a "full" run of an SDK program left in the sink.
func assertLanded(t *testing.T, f *fixture, sdk, errType string) {
	t.Helper()
	all := f.sink.all()
	if len(all) == 0 {
		t.Fatalf("%s: nothing landed", sdk)
	}
	for _, e := range all {
		if left := containsAny(e.JSON, personal...); len(left) > 0 {
			t.Errorf("%s: personal data in a %s event: %q\n%s", sdk, e.Dataset, left, e.JSON)
		}
		if str(e, "sentry.sdk.name") == "" || !strings.Contains(str(e, "sentry.sdk.name"), sdk) {
			t.Errorf("%s: sentry.sdk.name is %q in %s", sdk, str(e, "sentry.sdk.name"), e.Dataset)
		}
		if str(e, "service.name") != "shop" || str(e, "leitstand.tenant") != "school-a" || str(e, "sentry.project") != "42" {
			t.Errorf("%s: project mapping missing in %s: %s", sdk, e.Dataset, e.JSON)
		}
		if str(e, "service.version") != "probe@1.0.0" || str(e, "service.environment") != "research" {
			t.Errorf("%s: release/environment missing in %s: %s", sdk, e.Dataset, e.JSON)
		}
	}

	errs := f.sink.byDataset(dsError)
	if len(errs) != 1 {
		t.Fatalf("%s: %d error events, want 1", sdk, len(errs))
	}
	e := errs[0]
	t.Logf("%s error event: %s", sdk, e.JSON)
	checks := map[string]func(string) bool{
		"error.type":    func(v string) bool { return v == errType },
		"error.message": func(v string) bool { return strings.HasPrefix(v, "failed to charge card [card] for email:") },
		"error.stack_trace": func(v string) bool {
			return strings.HasPrefix(v, errType+": failed") && strings.Contains(v, "\n    at ")
		},
		"error.grouping_key":     func(v string) bool { return len(v) == 32 },
		"message":                func(v string) bool { return strings.HasPrefix(v, errType+": failed to charge card") },
		"log.level":              func(v string) bool { return v == "error" },
		"user.id":                func(v string) bool { return strings.HasPrefix(v, "user:") },
		"user.email":             func(v string) bool { return strings.HasPrefix(v, "email:") },
		"labels.customer_email":  func(v string) bool { return strings.HasPrefix(v, "email:") },
		"url.full":               func(v string) bool { return strings.Contains(v, "/checkout") },
		"http.request.method":    func(v string) bool { return v == "POST" },
		"trace.id":               func(v string) bool { return isLowerHex32(v) },
		"span.id":                func(v string) bool { return len(v) == 16 },
		"event.id":               func(v string) bool { return isLowerHex32(v) && v == e.ID },
		"sentry.breadcrumbs":     func(v string) bool { return strings.Contains(v, "login for email:") },
		"sentry.contexts":        func(v string) bool { return strings.Contains(v, `"billing":{`) && strings.Contains(v, "[iban]") },
		"user_agent.original":    func(v string) bool { return v == "Mozilla/5.0 probe" },
		"leitstand.scrub.email":  func(v string) bool { return v != "" && v != "0" },
		"http.request.headers":   func(v string) bool { return strings.Contains(strings.ToLower(v), "user-agent") },
		"host.name":              func(v string) bool { return v == "probe-host" },
		"sentry.platform":        func(v string) bool { return v != "" },
		"sentry.sdk.version":     func(v string) bool { return v != "" },
		"event.dataset":          func(v string) bool { return v == dsError },
		"leitstand.receiver":     func(v string) bool { return v == "sentry" },
		"service.name":           func(v string) bool { return v == "shop" },
		"service.environment":    func(v string) bool { return v == "research" },
		"service.version":        func(v string) bool { return v == "probe@1.0.0" },
		"leitstand.tenant":       func(v string) bool { return v == "school-a" },
		"leitstand.scrub.secret": func(v string) bool { return v != "" },
	}
	for key, ok := range checks {
		if v, present := e.Fields[key]; !present || !ok(v.Str) {
			t.Errorf("%s: error event field %s = %q (present %v)", sdk, key, v.Str, present)
		}
	}

	msgs := f.sink.byDataset(dsMessage)
	if len(msgs) != 1 || !strings.HasPrefix(str(msgs[0], "message"), "hello from probe, contact email:") || str(msgs[0], "log.level") != "info" {
		t.Errorf("%s: message events: %+v", sdk, msgs)
	}
	timed := append(f.sink.byDataset(dsTransaction), f.sink.byDataset(dsSpan)...)
	if len(timed) == 0 {
		t.Errorf("%s: no transaction or span landed", sdk)
	}
	for _, e := range timed {
		if d := str(e, "event.duration"); d == "" || d == "0" || !isLowerHex32(str(e, "trace.id")) || str(e, "event.outcome") == "" {
			t.Errorf("%s: %s without duration, trace or outcome: %s", sdk, e.Dataset, e.JSON)
		}
	}
	logs := f.sink.byDataset(dsLog)
	if len(logs) != 1 || str(logs[0], "message") != "user logged in from 198.51.100.0" || str(logs[0], "log.level") != "info" {
		t.Errorf("%s: log events: %+v", sdk, logs)
	}
	checkIns := f.sink.byDataset(dsCheckIn)
	if len(checkIns) != 1 || str(checkIns[0], "sentry.monitor.slug") != "nightly-job" || str(checkIns[0], "sentry.check_in.status") != "ok" ||
		str(checkIns[0], "event.duration") == "" {
		t.Errorf("%s: check-ins: %+v", sdk, checkIns)
	}
	if n := testutil.ToFloat64(f.r.m.items.WithLabelValues("attachment", outNotIndexed)); n != 1 {
		t.Errorf("%s: %v attachments counted, want 1", sdk, n)
	}
	if strings.Contains(f.log.String(), "jane.doe") || strings.Contains(f.log.String(), testKey) {
		t.Errorf("%s: the log quotes event contents or the key:\n%s", sdk, f.log.String())
	}
}

// rateLimited is a fixture whose key takes one error and then refuses
// errors for a long while.
func rateLimited(t *testing.T) *fixture {
	return newFixture(t, fixtureOpt{cfg: func(c *Config) {
		c.Projects[0].Keys[0].RateLimits = map[string]RateLimit{"error": {PerSecond: 0.001, Burst: 1}}
	}})
}

// assertHonoured checks a "ratelimit" run: three errors captured one after
// the other; the second got a 429 with X-Sentry-Rate-Limits for "error",
// so the SDK must not have sent the third, while logs and check-ins still
// came.
func assertHonoured(t *testing.T, f *fixture, sdk string) {
	t.Helper()
	indexed := testutil.ToFloat64(f.r.m.items.WithLabelValues("event", outIndexed))
	limited := testutil.ToFloat64(f.r.m.items.WithLabelValues("event", outRateLimited))
	if indexed != 1 || limited != 1 {
		t.Errorf("%s: error items: %v accepted, %v answered 429; want 1 and 1 (a third means the SDK ignored the limit)", sdk, indexed, limited)
	}
	if got := testutil.ToFloat64(f.r.m.requests.WithLabelValues("envelope", "rate_limited")) + testutil.ToFloat64(f.r.m.requests.WithLabelValues("store", "rate_limited")); got != 1 {
		t.Errorf("%s: %v requests answered 429, want 1", sdk, got)
	}
	if n := len(f.sink.byDataset(dsLog)); n != 1 {
		t.Errorf("%s: %d logs after the limit, want 1 (other categories must still be sent)", sdk, n)
	}
	if n := len(f.sink.byDataset(dsCheckIn)); n != 1 {
		t.Errorf("%s: %d check-ins after the limit, want 1", sdk, n)
	}
}

// assertNothingLanded checks a run with an unknown key.
func assertNothingLanded(t *testing.T, f *fixture, sdk string) {
	t.Helper()
	if n := len(f.sink.all()); n != 0 {
		t.Errorf("%s: %d events landed with an unknown key", sdk, n)
	}
	if n := testutil.ToFloat64(f.r.m.requests.WithLabelValues("envelope", "unauthorized")) + testutil.ToFloat64(f.r.m.requests.WithLabelValues("store", "unauthorized")); n == 0 {
		t.Errorf("%s: no request was refused with 401", sdk)
	}
}

// --- Go --------------------------------------------------------------------

func goClient(t *testing.T, dsn string) *sentrygo.Hub {
	t.Helper()
	client, err := sentrygo.NewClient(sentrygo.ClientOptions{
		Dsn: dsn, Release: "probe@1.0.0", Environment: "research", ServerName: "probe-host",
		SendDefaultPII: true, EnableTracing: true, TracesSampleRate: 1,
		BeforeSend: func(e *sentrygo.Event, _ *sentrygo.EventHint) *sentrygo.Event { return e },
	})
	if err != nil {
		t.Fatal(err)
	}
	hub := sentrygo.NewHub(client, sentrygo.NewScope())
	t.Cleanup(func() { client.Close() })
	return hub
}

func goFull(t *testing.T, dsn string) {
	hub := goClient(t, dsn)
	ctx := sentrygo.SetHubOnContext(context.Background(), hub)
	req, _ := http.NewRequest(http.MethodPost, "http://shop.example.com/checkout?email=jane.doe%40example.com&token=abc", strings.NewReader(`{"card":"4111 1111 1111 1111","password":"hunter2"}`))
	req.Header.Set("User-Agent", "Mozilla/5.0 probe")
	req.Header.Set("Cookie", "sessionid=s3cr3t; theme=dark")
	req.Header.Set("X-Forwarded-For", "198.51.100.7")
	req.RemoteAddr = "203.0.113.42:51234"

	tx := sentrygo.StartTransaction(ctx, "POST /checkout")
	child := tx.StartChild("db.query")
	child.Description = "SELECT * FROM users WHERE email = 'jane.doe@example.com'"
	child.Finish()
	hub.WithScope(func(scope *sentrygo.Scope) {
		scope.SetUser(sentrygo.User{ID: "u-1", Email: "jane.doe@example.com", IPAddress: "203.0.113.42", Username: "jdoe"})
		scope.SetRequest(req)
		scope.SetTag("customer_email", "jane.doe@example.com")
		scope.SetContext("billing", sentrygo.Context{"iban": "DE89370400440532013000", "api_key": "AKIAIOSFODNN7EXAMPLE"})
		scope.AddBreadcrumb(&sentrygo.Breadcrumb{Category: "auth", Message: "login for jane.doe@example.com from 198.51.100.7",
			Data: map[string]any{"password": "hunter2"}, Level: sentrygo.LevelInfo}, 10)
		scope.AddAttachment(&sentrygo.Attachment{Filename: "note.txt", ContentType: "text/plain", Payload: []byte("contact jane.doe@example.com\nline2\n")})
		scope.SetSpan(tx)
		hub.CaptureException(errors.New("failed to charge card 4111111111111111 for jane.doe@example.com"))
	})
	sentrygo.NewLogger(tx.Context()).Info().String("user.email", "jane.doe@example.com").Emit("user logged in from 198.51.100.7")
	tx.Finish()
	hub.CaptureCheckIn(&sentrygo.CheckIn{MonitorSlug: "nightly-job", Status: sentrygo.CheckInStatusOK, Duration: 2 * time.Second}, nil)
	hub.CaptureMessage("hello from probe, contact admin@example.org")
	if !hub.Flush(10 * time.Second) {
		t.Fatal("sentry-go did not flush")
	}
}

func goRateLimit(t *testing.T, dsn string) {
	hub := goClient(t, dsn)
	for i := 1; i <= 3; i++ {
		hub.CaptureException(fmt.Errorf("rate limit probe %d", i))
		hub.Flush(10 * time.Second)
	}
	sentrygo.NewLogger(sentrygo.SetHubOnContext(context.Background(), hub)).Info().Emit("after the rate limit")
	hub.CaptureCheckIn(&sentrygo.CheckIn{MonitorSlug: "nightly-job", Status: sentrygo.CheckInStatusOK, Duration: time.Second}, nil)
	hub.Flush(10 * time.Second)
}

func TestSDKGo(t *testing.T) {
	t.Run("full", func(t *testing.T) {
		f := newFixture(t, fixtureOpt{})
		goFull(t, f.dsnFor(testKey))
		assertLanded(t, f, "sentry.go", "*errors.errorString")
		for _, r := range f.requests() {
			if !r.AuthHeader || r.Path != "/api/42/envelope/" {
				t.Errorf("sentry-go sent %+v; want X-Sentry-Auth to the envelope endpoint", r)
			}
		}
	})
	t.Run("rate limit", func(t *testing.T) {
		f := rateLimited(t)
		goRateLimit(t, f.dsnFor(testKey))
		assertHonoured(t, f, "sentry.go")
	})
	t.Run("unknown key", func(t *testing.T) {
		f := newFixture(t, fixtureOpt{})
		goFull(t, f.dsnFor("ffffffffffffffffffffffffffffffff"))
		assertNothingLanded(t, f, "sentry.go")
	})
}

// --- Node.js ---------------------------------------------------------------

func TestSDKNode(t *testing.T) {
	dir := nodeProbe(t)
	run := func(t *testing.T, dsn, mode string) {
		runProgram(t, dir, "node", filepath.Join(dir, "script.js"), dsn, mode)
	}
	t.Run("full", func(t *testing.T) {
		f := newFixture(t, fixtureOpt{})
		run(t, f.dsnFor(testKey), "full")
		assertLanded(t, f, "sentry.javascript.node", "Error")
		for _, r := range f.requests() {
			if !r.QueryKey || r.AuthHeader || !r.Chunked || r.ContentType != "" {
				t.Errorf("@sentry/node sent %+v; want the key in the query, chunked, no Content-Type", r)
			}
		}
	})
	t.Run("rate limit", func(t *testing.T) {
		f := rateLimited(t)
		run(t, f.dsnFor(testKey), "ratelimit")
		assertHonoured(t, f, "sentry.javascript.node")
	})
	t.Run("unknown key", func(t *testing.T) {
		f := newFixture(t, fixtureOpt{})
		run(t, f.dsnFor("ffffffffffffffffffffffffffffffff"), "full")
		assertNothingLanded(t, f, "sentry.javascript.node")
	})
}

// --- Python ----------------------------------------------------------------

func TestSDKPython(t *testing.T) {
	python := pythonProbe(t)
	script, _ := filepath.Abs("testdata/python/script.py")
	run := func(t *testing.T, dsn, mode string) {
		runProgram(t, filepath.Dir(script), python, script, dsn, mode)
	}
	t.Run("full", func(t *testing.T) {
		f := newFixture(t, fixtureOpt{})
		run(t, f.dsnFor(testKey), "full")
		assertLanded(t, f, "sentry.python", "ValueError")
		for _, r := range f.requests() {
			if !r.AuthHeader || r.Encoding != "br" {
				t.Errorf("sentry-python sent %+v; want X-Sentry-Auth and br compression", r)
			}
		}
		if n := testutil.ToFloat64(f.r.m.requests.WithLabelValues("envelope", "accepted")); n == 0 {
			t.Error("no envelope accepted")
		}
	})
	t.Run("rate limit", func(t *testing.T) {
		f := rateLimited(t)
		run(t, f.dsnFor(testKey), "ratelimit")
		assertHonoured(t, f, "sentry.python")
	})
	t.Run("unknown key", func(t *testing.T) {
		f := newFixture(t, fixtureOpt{})
		run(t, f.dsnFor("ffffffffffffffffffffffffffffffff"), "full")
		assertNothingLanded(t, f, "sentry.python")
	})
}

// --- installing and running the programs ------------------------------------

// need returns the path of a tool, skipping the test without it unless
// CI=true.
func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed, and CI=true allows no skipping", tool)
		}
		t.Skipf("%s is not installed", tool)
	}
	return p
}

// cacheDir returns ~/.cache/leitstand/<name>/<hash of the files>, locked
// while fill (which runs only when the directory is not yet complete)
// fills it, so parallel test runs install once.
func cacheDir(t *testing.T, name string, files []string, fill func(dir string) error) string {
	t.Helper()
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "leitstand", name, hex.EncodeToString(h.Sum(nil))[:16])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	done := filepath.Join(dir, ".complete")
	if _, err := os.Stat(done); err == nil {
		return dir
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := fill(dir); err != nil {
		t.Fatalf("installing %s into %s: %v", name, dir, err)
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func command(dir, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// nodeProbe installs @sentry/node from the committed lock file (npm ci)
// and returns the folder holding node_modules and the script.
func nodeProbe(t *testing.T) string {
	need(t, "node")
	npm := need(t, "npm")
	dir := cacheDir(t, "sentry-node", []string{"testdata/node/package.json", "testdata/node/package-lock.json"}, func(dir string) error {
		return command(dir, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	})
	// The script is copied on every run: Node resolves @sentry/node next
	// to the script, and the script may change without the lock file.
	b, err := os.ReadFile("testdata/node/script.js")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "script.js"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// pythonProbe installs the requirements into a virtualenv and returns its
// python.
func pythonProbe(t *testing.T) string {
	python3 := need(t, "python3")
	dir := cacheDir(t, "sentry-python", []string{"testdata/python/requirements.txt"}, func(dir string) error {
		venv := filepath.Join(dir, "venv")
		_ = os.RemoveAll(venv)
		if err := command(dir, python3, "-m", "venv", venv); err != nil {
			return err
		}
		return command(dir, filepath.Join(venv, "bin", "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
			"-r", filepath.Join(dir, "requirements.txt"))
	})
	return filepath.Join(dir, "venv", "bin", "python")
}

// runProgram runs an SDK program to its end.
func runProgram(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	t.Logf("%s: %s", filepath.Base(name), strings.TrimSpace(string(out)))
}
