package bench

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/leitstand/leitstand/bench/loadgen"
)

// userHZ is the unit of the times in /proc/PID/stat (USER_HZ, 100 on
// every Linux architecture Go runs on).
const userHZ = 100

// procCPU returns the CPU seconds of a process from /proc/PID/stat:
// utime + stime of all its threads, plus cutime + cstime of the children
// it has waited for (none of the three daemons forks in these setups, the
// sum is there so that one which does is still measured whole).
func procCPU(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name in parentheses may hold spaces: count fields from
	// the last ')'. Field 3 (state) is then f[0], utime (14) f[11].
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, data)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 15 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var ticks int64
	for _, k := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		n, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat field %d: %v", pid, k+3, err)
		}
		ticks += n
	}
	return float64(ticks) / userHZ, nil
}

// peakRSS returns VmHWM of a process in bytes: the most resident memory
// it has had since it started, which for a daemon started for one case is
// the peak of that case.
func peakRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmHWM %q: %v", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmHWM", pid)
}

// lineCounter counts the lines of growing output files, reading only what
// was added since the last call, and hands the latency marks in them
// (loadgen.ScanMarks) to onMark. It keeps the files open between calls.
type lineCounter struct {
	files  map[string]*tailFile
	lines  int64
	buf    []byte
	onMark func(sentNS int64) // nil: marks are not looked for
}

type tailFile struct {
	f   *os.File
	off int64 // just after the last whole line read
}

func newLineCounter() *lineCounter {
	return &lineCounter{files: map[string]*tailFile{}, buf: make([]byte, 1<<20)}
}

// count reads the new whole lines of each plain file (compressed files are
// complete when they appear and are counted by countLines at the end). A
// line still being written is read again, whole, by a later call.
func (l *lineCounter) count(paths []string) int64 {
	for _, p := range paths {
		if strings.HasSuffix(p, ".gz") {
			continue
		}
		tf := l.files[p]
		if tf == nil {
			f, err := os.Open(p)
			if err != nil {
				continue
			}
			tf = &tailFile{f: f}
			l.files[p] = tf
		}
		for {
			n, err := tf.f.ReadAt(l.buf, tf.off)
			chunk := l.buf[:n]
			last := bytes.LastIndexByte(chunk, '\n')
			if last < 0 {
				if n == len(l.buf) { // a line longer than the buffer: skip it
					tf.off += int64(n)
					continue
				}
				break
			}
			whole := chunk[:last+1]
			l.lines += int64(bytes.Count(whole, []byte{'\n'}))
			if l.onMark != nil {
				loadgen.ScanMarks(whole, l.onMark)
			}
			tf.off += int64(last + 1)
			if err != nil || n < len(l.buf) {
				break
			}
		}
	}
	return l.lines
}

// close closes the files.
func (l *lineCounter) close() {
	for _, tf := range l.files {
		tf.f.Close()
	}
	clear(l.files)
}

// countLines counts the complete lines of files, gzip ones decompressed:
// the delivered events.
func countLines(paths []string) (int64, error) {
	var total int64
	buf := make([]byte, 1<<20)
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return 0, err
		}
		var r io.Reader = bufio.NewReaderSize(f, 1<<20)
		if strings.HasSuffix(p, ".gz") {
			zr, err := gzip.NewReader(r)
			if err != nil {
				f.Close()
				return 0, fmt.Errorf("%s: %v", p, err)
			}
			r = zr
		}
		for {
			n, err := r.Read(buf)
			total += int64(bytes.Count(buf[:n], []byte{'\n'}))
			if err == io.EOF {
				break
			}
			if err != nil {
				f.Close()
				return 0, fmt.Errorf("%s: %v", p, err)
			}
		}
		f.Close()
	}
	return total, nil
}

// median of the values (the mean of the middle two for an even count).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
