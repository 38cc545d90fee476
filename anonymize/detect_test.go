package anonymize

import (
	"strings"
	"testing"
)

// TestDetectors checks each detector on what it must find and on the
// look-alikes it must leave alone. Hashes are shown as HASH.
func TestDetectors(t *testing.T) {
	a := newTestAnonymizer(t)
	for _, tc := range []struct{ in, want string }{
		// e-mail
		{"mail jane.doe@example.com now", "mail email:HASH now"},
		{"<Jane.Doe+news@Mail.Example.co.uk>", "<email:HASH>"},
		{"q=jane.doe%40example.com&x=1", "q=email:HASH&x=1"},
		{"jürgen.müller@beispiel.de", "email:HASH"},
		{"end of sentence a@b.de.", "end of sentence email:HASH."},
		{"logo@2x.png nginx@sha256:abc probe@1.0.0 @timestamp user@localhost", "logo@2x.png nginx@sha256:abc probe@1.0.0 @timestamp user@localhost"},
		// IPv4
		{"from 203.0.113.42 port 22", "from 203.0.113.0 port 22"},
		{"http://198.51.100.7:8080/x", "http://198.51.100.0:8080/x"},
		{"10.1.2.3/8", "10.1.2.0/8"},
		{"127.0.0.1 0.0.0.0 255.255.255.0", "127.0.0.1 0.0.0.0 255.255.255.0"},
		{"version 1.2.3.4, Version: 10.0.19041.1 ver=4.3.2.1", "version 1.2.3.4, Version: 10.0.19041.1 ver=4.3.2.1"},
		{"v1.2.3.4 1.3.6.1.4.1.2021 3.14159 1.2.3 256.1.1.1 01.02.03.04", "v1.2.3.4 1.3.6.1.4.1.2021 3.14159 1.2.3 256.1.1.1 01.02.03.04"},
		{"Mozilla/5.0 Chrome/120.0.6099.109 Safari/537.36", "Mozilla/5.0 Chrome/120.0.6099.109 Safari/537.36"},
		// IPv6
		{"2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::"},
		{"[2001:db8::1]:443", "[2001:db8::]:443"},
		{"fe80::1ff:fe23:4567:890a%eth0", "fe80::%eth0"},
		{"::ffff:203.0.113.42", "::ffff:203.0.113.0"},
		{"::1 :: std::vector Foo::Bar dead::beef 12:30:45 10:15", "::1 :: std::vector Foo::Bar dead::beef 12:30:45 10:15"},
		// MAC
		{"mac 00:1a:2b:3c:4d:5e, 00-1A-2B-3C-4D-5E and 001a.2b3c.4d5e", "mac [mac], [mac] and [mac]"},
		{"00:00:00:00:00:00 ff:ff:ff:ff:ff:ff 00:1a:2b", "00:00:00:00:00:00 ff:ff:ff:ff:ff:ff 00:1a:2b"},
		// cards
		{"4111 1111 1111 1111", "[card]"},
		{"5500-0000-0000-0004 exp 12/27", "[card] exp 12/27"},
		{"378282246310005 and 6011111111111117", "[card] and [card]"},
		{"4111 1111 1111 1112 4111111111111112 1234567890123456 1763779701367", "4111 1111 1111 1112 4111111111111112 1234567890123456 1763779701367"},
		{"ean 4006381333931 and the old 13-digit Visa 4222222222222", "ean 4006381333931 and the old 13-digit Visa 4222222222222"},
		// IBAN
		{"DE89 3704 0044 0532 0130 00", "[iban]"},
		{"GB82WEST12345698765432 and NL91ABNA0417164300", "[iban] and [iban]"},
		{"DE89 3704 0044 0532 0130 01 DE00123456789012345678", "DE89 3704 0044 0532 0130 01 DE00123456789012345678"},
		// phone
		{"+49 30 12345678", "[phone]"},
		{"+4915112345678, 0151 12345678, 030/1234567", "[phone], [phone], [phone]"},
		{"+49 (0)30 1234567 or (030) 123 4567 or 0049 89 1234567", "[phone] or [phone] or [phone]"},
		{"+1 415-555-0132, (415) 555-0132, 415-555-0132, +44 20 7946 0958", "[phone], [phone], [phone], [phone]"},
		{"2026-11-22 01.12.2026 01/12/2026 0800-1700 seq=000123456 +0100 0.0123456789", "2026-11-22 01.12.2026 01/12/2026 0800-1700 seq=000123456 +0100 0.0123456789"},
		// JWT and credentials
		{"t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U x", "t=[jwt] x"},
		{"Bearer abcDEF123456ghiJKL and bearer token expired", "Bearer [credential] and bearer token expired"},
		{"Basic dXNlcjpwYXNzd29yZA== then Basic auth failed", "Basic [credential] then Basic auth failed"},
		{"postgres://app:s3cret@db.example.com:5432/app", "postgres://[credentials]@db.example.com:5432/app"},
		{"https://example.com/a@b and ftp://anonymous@host", "https://example.com/a@b and ftp://anonymous@host"},
		// API keys and private keys
		{"AKIAIOSFODNN7EXAMPLE", "[api_key]"},
		{"ghp_abcdefghijklmnopqrstuvwxyz0123456789 github_pat_11ABCDEFG0abcdefghijkl_mnopqrstuvwxyz", "[api_key] [api_key]"},
		{"xoxb-1234-5678-abcdefghij sk_live_abcdefghijklmnop1234 AIzaSyA-abcdefghijklmnopqrstuvwxyz01234", "[api_key] [api_key] [api_key]"},
		{"AKIA ghp_short sk_live_ xoxb-", "AKIA ghp_short sk_live_ xoxb-"},
		{"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\nnext", "[private_key]\nnext"},
		{`"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----"`, `"[private_key]"`},
		{"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"},
		// tax id
		{"Steuer-ID: 86095742719", "Steuer-ID: [tax_id]"},
		{"86 095 742 719", "[tax_id]"},
		{"86095742718 12345678901 96095742719", "86095742718 12345678901 96095742719"},
		// home paths
		{"open /home/alice/.bashrc", "open /home/[user]/.bashrc"},
		{`C:\Users\Max Mustermann\AppData and C:\\Users\\erika\\x and C:/Users/bob/y`, `C:\Users\[user]\AppData and C:\\Users\\[user]\\x and C:/Users/[user]/y`},
		{"/Users/Shared/x https://example.com/home/index.html /srv/home/x", "/Users/Shared/x https://example.com/home/index.html /srv/home/x"},
		// key rules
		{"password=hunter2 pwd: x1 api_key=abc", "password=[secret] pwd: [secret] api_key=[secret]"},
		{`{"password": "correct horse", "accessToken":"abc"}`, `{"password": "[secret]", "accessToken":"[secret]"}`},
		{`{\"password\":\"hunter2\"}`, `{\"password\":\"[secret]\"}`},
		{"Cookie: theme=dark; sessionid=abc123\nnext", "Cookie: [secret]\nnext"},
		{"X-Api-Key: 12345 DB_PASSWORD=x PGPASSWORD=y", "X-Api-Key: [secret] DB_PASSWORD=[secret] PGPASSWORD=[secret]"},
		{"token: expired, auth: ok, session: started, tokens=1500 max_tokens=20 token_type=bearer", "token: expired, auth: ok, session: started, tokens=1500 max_tokens=20 token_type=bearer"},
		{"token: a1b2c3 session=xyz password=[Filtered] secret=***", "token: [secret] session=[secret] password=[Filtered] secret=***"},
		{"a == b, x != y, i <= 3", "a == b, x != y, i <= 3"},
		// user keys
		{"user=alice uid=1000 user=root username: bob", "user=user:HASH uid=1000 user=root username: user:HASH"},
		{"user=<jane@example.com> 203.0.113.7 - alice [22/Nov/2026:10:00:00 +0100]", "user=<email:HASH> 203.0.113.0 - user:HASH [22/Nov/2026:10:00:00 +0100]"},
		// benign
		{"uuid 123e4567-e89b-12d3-a456-426614174000 trace bf0edcf12976b442601346fab470f256", "uuid 123e4567-e89b-12d3-a456-426614174000 trace bf0edcf12976b442601346fab470f256"},
		{"sha256:9f86d081884c7d659a2feaea0c55ad015a3bf4f1b0b61e9e0f3ec39f4a6b0a9d took 150ms port 8080 at 2026-11-22T02:48:21.367Z", "sha256:9f86d081884c7d659a2feaea0c55ad015a3bf4f1b0b61e9e0f3ec39f4a6b0a9d took 150ms port 8080 at 2026-11-22T02:48:21.367Z"},
	} {
		got := hideHashes(a.ScrubString(tc.in))
		if got != tc.want {
			t.Errorf("ScrubString(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

// hideHashes replaces the hash part of pseudonyms with HASH.
func hideHashes(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, ":k1:")
		if i < 0 || len(s)-(i+4) < hashChars {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		b.WriteString(":HASH")
		s = s[i+4+hashChars:]
	}
}

func TestPseudonymsCorrelate(t *testing.T) {
	a := newTestAnonymizer(t)
	one := a.ScrubString("Jane.Doe@Example.com")
	if two := a.ScrubString("q=jane.doe%40example.com"); two != "q="+one {
		t.Errorf("one address, two pseudonyms: %q and %q", one, two)
	}
	if !strings.HasPrefix(one, "email:k1:") || len(one) != len("email:k1:")+hashChars {
		t.Errorf("pseudonym %q is not email:k1:<%d chars>", one, hashChars)
	}
	b := newTestAnonymizer(t, func(c *Config) { c.HashKeyID = "k2" })
	if other := b.ScrubString("jane.doe@example.com"); !strings.HasPrefix(other, "email:k2:") || other[9:] != one[9:] {
		t.Errorf("same key under another id should differ only in the id: %q vs %q", one, other)
	}
}
