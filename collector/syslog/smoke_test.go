package syslog

import (
	"fmt"
	"net"
	"testing"
	"time"
)

func TestSmoke(t *testing.T) {
	h := startHarness(t, testConfig(ProtoUDP, ProtoTCP))
	c, err := net.Dial("tcp", h.addr(1).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := `<165>1 2026-11-22T08:15:00.123456Z web-01 shop-api 12345 ID47 [exampleSDID@32473 iut="3" eventSource="Application"] hello tcp`
	fmt.Fprintf(c, "%d %s", len(msg), msg)
	fmt.Fprintf(c, "<13>Nov 22 08:15:00 host prog[99]: hello lf\n")
	u, err := net.Dial("udp", h.addr(0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	fmt.Fprintf(u, "<14>1 - - - - - - hello udp")
	evs := h.waitEvents(3, 5*time.Second)
	for _, e := range evs {
		t.Log(mustJSON(e))
	}
}
