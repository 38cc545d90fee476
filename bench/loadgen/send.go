package loadgen

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is what the generator sends.
type Mode string

// The modes.
const (
	// ModeSyslogTCP sends RFC 5424 messages, octet-counted (RFC 6587), over
	// TCP connections.
	ModeSyslogTCP Mode = "syslog-tcp"
	// ModeSyslogUDP sends one RFC 5424 message per datagram.
	ModeSyslogUDP Mode = "syslog-udp"
	// ModeNDJSON POSTs batches of ECS lines to /v1/ingest.
	ModeNDJSON Mode = "ndjson"
	// ModeSentry POSTs the real SDK envelopes to /api/<project>/envelope/.
	ModeSentry Mode = "sentry"
)

// Modes lists every mode.
var Modes = []Mode{ModeSyslogTCP, ModeSyslogUDP, ModeNDJSON, ModeSentry}

// Options configure Run.
type Options struct {
	Mode Mode
	// Target is host:port of the receiver; the host must be a loopback
	// address or "localhost".
	Target string
	// Count is how many messages (syslog), lines (NDJSON) or envelopes
	// (Sentry) to send.
	Count int
	// Seed and PIIShare pick the message mix (NewMix).
	Seed     uint64
	PIIShare float64
	// Rate is the offered rate in the same units as Count, per second; 0
	// sends as fast as the receiver takes them (for UDP: as fast as the
	// sockets go).
	Rate float64
	// Duration bounds the sending; what is left then is not sent and the
	// report says TimedOut. 0 means 10 minutes.
	Duration time.Duration
	// Conns is the number of connections (TCP), sockets (UDP) or
	// concurrent HTTP clients. Default 1 for syslog, 4 for HTTP.
	Conns int
	// Batch is the number of NDJSON lines per request. Default 500.
	Batch int
	// SentryDir holds the SDK captures (bench/testdata/sentry).
	SentryDir string
	// MarkEvery marks every MarkEvery-th syslog message or NDJSON line
	// with its send time (see MarkPrefix); 0 marks none.
	MarkEvery int
	// Gate, when set, is called once the input is prepared and before the
	// first byte is sent; the clock starts when it returns. The command
	// uses it to let the harness read the receiver's CPU time just then.
	Gate func() error
}

// Report says what was sent. It is what cmd/leitstand-load prints.
type Report struct {
	Mode     Mode    `json:"mode"`
	Target   string  `json:"target"`
	Seed     uint64  `json:"seed"`
	PIIShare float64 `json:"pii_share"`
	// Count is what was asked for: messages, lines or envelopes.
	Count int `json:"count"`
	// Sent is how many of them were written to the socket (syslog) or
	// acknowledged with 2xx (HTTP).
	Sent int64 `json:"sent"`
	// Events is how many events the receiver must store for what was
	// sent: Sent for syslog and NDJSON, the events of the acknowledged
	// envelopes for Sentry.
	Events int64 `json:"events"`
	// Bytes is the payload written: frames, datagrams or request bodies
	// as sent (compressed where the SDK compressed).
	Bytes int64 `json:"bytes"`
	// Requests, Retries and Status count HTTP requests, answers 429 or
	// 503 that were retried, and the final status codes.
	Requests int64            `json:"requests,omitempty"`
	Retries  int64            `json:"retries,omitempty"`
	Status   map[string]int64 `json:"status,omitempty"`
	// Refused counts units the receiver finally refused (HTTP).
	Refused int64 `json:"refused,omitempty"`
	// Errors counts failed writes (UDP: ENOBUFS, ECONNREFUSED).
	Errors     int64  `json:"errors,omitempty"`
	FirstError string `json:"first_error,omitempty"`
	// MarkEvery is Options.MarkEvery; Marks counts the marked messages
	// that were sent (written, or acknowledged for HTTP). Their marks
	// hold the nanoseconds from Started to their write.
	MarkEvery int   `json:"mark_every,omitempty"`
	Marks     int64 `json:"marks,omitempty"`
	// OfferedRate is Options.Rate: 0 means as fast as it goes.
	OfferedRate float64   `json:"offered_rate"`
	Conns       int       `json:"conns"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	Seconds     float64   `json:"seconds"`
	// PerSecond is Sent per second of sending.
	PerSecond float64 `json:"per_second"`
	TimedOut  bool    `json:"timed_out,omitempty"`
	// PII counts the pieces of personal data in what was prepared, by
	// kind (email, ipv4, ipv6).
	PII map[string]int `json:"pii"`
}

// CheckLoopback refuses targets that are not on this machine.
func CheckLoopback(target string) error {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return fmt.Errorf("target %q: %v", target, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("target %q: only loopback addresses are allowed", target)
	}
	return nil
}

// Run prepares the whole input in memory, calls Gate, sends, and reports.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := CheckLoopback(o.Target); err != nil {
		return nil, err
	}
	if o.Count <= 0 {
		return nil, errors.New("count must be positive")
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Minute
	}
	if o.Conns <= 0 {
		o.Conns = 1
		if o.Mode == ModeNDJSON || o.Mode == ModeSentry {
			o.Conns = 4
		}
	}
	if o.Batch <= 0 {
		o.Batch = 500
	}
	if o.MarkEvery < 0 || o.Mode == ModeSentry {
		o.MarkEvery = 0
	}
	rep := &Report{Mode: o.Mode, Target: o.Target, Seed: o.Seed, PIIShare: o.PIIShare, Count: o.Count,
		OfferedRate: o.Rate, Conns: o.Conns, MarkEvery: o.MarkEvery, PII: map[string]int{}}
	var send func(ctx context.Context, rep *Report, lim *limiter) error
	switch o.Mode {
	case ModeSyslogTCP, ModeSyslogUDP:
		streams := prepareSyslog(o, rep)
		if o.Mode == ModeSyslogTCP {
			send = func(ctx context.Context, rep *Report, lim *limiter) error { return sendTCP(ctx, o, streams, rep, lim) }
		} else {
			send = func(ctx context.Context, rep *Report, lim *limiter) error { return sendUDP(ctx, o, streams, rep, lim) }
		}
	case ModeNDJSON:
		reqs := prepareNDJSON(o, rep)
		send = func(ctx context.Context, rep *Report, lim *limiter) error { return sendHTTP(ctx, o, reqs, rep, lim) }
	case ModeSentry:
		reqs, err := prepareSentry(o, rep)
		if err != nil {
			return nil, err
		}
		send = func(ctx context.Context, rep *Report, lim *limiter) error { return sendHTTP(ctx, o, reqs, rep, lim) }
	default:
		return nil, fmt.Errorf("unknown mode %q (want one of %v)", o.Mode, Modes)
	}
	if o.Gate != nil {
		if err := o.Gate(); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	rep.Started = time.Now()
	lim := &limiter{start: rep.Started, rate: o.Rate, stamper: stamper{epoch: rep.Started}}
	err := send(ctx, rep, lim)
	rep.Finished = time.Now()
	rep.Seconds = rep.Finished.Sub(rep.Started).Seconds()
	if rep.Seconds > 0 {
		rep.PerSecond = float64(rep.Sent) / rep.Seconds
	}
	if ctx.Err() != nil && rep.Sent < int64(o.Count) {
		rep.TimedOut = true
		err = nil // the bound was reached: a result, not a failure
	}
	return rep, err
}

// limiter spreads units over time at a fixed rate, shared by all senders
// of a run; rate 0 lets everything through.
type limiter struct {
	start    time.Time
	rate     float64
	reserved atomic.Int64
	stamper  // writes send times into marks
}

// wait blocks until n more units may go.
func (l *limiter) wait(ctx context.Context, n int) error {
	if l.rate <= 0 {
		return ctx.Err()
	}
	r := l.reserved.Add(int64(n)) - int64(n)
	due := l.start.Add(time.Duration(float64(r) / l.rate * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return ctx.Err()
}

// unit is how many units a sender hands the limiter at once: about a
// millisecond's worth at the offered rate, so the load is smooth without
// a timer per message.
func (l *limiter) unit(conns, max int) int {
	if l.rate <= 0 {
		return max
	}
	u := int(l.rate / 1000 / float64(conns))
	if u < 1 {
		u = 1
	}
	if u > max {
		u = max
	}
	return u
}

// stream is one connection's share of the syslog input: the bytes and the
// end offset of each message in them.
type stream struct {
	data []byte
	ends []int
	// marks are the marked messages (indices into ends, ascending) and
	// markAt the offsets of their digits in data.
	marks, markAt []int
}

func prepareSyslog(o Options, rep *Report) []stream {
	mix := NewMix(o.Seed, o.PIIShare)
	streams := make([]stream, o.Conns)
	var scratch []byte
	for c := range streams {
		lo, hi := c*o.Count/o.Conns, (c+1)*o.Count/o.Conns
		s := &streams[c]
		s.data = make([]byte, 0, (hi-lo)*320)
		s.ends = make([]int, 0, hi-lo)
		for i := lo; i < hi; i++ {
			msg := mix.Next()
			for _, p := range msg.PII {
				rep.PII[p.Kind]++
			}
			marked := o.MarkEvery > 0 && i%o.MarkEvery == 0
			if marked {
				msg.Text += " " + markPlaceholder
			}
			if o.Mode == ModeSyslogTCP {
				s.data, scratch = msg.AppendOctetCounted(s.data, scratch)
			} else {
				s.data = msg.AppendRFC5424(s.data)
			}
			s.ends = append(s.ends, len(s.data))
			if marked { // the text, and so the mark, ends the message
				s.marks = append(s.marks, len(s.ends)-1)
				s.markAt = append(s.markAt, len(s.data)-MarkDigits)
			}
		}
	}
	return streams
}

// PIIOf regenerates the input of a syslog or NDJSON run and returns its
// personal data; the harness uses it to check the outputs.
func PIIOf(seed uint64, piiShare float64, count int) PIISet {
	set := PIISet{}
	mix := NewMix(seed, piiShare)
	for range count {
		msg := mix.Next()
		set.Add(msg.PII...)
	}
	return set
}

// counters are shared by the senders of a run.
type counters struct {
	mu       sync.Mutex
	sent     int64
	events   int64
	bytes    int64
	requests int64
	retries  int64
	refused  int64
	errors   int64
	marks    int64
	firstErr string
	status   map[string]int64
}

func (c *counters) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errors++
	if c.firstErr == "" {
		c.firstErr = err.Error()
	}
}

func (c *counters) into(rep *Report) {
	rep.Sent, rep.Events, rep.Bytes = c.sent, c.events, c.bytes
	rep.Requests, rep.Retries, rep.Refused, rep.Errors = c.requests, c.retries, c.refused, c.errors
	rep.Marks = c.marks
	rep.FirstError = c.firstErr
	if len(c.status) > 0 {
		rep.Status = c.status
	}
}

func sendTCP(ctx context.Context, o Options, streams []stream, rep *Report, lim *limiter) error {
	var c counters
	errs := make([]error, len(streams))
	var wg sync.WaitGroup
	for i, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = sendStream(ctx, o.Target, s, lim, o.Conns, &c)
		}()
	}
	wg.Wait()
	c.into(rep)
	rep.Events = rep.Sent
	if ctx.Err() != nil {
		return nil // timed out: Run reports it
	}
	return errors.Join(errs...)
}

// sendStream writes one connection's messages, up to 256 KiB at a time
// and always whole frames, then closes the connection in an orderly way.
func sendStream(ctx context.Context, target string, s stream, lim *limiter, conns int, c *counters) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetWriteDeadline(time.Now()) })
	defer stop()
	const maxWrite = 256 << 10
	unit := lim.unit(conns, len(s.ends))
	prev := 0 // offset of the next unsent byte
	mi := 0   // the next mark
	for i := 0; i < len(s.ends); {
		if err := lim.wait(ctx, min(unit, len(s.ends)-i)); err != nil {
			return err
		}
		j := i
		for j < len(s.ends) && j-i < unit && (j == i || s.ends[j]-prev <= maxWrite) {
			j++
		}
		marks := 0
		for ; mi < len(s.marks) && s.marks[mi] < j; mi++ {
			lim.stamp(s.data[s.markAt[mi]:])
			marks++
		}
		if _, err := conn.Write(s.data[prev:s.ends[j-1]]); err != nil {
			return err
		}
		c.mu.Lock()
		c.marks += int64(marks)
		c.sent += int64(j - i)
		c.bytes += int64(s.ends[j-1] - prev)
		c.mu.Unlock()
		prev = s.ends[j-1]
		i = j
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		return tc.CloseWrite()
	}
	return nil
}

func sendUDP(ctx context.Context, o Options, streams []stream, rep *Report, lim *limiter) error {
	var c counters
	errs := make([]error, len(streams))
	var wg sync.WaitGroup
	for i, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = sendDatagrams(ctx, o.Target, s, lim, o.Conns, &c)
		}()
	}
	wg.Wait()
	c.into(rep)
	rep.Events = rep.Sent
	if ctx.Err() != nil {
		return nil
	}
	return errors.Join(errs...)
}

// sendDatagrams sends one message per datagram. A failed write (ENOBUFS,
// ECONNREFUSED from an earlier ICMP error) is counted and the message is
// not sent again: that is what UDP senders do.
func sendDatagrams(ctx context.Context, target string, s stream, lim *limiter, conns int, c *counters) error {
	conn, err := net.Dial("udp", target)
	if err != nil {
		return err
	}
	defer conn.Close()
	unit := lim.unit(conns, 64)
	prev := 0
	mi := 0 // the next mark
	var sent, bytes, marks int64
	defer func() {
		c.mu.Lock()
		c.sent += sent
		c.bytes += bytes
		c.marks += marks
		c.mu.Unlock()
	}()
	for i := 0; i < len(s.ends); {
		n := min(unit, len(s.ends)-i)
		if err := lim.wait(ctx, n); err != nil {
			return err
		}
		for k := i; k < i+n; k++ {
			marked := mi < len(s.marks) && s.marks[mi] == k
			if marked {
				lim.stamp(s.data[s.markAt[mi]:])
				mi++
			}
			if _, err := conn.Write(s.data[prev:s.ends[k]]); err != nil {
				c.fail(err)
			} else {
				sent++
				bytes += int64(s.ends[k] - prev)
				if marked {
					marks++
				}
			}
			prev = s.ends[k]
		}
		i += n
	}
	return nil
}

// request is one prepared HTTP request.
type request struct {
	path    string
	header  http.Header
	body    []byte
	chunked bool
	units   int   // lines (NDJSON) or 1 (an envelope)
	events  int   // events the receiver makes of it; -1: read "accepted" from the answer
	markAt  []int // offsets of the marks' digits in body, stamped before the first try
}

func prepareNDJSON(o Options, rep *Report) []request {
	mix := NewMix(o.Seed, o.PIIShare)
	var reqs []request
	h := http.Header{"Content-Type": {"application/x-ndjson"}}
	for done := 0; done < o.Count; {
		n := min(o.Batch, o.Count-done)
		body := make([]byte, 0, n*400)
		var markAt []int
		for k := range n {
			msg := mix.Next()
			for _, p := range msg.PII {
				rep.PII[p.Kind]++
			}
			marked := o.MarkEvery > 0 && (done+k)%o.MarkEvery == 0
			if marked {
				msg.Text += " " + markPlaceholder
			}
			line := len(body)
			body = msg.AppendNDJSON(body)
			if marked {
				at := bytes.LastIndex(body[line:], []byte(markPlaceholder))
				markAt = append(markAt, line+at+len(MarkPrefix))
			}
		}
		reqs = append(reqs, request{path: "/v1/ingest", header: h, body: body, units: n, events: -1, markAt: markAt})
		done += n
	}
	return reqs
}

// prepareSentry picks o.Count envelopes from the samples (seeded), gives
// each a fresh event id of the same length (so item lengths stay right)
// and compresses those the SDK compressed.
func prepareSentry(o Options, rep *Report) ([]request, error) {
	samples, err := LoadSentrySamples(o.SentryDir)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x5e47))
	reqs := make([]request, 0, o.Count)
	for range o.Count {
		s := &samples[rng.IntN(len(samples))]
		body := s.Body
		if s.EventID != "" {
			id := fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64())[:len(s.EventID)]
			body = bytes.ReplaceAll(body, []byte(s.EventID), []byte(id))
		}
		for _, p := range s.PII() {
			rep.PII[p.Kind]++
		}
		h := s.Header.Clone()
		if s.Gzip {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			_, _ = zw.Write(body)
			_ = zw.Close()
			body = b.Bytes()
			h.Set("Content-Encoding", "gzip")
		}
		reqs = append(reqs, request{path: s.Path, header: h, body: body, chunked: s.Chunked, units: 1, events: s.Events})
	}
	return reqs, nil
}

func sendHTTP(ctx context.Context, o Options, reqs []request, rep *Report, lim *limiter) error {
	tr := &http.Transport{MaxIdleConnsPerHost: o.Conns, DisableCompression: true, ForceAttemptHTTP2: false}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	c := counters{status: map[string]int64{}}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, o.Conns)
	for w := range o.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(reqs) || ctx.Err() != nil {
					return
				}
				if err := lim.wait(ctx, reqs[i].units); err != nil {
					return
				}
				for _, at := range reqs[i].markAt {
					lim.stamp(reqs[i].body[at:])
				}
				if err := post(ctx, client, "http://"+o.Target, &reqs[i], &c); err != nil {
					if ctx.Err() == nil {
						errs[w] = err
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	c.into(rep)
	if ctx.Err() != nil {
		return nil
	}
	return errors.Join(errs...)
}

// post sends one request, again after 429 and 503 (which promise that
// nothing was stored) as the answer's Retry-After says, at most a second
// apart, until the run's time is up.
func post(ctx context.Context, client *http.Client, base string, r *request, c *counters) error {
	for {
		var body io.Reader = bytes.NewReader(r.body)
		if r.chunked {
			body = io.MultiReader(body) // unknown length: Transfer-Encoding chunked
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+r.path, body)
		if err != nil {
			return err
		}
		req.Header = r.header.Clone()
		resp, err := client.Do(req)
		c.mu.Lock()
		c.requests++
		c.mu.Unlock()
		if err != nil {
			return err
		}
		answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		code := resp.StatusCode
		if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
			c.mu.Lock()
			c.retries++
			c.mu.Unlock()
			wait := 100 * time.Millisecond
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
				wait = min(time.Duration(s)*time.Second, time.Second)
			}
			select {
			case <-time.After(wait):
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		c.status[strconv.Itoa(code)]++
		if code/100 != 2 {
			c.refused += int64(r.units)
			if c.firstErr == "" {
				c.firstErr = fmt.Sprintf("%s: %d %s", r.path, code, bytes.TrimSpace(answer))
			}
			return nil
		}
		c.bytes += int64(len(r.body))
		c.marks += int64(len(r.markAt))
		if r.events >= 0 {
			c.sent += int64(r.units)
			c.events += int64(r.events)
			return nil
		}
		var a struct {
			Accepted int64 `json:"accepted"`
		}
		if err := json.Unmarshal(answer, &a); err != nil {
			return fmt.Errorf("%s: answer %q: %v", r.path, answer, err)
		}
		c.sent += a.Accepted
		c.events += a.Accepted
		c.refused += int64(r.units) - a.Accepted
		return nil
	}
}
