package syslog

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/internal/config"
	"github.com/leitstand/leitstand/internal/tlsconf"
)

// Listener protocols.
const (
	ProtoUDP  = "udp"
	ProtoTCP  = "tcp"
	ProtoTLS  = "tls"  // RFC 5425: TCP with TLS, octet counting (LF framing is accepted too)
	ProtoUnix = "unix" // a Unix datagram socket, like /dev/log
)

// DefaultAddress is where the embedded default listens, for UDP and TCP.
const DefaultAddress = "127.0.0.1:5514"

// Config of the syslog receiver.
type Config struct {
	// Enabled runs the receiver. Default true.
	Enabled bool `yaml:"enabled"`
	// Listeners are the sockets syslog arrives on. Default: udp and tcp on
	// 127.0.0.1:5514. A list in the config file replaces the default list.
	Listeners []Listener `yaml:"listeners"`
	// MaxMessageBytes is the longest message kept. A longer one is cut to
	// this size and tagged syslog_truncated; the rest of its frame is read
	// and discarded. Default 64KiB.
	MaxMessageBytes config.ByteSize `yaml:"max_message_bytes"`
	// BatchEvents is how many events a connection or datagram reader
	// collects before handing them to the pipeline. Default 256.
	BatchEvents int `yaml:"batch_events"`
	// BatchLinger is how long a partly filled batch waits for more events
	// before it is handed on. Default 10ms.
	BatchLinger time.Duration `yaml:"batch_linger"`
	// RFC3164 says how to complete old BSD-style timestamps.
	RFC3164 RFC3164Config `yaml:"rfc3164"`
}

// RFC3164Config completes RFC 3164 timestamps ("Nov 22 08:15:00"), which
// carry neither a year nor a time zone.
type RFC3164Config struct {
	// Timezone the senders' clocks are in: "Local", "UTC" or an IANA name
	// such as "Europe/Berlin". Default Local.
	Timezone string `yaml:"timezone"`
	// Year of such timestamps. 0 picks the year that puts the timestamp
	// closest to the time of receipt, so a message stamped 31 December and
	// received on 1 January keeps last year. Set it only to replay old
	// logs. Default 0.
	Year int `yaml:"year"`
}

// Listener is one socket.
type Listener struct {
	// Protocol is udp, tcp, tls (RFC 5425) or unix (a Unix datagram socket
	// for node-local senders). Required.
	Protocol string `yaml:"protocol"`
	// Address is host:port for udp, tcp and tls, and a file path for unix.
	// Required.
	Address string `yaml:"address"`
	// TLS holds the certificate for protocol tls. Default none.
	TLS tlsconf.Config `yaml:"tls"`
	// AllowedSources lists the networks (CIDR, or single addresses) that
	// may send; others are refused and counted. Default empty: anyone who
	// can reach the address.
	AllowedSources []string `yaml:"allowed_sources"`
	// AllowUnauthenticated accepts anyone on a non-loopback address without
	// TLS client certificates or allowed_sources. Default false: such a
	// listener is a configuration error.
	AllowUnauthenticated bool `yaml:"allow_unauthenticated"`
	// Queue is the policy when the pipeline is full. Default for udp and
	// unix: drop_newest (counted; a datagram sender cannot be told); for tcp
	// and tls: block with no block_timeout, so TCP flow control slows the
	// sender down.
	Queue pipeline.Policy `yaml:"queue"`
	// MaxConnections bounds open connections (tcp, tls). At the limit the
	// connection idle longest is closed for the new one. Default 1000.
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout closes a connection that sent nothing for this long (tcp,
	// tls). Default 5m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// ReadTimeout bounds how long a message, once begun, may take to arrive
	// completely, and the TLS handshake, so a slow sender cannot hold a
	// connection with half a frame (tcp, tls). Default 30s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// SocketBufferBytes is the kernel receive buffer (SO_RCVBUF) of a
	// datagram socket (udp, unix); bursts beyond it are dropped by the
	// kernel and counted. Default 8MiB.
	SocketBufferBytes config.ByteSize `yaml:"socket_buffer_bytes"`
	// Readers is how many sockets and goroutines receive on a udp port
	// (SO_REUSEPORT; the kernel spreads senders over them). A unix socket
	// has one reader. Default: the number of CPUs, at least 2.
	Readers int `yaml:"readers"`
	// SocketMode is the file mode of a unix socket, in octal. Default 0660.
	SocketMode string `yaml:"socket_mode"`
}

// DefaultConfig returns the embedded default: udp and tcp on 127.0.0.1:5514.
func DefaultConfig() Config {
	c := Config{
		Enabled:         true,
		MaxMessageBytes: 64 << 10,
		BatchEvents:     256,
		BatchLinger:     10 * time.Millisecond,
		RFC3164:         RFC3164Config{Timezone: "Local"},
	}
	for _, p := range []string{ProtoUDP, ProtoTCP} {
		var l Listener
		l.SetDefaults()
		l.Protocol, l.Address = p, DefaultAddress
		c.Listeners = append(c.Listeners, l)
	}
	return c
}

// SetDefaults fills in the defaults of a listener that the config file adds
// to the list; protocol-dependent settings stay zero and are resolved when
// the listener starts.
func (l *Listener) SetDefaults() {
	*l = Listener{
		MaxConnections:    1000,
		IdleTimeout:       5 * time.Minute,
		ReadTimeout:       30 * time.Second,
		SocketBufferBytes: 8 << 20,
		TLS:               tlsconf.Default(),
	}
}

// policy is the listener's queue policy with the protocol default applied.
func (l *Listener) policy() pipeline.Policy {
	p := l.Queue
	if p.WhenFull == "" {
		if l.datagram() {
			p.WhenFull = pipeline.DropNewest
		} else {
			p.WhenFull = pipeline.Block
		}
	}
	return p
}

func (l *Listener) datagram() bool { return l.Protocol == ProtoUDP || l.Protocol == ProtoUnix }

func (l *Listener) readers() int {
	if l.Readers > 0 {
		return l.Readers
	}
	return max(2, runtime.GOMAXPROCS(0))
}

func (l *Listener) socketMode() os.FileMode {
	if l.SocketMode == "" {
		return 0o660
	}
	m, _ := strconv.ParseUint(l.SocketMode, 8, 32)
	return os.FileMode(m)
}

// Validate checks the settings, including that TLS files load, and that no
// listener leaves loopback without a way to tell senders apart.
func (c *Config) Validate() error {
	var errs config.Errors
	if !c.Enabled {
		return nil
	}
	if len(c.Listeners) == 0 {
		errs.Addf("listeners", "must list at least one listener (or set enabled: false)")
	}
	if c.MaxMessageBytes < 480 || c.MaxMessageBytes > 16<<20 {
		// RFC 5424 section 6.1: receivers must take at least 480 octets.
		errs.Addf("max_message_bytes", "must be between 480 and 16MiB, got %s", c.MaxMessageBytes)
	}
	if c.BatchEvents < 1 || c.BatchEvents > 65536 {
		errs.Addf("batch_events", "must be between 1 and 65536, got %d", c.BatchEvents)
	}
	if c.BatchLinger < 0 || c.BatchLinger > 10*time.Second {
		errs.Addf("batch_linger", "must be between 0 and 10s, got %s", c.BatchLinger)
	}
	if _, err := c.RFC3164.location(); err != nil {
		errs.Addf("rfc3164.timezone", "%v", err)
	}
	if y := c.RFC3164.Year; y != 0 && (y < 1970 || y > 9999) {
		errs.Addf("rfc3164.year", "must be 0 (from the clock) or between 1970 and 9999, got %d", y)
	}
	seen := map[string]int{}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		path := fmt.Sprintf("listeners[%d]", i)
		errs.Nest(path, l.Validate())
		// tcp and tls share the TCP port space; udp has its own.
		space := "tcp"
		switch l.Protocol {
		case ProtoUDP:
			space = "udp"
		case ProtoUnix:
			space = "unix"
		}
		key := space + " " + l.Address
		if _, port, _ := net.SplitHostPort(l.Address); port == "0" {
			continue // a free port is picked for each
		}
		if j, dup := seen[key]; dup {
			errs.Addf(path+".address", "%s %s is already used by listeners[%d]", l.Protocol, l.Address, j)
		} else {
			seen[key] = i
		}
	}
	return errs.Err()
}

func (r *RFC3164Config) location() (*time.Location, error) {
	switch r.Timezone {
	case "", "Local", "local":
		return time.Local, nil
	case "UTC", "utc":
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(r.Timezone)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q: want Local, UTC or an IANA name such as Europe/Berlin", r.Timezone)
	}
	return loc, nil
}

// Validate checks one listener.
func (l *Listener) Validate() error {
	var errs config.Errors
	addrOK := false
	switch l.Protocol {
	case ProtoUDP, ProtoTCP, ProtoTLS:
		if host, port, err := net.SplitHostPort(l.Address); err != nil {
			errs.Addf("address", "want host:port, got %q", l.Address)
		} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			errs.Addf("address", "port of %q must be a number from 0 to 65535", l.Address)
		} else if host != "" && host != "localhost" && net.ParseIP(host) == nil {
			errs.Addf("address", "host of %q must be an IP address, localhost or empty (all interfaces)", l.Address)
		} else {
			addrOK = true
		}
	case ProtoUnix:
		if l.Address == "" {
			errs.Addf("address", "must be the path of the socket file")
		} else if dir := filepath.Dir(l.Address); dir != "" {
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				errs.Addf("address", "folder %s of the socket does not exist", dir)
			}
		}
		if l.SocketMode != "" {
			if m, err := strconv.ParseUint(l.SocketMode, 8, 32); err != nil || m > 0o777 {
				errs.Addf("socket_mode", "must be an octal file mode such as 0660, got %q", l.SocketMode)
			}
		}
	case "":
		errs.Addf("protocol", "must be set: udp, tcp, tls or unix")
	default:
		errs.Addf("protocol", "must be udp, tcp, tls or unix, got %q", l.Protocol)
	}

	if l.Protocol == ProtoTLS {
		errs.Nest("tls", l.TLS.ValidateRequired("for protocol tls"))
	} else if l.TLS.CertFile != "" || l.TLS.KeyFile != "" || l.TLS.ClientCAFile != "" {
		errs.Addf("tls", "is only for protocol tls, not %q", l.Protocol)
	}
	if _, err := parseSources(l.AllowedSources); err != nil {
		errs.Addf("allowed_sources", "%v", err)
	}
	if l.Protocol == ProtoUnix && len(l.AllowedSources) > 0 {
		errs.Addf("allowed_sources", "does not apply to a unix socket; use socket_mode")
	}
	if addrOK && !l.loopback() && !l.authenticated() {
		how := "list allowed_sources (CIDRs)"
		if l.Protocol == ProtoTLS {
			how = "set tls.client_ca_file to require client certificates, or " + how
		} else if l.Protocol == ProtoTCP {
			how = "use protocol tls with tls.client_ca_file, or " + how
		}
		errs.Addf("address", "%q is not a loopback address, so the listener must authenticate its senders: %s, or set allow_unauthenticated: true to accept anyone", l.Address, how)
	}

	if err := l.Queue.Validate(); err != nil && l.Queue.WhenFull != "" {
		errs.Nest("queue", err)
	} else if l.Queue.BlockTimeout < 0 {
		errs.Addf("queue.block_timeout", "must not be negative, got %s", l.Queue.BlockTimeout)
	}
	if !l.datagram() {
		if l.MaxConnections < 1 || l.MaxConnections > 1<<20 {
			errs.Addf("max_connections", "must be between 1 and 1048576, got %d", l.MaxConnections)
		}
		if l.IdleTimeout < time.Second {
			errs.Addf("idle_timeout", "must be at least 1s, got %s", l.IdleTimeout)
		}
		if l.ReadTimeout < 100*time.Millisecond {
			errs.Addf("read_timeout", "must be at least 100ms, got %s", l.ReadTimeout)
		}
	} else {
		if l.SocketBufferBytes < 0 || l.SocketBufferBytes > 1<<30 {
			errs.Addf("socket_buffer_bytes", "must be between 0 (the system default) and 1GiB, got %s", l.SocketBufferBytes)
		}
		if l.Readers < 0 || l.Readers > 256 {
			errs.Addf("readers", "must be between 0 (one per CPU) and 256, got %d", l.Readers)
		}
	}
	return errs.Err()
}

// loopback reports whether the listener is reachable from this machine only.
func (l *Listener) loopback() bool {
	host, _, err := net.SplitHostPort(l.Address)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (l *Listener) authenticated() bool {
	return l.AllowUnauthenticated || len(l.AllowedSources) > 0 ||
		(l.Protocol == ProtoTLS && l.TLS.ClientCAFile != "")
}

// parseSources reads allowed_sources: CIDRs or single addresses.
func parseSources(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		return nil, fmt.Errorf("entry %d, %q, is neither a CIDR (10.0.0.0/8) nor an address", i, s)
	}
	return out, nil
}

// Describe is the receiver's part of the one-line summary `leitstand check`
// prints, e.g. "syslog udp 127.0.0.1:5514, tcp 127.0.0.1:5514".
func (c *Config) Describe() string {
	if !c.Enabled {
		return "syslog off"
	}
	var parts []string
	for i := range c.Listeners {
		l := &c.Listeners[i]
		s := l.Protocol + " " + l.Address
		switch {
		case l.Protocol == ProtoTLS && l.TLS.ClientCAFile != "":
			s += " (client certificates)"
		case len(l.AllowedSources) > 0:
			s += fmt.Sprintf(" (%d allowed networks)", len(l.AllowedSources))
		case l.Protocol != ProtoUnix && !l.loopback():
			s += " (unauthenticated)"
		}
		parts = append(parts, s)
	}
	return "syslog " + strings.Join(parts, ", ")
}

var _ config.Validator = (*Config)(nil)
