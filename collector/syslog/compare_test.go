package syslog

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/collector/sink/file"
	"github.com/leitstand/leitstand/collector/telemetry"
	"github.com/leitstand/leitstand/internal/peers"
	"github.com/prometheus/client_golang/prometheus"
)

// generatorEnv makes the test binary a load generator (see TestMain):
// "ADDRESS COUNT SIZE" sends COUNT octet-counted RFC 5424 messages of SIZE
// bytes to ADDRESS over one TCP connection and exits. Running it as its
// own process keeps its CPU time out of both receivers' accounts.
const generatorEnv = "LEITSTAND_SYSLOG_GENERATOR"

func runGenerator(spec string) error {
	var addr string
	var count, size int
	if _, err := fmt.Sscan(spec, &addr, &count, &size); err != nil {
		return fmt.Errorf("%s=%q: %v", generatorEnv, spec, err)
	}
	const chunkFrames = 5000
	stream := octetStream(chunkFrames, size)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	for sent := 0; sent < count; sent += chunkFrames {
		if _, err := c.Write(stream); err != nil {
			return err
		}
	}
	return c.Close()
}

// generate runs the generator process and waits for it.
func generate(b *testing.B, addr string, count, size int) {
	if err := generateErr(addr, count, size); err != nil {
		b.Fatal(err)
	}
}

func generateErr(addr string, count, size int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d", generatorEnv, addr, count, size))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("generator: %v\n%s", err, out)
	}
	return nil
}

// procCPU is the user+system CPU time of a process, from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name in parentheses, which may hold spaces.
	rest := string(data[bytes.LastIndexByte(data, ')')+2:])
	f := strings.Fields(rest)
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14 of stat
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	const ticks = 100                           // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(rusageSeconds(ru) * float64(time.Second))
}

// lineCounter counts the lines of a growing file, reading only what is new.
type lineCounter struct {
	path  string
	off   int64
	lines int
	buf   []byte
}

func (l *lineCounter) count() int {
	f, err := os.Open(l.path)
	if err != nil {
		return l.lines
	}
	defer f.Close()
	if l.buf == nil {
		l.buf = make([]byte, 1<<20)
	}
	for {
		n, err := f.ReadAt(l.buf, l.off)
		l.lines += bytes.Count(l.buf[:n], []byte{'\n'})
		l.off += int64(n)
		if err != nil || n == 0 {
			return l.lines
		}
	}
}

// BenchmarkVersusRsyslog runs the same generator against rsyslog (imtcp →
// omfile) and against leitstand (TCP receiver → pipeline → file sink, and
// the receiver alone), one after the other on this machine, and reports
// events per CPU-second of each receiving process and their ratio. Run it
// once: go test -run '^$' -bench VersusRsyslog -benchtime 1x.
func BenchmarkVersusRsyslog(b *testing.B) {
	const count, size = 1_000_000, 200
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// rsyslog: imtcp → omfile, default queues and file format.
	in, err := peers.FreeTCPPort()
	if err != nil {
		b.Fatal(err)
	}
	rs, err := peers.StartRsyslog(ctx, peers.RsyslogOptions{
		Modules: []string{"imtcp"},
		Config: fmt.Sprintf(`ruleset(name="bench") { action(type="omfile" file="{{dir}}/out.log") }
input(type="imtcp" address="127.0.0.1" port="%d" ruleset="bench")`, in),
		ListenTCP: []int{in},
	})
	if err != nil {
		if peers.IsUnavailable(err) && !peers.CI() {
			b.Skip(err)
		}
		b.Fatal(err)
	}
	defer rs.Stop()
	out := &lineCounter{path: filepath.Join(rs.Dir, "out.log")}
	cpu0, err := procCPU(rs.PID())
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	generate(b, net.JoinHostPort("127.0.0.1", strconv.Itoa(in)), count, size)
	for out.count() < count {
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("rsyslog wrote %d of %d lines", out.lines, count)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rsWall := time.Since(start)
	cpu1, _ := procCPU(rs.PID())
	rsCPU := cpu1 - cpu0
	_ = rs.Stop()

	lsCPU, lsWall := leitstandRun(b, count, size, true)
	rxCPU, rxWall := leitstandRun(b, count, size, false)

	rsRate := count / rsCPU.Seconds()
	lsRate := count / lsCPU.Seconds()
	rxRate := count / rxCPU.Seconds()
	b.ReportMetric(rsRate, "rsyslog-events/cpu-s")
	b.ReportMetric(lsRate, "leitstand-events/cpu-s")
	b.ReportMetric(lsRate/rsRate, "ratio-file")
	b.ReportMetric(rxRate/rsRate, "ratio-receiver-only")
	b.Logf("%d messages of %d bytes, octet-counted TCP, one connection, generator in its own process", count, size)
	b.Logf("rsyslog imtcp→omfile:            %6.2fs wall, %6.2fs CPU, %9.0f events/CPU-s", rsWall.Seconds(), rsCPU.Seconds(), rsRate)
	b.Logf("leitstand tcp→pipeline→file sink: %6.2fs wall, %6.2fs CPU, %9.0f events/CPU-s (%.2f× rsyslog)", lsWall.Seconds(), lsCPU.Seconds(), lsRate, lsRate/rsRate)
	b.Logf("leitstand receiver alone:        %6.2fs wall, %6.2fs CPU, %9.0f events/CPU-s (%.2f× rsyslog)", rxWall.Seconds(), rxCPU.Seconds(), rxRate, rxRate/rsRate)
}

// leitstandRun receives count messages with leitstand, into the file sink
// or (withSink false) discarding after the receiver, and returns this
// process's CPU time and the wall time.
func leitstandRun(b *testing.B, count, size int, withSink bool) (time.Duration, time.Duration) {
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := telemetry.New(reg)
	var next Enqueuer
	var done func() int
	var stop []func()
	if withSink {
		fcfg := file.DefaultConfig()
		fcfg.Dir = b.TempDir()
		fcfg.Fsync = file.FsyncNever
		fcfg.Compress = false
		fcfg.MaxFileBytes, fcfg.RetentionBytes = 1<<40, 1<<40
		sink := file.New(fcfg, reg, log)
		if err := sink.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		p := pipeline.New(pipeline.DefaultConfig(), nil, []collector.Sink{sink}, m, log)
		if err := p.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		next = p
		h := &harness{t: b, reg: reg}
		done = func() int { return int(h.metric("leitstand_events_sent_total", "component", "file")) }
		stop = append(stop, func() { _ = p.Shutdown(context.Background()); _ = sink.Shutdown(context.Background()) })
	} else {
		d := &discard{}
		next = d
		done = func() int { return int(d.events.Load()) }
	}
	r, err := New(testConfig(ProtoTCP), next, m, reg, log)
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	cpu0 := selfCPU()
	start := time.Now()
	generate(b, r.Addrs()[0].String(), count, size)
	for done() < count {
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("leitstand took %d of %d", done(), count)
		}
		time.Sleep(20 * time.Millisecond)
	}
	wall := time.Since(start)
	cpu := selfCPU() - cpu0
	_ = r.Shutdown(context.Background())
	for _, s := range stop {
		s()
	}
	return cpu, wall
}
