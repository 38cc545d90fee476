package peers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var (
	portsMu sync.Mutex
	// portsGiven remembers the ports handed out by this binary: the kernel
	// may offer a port again as soon as we close our probe, before the peer
	// we meant it for has bound it.
	portsGiven = map[int]bool{}
)

// FreePort returns a port on 127.0.0.1 that is free for both TCP and UDP
// (syslog inputs often listen on both) and that this test binary has not
// handed out before. Another process may still take it before the peer
// binds it; the window is short and ephemeral ports are spread wide.
func FreePort() (int, error) {
	return freePort(true, true)
}

// FreeTCPPort returns a port on 127.0.0.1 that is free for TCP.
func FreeTCPPort() (int, error) { return freePort(true, false) }

// FreeUDPPort returns a port on 127.0.0.1 that is free for UDP.
func FreeUDPPort() (int, error) { return freePort(false, true) }

// MustFreePort is FreePort for tests.
func MustFreePort(tb testing.TB) int {
	tb.Helper()
	p, err := FreePort()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func freePort(tcp, udp bool) (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	var last error
	for range 100 {
		port, err := probePort(tcp, udp)
		if err != nil {
			last = err
			continue
		}
		if portsGiven[port] {
			continue
		}
		portsGiven[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("peers: no free port on 127.0.0.1: %v", last)
}

// probePort lets the kernel choose a port with one protocol and checks the
// other protocol can bind it too.
func probePort(tcp, udp bool) (int, error) {
	if tcp {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		defer l.Close()
		if udp {
			c, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				return 0, err
			}
			c.Close()
		}
		return port, nil
	}
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// portsBound returns an error naming the first of the given ports nobody
// listens on (TCP) or has bound (UDP), on any local address. It reads
// /proc/net instead of connecting, because a probe connection would be a
// real session (and possibly a message) for a syslog input.
func portsBound(tcp, udp []int) error {
	check := func(proto string, ports []int, files ...string) error {
		if len(ports) == 0 {
			return nil
		}
		bound := map[int]bool{}
		for _, f := range files {
			if err := readProcNet(f, proto == "tcp", bound); err != nil {
				return err
			}
		}
		for _, p := range ports {
			if !bound[p] {
				return fmt.Errorf("nothing on %s port %d yet", proto, p)
			}
		}
		return nil
	}
	if err := check("tcp", tcp, "/proc/net/tcp", "/proc/net/tcp6"); err != nil {
		return err
	}
	return check("udp", udp, "/proc/net/udp", "/proc/net/udp6")
}

// readProcNet adds the local ports in a /proc/net/{tcp,udp}[6] table to
// bound; for TCP only sockets in LISTEN state count.
func readProcNet(path string, listenOnly bool, bound map[int]bool) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // no IPv6
		}
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// sl local_address rem_address st ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 {
			continue
		}
		if listenOnly && fields[3] != "0A" { // TCP_LISTEN
			continue
		}
		_, hexPort, ok := strings.Cut(fields[1], ":")
		if !ok {
			continue
		}
		port, err := strconv.ParseUint(hexPort, 16, 16)
		if err == nil {
			bound[int(port)] = true
		}
	}
	return sc.Err()
}

// httpGet fetches url and returns the body of a 200 answer.
func httpGet(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %.200s", url, resp.Status, body)
	}
	return string(body), nil
}

// httpOK is a readiness check: url answers 200.
func httpOK(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := httpGet(ctx, url)
		return err
	}
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// pickPort returns port, or a free TCP port when it is 0.
func pickPort(port int) (int, error) {
	if port != 0 {
		return port, nil
	}
	return FreeTCPPort()
}
