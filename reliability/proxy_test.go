package reliability

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// switchProxy forwards TCP connections to a target and can be turned off:
// then it resets every open connection and every new one, as a peer that
// is down or unreachable would look.
type switchProxy struct {
	l      net.Listener
	target string
	up     atomic.Bool
	// bytesPerSec, when set, throttles what flows towards the target.
	bytesPerSec atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]bool
}

func newSwitchProxy(t testing.TB, target string, up bool) *switchProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{l: l, target: target, conns: map[net.Conn]bool{}}
	p.up.Store(up)
	go p.serve()
	t.Cleanup(func() { l.Close(); p.setUp(false) })
	return p
}

func (p *switchProxy) url() string { return "http://" + p.l.Addr().String() }

// setUp turns forwarding on or off; off also cuts open connections.
func (p *switchProxy) setUp(up bool) {
	p.up.Store(up)
	if up {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

func (p *switchProxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

func (p *switchProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		if !p.up.Load() {
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // a reset, like a refused connection
			}
			c.Close()
			continue
		}
		go p.pipe(c)
	}
}

func (p *switchProxy) pipe(c net.Conn) {
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.track(c, true)
	p.track(u, true)
	defer func() {
		p.track(c, false)
		p.track(u, false)
		c.Close()
		u.Close()
	}()
	done := make(chan struct{}, 2)
	go func() { p.copyThrottled(u, c); done <- struct{}{} }()
	go func() { io.Copy(c, u); done <- struct{}{} }()
	<-done
}

// copyThrottled copies like io.Copy, pausing so that no more than
// bytesPerSec (when set) flow; the limit is per connection.
func (p *switchProxy) copyThrottled(dst io.Writer, src io.Reader) {
	buf := make([]byte, 16<<10)
	start, sent := time.Now(), int64(0)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			sent += int64(n)
			if bps := p.bytesPerSec.Load(); bps > 0 {
				due := start.Add(time.Duration(float64(sent) / float64(bps) * float64(time.Second)))
				time.Sleep(time.Until(due))
			} else {
				start, sent = time.Now(), 0
			}
		}
		if err != nil {
			return
		}
	}
}
