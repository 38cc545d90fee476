//go:build linux

package syslog

import (
	"encoding/binary"
	"golang.org/x/sys/unix"
	"net"
	"syscall"
	"unsafe"
)

// soReusePort is SO_REUSEPORT, which the syscall package does not name.
const soReusePort = 0xf

const reusePortSupported = true

// oobSize is room for the SO_RXQ_OVFL control message.
const oobSize = 64

// controlReusePort lets the readers of a udp listener bind one socket each
// to the same port; the kernel spreads senders over them.
func controlReusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

func rawConn(pc net.PacketConn) (syscall.RawConn, error) {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return nil, syscall.ENOTSUP
	}
	return sc.SyscallConn()
}

// setReceiveBuffer asks for a receive buffer of want bytes, beyond
// net.core.rmem_max when the process may (SO_RCVBUFFORCE), and returns
// what the kernel granted.
func setReceiveBuffer(pc net.PacketConn, want int) (int, error) {
	rc, err := rawConn(pc)
	if err != nil {
		return 0, err
	}
	got := 0
	var serr error
	err = rc.Control(func(fd uintptr) {
		s := int(fd)
		_ = syscall.SetsockoptInt(s, syscall.SOL_SOCKET, syscall.SO_RCVBUF, want)
		var v int
		if v, serr = syscall.GetsockoptInt(s, syscall.SOL_SOCKET, syscall.SO_RCVBUF); serr != nil {
			return
		}
		got = v / 2 // the kernel reports twice what it counts as payload
		if got < want {
			if syscall.SetsockoptInt(s, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, want) == nil {
				if v, serr = syscall.GetsockoptInt(s, syscall.SOL_SOCKET, syscall.SO_RCVBUF); serr == nil {
					got = v / 2
				}
			}
		}
	})
	if err != nil {
		return 0, err
	}
	return got, serr
}

// enableDropCounter makes the kernel attach its count of dropped
// datagrams to every datagram read (SO_RXQ_OVFL).
func enableDropCounter(pc net.PacketConn) error {
	rc, err := rawConn(pc)
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RXQ_OVFL, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// dropCount finds the SO_RXQ_OVFL counter in a datagram's control
// messages without allocating.
func dropCount(oob []byte) (uint32, bool) {
	const hdr = int(unsafe.Sizeof(syscall.Cmsghdr{}))
	for len(oob) >= hdr {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			return 0, false
		}
		if h.Level == syscall.SOL_SOCKET && h.Type == syscall.SO_RXQ_OVFL && l >= hdr+4 {
			return binary.NativeEndian.Uint32(oob[hdr:]), true
		}
		const align = int(unsafe.Sizeof(uintptr(0)))
		next := (l + align - 1) &^ (align - 1)
		if next >= len(oob) {
			break
		}
		oob = oob[next:]
	}
	return 0, false
}

// socketDrops reads the socket's count of dropped datagrams directly
// (SO_MEMINFO, SK_MEMINFO_DROPS): the same counter SO_RXQ_OVFL attaches to
// datagrams, but readable when none arrives, so drops after the last
// datagram of a burst are counted too.
func socketDrops(pc net.PacketConn) (uint32, bool) {
	rc, err := rawConn(pc)
	if err != nil {
		return 0, false
	}
	const skMeminfoVars, skMeminfoDrops = 9, 8
	var info [skMeminfoVars]uint32
	ok := false
	_ = rc.Control(func(fd uintptr) {
		size := uint32(unsafe.Sizeof(info))
		_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&size)), 0)
		ok = errno == 0 && size > skMeminfoDrops*4
	})
	return info[skMeminfoDrops], ok
}
