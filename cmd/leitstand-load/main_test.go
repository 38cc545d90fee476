package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/leitstand/leitstand/bench/loadgen"
)

func TestRunPrintsReport(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	received := make(chan int64, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		received <- n
	}()
	var out, errOut bytes.Buffer
	code := run([]string{"-mode", "syslog-tcp", "-target", l.Addr().String(), "-count", "1000", "-gate"},
		strings.NewReader("go\n"), &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	ready, rest, _ := strings.Cut(out.String(), "\n")
	if ready != "ready" {
		t.Fatalf("first line %q, want ready", ready)
	}
	var rep loadgen.Report
	dec := json.NewDecoder(strings.NewReader(rest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("report %q: %v", rest, err)
	}
	if n := <-received; rep.Sent != 1000 || rep.Bytes != n || rep.Mode != loadgen.ModeSyslogTCP {
		t.Errorf("report %+v, receiver got %d bytes", rep, n)
	}
}

func TestRunRefuses(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-target", "192.0.2.1:514"}, 1, "only loopback"},
		{[]string{"-mode", "carrier-pigeon"}, 1, "unknown mode"},
		{[]string{"-pii", "2"}, 2, "-pii"},
		{[]string{"extra"}, 2, "unexpected argument"},
		{[]string{"-count", "0"}, 1, "count"},
	} {
		var out, errOut bytes.Buffer
		if code := run(c.args, strings.NewReader(""), &out, &errOut); code != c.code || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, code, errOut.String(), c.code, c.want)
		}
	}
}
