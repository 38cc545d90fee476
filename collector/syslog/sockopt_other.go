//go:build !linux

package syslog

import (
	"net"
	"syscall"
)

const reusePortSupported = false

const oobSize = 0

func controlReusePort(string, string, syscall.RawConn) error { return nil }

// setReceiveBuffer asks for want bytes; the granted size is not readable
// portably, so it reports what was asked.
func setReceiveBuffer(pc net.PacketConn, want int) (int, error) {
	type readBufferSetter interface{ SetReadBuffer(int) error }
	if s, ok := pc.(readBufferSetter); ok {
		return want, s.SetReadBuffer(want)
	}
	return 0, nil
}

func enableDropCounter(net.PacketConn) error { return syscall.ENOTSUP }

func dropCount([]byte) (uint32, bool) { return 0, false }

func socketDrops(net.PacketConn) (uint32, bool) { return 0, false }
