package syslog

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/leitstand/leitstand/collector"
)

// bindDatagram binds a udp listener's sockets (one per reader, sharing the
// port through SO_REUSEPORT, so each reader has its own queue and read
// deadline) or a unix listener's one socket.
func (l *listener) bindDatagram() error {
	if l.cfg.Protocol == ProtoUnix {
		return l.bindUnix()
	}
	n := l.cfg.readers()
	if !reusePortSupported {
		n = 1
	}
	lc := net.ListenConfig{Control: controlReusePort}
	addr := l.cfg.Address
	for i := 0; i < n; i++ {
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			for _, p := range l.pcs {
				_ = p.Close()
			}
			l.pcs = nil
			return err
		}
		if i == 0 {
			addr = pc.LocalAddr().String() // port 0 resolved: the others join it
		}
		l.tune(pc)
		l.pcs = append(l.pcs, pc)
	}
	l.drops = make([]uint32, len(l.pcs))
	return nil
}

// bindUnix binds the unix datagram socket, replacing a stale socket file
// that no process serves any more, never a live one.
func (l *listener) bindUnix() error {
	path := l.cfg.Address
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.Dial("unixgram", path); err == nil {
			_ = c.Close()
			return fmt.Errorf("%s is in use by another process", path)
		}
		if err := os.Remove(path); err != nil {
			return err
		}
	}
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	if err := os.Chmod(path, l.cfg.socketMode()); err != nil {
		_ = pc.Close()
		_ = os.Remove(path)
		return err
	}
	l.tune(pc)
	l.pcs = []net.PacketConn{pc}
	l.drops = make([]uint32, 1)
	return nil
}

// tune sizes the socket's receive buffer and turns on the kernel's drop
// counter. Failing either is worth a warning, not a failed start.
func (l *listener) tune(pc net.PacketConn) {
	if want := int(l.cfg.SocketBufferBytes); want > 0 {
		got, err := setReceiveBuffer(pc, want)
		if err != nil || got < want {
			l.r.log.Warn("syslog: the kernel gave a smaller socket buffer than configured; bursts beyond it are dropped and counted in leitstand_syslog_kernel_drops_total (raise net.core.rmem_max, or run with CAP_NET_ADMIN)",
				"protocol", l.cfg.Protocol, "wanted_bytes", want, "got_bytes", got, "err", err)
		}
	}
	if err := enableDropCounter(pc); err != nil {
		l.r.log.Debug("syslog: no kernel drop counter on this socket", "protocol", l.cfg.Protocol, "err", err)
	}
}

func (l *listener) removeSocketFile() {
	if err := os.Remove(l.cfg.Address); err != nil && !errors.Is(err, os.ErrNotExist) {
		l.r.log.Warn("syslog: removing the socket file failed", "path", l.cfg.Address, "err", err)
	}
}

func (l *listener) runDatagram() {
	for i := range l.pcs {
		l.r.workers.Add(1)
		go l.readDatagrams(i)
	}
}

// stopDatagram sets every socket's deadline to the drain deadline; the
// readers take what is queued until then and leave.
func (l *listener) stopDatagram() {
	if at, ok := l.r.stopping(); ok {
		for _, pc := range l.pcs {
			_ = pc.SetReadDeadline(at)
		}
	}
}

// dropCheckInterval is how often a reader asks its socket for the kernel's
// drop count when no datagram brought it.
const dropCheckInterval = time.Second

// addDrops counts the kernel's drops at socket i up to total.
func (l *listener) addDrops(i int, total uint32) {
	var d uint32
	d, l.drops[i] = dropsSince(l.drops[i], total)
	if d > 0 {
		l.pm.kernelDrops.Add(float64(d))
	}
}

// dropsSince returns how many drops total adds to last, and the count to
// keep. The counter only grows (modulo 2^32), but the two ways of reading
// it disagree in time: a datagram's SO_RXQ_OVFL value is the count when it
// was queued, older than what SO_MEMINFO said a moment ago. An older value
// is ignored, not taken as the new base, or the drops between would be
// counted twice.
func dropsSince(last, total uint32) (added, next uint32) {
	if d := total - last; d > 0 && d < 1<<31 {
		return d, total
	}
	return 0, last
}

// countDrops asks socket i for its drop count.
func (l *listener) countDrops(i int) {
	if total, ok := socketDrops(l.pcs[i]); ok {
		l.addDrops(i, total)
	}
}

// readDatagrams is one reader: one datagram is one message (RFC 5426).
func (l *listener) readDatagrams(i int) {
	defer l.r.workers.Done()
	r := l.r
	pc := l.pcs[i]
	maxMsg := int(r.cfg.MaxMessageBytes)
	size := max(256<<10, 4*(maxMsg+1))
	read := datagramReader(pc)

	s := l.newBatcher()
	buf := getBuffer(size)
	ref := false
	oob := make([]byte, oobSize)
	var lastAddr netip.Addr
	lastSrc := ""
	var armed time.Time // the read deadline last set, to skip setting it again per datagram

	flush := func() {
		if ref {
			s.batch().Keep(buf)
			buf, ref = getBuffer(size), false
		}
		s.flush()
	}
	defer func() {
		flush()
		collector.PutBuffer(buf)
	}()

	// The kernel's drop count arrives with the next datagram; a quiet
	// socket is asked for it directly now and then, and once more before
	// the reader leaves, so drops at the end of a burst are counted too.
	nextDropCheck := time.Now().Add(dropCheckInterval)
	defer l.countDrops(i)

	for {
		deadline := s.lingerDeadline()
		if at, stop := r.stopping(); stop && (deadline.IsZero() || at.Before(deadline)) {
			deadline = at
		}
		if deadline.IsZero() || nextDropCheck.Before(deadline) {
			deadline = nextDropCheck
		}
		if !deadline.Equal(armed) {
			_ = pc.SetReadDeadline(deadline)
			armed = deadline
		}
		// Shutdown sets the deadline from outside; look again after
		// setting ours so it is not overwritten.
		if at, stop := r.stopping(); stop && (deadline.IsZero() || at.Before(deadline)) {
			_ = pc.SetReadDeadline(at)
			armed = at
		}

		if cap(*buf)-len(*buf) < maxMsg+1 {
			if ref {
				s.batch().Keep(buf)
				buf, ref = getBuffer(size), false
			} else {
				*buf = (*buf)[:0]
			}
		}
		data := *buf
		room := data[len(data) : len(data)+maxMsg+1]
		n, oobn, addr, err := read(room, oob)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if now := time.Now(); !now.Before(nextDropCheck) {
					l.countDrops(i)
					nextDropCheck = now.Add(dropCheckInterval)
				}
				if at, stop := r.stopping(); stop && !time.Now().Before(at) {
					return
				}
				if ld := s.lingerDeadline(); !ld.IsZero() && !time.Now().Before(ld) {
					flush()
				}
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Warn("syslog: reading a datagram failed", "protocol", l.cfg.Protocol, "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if oobn > 0 {
			if total, ok := dropCount(oob[:oobn]); ok {
				l.addDrops(i, total)
			}
		}
		s.dec.n.bytes += n
		src := ""
		if addr.IsValid() {
			a := addr.Addr().Unmap()
			if !l.allows(a) {
				l.pm.notAllowed.Inc()
				l.c.Dropped("not_allowed", 1)
				r.log.Debug("syslog: datagram from a source not in allowed_sources dropped", "protocol", l.cfg.Protocol, "peer", a.String())
				continue
			}
			if a != lastAddr || lastSrc == "" {
				lastAddr, lastSrc = a, a.String()
			}
			src = lastSrc
		}
		fr := frame{data: room[:min(n, maxMsg)]}
		if n > maxMsg {
			fr.flags = frameTruncated
		}
		*buf = data[:len(data)+len(fr.data)]
		s.dec.add(s.batch(), fr, src)
		ref = true
		if s.full() {
			flush()
		}
	}
}

// datagramReader returns how to read one datagram with its control
// messages and sender from pc.
func datagramReader(pc net.PacketConn) func(b, oob []byte) (int, int, netip.AddrPort, error) {
	switch c := pc.(type) {
	case *net.UDPConn:
		return func(b, oob []byte) (int, int, netip.AddrPort, error) {
			n, oobn, _, addr, err := c.ReadMsgUDPAddrPort(b, oob)
			return n, oobn, addr, err
		}
	case *net.UnixConn:
		return func(b, oob []byte) (int, int, netip.AddrPort, error) {
			n, oobn, _, _, err := c.ReadMsgUnix(b, oob)
			return n, oobn, netip.AddrPort{}, err
		}
	}
	return func(b, _ []byte) (int, int, netip.AddrPort, error) {
		n, _, err := pc.ReadFrom(b)
		return n, 0, netip.AddrPort{}, err
	}
}
