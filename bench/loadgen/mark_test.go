package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestScanMarks(t *testing.T) {
	var got []int64
	in := []byte("a lsbt=1000000000000042\nb lsbt=1000000000001234 c\nlsbt=12345 short\nlsbt=10000000000000099 long\nend lsbt=1000000000000007")
	ScanMarks(in, func(ns int64) { got = append(got, ns) })
	if fmt.Sprint(got) != "[42 1234 7]" {
		t.Errorf("marks %v, want [42 1234 7]", got)
	}
	got = nil
	ScanMarks([]byte("x lsbt=10000000"), func(ns int64) { got = append(got, ns) })
	if len(got) != 0 {
		t.Errorf("a cut mark was read: %v", got)
	}
}

// TestMarksTCP: every MarkEvery-th message carries a mark whose time lies
// between the start and the end of sending, in the order they were sent.
func TestMarksTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	frames := make(chan [][]byte, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		frames <- readFrames(c)
	}()
	rep, err := Run(context.Background(), Options{Mode: ModeSyslogTCP, Target: l.Addr().String(), Count: 2000, Seed: 5, PIIShare: 0.2, Rate: 20000, MarkEvery: 10})
	if err != nil {
		t.Fatal(err)
	}
	got := <-frames
	if len(got) != 2000 || rep.Marks != 200 || rep.MarkEvery != 10 {
		t.Fatalf("%d frames, report %+v", len(got), rep)
	}
	var last int64 = -1
	for i, f := range got {
		var marks []int64
		ScanMarks(f, func(ns int64) { marks = append(marks, ns) })
		if i%10 != 0 {
			if len(marks) != 0 {
				t.Fatalf("frame %d is marked: %q", i, f)
			}
			continue
		}
		if len(marks) != 1 || !bytes.HasSuffix(f, []byte(fmt.Sprintf("%s%015d", MarkPrefix, marks[0]))) {
			t.Fatalf("frame %d: marks %v in %q", i, marks, f)
		}
		if marks[0] < last || time.Duration(marks[0]) > time.Duration(rep.Seconds*float64(time.Second)) {
			t.Fatalf("frame %d: mark %d after %d, sending took %vs", i, marks[0], last, rep.Seconds)
		}
		last = marks[0]
	}
	// At 20000/s the last mark is written about 100ms after the start.
	if last < int64(50*time.Millisecond) {
		t.Errorf("last mark %v: the send time is not in it", time.Duration(last))
	}
}

func TestMarksUDPAndNDJSON(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var mu sync.Mutex
	var udpMarks int
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			ScanMarks(buf[:n], func(int64) { udpMarks++ })
			mu.Unlock()
		}
	}()
	rep, err := Run(context.Background(), Options{Mode: ModeSyslogUDP, Target: pc.LocalAddr().String(), Count: 1000, Seed: 1, Rate: 20000, MarkEvery: 7})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Marks != 143 { // 0, 7, …, 994
		t.Errorf("UDP: %d marks sent, want 143", rep.Marks)
	}
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	if udpMarks != int(rep.Marks) {
		t.Errorf("UDP: %d marks received, %d sent", udpMarks, rep.Marks)
	}
	mu.Unlock()

	var httpMarks int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		ScanMarks(body, func(int64) { httpMarks++ })
		mu.Unlock()
		fmt.Fprintf(w, `{"accepted":%d}`, bytes.Count(body, []byte{'\n'}))
	}))
	defer srv.Close()
	rep, err = Run(context.Background(), Options{Mode: ModeNDJSON, Target: strings.TrimPrefix(srv.URL, "http://"), Count: 1000, Batch: 100, Seed: 1, MarkEvery: 7})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if rep.Marks != 143 || httpMarks != 143 {
		t.Errorf("NDJSON: %d marks sent, %d received, want 143", rep.Marks, httpMarks)
	}
}
