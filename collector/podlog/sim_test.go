package podlog

// The pieces of the kubelet imitation: an aggregator built from the real
// leitstand parts (NDJSON intake, pipeline with the anonymizer, file sink),
// an agent (this receiver, the pipeline with the anonymizer, the forward
// sink), and pods that write CRI logs the way the kubelet and the container
// runtime leave them, rotations included.

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leitstand/leitstand/anonymize"
	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/httpin"
	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/collector/sink/file"
	"github.com/leitstand/leitstand/collector/sink/forward"
	"github.com/leitstand/leitstand/collector/telemetry"
)

// ---- what the pods write ----

// Over-long lines (longer than the agent's max_line_bytes) and lines the
// runtime splits into parts.
const (
	simLongLen    = 100_000
	simLongEvery  = 5000 // on pods 0 and 1: seq%simLongEvery == simLongEvery-1
	simSplitEvery = 50   // on pods divisible by 3: seq%simSplitEvery == 7, written as P, P, F
	simMaxLine    = 64 << 10
)

const filler = "GET /api/v1/orders?page=2 took 12ms status=200 bytes=5120 cache=miss trace=a1b2c3d4 the quick brown fox jumps over the lazy dog again and again"

// simPayload is the text of line seq of pod p, as the application wrote it.
func simPayload(p, seq int) string {
	head := "p" + strconv.Itoa(p) + " line " + strconv.Itoa(seq) + " "
	if p <= 1 && seq%simLongEvery == simLongEvery-1 {
		return head + strings.Repeat("x", simLongLen)
	}
	return head + filler[:20+seq%(len(filler)-20)]
}

// simExpected is the message the aggregator must store for that line.
func simExpected(p, seq int) (msg string, truncated bool) {
	s := simPayload(p, seq)
	if len(s) > simMaxLine {
		return s[:simMaxLine], true
	}
	return s, false
}

// parseSimMessage reads pod and sequence back from a stored message.
func parseSimMessage(msg string) (p, seq int, ok bool) {
	if !strings.HasPrefix(msg, "p") {
		return 0, 0, false
	}
	parts := strings.SplitN(msg[1:], " ", 4)
	if len(parts) < 3 || parts[1] != "line" {
		return 0, 0, false
	}
	p, err1 := strconv.Atoi(parts[0])
	seq, err2 := strconv.Atoi(parts[2])
	return p, seq, err1 == nil && err2 == nil
}

// Rotation modes.
const (
	rotateRename       = "rename"       // the kubelet: rename, create, compress older files
	rotateCopyTruncate = "copytruncate" // logrotate: copy, truncate in place
)

// simPod is one container's log as the runtime writes it, rotated by the
// kubelet (or by logrotate, in copytruncate mode).
type simPod struct {
	t           *testing.T
	idx         int
	dir         string // the container directory
	mode        string
	rotateBytes int64
	maxFiles    int
	limit       int // lines to write in all

	mu        sync.Mutex
	f         *os.File
	size      int64
	next      int // next sequence number to write
	rotations int
	buf       []byte
}

func newSimPod(t *testing.T, root string, idx int, mode string, limit int) *simPod {
	ns := "team" + strconv.Itoa(idx%4)
	name := fmt.Sprintf("app%02d-7d8b5c-%05d", idx, idx*7919%100000)
	uid := fmt.Sprintf("%08x-1d7b-4c8f-9a53-%012x", idx*2654435761%(1<<32), idx)
	dir := filepath.Join(root, ns+"_"+name+"_"+uid, "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &simPod{t: t, idx: idx, dir: dir, mode: mode, rotateBytes: 2 << 20, maxFiles: 5, limit: limit}
	p.open()
	return p
}

func (p *simPod) live() string { return filepath.Join(p.dir, "0.log") }

func (p *simPod) open() {
	f, err := os.OpenFile(p.live(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		p.t.Error(err)
		return
	}
	fi, _ := f.Stat()
	p.f, p.size = f, fi.Size()
}

func (p *simPod) written() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next
}

// write appends lines [next, next+n) in one write, as a runtime flushing a
// burst, and rotates when the file is over its size.
func (p *simPod) write(n int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.buf[:0]
	for i := 0; i < n; i++ {
		seq := p.next + i
		text := simPayload(p.idx, seq)
		ts := time.Now().UTC()
		switch {
		case len(text) > 16<<10:
			// The runtime splits lines at 16KiB.
			for len(text) > 16<<10 {
				b = appendCRI(b, ts, "P", text[:16<<10])
				text = text[16<<10:]
			}
			b = appendCRI(b, ts, "F", text)
		case p.idx%3 == 0 && seq%simSplitEvery == 7:
			third := len(text) / 3
			b = appendCRI(b, ts, "P", text[:third])
			b = appendCRI(b, ts, "P", text[third:2*third])
			b = appendCRI(b, ts, "F", text[2*third:])
		default:
			b = appendCRI(b, ts, "F", text)
		}
	}
	p.buf = b
	if _, err := p.f.Write(b); err != nil {
		return err
	}
	p.next += n
	p.size += int64(len(b))
	if p.size >= p.rotateBytes {
		return p.rotate()
	}
	return nil
}

func appendCRI(b []byte, ts time.Time, tag, text string) []byte {
	b = ts.AppendFormat(b, time.RFC3339Nano)
	b = append(b, " stdout "...)
	b = append(b, tag...)
	b = append(b, ' ')
	b = append(b, text...)
	return append(b, '\n')
}

// rotate does what the kubelet's container log manager does when a log is
// over its size: compress the older rotated files, remove the oldest beyond
// max files, rename the live file to <live>.<time> and have the runtime
// reopen it. In copytruncate mode it copies and truncates instead.
func (p *simPod) rotate() error {
	p.rotations++
	stamp := time.Now().UTC().Format("20060102-150405") + fmt.Sprintf(".%06d", p.rotations)
	rotated := p.live() + "." + stamp
	switch p.mode {
	case rotateRename:
		if err := os.Rename(p.live(), rotated); err != nil {
			return err
		}
		// The runtime writes a little more into the renamed file before it
		// reopens: that tail must not be lost.
		if p.next < p.limit {
			tail := appendCRI(nil, time.Now().UTC(), "F", simPayload(p.idx, p.next))
			if _, err := p.f.Write(tail); err != nil {
				return err
			}
			p.next++
		}
		p.f.Close()
		p.open()
	case rotateCopyTruncate:
		data, err := os.ReadFile(p.live())
		if err != nil {
			return err
		}
		if err := os.WriteFile(rotated, data, 0o640); err != nil {
			return err
		}
		if err := p.f.Truncate(0); err != nil {
			return err
		}
		p.size = 0
	}
	// Compress every rotated file but the newest, drop the oldest.
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return err
	}
	var old []string
	for _, e := range entries {
		if rotatedOf(e.Name(), "0.log") {
			old = append(old, e.Name())
		}
	}
	sort.Strings(old)
	for _, name := range old[:len(old)-1] {
		if !strings.HasSuffix(name, ".gz") {
			if err := gzipPath(filepath.Join(p.dir, name)); err != nil {
				return err
			}
		}
	}
	for len(old) > p.maxFiles-1 {
		if err := os.Remove(filepath.Join(p.dir, old[0])); err != nil && !os.IsNotExist(err) {
			return err
		}
		old = old[1:]
	}
	return nil
}

// gzipPath compresses the kubelet's way: <file>.gz.tmp, renamed, and the
// original removed.
func gzipPath(path string) error {
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(path + ".gz.tmp")
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(out)
	if _, err := io.Copy(zw, in); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Rename(path+".gz.tmp", path+".gz"); err != nil {
		return err
	}
	return os.Remove(path)
}

// run writes the pod's lines at rate lines per second.
func (p *simPod) run(ctx context.Context, rate float64) error {
	total := p.limit
	const burst = 50
	start := time.Now()
	for w := p.written(); w < total; w = p.written() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := p.write(min(burst, total-w)); err != nil {
			return err
		}
		// Keep the rate; jitter keeps the pods out of step.
		due := start.Add(time.Duration(float64(p.written()) / rate * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			time.Sleep(d + time.Duration(rand.IntN(1000))*time.Microsecond)
		}
	}
	return nil
}

// ---- the aggregator's side ----

// idLog is a sink at the aggregator that checks, for every stored event,
// that its message is the line the pod wrote and that each line has one id
// and each id one line: what Elasticsearch, which stores a document per
// _id, needs to hold every line exactly once.
type idLog struct {
	mu        sync.Mutex
	pods      int
	lineID    [][]uint64 // [pod][seq] hash of the id the line came with
	idLine    map[uint64]uint64
	copies    int
	truncated int
	problems  []string
	problemN  int
	perPod    []int
}

func newIDLog(pods, perPod int) *idLog {
	l := &idLog{pods: pods, idLine: map[uint64]uint64{}, perPod: make([]int, pods)}
	for i := 0; i < pods; i++ {
		l.lineID = append(l.lineID, make([]uint64, perPod))
	}
	return l
}

func (l *idLog) Name() string                   { return "idlog" }
func (l *idLog) Start(context.Context) error    { return nil }
func (l *idLog) Shutdown(context.Context) error { return nil }

func (l *idLog) problem(format string, args ...any) {
	l.problemN++
	if len(l.problems) < 20 {
		l.problems = append(l.problems, fmt.Sprintf(format, args...))
	}
}

func (l *idLog) Consume(_ context.Context, b *collector.Batch) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range b.Events {
		e := &b.Events[i]
		l.copies++
		msg := e.Message()
		p, seq, ok := parseSimMessage(msg)
		if !ok || p >= l.pods || seq >= len(l.lineID[p]) {
			l.problem("unexpected message %.60q (id %s)", msg, e.ID)
			continue
		}
		want, trunc := simExpected(p, seq)
		if msg != want {
			l.problem("p%d line %d: message differs (%d bytes, want %d)", p, seq, len(msg), len(want))
			continue
		}
		flags, _ := e.Get("log.flags")
		if trunc != strings.Contains(flags, "truncated") {
			l.problem("p%d line %d: log.flags %q", p, seq, flags)
		}
		h := fnv.New64a()
		h.Write([]byte(e.ID))
		id := h.Sum64()
		line := uint64(p)<<32 | uint64(seq)
		if old := l.lineID[p][seq]; old == 0 {
			l.lineID[p][seq] = id
			l.perPod[p]++
			if trunc {
				l.truncated++
			}
		} else if old != id {
			l.problem("p%d line %d stored under two ids (now %s)", p, seq, e.ID)
		}
		if old, ok := l.idLine[id]; ok && old != line {
			l.problem("id %s holds two lines", e.ID)
		}
		l.idLine[id] = line
	}
	return nil
}

// stats returns the lines stored at least once, for all pods and for one.
func (l *idLog) stats(pod int) (all, one int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p, n := range l.perPod {
		all += n
		if p == pod {
			one = n
		}
	}
	return all, one
}

// simAggregator is the aggregator: intake, pipeline with the anonymizer,
// the file sink and the id check, behind an HTTP server on a fixed
// address so that it can restart.
type simAggregator struct {
	t     *testing.T
	dir   string
	addr  string
	ids   *idLog
	srv   *httptest.Server
	pipe  *pipeline.Pipeline
	sinks []collector.Sink
}

func startAggregator(t *testing.T, dir, addr string, ids *idLog) *simAggregator {
	t.Helper()
	a := &simAggregator{t: t, dir: dir, addr: addr, ids: ids}
	reg := prometheus.NewRegistry()
	m := telemetry.New(reg)
	fc := file.DefaultConfig()
	fc.Dir = filepath.Join(dir, "events")
	fc.MaxFileBytes = 64 << 20
	fs := file.New(fc, reg, quietLog())
	a.sinks = []collector.Sink{fs, ids}
	for _, s := range a.sinks {
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	anon, err := anonymize.New(anonymize.DefaultConfig(), dir, reg)
	if err != nil {
		t.Fatal(err)
	}
	a.pipe = pipeline.New(pipeline.DefaultConfig(), []collector.Stage{anon}, a.sinks, m, quietLog())
	if err := a.pipe.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h, err := httpin.New(httpin.DefaultConfig(), a.pipe, m, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(httpin.Path, h)
	a.srv = httptest.NewUnstartedServer(mux)
	var ln net.Listener
	for i := 0; ; i++ {
		ln, err = net.Listen("tcp", addr)
		if err == nil || i > 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	a.srv.Listener.Close()
	a.srv.Listener = ln
	a.srv.Start()
	a.addr = ln.Addr().String()
	return a
}

func (a *simAggregator) url() string { return "http://" + a.addr + httpin.Path }

// stop drains and stops the aggregator, like SIGTERM does.
func (a *simAggregator) stop() {
	a.srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.pipe.Shutdown(ctx); err != nil {
		a.t.Errorf("aggregator pipeline: %v", err)
	}
	for _, s := range a.sinks {
		if err := s.Shutdown(ctx); err != nil {
			a.t.Errorf("aggregator sink %s: %v", s.Name(), err)
		}
	}
}

// fileCounts reads every event the file sink wrote and counts the copies
// of each line.
func fileCounts(t *testing.T, dir string, pods, perPod int) (copies [][]uint8, bad int, total int) {
	t.Helper()
	copies = make([][]uint8, pods)
	for i := range copies {
		copies[i] = make([]uint8, perPod)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".ndjson") && !strings.HasSuffix(name, ".ndjson.gz") {
			continue
		}
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		var r io.Reader = f
		if strings.HasSuffix(name, ".gz") {
			zr, err := gzip.NewReader(f)
			if err != nil {
				t.Fatal(err)
			}
			r = zr
		}
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 4<<20)
		for sc.Scan() {
			total++
			var doc struct {
				Message string `json:"message"`
			}
			if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
				bad++
				continue
			}
			p, seq, ok := parseSimMessage(doc.Message)
			if want, _ := simExpected(p, seq); !ok || p >= pods || seq >= perPod || doc.Message != want {
				bad++
				continue
			}
			if copies[p][seq] < 255 {
				copies[p][seq]++
			}
		}
		if err := sc.Err(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		f.Close()
	}
	return copies, bad, total
}

// ---- the agent ----

type simAgent struct {
	r    *Receiver
	pipe *pipeline.Pipeline
	fwd  *forward.Sink
}

func agentConfigs(root, state string, aggregatorURLs ...string) (Config, forward.Config) {
	cfg := DefaultConfig()
	cfg.Enabled = true
	cfg.Roots = []string{root}
	cfg.StateDir = state
	cfg.NodeName = "node-1"
	cfg.RotateWait = time.Second
	fc := forward.DefaultConfig()
	fc.URLs = aggregatorURLs
	fc.MinBackoff = 50 * time.Millisecond
	fc.MaxBackoff = time.Second
	fc.BatchTimeout = 10 * time.Second
	return cfg, fc
}

func startAgent(t testing.TB, cfg Config, fc forward.Config, dataDir string) *simAgent {
	t.Helper()
	a, err := buildAgent(cfg, fc, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// buildAgent wires an agent the way the daemon's agent role does:
// receiver → pipeline (anonymizer) → forward sink, started sink first.
func buildAgent(cfg Config, fc forward.Config, dataDir string) (*simAgent, error) {
	reg := prometheus.NewRegistry()
	m := telemetry.New(reg)
	fwd, err := forward.New(fc, m, reg, quietLog())
	if err != nil {
		return nil, err
	}
	anon, err := anonymize.New(anonymize.DefaultConfig(), dataDir, reg)
	if err != nil {
		return nil, err
	}
	// The forward sink waits for the aggregator: the agent's pipeline needs
	// as many workers as the receiver has batches in flight.
	pc := pipeline.DefaultConfig()
	pc.Workers = cfg.MaxInflightBatches
	pipe := pipeline.New(pc, []collector.Stage{anon}, []collector.Sink{fwd}, m, quietLog())
	r, err := New(cfg, pipe, m, reg, quietLog())
	if err != nil {
		return nil, err
	}
	for _, c := range []collector.Component{fwd, pipe, r} {
		if err := c.Start(context.Background()); err != nil {
			return nil, err
		}
	}
	return &simAgent{r: r, pipe: pipe, fwd: fwd}, nil
}

// crash stops the agent as a kill does: nothing is saved, requests in
// flight are cut off.
func (a *simAgent) crash() {
	a.r.abandon()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_ = a.pipe.Shutdown(ctx)
	_ = a.fwd.Shutdown(ctx)
	a.r.wait()
}

// stop is SIGTERM: receiver first, then the pipeline, then the sink.
func (a *simAgent) stop(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []collector.Component{a.r, a.pipe, a.fwd} {
		if err := c.Shutdown(ctx); err != nil {
			t.Errorf("agent shutdown: %v", err)
		}
	}
}
