// Package loadgen makes the input of the whole-process benchmark
// (bench/run, cmd/leitstand-load): a reproducible mix of syslog messages
// and NDJSON lines generated from a seed, the real Sentry SDK envelopes of
// bench/testdata/sentry, and the senders that put them on loopback sockets.
//
// The same seed and count give byte-identical input, so leitstand, rsyslog
// and syslog-ng are measured on exactly the same messages, and the harness
// can regenerate the input to learn which personal data went in without
// the generator having to write it anywhere.
//
// It must not talk to anything but loopback addresses (Target refuses the
// rest): it is a load generator, and a mistyped address must not make it
// one against somebody else's machine.
package loadgen

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// BaseTime is the timestamp of message 0; message i is i milliseconds
// later. A fixed clock keeps the input identical across runs.
var BaseTime = time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)

// Message is one generated log line, before it is put into a wire format.
type Message struct {
	Seq      int
	Time     time.Time
	Facility int // syslog facility code
	Severity int // syslog severity code, 0 (emerg) to 7 (debug)
	Host     string
	App      string
	PID      int
	MsgID    string // "-" when none
	SD       string // RFC 5424 structured data, "-" when none
	Text     string
	// PII lists the personal data put into Text, as written (e-mail
	// addresses and IP addresses), for the check that it does not reach
	// the output unscrubbed.
	PII []PII
}

// PII is one piece of personal data in a message.
type PII struct {
	Kind  string // "email", "ipv4" or "ipv6"
	Value string
}

// Mix generates messages. Not safe for concurrent use.
type Mix struct {
	rng      *rand.Rand
	piiShare float64
	seq      int
}

// DefaultPIIShare is the share of messages that carry personal data.
const DefaultPIIShare = 0.2

// NewMix returns a generator for seed; piiShare (0 to 1) of the messages
// carry e-mail or IP addresses.
func NewMix(seed uint64, piiShare float64) *Mix {
	return &Mix{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), piiShare: piiShare}
}

type app struct {
	name     string
	facility int
	weight   int
	msgid    []string                    // chosen at random; "-" for none
	plain    []func(*Mix) string         // texts without personal data
	personal []func(*Mix, *[]PII) string // texts with personal data
	sd       bool                        // carries a request id in structured data
}

// severityWeights are per mille, emerg to debug: mostly info, a tail of
// errors, very little above critical.
var severityWeights = [8]int{2, 3, 15, 60, 120, 150, 600, 50}

// levelNames are ECS log.level values by severity.
var levelNames = [8]string{"emergency", "alert", "critical", "error", "warning", "notice", "info", "debug"}

var hosts = func() []string {
	var hs []string
	for _, r := range []struct {
		role string
		n    int
	}{{"web", 8}, {"app", 8}, {"db", 3}, {"mail", 2}, {"proxy", 2}, {"k8s-node", 12}, {"ldap", 2}, {"backup", 1}, {"moodle", 2}} {
		for i := 1; i <= r.n; i++ {
			h := fmt.Sprintf("%s-%02d", r.role, i)
			if i%3 == 0 {
				h += ".schule.example"
			}
			hs = append(hs, h)
		}
	}
	return hs
}()

var (
	firstNames = []string{"anna", "ben", "clara", "david", "emma", "felix", "greta", "hannah", "jonas", "lena", "lukas", "mia", "noah", "paul", "sophie", "tim"}
	lastNames  = []string{"berg", "fischer", "hoffmann", "koch", "krueger", "lang", "meyer", "mueller", "neumann", "richter", "schmidt", "schulz", "wagner", "weber", "wolf", "zimmermann"}
	domains    = []string{"example.org", "example.com", "example.net", "schule.example", "mail.example.org"}
	// Documentation ranges (RFC 5737): personal data in the input must not
	// be anybody's real address.
	v4Nets    = []string{"192.0.2.", "198.51.100.", "203.0.113."}
	padWords  = []string{"request", "handled", "after", "retry", "upstream", "cache", "entry", "refreshed", "course", "material", "uploaded", "queue", "worker", "finished", "batch", "page", "rendered", "template", "module", "grade", "submitted", "calendar", "event", "synced", "quota", "checked", "session", "renewed", "backend", "healthy"}
	b64Chars  = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	hexDigits = "0123456789abcdef"
)

func (m *Mix) pick(list []string) string { return list[m.rng.IntN(len(list))] }

func (m *Mix) hex(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = hexDigits[m.rng.IntN(16)]
	}
	return string(b)
}

func (m *Mix) b64(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = b64Chars[m.rng.IntN(len(b64Chars))]
	}
	return string(b)
}

func (m *Mix) num(lo, hi int) string { return strconv.Itoa(lo + m.rng.IntN(hi-lo+1)) }

func (m *Mix) port() string { return m.num(1024, 65535) }

// ip returns an IPv4 address (nine in ten) or an IPv6 address from the
// documentation ranges and records it.
func (m *Mix) ip(pii *[]PII) string {
	if m.rng.IntN(10) == 0 {
		v := fmt.Sprintf("2001:db8:%x:%x::%x", 1+m.rng.IntN(0xfffe), 1+m.rng.IntN(0xfffe), 1+m.rng.IntN(0xfffe))
		*pii = append(*pii, PII{"ipv6", v})
		return v
	}
	v := m.pick(v4Nets) + strconv.Itoa(1+m.rng.IntN(254))
	*pii = append(*pii, PII{"ipv4", v})
	return v
}

// urlHost is ip as a URL writes it: IPv6 in brackets.
func (m *Mix) urlHost(pii *[]PII) string {
	h := m.ip(pii)
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}

// email returns an address at a reserved domain and records it.
func (m *Mix) email(pii *[]PII) string {
	v := m.pick(firstNames) + "." + m.pick(lastNames) + m.num(1, 99) + "@" + m.pick(domains)
	*pii = append(*pii, PII{"email", v})
	return v
}

func (m *Mix) qid() string { return fmt.Sprintf("%X", m.rng.Uint64()&0xffffffffff) }

var apps = []app{
	{
		name: "sshd", facility: 10, weight: 10,
		plain: []func(*Mix) string{
			func(m *Mix) string { return "pam_unix(sshd:session): session closed for user deploy" },
			func(m *Mix) string { return "Server listening on :: port 22." },
			func(m *Mix) string {
				return "Disconnected from user deploy port " + m.port()
			},
		},
		personal: []func(*Mix, *[]PII) string{
			func(m *Mix, p *[]PII) string {
				return "Accepted publickey for deploy from " + m.ip(p) + " port " + m.port() + " ssh2: ED25519 SHA256:" + m.b64(43)
			},
			func(m *Mix, p *[]PII) string {
				return "Failed password for invalid user admin from " + m.ip(p) + " port " + m.port() + " ssh2"
			},
			func(m *Mix, p *[]PII) string {
				return "Connection closed by " + m.ip(p) + " port " + m.port() + " [preauth]"
			},
		},
	},
	{
		name: "postfix/smtpd", facility: 2, weight: 8,
		plain: []func(*Mix) string{
			func(m *Mix) string {
				return "disconnect from unknown ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5"
			},
			func(m *Mix) string { return m.qid() + ": removed" },
			func(m *Mix) string { return "warning: hostname mx2.example.net does not resolve to address" },
		},
		personal: []func(*Mix, *[]PII) string{
			func(m *Mix, p *[]PII) string { return "connect from unknown[" + m.ip(p) + "]" },
			func(m *Mix, p *[]PII) string {
				return m.qid() + ": from=<" + m.email(p) + ">, size=" + m.num(800, 90000) + ", nrcpt=1 (queue active)"
			},
			func(m *Mix, p *[]PII) string {
				return m.qid() + ": to=<" + m.email(p) + ">, relay=mx.example.net[" + m.ip(p) + "]:25, delay=0." + m.num(10, 99) +
					", delays=0.1/0/0.2/0.3, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as " + m.qid() + ")"
			},
		},
	},
	{
		name: "nginx", facility: 23, weight: 20,
		plain: []func(*Mix) string{
			func(m *Mix) string {
				return "GET /api/v1/items/" + m.num(1, 99999) + " HTTP/1.1 200 " + m.num(200, 20000) + " " + m.num(1, 900) + "ms upstream=shop-api"
			},
			func(m *Mix) string {
				return "upstream response is buffered to a temporary file /var/cache/nginx/proxy_temp/" + m.num(1, 9) + "/" + m.num(10, 99) + "/" + m.num(1000000, 9999999)
			},
		},
		personal: []func(*Mix, *[]PII) string{
			func(m *Mix, p *[]PII) string {
				return m.ip(p) + " - - [22/Nov/2026:08:15:" + m.num(10, 59) + " +0000] \"GET /kurse/" + m.num(1, 9999) + "/material HTTP/1.1\" 200 " +
					m.num(200, 90000) + " \"https://lernen.example.org/kurse\" \"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\""
			},
			func(m *Mix, p *[]PII) string {
				return m.ip(p) + " - - [22/Nov/2026:08:15:" + m.num(10, 59) + " +0000] \"POST /login HTTP/1.1\" 302 0 \"-\" \"curl/8.5.0\""
			},
		},
	},
	{
		name: "shop-api", facility: 16, weight: 20, sd: true, msgid: []string{"ORDER", "PAY", "HTTP", "-"},
		plain: []func(*Mix) string{
			func(m *Mix) string {
				return "GET /api/v1/items/" + m.num(1, 99999) + " returned 200 in " + m.num(1, 900) + "ms"
			},
			func(m *Mix) string {
				return "cache miss for catalogue page " + m.num(1, 500) + ", refreshed in " + m.num(1, 300) + "ms"
			},
			func(m *Mix) string { return "order A-" + m.num(100000, 999999) + " shipped with carrier dhl" },
		},
		personal: []func(*Mix, *[]PII) string{
			func(m *Mix, p *[]PII) string {
				return "order A-" + m.num(100000, 999999) + " paid by " + m.email(p) + " amount=" + m.num(1, 900) + "." + m.num(10, 99) + " EUR"
			},
			func(m *Mix, p *[]PII) string {
				return "password reset requested for " + m.email(p) + " from " + m.ip(p)
			},
			func(m *Mix, p *[]PII) string { return "newsletter opt-in confirmed for " + m.email(p) },
		},
	},
	{
		name: "kernel", facility: 0, weight: 6,
		plain: []func(*Mix) string{
			func(m *Mix) string { return "eth0: Link is Up - 10Gbps/Full - flow control rx/tx" },
			func(m *Mix) string {
				return "EXT4-fs (sda1): mounted filesystem with ordered data mode. Quota mode: none."
			},
			func(m *Mix) string {
				return "Out of memory: Killed process " + m.num(100, 65000) + " (java) total-vm:" + m.num(100000, 9999999) + "kB, anon-rss:" + m.num(100000, 999999) + "kB"
			},
		},
		personal: []func(*Mix, *[]PII) string{
			func(m *Mix, p *[]PII) string {
				return "[UFW BLOCK] IN=eth0 OUT= MAC= SRC=" + m.ip(p) + " DST=10.20.0.5 LEN=60 TOS=0x00 PREC=0x00 TTL=52 ID=" + m.num(1, 65535) +
					" DF PROTO=TCP SPT=" + m.port() + " DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0"
			},
		},
	},
	{
		name: "CRON", facility: 9, weight: 5,
		plain: []func(*Mix) string{
			func(m *Mix) string { return "(root) CMD (/usr/local/bin/backup.sh --incremental)" },
			func(m *Mix) string { return "(www-data) CMD (php /var/www/moodle/admin/cli/cron.php)" },
		},
	},
	{
		name: "kubelet", facility: 3, weight: 12,
		plain: []func(*Mix) string{
			func(m *Mix) string {
				return `"SyncLoop (PLEG): event for pod" pod="shop/api-` + m.hex(10) + `" event={"ID":"` + m.hex(8) + "-" + m.hex(4) + "-" + m.hex(4) + "-" + m.hex(4) + "-" + m.hex(12) + `","Type":"ContainerStarted"}`
			},
			func(m *Mix) string {
				return `Pod sandbox changed, it will be killed and re-created. pod="lernen/moodle-` + m.hex(10) + `"`
			},
		},
		personal: []func(*Mix, *[]PII) string{
			func(m *Mix, p *[]PII) string {
				return `"Probe failed" probeType="Readiness" pod="shop/api-` + m.hex(10) + `" output="Get \"http://` + m.urlHost(p) + `:8080/readyz\": context deadline exceeded"`
			},
		},
	},
	{
		name: "systemd", facility: 3, weight: 8,
		plain: []func(*Mix) string{
			func(m *Mix) string { return "Started Session " + m.num(1, 9999) + " of User deploy." },
			func(m *Mix) string { return "Starting Daily apt upgrade and clean activities..." },
			func(m *Mix) string { return "moodle-cron.service: Deactivated successfully." },
		},
	},
	{
		name: "dovecot", facility: 2, weight: 7,
		plain: []func(*Mix) string{
			func(m *Mix) string {
				return "imap: Logged out in=" + m.num(10, 9999) + " out=" + m.num(100, 99999) + " deleted=0 expunged=0 trashed=0 hdr_count=0"
			},
		},
		personal: []func(*Mix, *[]PII) string{
			func(m *Mix, p *[]PII) string {
				return "imap-login: Login: user=<" + m.email(p) + ">, method=PLAIN, rip=" + m.ip(p) + ", lip=10.20.0.8, mpid=" + m.num(100, 65000) + ", TLS, session=<" + m.b64(16) + ">"
			},
		},
	},
}

// Cumulative weights for the choice of an app: over all apps, and over
// those with personal templates.
var allWeights, personalWeights = func() ([]int, []int) {
	var all, pers []int
	sa, sp := 0, 0
	for _, a := range apps {
		sa += a.weight
		if len(a.personal) > 0 {
			sp += a.weight
		}
		all = append(all, sa)
		pers = append(pers, sp)
	}
	return all, pers
}()

func (m *Mix) weighted(cum []int) int {
	r := m.rng.IntN(cum[len(cum)-1])
	for i, c := range cum {
		if r < c {
			return i
		}
	}
	return len(cum) - 1
}

// Next returns the next message of the sequence.
func (m *Mix) Next() Message {
	seq := m.seq
	m.seq++
	msg := Message{Seq: seq, Time: BaseTime.Add(time.Duration(seq) * time.Millisecond), MsgID: "-", SD: "-"}
	personal := m.rng.Float64() < m.piiShare
	var a *app
	if personal {
		a = &apps[m.weighted(personalWeights)]
		msg.Text = a.personal[m.rng.IntN(len(a.personal))](m, &msg.PII)
	} else {
		a = &apps[m.weighted(allWeights)]
		msg.Text = a.plain[m.rng.IntN(len(a.plain))](m)
	}
	msg.App, msg.Facility = a.name, a.facility
	msg.Host = m.pick(hosts)
	r, sev := m.rng.IntN(1000), 0
	for sev < 7 && r >= severityWeights[sev] {
		r -= severityWeights[sev]
		sev++
	}
	msg.Severity = sev
	if a.name != "kernel" {
		msg.PID = 100 + m.rng.IntN(65000)
	}
	if len(a.msgid) > 0 {
		msg.MsgID = m.pick(a.msgid)
	}
	if a.sd && m.rng.IntN(2) == 0 {
		msg.SD = `[req@32473 id="` + m.hex(16) + `" status="` + m.pick([]string{"200", "200", "200", "201", "404", "500"}) + `" dur_ms="` + m.num(1, 900) + `"]`
	}
	// Lengths: most lines are as the template made them, a quarter carry
	// some hundred bytes of detail, one in twenty is long.
	var target int
	switch r := m.rng.IntN(100); {
	case r < 5:
		target = 600 + m.rng.IntN(1400)
	case r < 30:
		target = 200 + m.rng.IntN(400)
	}
	if len(msg.Text) < target {
		b := []byte(msg.Text)
		b = append(b, " detail:"...)
		for len(b) < target {
			b = append(b, ' ')
			b = append(b, m.pick(padWords)...)
		}
		msg.Text = string(b)
	}
	return msg
}

const timeLayout = "2006-01-02T15:04:05.000000Z"

// AppendRFC5424 appends the message as an RFC 5424 syslog message.
func (msg *Message) AppendRFC5424(b []byte) []byte {
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(msg.Facility*8+msg.Severity), 10)
	b = append(b, ">1 "...)
	b = msg.Time.AppendFormat(b, timeLayout)
	b = append(b, ' ')
	b = append(b, msg.Host...)
	b = append(b, ' ')
	b = append(b, msg.App...)
	b = append(b, ' ')
	if msg.PID > 0 {
		b = strconv.AppendInt(b, int64(msg.PID), 10)
	} else {
		b = append(b, '-')
	}
	b = append(b, ' ')
	b = append(b, msg.MsgID...)
	b = append(b, ' ')
	b = append(b, msg.SD...)
	b = append(b, ' ')
	return append(b, msg.Text...)
}

// AppendOctetCounted appends the message as an octet-counted frame (RFC
// 6587): its length, a space, the RFC 5424 message.
func (msg *Message) AppendOctetCounted(b []byte, scratch []byte) ([]byte, []byte) {
	scratch = msg.AppendRFC5424(scratch[:0])
	b = strconv.AppendInt(b, int64(len(scratch)), 10)
	b = append(b, ' ')
	return append(b, scratch...), scratch
}

// Dataset is the event.dataset of the message's NDJSON form.
func (msg *Message) Dataset() string {
	d := []byte("bench.")
	for _, c := range []byte(msg.App) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
			d = append(d, c)
		case c >= 'A' && c <= 'Z':
			d = append(d, c+'a'-'A')
		default:
			d = append(d, '_')
		}
	}
	return string(d)
}

// AppendNDJSON appends the message as one line for /v1/ingest (ECS
// fields, nested), newline included.
func (msg *Message) AppendNDJSON(b []byte) []byte {
	b = append(b, `{"@timestamp":"`...)
	b = msg.Time.AppendFormat(b, timeLayout)
	b = append(b, `","message":`...)
	b = appendJSONString(b, msg.Text)
	b = append(b, `,"log":{"level":"`...)
	b = append(b, levelNames[msg.Severity]...)
	b = append(b, `"},"host":{"name":`...)
	b = appendJSONString(b, msg.Host)
	b = append(b, `},"process":{"name":`...)
	b = appendJSONString(b, msg.App)
	if msg.PID > 0 {
		b = append(b, `,"pid":`...)
		b = strconv.AppendInt(b, int64(msg.PID), 10)
	}
	b = append(b, `},"event":{"dataset":"`...)
	b = append(b, msg.Dataset()...)
	return append(b, "\"}}\n"...)
}

// appendJSONString appends s as a JSON string. The generated text is
// ASCII; control characters are escaped all the same.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, `\u00`...)
			b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
