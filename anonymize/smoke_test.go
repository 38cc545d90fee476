package anonymize

import "testing"

func TestSmoke(t *testing.T) {
	a, err := New(DefaultConfig(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"login for jane.doe@example.com from 198.51.100.7 port 22",
		"email=jane.doe%40example.com&token=abc123",
		"card 4111 1111 1111 1111 and 4111111111111111.",
		"IBAN DE89 3704 0044 0532 0130 00 und DE89370400440532013000",
		"call +49 30 12345678 or 030/1234567 or (030) 1234567 or 0151-12345678 or +1 415-555-0132",
		"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
		"jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U end",
		"Basic dXNlcjpwYXNzd29yZA== and Basic auth failed",
		"postgres://app:s3cret@db.example.com:5432/app",
		"key AKIAIOSFODNN7EXAMPLE ghp_abcdefghijklmnopqrstuvwxyz0123456789 xoxb-1234-5678-abcdef sk_live_abcdefghijklmnop1234",
		"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY----- done",
		"Steuer-ID 86095742719 oder 86 095 742 719",
		"open /home/alice/.config and C:\\Users\\Max Mustermann\\AppData and /Users/bob/x",
		"fe80::1ff:fe23:4567:890a%eth0 [2001:db8:85a3::8a2e:370:7334]:443 ::ffff:203.0.113.42 ::1",
		"mac 00:1a:2b:3c:4d:5e and 00-1A-2B-3C-4D-5E",
		"password=hunter2 secret: xyz token: expired auth: login failed",
		`{"password":"hunter2","user":"alice","card":"4111 1111 1111 1111"}`,
		"uuid 123e4567-e89b-12d3-a456-426614174000 trace bf0edcf12976b442601346fab470f256 version 1.2.3.4 at 2026-11-22T02:48:21.367517833Z took 150ms port 8080",
		"sha256:9f86d081884c7d659a2feaea0c55ad015a3bf4f1b0b61e9e0f3ec39f4a6b0a9d 1.3.6.1.4.1.2021 logo@2x.png probe@1.0.0 12:30:45 std::vector",
		"user=root user=alice Chrome/120.0.0.0 10.0.0.0/8",
	} {
		out := a.ScrubString(s)
		t.Logf("\n in: %s\nout: %s", s, out)
		if again := a.ScrubString(out); again != out {
			t.Errorf("not idempotent:\n%s\n%s", out, again)
		}
	}
}
