package syslog

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leitstand/leitstand/collector"
)

// evictableIdle is how long a connection must have been silent before a
// new connection may take its place at max_connections: long enough that
// a sender in the middle of a burst is never cut off.
const evictableIdle = time.Second

// idleReadSize is the buffer an idle connection waits with. Thousands of
// quiet connections then hold a few KiB each, not a read buffer.
const idleReadSize = 2 << 10

func (l *listener) bindStream() error {
	ln, err := net.Listen("tcp", l.cfg.Address)
	if err != nil {
		return err
	}
	l.ln = ln
	l.conns = &connSet{max: l.cfg.MaxConnections, m: map[*conn]struct{}{}, open: l.pm.open}
	return nil
}

func (l *listener) runStream() {
	l.r.workers.Add(1)
	go l.accept()
}

func (l *listener) stopStream() {
	_ = l.ln.Close()
	if at, ok := l.r.stopping(); ok {
		l.conns.wakeAll(at)
	}
}

// accept takes connections until the listener closes.
func (l *listener) accept() {
	defer l.r.workers.Done()
	backoff := time.Duration(0)
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if _, stop := l.r.stopping(); stop || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and retry rather
			// than spin or give up the listener.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.r.log.Warn("syslog: accepting a connection failed; retrying", "protocol", l.cfg.Protocol, "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		l.admit(nc)
	}
}

// admit checks a new connection against allowed_sources and
// max_connections and starts serving it.
func (l *listener) admit(nc net.Conn) {
	var src netip.Addr
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		src = ta.AddrPort().Addr().Unmap()
	}
	if !l.allows(src) {
		l.pm.notAllowed.Inc()
		l.pm.rejected("not_allowed")
		l.r.log.Debug("syslog: connection from a source not in allowed_sources refused", "protocol", l.cfg.Protocol, "peer", src.String())
		_ = nc.Close()
		return
	}
	c := &conn{l: l, raw: nc, nc: nc, src: src.String()}
	c.lastActive.Store(time.Now().UnixNano())
	if !l.conns.add(c) {
		l.pm.rejected("max_connections")
		l.r.log.Debug("syslog: connection refused at max_connections", "protocol", l.cfg.Protocol, "peer", c.src)
		_ = nc.Close()
		return
	}
	l.r.workers.Add(1)
	go c.serve()
}

// connSet holds a listener's open connections, bounded by max_connections.
// The open-connections gauge follows the set, so it never shows more than
// the limit, even while an evicted connection is still being closed.
type connSet struct {
	mu   sync.Mutex
	max  int
	m    map[*conn]struct{}
	open interface {
		Inc()
		Dec()
	}
}

// add registers c. At the limit the connection silent longest gives way,
// if it has been silent for evictableIdle; otherwise c is refused.
func (s *connSet) add(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= s.max {
		var victim *conn
		oldest := time.Now().Add(-evictableIdle).UnixNano()
		for o := range s.m {
			if t := o.lastActive.Load(); t < oldest {
				victim, oldest = o, t
			}
		}
		if victim == nil {
			return false
		}
		delete(s.m, victim)
		s.open.Dec()
		victim.evicted.Store(true)
		_ = victim.raw.SetReadDeadline(time.Unix(1, 0)) // wakes its reader, which closes it
	}
	s.m[c] = struct{}{}
	s.open.Inc()
	return true
}

func (s *connSet) remove(c *conn) {
	s.mu.Lock()
	if _, ok := s.m[c]; ok {
		delete(s.m, c)
		s.open.Dec()
	}
	s.mu.Unlock()
}

// wakeAll makes every reader look at the shutdown deadline.
func (s *connSet) wakeAll(at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.m {
		_ = c.raw.SetReadDeadline(at)
	}
}

// conn is one TCP or TLS connection and its reader.
type conn struct {
	l          *listener
	raw        net.Conn // the TCP connection
	nc         net.Conn // what is read: raw, or TLS over it
	src        string   // the sender's IP, for source.ip
	lastActive atomic.Int64
	evicted    atomic.Bool
	idle       [idleReadSize]byte
}

// streamBufferSize is the read buffer of a busy connection: room for a
// whole maximal frame plus its header, twice, so that a partial frame left
// at the end of one buffer always fits in the next.
func (r *Receiver) streamBufferSize() int {
	need := int(r.cfg.MaxMessageBytes) + headerRoom + 1
	return max(2*need, 128<<10)
}

func getBuffer(size int) *[]byte {
	b := collector.GetBuffer()
	if cap(*b) < size {
		*b = make([]byte, 0, size)
	}
	return b
}

// serve reads the connection until it ends, times out or the receiver
// stops.
func (c *conn) serve() {
	l := c.l
	r := l.r
	pm := l.pm
	defer r.workers.Done()
	defer l.conns.remove(c)
	defer c.raw.Close()

	if l.tls != nil {
		tc := tls.Server(c.raw, l.tls)
		_ = c.raw.SetDeadline(time.Now().Add(l.cfg.ReadTimeout))
		if at, stop := r.stopping(); stop {
			_ = c.raw.SetDeadline(at) // Shutdown's wake-up may have come first
		}
		if err := tc.HandshakeContext(r.ctx); err != nil {
			pm.rejected("tls_handshake")
			r.log.Debug("syslog: TLS handshake failed", "peer", c.src, "err", err)
			return
		}
		_ = c.raw.SetDeadline(time.Time{})
		c.nc = tc
	}
	pm.accepted.Inc()
	r.log.Debug("syslog: connection accepted", "protocol", l.cfg.Protocol, "peer", c.src)
	reason := c.read()
	pm.closed(reason)
	r.log.Debug("syslog: connection closed", "protocol", l.cfg.Protocol, "peer", c.src, "reason", reason)
}

// read is the connection's loop; it returns why the connection ends.
func (c *conn) read() (reason string) {
	l := c.l
	r := l.r
	size := r.streamBufferSize()
	need := int(r.cfg.MaxMessageBytes) + headerRoom + 1
	hardCap := 4 * r.cfg.BatchEvents

	s := l.newBatcher()
	f := framer{max: int(r.cfg.MaxMessageBytes)}
	var buf *[]byte // nil while the connection is idle
	start := 0      // where unconsumed bytes begin in *buf
	ref := false    // events of the current batch point into *buf
	lastData := time.Now()
	var frameStart time.Time // when the frame in progress began

	// switchBuf moves the unconsumed bytes into a fresh buffer; the old one
	// goes with the batch if events point into it.
	switchBuf := func() {
		nb := getBuffer(size)
		*nb = append((*nb)[:0], (*buf)[start:]...)
		if ref {
			s.batch().Keep(buf)
		} else {
			collector.PutBuffer(buf)
		}
		buf, start, ref = nb, 0, false
	}
	flush := func() {
		if ref {
			switchBuf()
		}
		s.dec.n.discardedBytes += f.takeDiscarded()
		s.flush()
	}
	// frames cuts what has arrived into events. A read full of tiny
	// messages is handed on in several batches, none larger than hardCap.
	frames := func(eof bool) {
		for {
			data := *buf
			for {
				if s.b != nil && s.b.Len() >= hardCap {
					break
				}
				fr, n, ok := f.next(data[start:], eof)
				start += n
				if ok {
					s.dec.add(s.batch(), fr, c.src)
					ref = true
					// What is left begins a new frame: read_timeout
					// bounds one frame, not a busy connection.
					frameStart = time.Time{}
				} else if n == 0 {
					return
				}
			}
			flush()
		}
	}
	defer func() {
		// What a closing sender left is kept, flagged if cut short.
		if buf != nil && start < len(*buf) {
			frames(true)
		}
		flush()
		if buf != nil {
			collector.PutBuffer(buf)
		}
	}()

	for {
		now := time.Now()
		// A frame is in progress while bytes wait for their end or the
		// rest of an over-long frame is being skipped; frameStart is when
		// that began (reset whenever a frame completes).
		inFrame := (buf != nil && start < len(*buf)) || f.discard > 0 || f.discardLine
		if !inFrame {
			frameStart = time.Time{}
		} else if frameStart.IsZero() {
			frameStart = now
		}
		deadline := lastData.Add(l.cfg.IdleTimeout)
		if inFrame {
			deadline = minTime(deadline, frameStart.Add(l.cfg.ReadTimeout))
		}
		if ld := s.lingerDeadline(); !ld.IsZero() {
			deadline = minTime(deadline, ld)
		}
		_ = c.nc.SetReadDeadline(deadline)
		// Shutdown and eviction set the deadline from outside; look again
		// after setting ours so neither is overwritten.
		if at, stop := r.stopping(); stop {
			_ = c.nc.SetReadDeadline(minTime(deadline, at))
		}
		if c.evicted.Load() {
			_ = c.nc.SetReadDeadline(time.Unix(1, 0))
		}

		var n int
		var err error
		if buf == nil {
			n, err = c.nc.Read(c.idle[:])
			if n > 0 {
				buf = getBuffer(size)
				*buf = append((*buf)[:0], c.idle[:n]...)
				start = 0
			}
		} else {
			if cap(*buf)-len(*buf) < 16<<10 || cap(*buf)-start < need {
				if !ref {
					// Nothing points into the buffer: slide the tail down.
					m := copy(*buf, (*buf)[start:])
					*buf, start = (*buf)[:m], 0
				} else {
					switchBuf()
				}
			}
			data := *buf
			n, err = c.nc.Read(data[len(data):cap(data)])
			*buf = data[:len(data)+n]
		}
		if n > 0 {
			lastData = time.Now()
			c.lastActive.Store(lastData.UnixNano())
			s.dec.n.bytes += n
			frames(false)
		}
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				if errors.Is(err, io.EOF) {
					return "eof"
				}
				return "error"
			}
			now := time.Now()
			if _, stop := r.stopping(); stop {
				return "shutdown"
			}
			if c.evicted.Load() {
				return "evicted"
			}
			if inFrame && !now.Before(frameStart.Add(l.cfg.ReadTimeout)) {
				return "read_timeout"
			}
			if !now.Before(lastData.Add(l.cfg.IdleTimeout)) {
				return "idle_timeout"
			}
			if ld := s.lingerDeadline(); !ld.IsZero() && !now.Before(ld) {
				flush()
				if start == len(*buf) && f.discard == 0 && !f.discardLine {
					// The sender paused: wait with the small buffer.
					collector.PutBuffer(buf)
					buf, start = nil, 0
				}
			}
			continue
		}
		if s.full() {
			flush()
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
