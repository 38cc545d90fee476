package syslog

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/leitstand/leitstand/internal/peers"
	"github.com/leitstand/leitstand/internal/tlsconf"
)

// testPKI is a CA with a server certificate for leitstand.test and
// 127.0.0.1 and a client certificate, written as PEM files into dir.
type testPKI struct {
	dir                           string
	caFile, serverCert, serverKey string
	clientCert, clientKey         string
	ca, otherCA                   *x509.Certificate
	caKey, otherCAKey             *ecdsa.PrivateKey
	clientPair, strangerPair      tls.Certificate
	caPool                        *x509.CertPool
	serverName                    string
	serial                        int64
	notBefore, notAfter           time.Time
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir(), serverName: "leitstand.test",
		notBefore: time.Now().Add(-time.Hour), notAfter: time.Now().Add(24 * time.Hour)}
	p.ca, p.caKey = p.newCA(t, "leitstand test CA")
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", p.ca.Raw)
	p.otherCA, p.otherCAKey = p.newCA(t, "some other CA")

	serverKey, serverDER := p.leaf(t, p.ca, p.caKey, "leitstand.test", x509.ExtKeyUsageServerAuth,
		[]string{"leitstand.test"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	p.serverCert = p.write(t, "server.pem", "CERTIFICATE", serverDER)
	p.serverKey = p.writeKey(t, "server-key.pem", serverKey)

	clientKey, clientDER := p.leaf(t, p.ca, p.caKey, "rsyslog.test", x509.ExtKeyUsageClientAuth, []string{"rsyslog.test"}, nil)
	p.clientCert = p.write(t, "client.pem", "CERTIFICATE", clientDER)
	p.clientKey = p.writeKey(t, "client-key.pem", clientKey)
	p.clientPair = tls.Certificate{Certificate: [][]byte{clientDER}, PrivateKey: clientKey}

	strangerKey, strangerDER := p.leaf(t, p.otherCA, p.otherCAKey, "stranger.test", x509.ExtKeyUsageClientAuth, []string{"stranger.test"}, nil)
	p.strangerPair = tls.Certificate{Certificate: [][]byte{strangerDER}, PrivateKey: strangerKey}

	p.caPool = x509.NewCertPool()
	p.caPool.AddCert(p.ca)
	return p
}

func (p *testPKI) next() *big.Int {
	p.serial++
	return big.NewInt(p.serial)
}

func (p *testPKI) newCA(t *testing.T, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: p.next(), Subject: pkix.Name{CommonName: cn},
		NotBefore: p.notBefore, NotAfter: p.notAfter,
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func (p *testPKI) leaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, usage x509.ExtKeyUsage, dns []string, ips []net.IP) (*ecdsa.PrivateKey, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: p.next(), Subject: pkix.Name{CommonName: cn},
		NotBefore: p.notBefore, NotAfter: p.notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{usage},
		DNSNames:    dns, IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

func (p *testPKI) write(t *testing.T, name, typ string, der []byte) string {
	return p.writeAt(t, filepath.Join(p.dir, name), typ, der)
}

func (p *testPKI) writeAt(t *testing.T, path, typ string, der []byte) string {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (p *testPKI) writeKey(t *testing.T, name string, key *ecdsa.PrivateKey) string {
	return p.writeKeyAt(t, filepath.Join(p.dir, name), key)
}

func (p *testPKI) writeKeyAt(t *testing.T, path string, key *ecdsa.PrivateKey) string {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.writeAt(t, path, "PRIVATE KEY", der)
}

// listenerConfig is a TLS listener that requires client certificates of the
// test CA.
func (p *testPKI) listenerConfig() Config {
	cfg := testConfig(ProtoTLS)
	cfg.Listeners[0].TLS = tlsconf.Config{CertFile: p.serverCert, KeyFile: p.serverKey, ClientCAFile: p.caFile, MinVersion: "1.2"}
	return cfg
}

func TestTLSWithRsyslog(t *testing.T) {
	peers.Slow(t)
	ctx := testCtx(t, 3*time.Minute)
	pki := newTestPKI(t)
	h := startHarness(t, pki.listenerConfig())
	in, err := peers.FreeUDPPort()
	if err != nil {
		t.Fatal(err)
	}
	// rsyslog checks our certificate against the CA and our name, and
	// shows its own: the receiver requires it (mutual TLS, RFC 5425).
	conf := fmt.Sprintf(`
global(DefaultNetstreamDriverCAFile=%q DefaultNetstreamDriverCertFile=%q DefaultNetstreamDriverKeyFile=%q)
ruleset(name="tls") {
  action(type="omfwd" target="127.0.0.1" port="%s" protocol="tcp" TCP_Framing="octet-counted"
         StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/name" StreamDriverPermittedPeers="leitstand.test"
         template="RSYSLOG_SyslogProtocol23Format")
}
input(type="imudp" address="127.0.0.1" port="%d" ruleset="tls")
`, pki.caFile, pki.clientCert, pki.clientKey, h.port(0), in)
	rs, err := peers.StartRsyslog(ctx, peers.RsyslogOptions{Modules: []string{"imudp"}, Config: conf, ListenUDP: []int{in}})
	peers.Check(t, err)
	peers.Cleanup(t, rs)

	marker := fmt.Sprintf("rsyslog-tls-%d", time.Now().UnixNano())
	ev := awaitSent(t, h, marker, func() { sendUDP(t, in, relayInput(marker)) })
	w := want5424(relayWant(marker))
	w["network.transport"] = "tcp"
	expect(t, ev, w)
	if n := h.metric("leitstand_syslog_connections_accepted_total", "protocol", "tls"); n < 1 {
		t.Errorf("accepted TLS connections: %v", n)
	}
	if t.Failed() {
		t.Logf("rsyslog log:\n%s", rs.LogTail(30))
	}
}

func TestTLSClientCertificates(t *testing.T) {
	pki := newTestPKI(t)
	h := startHarness(t, pki.listenerConfig())
	addr := h.addr(0).String()
	base := tls.Config{RootCAs: pki.caPool, ServerName: pki.serverName}

	// A client with a certificate of the CA gets in, with LF framing too.
	good := base.Clone()
	good.Certificates = []tls.Certificate{pki.clientPair}
	c, err := tls.Dial("tcp", addr, good)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, markerFrame("tls-octet-frame"))
	io.WriteString(c, "<13>Nov 22 08:15:00 host app: tls-lf-line\n")
	h.waitFor("tls-octet-frame", 10*time.Second)
	h.waitFor("tls-lf-line", 10*time.Second)

	// Without a certificate, with one of another CA, or without TLS at all,
	// the handshake fails and is counted; nothing arrives.
	refused := func(name string, dial func() error) {
		t.Helper()
		before := h.metric("leitstand_syslog_connections_rejected_total", "protocol", "tls", "reason", "tls_handshake")
		if err := dial(); err != nil {
			t.Logf("%s: %v", name, err)
		}
		if n := h.waitMetric(before+1, 10*time.Second, "leitstand_syslog_connections_rejected_total", "protocol", "tls", "reason", "tls_handshake"); n != before+1 {
			t.Errorf("%s: handshake failures %v, want %v", name, n, before+1)
		}
	}
	tlsSend := func(cfg *tls.Config, marker string) func() error {
		return func() error {
			c, err := tls.Dial("tcp", addr, cfg)
			if err != nil {
				return err
			}
			defer c.Close()
			io.WriteString(c, markerFrame(marker))
			// TLS 1.3 reports a refused certificate only on the next read.
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Read(make([]byte, 1))
			return err
		}
	}
	refused("no client certificate", tlsSend(base.Clone(), "tls-no-cert"))
	stranger := base.Clone()
	stranger.Certificates = []tls.Certificate{pki.strangerPair}
	refused("certificate of another CA", tlsSend(stranger, "tls-other-ca"))
	refused("plain TCP", func() error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		io.WriteString(c, markerFrame("tls-plain-tcp"))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		return err
	})
	time.Sleep(100 * time.Millisecond)
	for _, ev := range h.events() {
		m, _ := ev["message"].(string)
		if m == "tls-no-cert" || m == "tls-other-ca" || m == "tls-plain-tcp" {
			t.Errorf("an unauthenticated sender got through: %s", mustJSON(ev))
		}
	}
	// The good connection still works.
	io.WriteString(c, markerFrame("tls-still-open"))
	h.waitFor("tls-still-open", 10*time.Second)
}

// TestTLSReloadsCertificate replaces the server's key pair on disk, as
// cert-manager or a renewed Secret does; the next connection is served the
// new certificate, and the connection already open keeps working.
func TestTLSReloadsCertificate(t *testing.T) {
	pki := newTestPKI(t)
	h := startHarness(t, pki.listenerConfig())
	addr := h.addr(0).String()
	client := &tls.Config{RootCAs: pki.caPool, ServerName: pki.serverName, Certificates: []tls.Certificate{pki.clientPair}}
	dial := func(marker string) (*tls.Conn, int64) {
		t.Helper()
		c, err := tls.Dial("tcp", addr, client)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, markerFrame(marker))
		h.waitFor(marker, 10*time.Second)
		return c, c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	before, oldSerial := dial("tls-before-rotation")
	defer before.Close()

	key, der := pki.leaf(t, pki.ca, pki.caKey, "leitstand.test", x509.ExtKeyUsageServerAuth,
		[]string{"leitstand.test"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	newSerial := pki.serial
	replace(t, pki.serverKey, func(tmp string) { pki.writeKeyAt(t, tmp, key) })
	replace(t, pki.serverCert, func(tmp string) { pki.writeAt(t, tmp, "CERTIFICATE", der) })

	after, serial := dial("tls-after-rotation")
	defer after.Close()
	if serial != newSerial || serial == oldSerial {
		t.Fatalf("after the rotation the server showed serial %d, want the new %d (old %d)", serial, newSerial, oldSerial)
	}
	io.WriteString(before, markerFrame("tls-old-connection-still-open"))
	h.waitFor("tls-old-connection-still-open", 10*time.Second)
}

// TestTLSRefusesOldVersions: TLS 1.0 and 1.1 (RFC 8996) get no handshake.
func TestTLSRefusesOldVersions(t *testing.T) {
	pki := newTestPKI(t)
	h := startHarness(t, pki.listenerConfig())
	old := &tls.Config{RootCAs: pki.caPool, ServerName: pki.serverName, Certificates: []tls.Certificate{pki.clientPair},
		MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	c, err := tls.Dial("tcp", h.addr(0).String(), old)
	if err == nil {
		c.Close()
		t.Fatal("a TLS 1.1 client completed the handshake")
	}
	t.Logf("TLS 1.1: %v", err)
	if n := h.waitMetric(1, 10*time.Second, "leitstand_syslog_connections_rejected_total", "protocol", "tls", "reason", "tls_handshake"); n != 1 {
		t.Errorf("handshake failures %v, want 1", n)
	}
}

// replace writes a file's new version beside it and renames it over the
// old one, as cert-manager and kubelet do, so no reader sees half a file.
func replace(t *testing.T, path string, write func(tmp string)) {
	t.Helper()
	tmp := path + ".new"
	write(tmp)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
