package elasticsearch

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/internal/peers"
)

// BenchmarkVsRsyslog sends the same events into the same node twice:
// through leitstand's sink (Consume, batches of 2000, default config) and
// through rsyslog's omelasticsearch (imfile reading a file of the
// messages, bulk mode, 4 worker threads, batches of 2000, op_type create
// with a uuid _id into a data stream of leitstand's template), and reports
// each one's events/s and CPU seconds per 100k events and leitstand's
// throughput as a ratio of rsyslog's. Each side is timed until the node
// counts every document. b.N is the number of events per side:
//
//	go test -run '^$' -bench VsRsyslog -benchtime 300000x ./collector/sink/elasticsearch/
//
// It needs rsyslog's omelasticsearch module (Debian package
// rsyslog-elasticsearch); it is installed with apt-get when missing and
// this process runs as root.
func BenchmarkVsRsyslog(b *testing.B) {
	for _, size := range []int{200, 2048} {
		b.Run(strconv.Itoa(size)+"B", func(b *testing.B) { benchVsRsyslog(b, size) })
	}
}

const omelasticsearch = "/usr/lib/x86_64-linux-gnu/rsyslog/omelasticsearch.so"

func ensureOmelasticsearch(b *testing.B) {
	if _, err := os.Stat(omelasticsearch); err == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	peers.Check(b, peers.Ensure(ctx, peers.PeerRsyslog))
	if os.Geteuid() != 0 {
		b.Skip("rsyslog-elasticsearch is not installed and installing it needs root")
	}
	out, err := runCmd(ctx, "apt-get", "install", "-y", "--no-install-recommends", "rsyslog-elasticsearch")
	if err != nil {
		b.Fatalf("apt-get install rsyslog-elasticsearch: %v\n%s", err, out)
	}
}

func benchVsRsyslog(b *testing.B, size int) {
	suite.Require(b)
	ensureOmelasticsearch(b)
	n := b.N
	run := benchRun.Add(1) // each run (-count) its own data streams
	cfg := testConfig(b, shared.URL)
	cfg.Namespace = fmt.Sprintf("%s_%d", cfg.Namespace, run)
	ns := cfg.Namespace
	s, _, _ := startSink(b, cfg) // installs the templates both sides write through
	waitReady(b, s, time.Minute)
	warmUp(b, s, size)
	pgid := 0
	if !shared.External {
		pgid = shared.PID()
	}

	// leitstand.
	const per = 2000
	var batches []*collector.Batch
	for i := 0; i < n; i += per {
		batches = append(batches, benchBatch(i, min(per, n-i), size, "bench.leitstand", "v"))
	}
	b.ResetTimer()
	cpu0, es0, t0 := cpuSelf(), cpuGroup(pgid), time.Now()
	for _, bt := range batches {
		if err := s.Consume(context.Background(), bt); err != nil {
			b.Fatal(err)
		}
	}
	if got := waitDocs(b, dataStreamName("bench.leitstand", ns), n, 10*time.Minute); got != n {
		b.Errorf("leitstand: %d documents for %d events", got, n)
	}
	lWall, lCPU, lES := time.Since(t0), cpuSelf()-cpu0, cpuGroup(pgid)-es0
	b.StopTimer()
	for _, bt := range batches {
		bt.Release()
	}

	// rsyslog: the same messages as lines of a file.
	dir := b.TempDir()
	in := filepath.Join(dir, "in.log")
	f, err := os.Create(in)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := 0; i < n; i++ {
		w.WriteString(benchMessage(i, size))
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	port := strings.TrimPrefix(shared.URL[strings.LastIndexByte(shared.URL, ':'):], ":")
	host := strings.TrimPrefix(shared.URL[:strings.LastIndexByte(shared.URL, ':')], "http://")
	conf := fmt.Sprintf(`
template(name="ecs" type="string" string="{\"@timestamp\":\"%%timegenerated:::date-rfc3339%%\",\"event\":{\"dataset\":\"bench.rsyslog\"},\"host\":{\"name\":\"bench-host\"},\"log\":{\"level\":\"info\"},\"message\":\"%%msg:::json%%\"}")
template(name="uuid" type="string" string="%%uuid%%")
input(type="imfile" File=%q Tag="bench" freshStartTail="off" ruleset="es")
ruleset(name="es") {
  action(type="omelasticsearch" server=%q serverport=%q template="ecs"
         searchIndex=%q writeoperation="create" bulkid="uuid" dynbulkid="on" esVersion.major="8"
         bulkmode="on" maxbytes="5m" retryfailures="on"
         queue.type="LinkedList" queue.size="200000" queue.dequeueBatchSize="2000" queue.workerThreads="4"
         action.resumeRetryCount="-1" errorFile="{{dir}}/es-errors.json")
}
`, in, host, port, dataStreamName("bench.rsyslog", ns))
	b.StartTimer()
	rs, err := peers.StartRsyslog(context.Background(), peers.RsyslogOptions{Modules: []string{"imfile", "omelasticsearch"}, Config: conf})
	peers.Check(b, err)
	peers.Cleanup(b, rs)
	t0, es0 = time.Now(), cpuGroup(pgid)
	waitDocs(b, dataStreamName("bench.rsyslog", ns), n, 10*time.Minute)
	rWall, rCPU, rES := time.Since(t0), cpuGroup(rs.PID()), cpuGroup(pgid)-es0
	b.StopTimer()
	// rsyslog resends whole bulk requests with fresh uuids: count what it
	// stored twice once it has settled.
	time.Sleep(2 * time.Second)
	rDocs := waitDocs(b, dataStreamName("bench.rsyslog", ns), n, time.Minute)
	if data, err := os.ReadFile(filepath.Join(rs.Dir, "es-errors.json")); err == nil && len(data) > 0 {
		b.Logf("rsyslog error file: %.500s", data)
	}

	per100k := func(d time.Duration) float64 { return d.Seconds() * 1e5 / float64(n) }
	b.ReportMetric(float64(n)/lWall.Seconds(), "leitstand-events/s")
	b.ReportMetric(float64(n)/rWall.Seconds(), "rsyslog-events/s")
	b.ReportMetric(rWall.Seconds()/lWall.Seconds(), "throughput-ratio")
	b.ReportMetric(per100k(lCPU), "leitstand-cpu-s/100k")
	b.ReportMetric(per100k(rCPU), "rsyslog-cpu-s/100k")
	b.ReportMetric(float64(rDocs-n), "rsyslog-duplicates")
	if pgid != 0 {
		b.ReportMetric(per100k(lES), "es-cpu-s/100k-leitstand")
		b.ReportMetric(per100k(rES), "es-cpu-s/100k-rsyslog")
	}
}

// waitDocs polls until target on the shared node counts at least want
// documents and returns the count.
func waitDocs(b *testing.B, target string, want int, within time.Duration) int {
	deadline := time.Now().Add(within)
	for {
		var c struct{ Count int }
		code, _ := esRequest(b, http.MethodPost, shared.URL+"/"+target+"/_refresh", "")
		if code == http.StatusOK {
			esJSON(b, http.MethodGet, shared.URL+"/"+target+"/_count", "", &c)
			if c.Count >= want {
				return c.Count
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d documents after %s, want %d", target, c.Count, within, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func runCmd(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	return cmd.CombinedOutput()
}
