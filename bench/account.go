package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Accounting reconciles what the generator sent with what leitstand
// delivered and what its metrics say it dropped or refused, from a scrape
// of /metrics before the run and one after the output stopped growing
// (before SIGTERM). For UDP the kernel's own count of datagrams dropped at
// the socket (/proc/net/udp) is read beside leitstand's metric for it.
type Accounting struct {
	// Sent is what the generator wrote (syslog) or got acknowledged
	// (NDJSON); Delivered the lines in the output.
	Sent      int64 `json:"sent"`
	Delivered int64 `json:"delivered"`
	// Received, Accepted, Dropped and Refused are the receiver's
	// leitstand_events_{received,accepted,dropped,refused}_total over the
	// run; Dropped and Refused by reason.
	Received int64            `json:"received"`
	Accepted int64            `json:"accepted"`
	Dropped  map[string]int64 `json:"dropped,omitempty"`
	Refused  map[string]int64 `json:"refused,omitempty"`
	// KernelDropsMetric is leitstand_syslog_kernel_drops_total (UDP);
	// KernelDropsProc the drops column of /proc/net/udp for leitstand's
	// sockets on the port, which the kernel keeps itself.
	KernelDropsMetric int64 `json:"kernel_drops_metric"`
	KernelDropsProc   int64 `json:"kernel_drops_proc"`
	// Counted is Delivered plus every drop a metric counted; Unaccounted
	// is Sent minus Counted: events lost without a metric saying so (0
	// when every loss is counted). Refused events were answered with an
	// error and sent again by the generator (Retries), so they are not
	// part of the loss.
	Counted     int64 `json:"counted"`
	Unaccounted int64 `json:"unaccounted"`
	// UnaccountedByKernel is Sent minus Delivered, the metric drops and
	// the kernel's own drop count (/proc/net/udp): what no counter at all
	// explains.
	UnaccountedByKernel int64 `json:"unaccounted_by_kernel"`
	// Retries are the generator's requests answered 429/503 and sent
	// again (HTTP); SenderErrors its failed writes (UDP: ENOBUFS), not
	// part of Sent.
	Retries      int64 `json:"retries,omitempty"`
	SenderErrors int64 `json:"sender_errors,omitempty"`
	// QueueCapacity is leitstand_queue_capacity_events; MaxQueueDepth and
	// MaxHeapInuseBytes the highest queue depth and Go heap in use seen
	// while sampling /metrics every 200 ms during the run (overload cases).
	QueueCapacity     int64 `json:"queue_capacity"`
	MaxQueueDepth     int64 `json:"max_queue_depth"`
	MaxHeapInuseBytes int64 `json:"max_heap_inuse_bytes"`
	// MaxInflightBytes is the HTTP receivers' bound on request bodies held
	// at once (leitstand's default; the benchmark does not change it).
	MaxInflightBytes int64 `json:"max_inflight_bytes,omitempty"`
}

// defaultMaxInflightBytes is httpin's and sentry's max_inflight_bytes
// default, which the benchmark's configuration keeps.
const defaultMaxInflightBytes = 256 << 20

// metricSet is one scrape: series (name and labels as printed) to value.
type metricSet map[string]float64

// scrape reads a Prometheus text exposition.
func scrape(ctx context.Context, url string) (metricSet, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (metricSet, error) {
	m := metricSet{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// sum adds the series of a metric whose labels contain every one of
// labels (`component="syslog_udp"`), optionally split by the value of the
// label by (empty: one total under "").
func (m metricSet) sum(name string, by string, labels ...string) map[string]int64 {
	out := map[string]int64{}
	for k, v := range m {
		rest, ok := strings.CutPrefix(k, name)
		if !ok || (rest != "" && rest[0] != '{') {
			continue
		}
		match := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		key := ""
		if by != "" {
			if _, after, ok := strings.Cut(rest, by+`="`); ok {
				key, _, _ = strings.Cut(after, `"`)
			}
		}
		out[key] += int64(v)
	}
	return out
}

func (m metricSet) total(name string, labels ...string) int64 {
	return m.sum(name, "", labels...)[""]
}

// delta returns after minus before per key, without zeros.
func delta(after, before map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// component is the receiver component of a path in leitstand's metrics.
func component(p Path) string {
	switch p {
	case PathTCP:
		return "syslog_tcp"
	case PathUDP:
		return "syslog_udp"
	case PathNDJSON:
		return "ingest"
	case PathSentry:
		return "sentry"
	}
	return string(p)
}

// account builds the reconciliation from the two scrapes.
func account(p Path, before, after metricSet, sent, delivered, procDrops int64) *Accounting {
	c := `component="` + component(p) + `"`
	a := &Accounting{
		Sent:      sent,
		Delivered: delivered,
		Received:  after.total("leitstand_events_received_total", c) - before.total("leitstand_events_received_total", c),
		Accepted:  after.total("leitstand_events_accepted_total", c) - before.total("leitstand_events_accepted_total", c),
		Dropped: delta(after.sum("leitstand_events_dropped_total", "reason", c),
			before.sum("leitstand_events_dropped_total", "reason", c)),
		Refused: delta(after.sum("leitstand_events_refused_total", "reason", c),
			before.sum("leitstand_events_refused_total", "reason", c)),
		QueueCapacity: after.total("leitstand_queue_capacity_events", `queue="pipeline"`),
	}
	if p == PathUDP {
		a.KernelDropsMetric = after.total("leitstand_syslog_kernel_drops_total", `protocol="udp"`) -
			before.total("leitstand_syslog_kernel_drops_total", `protocol="udp"`)
		a.KernelDropsProc = procDrops
	}
	if p == PathNDJSON || p == PathSentry {
		a.MaxInflightBytes = defaultMaxInflightBytes
	}
	a.Counted = a.Delivered + a.KernelDropsMetric
	for _, n := range a.Dropped {
		a.Counted += n
	}
	a.Unaccounted = a.Sent - a.Counted
	a.UnaccountedByKernel = a.Sent - (a.Counted - a.KernelDropsMetric + a.KernelDropsProc)
	return a
}

// sampler reads /metrics every 200 ms while a case runs and keeps the
// highest queue depth and heap in use.
type sampler struct {
	mu                sync.Mutex
	maxDepth, maxHeap int64
	stop              context.CancelFunc
	done              chan struct{}
}

func startSampler(ctx context.Context, url string) *sampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &sampler{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			if m, err := scrape(ctx, url); err == nil {
				s.mu.Lock()
				s.maxDepth = max(s.maxDepth, m.total("leitstand_queue_depth_events", `queue="pipeline"`))
				s.maxHeap = max(s.maxHeap, m.total("go_memstats_heap_inuse_bytes"))
				s.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// finish stops the sampler and returns the maxima.
func (s *sampler) finish() (depth, heap int64) {
	s.stop()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxDepth, s.maxHeap
}

// udpDrops sums the drops column of /proc/net/udp (and udp6) for the
// sockets bound to port: the datagrams the kernel dropped because a
// socket's receive buffer was full. Sockets are per daemon run, so the
// count is the run's.
func udpDrops(port int) (int64, error) {
	var total int64
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return 0, err
		}
		n, err := parseUDPDrops(string(b), port)
		if err != nil {
			return 0, fmt.Errorf("%s: %v", f, err)
		}
		total += n
	}
	return total, nil
}

// parseUDPDrops sums the last column (drops) of the lines of a
// /proc/net/udp table whose local address has the port.
func parseUDPDrops(table string, port int) (int64, error) {
	var total int64
	want := fmt.Sprintf(":%04X", port)
	for i, line := range strings.Split(table, "\n") {
		fs := strings.Fields(line)
		if i == 0 || len(fs) < 13 || !strings.HasSuffix(fs[1], want) {
			continue
		}
		n, err := strconv.ParseInt(fs[len(fs)-1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("drops %q: %v", fs[len(fs)-1], err)
		}
		total += n
	}
	return total, nil
}
