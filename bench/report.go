package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/leitstand/leitstand/bench/loadgen"
	"github.com/leitstand/leitstand/collector/pipeline"
)

// SchemaVersion is the version of the results file's layout.
const SchemaVersion = 1

// Results is what a run of the harness found; it is written as JSON.
type Results struct {
	Schema   int               `json:"schema"`
	Mode     string            `json:"mode"`
	Command  string            `json:"command"`
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Machine  Machine           `json:"machine"`
	Versions map[string]string `json:"versions"`
	Settings Settings          `json:"settings"`
	Cases    []Case            `json:"cases"`
	// Runs holds every run of every case, in the order they ran.
	Runs []Measurement `json:"runs"`
	// Summary holds one line per case: medians over its runs and the
	// ratios to the peers on the same path in this run.
	Summary []Summary `json:"summary"`
	// Capacity is what the UDP overload case offered three times.
	Capacity Capacity `json:"capacity,omitzero"`
	// Plot is the PNG of delivered against offered rate, relative to the
	// results files (set by WriteFiles).
	PlotFile string `json:"plot,omitempty"`
}

// Machine is where the figures were taken.
type Machine struct {
	CPU       string `json:"cpu"`
	CPUs      int    `json:"cpus"`
	MemoryMiB int64  `json:"memory_mib"`
	Kernel    string `json:"kernel"`
	OS        string `json:"os,omitempty"`
	GoVersion string `json:"go_version"`
	// LoadStart and LoadEnd are /proc/loadavg (1, 5, 15 minutes) when the
	// run began and ended: other work on the machine.
	LoadStart string `json:"load_start,omitempty"`
	LoadEnd   string `json:"load_end,omitempty"`
}

// Settings are the inputs of the run.
type Settings struct {
	Reps        int       `json:"reps"`
	SyslogCount int       `json:"syslog_count"`
	NDJSONCount int       `json:"ndjson_count"`
	SentryCount int       `json:"sentry_count"`
	UDPRates    []float64 `json:"udp_rates"`
	Seed        uint64    `json:"seed"`
	PIIShare    float64   `json:"pii_share"`
	// The latency cases, the bound on fixed-rate inputs, the marks.
	LatencyRate    float64 `json:"latency_rate,omitempty"`
	LatencyCount   int     `json:"latency_count,omitempty"`
	MaxCaseSeconds float64 `json:"max_case_seconds,omitempty"`
	MarkEvery      int     `json:"mark_every,omitempty"`
	// QueueSize and Workers replaced leitstand's pipeline defaults when
	// not 0.
	QueueSize int `json:"queue_size,omitempty"`
	Workers   int `json:"workers,omitempty"`
}

// Measurement is one run of one case.
type Measurement struct {
	Case        string  `json:"case"`
	Group       string  `json:"group"`
	Path        Path    `json:"path"`
	Daemon      string  `json:"daemon"`
	Rep         int     `json:"rep"`
	OfferedRate float64 `json:"offered_rate"`
	// Sent is the events the receiver had to store (what the generator
	// wrote or got acknowledged); Delivered the lines counted in its
	// output files; Lost the difference.
	Sent      int64 `json:"sent"`
	Delivered int64 `json:"delivered"`
	Lost      int64 `json:"lost"`
	// Bytes is the payload the generator sent.
	Bytes int64 `json:"bytes"`
	// WallSeconds runs from the generator's start to the moment the last
	// event was seen in the output; CPUSeconds is the receiving process's
	// utime+stime (children included) over the same span.
	WallSeconds  float64 `json:"wall_seconds"`
	CPUSeconds   float64 `json:"cpu_seconds"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
	// Derived: delivered events per wall second and per CPU second, CPU
	// seconds per million events, and sent MiB per wall second.
	EventsPerSecond      float64 `json:"events_per_second"`
	EventsPerCPUSecond   float64 `json:"events_per_cpu_second"`
	CPUSecondsPerMillion float64 `json:"cpu_seconds_per_million"`
	MiBPerSecond         float64 `json:"mib_per_second"`
	// PII is the check of the output for personal data of the input.
	PII PIICheck `json:"pii"`
	// Latency is the end-to-end latency of the marked messages (cases
	// at a fixed rate below saturation).
	Latency *LatencyStats `json:"latency,omitempty"`
	// Accounting reconciles sent, delivered and leitstand's counters.
	Accounting *Accounting     `json:"accounting,omitempty"`
	Generator  *loadgen.Report `json:"generator,omitempty"`
	Error      string          `json:"error,omitempty"`
}

// PIICheck says how much of the input's personal data came out again.
type PIICheck struct {
	// Sent counts the pieces in the input (occurrences), Distinct the
	// different values, by kind: email, ipv4, ipv6.
	Sent     map[string]int `json:"sent"`
	Distinct map[string]int `json:"distinct"`
	// Survived counts occurrences of those values in the output,
	// SurvivedDistinct the different values found.
	Survived         map[string]int `json:"survived"`
	SurvivedDistinct map[string]int `json:"survived_distinct"`
	Examples         []string       `json:"examples,omitempty"`
}

// Total is the number of surviving occurrences of every kind.
func (p PIICheck) Total() int {
	n := 0
	for _, v := range p.Survived {
		n += v
	}
	return n
}

func (m *Measurement) derive() {
	m.Lost = m.Sent - m.Delivered
	if m.WallSeconds > 0 {
		m.EventsPerSecond = float64(m.Delivered) / m.WallSeconds
		m.MiBPerSecond = float64(m.Bytes) / (1 << 20) / m.WallSeconds
	}
	if m.CPUSeconds > 0 {
		m.EventsPerCPUSecond = float64(m.Delivered) / m.CPUSeconds
	}
	if m.Delivered > 0 {
		m.CPUSecondsPerMillion = m.CPUSeconds / (float64(m.Delivered) / 1e6)
	}
}

// Summary is one case over its runs.
type Summary struct {
	Case        string  `json:"case"`
	Group       string  `json:"group"`
	Path        Path    `json:"path"`
	Daemon      string  `json:"daemon"`
	OfferedRate float64 `json:"offered_rate"`
	Runs        int     `json:"runs"`   // runs without error
	Failed      int     `json:"failed"` // runs with an error
	// Sent is the events to store per run; Delivered the median of the
	// runs' delivered events, Lost what the median run lost, and
	// MinDelivered and MaxDelivered the spread (UDP).
	Sent         int64 `json:"sent"`
	Delivered    int64 `json:"delivered"`
	Lost         int64 `json:"lost"`
	MinDelivered int64 `json:"min_delivered"`
	MaxDelivered int64 `json:"max_delivered"`
	// Medians over the runs.
	EventsPerSecond      float64 `json:"events_per_second"`
	EventsPerCPUSecond   float64 `json:"events_per_cpu_second"`
	CPUSecondsPerMillion float64 `json:"cpu_seconds_per_million"`
	MiBPerSecond         float64 `json:"mib_per_second"`
	PeakRSSMiB           float64 `json:"peak_rss_mib"`
	// GeneratorPerSecond is the rate the generator reached (median): at
	// a fixed offered rate it shows whether the offer was kept.
	GeneratorPerSecond float64 `json:"generator_per_second"`
	// Ratios to the peers on the same path and rate in this run (nil
	// when the peer was not run).
	VsRsyslog  *Ratio `json:"vs_rsyslog,omitempty"`
	VsSyslogNG *Ratio `json:"vs_syslog_ng,omitempty"`
	// PII holds the most personal data any run let through, by kind.
	PIISent     map[string]int `json:"pii_sent"`
	PIISurvived map[string]int `json:"pii_survived"`
	// Latency: the median over the runs of each percentile, the highest
	// maximum, and the marks of all runs.
	Latency *LatencyStats `json:"latency,omitempty"`
	// Saturated says that a fixed-rate case exceeded the receiver's
	// capacity: it lost more than 1 % of the events, or the generator fell
	// more than 5 % short of the offered rate (TCP and HTTP wait for the
	// receiver). Its latency is the backlog's, not the daemon's.
	Saturated bool `json:"saturated,omitempty"`
}

// LatencyStats is the distribution of the time from the generator's write
// of a marked message to the poll of the output that found it.
type LatencyStats struct {
	Marks int64   `json:"marks"` // marked messages sent
	Seen  int64   `json:"seen"`  // marks found in the output
	P50Ms float64 `json:"p50_ms"`
	P90Ms float64 `json:"p90_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

// latencyStats summarizes the latencies of one run (nearest-rank
// percentiles).
func latencyStats(d []time.Duration, marks int64) *LatencyStats {
	l := &LatencyStats{Marks: marks, Seen: int64(len(d))}
	if len(d) == 0 {
		return l
	}
	slices.Sort(d)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(d)))) - 1
		return float64(d[max(i, 0)]) / float64(time.Millisecond)
	}
	l.P50Ms, l.P90Ms, l.P99Ms, l.MaxMs = q(0.50), q(0.90), q(0.99), q(1)
	return l
}

// Ratio compares a case with a peer: above 1 means more events per wall
// or CPU second, or more memory, than the peer.
type Ratio struct {
	EventsPerSecond    float64 `json:"events_per_second"`
	EventsPerCPUSecond float64 `json:"events_per_cpu_second"`
	PeakRSS            float64 `json:"peak_rss"`
}

func (r *Results) summarize() {
	r.Summary = nil
	for _, c := range r.Cases {
		s := Summary{Case: c.Name, Group: c.Group, Path: c.Path, Daemon: c.Daemon, OfferedRate: c.Rate,
			PIISent: map[string]int{}, PIISurvived: map[string]int{}}
		var eps, epc, cpm, mibs, rss, gen, delivered, p50, p90, p99 []float64
		var lat *LatencyStats
		for _, m := range r.Runs {
			if m.Case != c.Name {
				continue
			}
			if m.Error != "" {
				s.Failed++
				continue
			}
			s.Runs++
			eps = append(eps, m.EventsPerSecond)
			epc = append(epc, m.EventsPerCPUSecond)
			cpm = append(cpm, m.CPUSecondsPerMillion)
			mibs = append(mibs, m.MiBPerSecond)
			rss = append(rss, float64(m.PeakRSSBytes)/(1<<20))
			if m.Generator != nil {
				gen = append(gen, m.Generator.PerSecond)
			}
			delivered = append(delivered, float64(m.Delivered))
			if l := m.Latency; l != nil {
				if lat == nil {
					lat = &LatencyStats{}
				}
				lat.Marks += l.Marks
				lat.Seen += l.Seen
				lat.MaxMs = max(lat.MaxMs, l.MaxMs)
				p50, p90, p99 = append(p50, l.P50Ms), append(p90, l.P90Ms), append(p99, l.P99Ms)
			}
			s.Sent = m.Sent
			for k, v := range m.PII.Sent {
				s.PIISent[k] = v
			}
			for k, v := range m.PII.Survived {
				s.PIISurvived[k] = max(s.PIISurvived[k], v)
			}
		}
		s.EventsPerSecond, s.EventsPerCPUSecond = median(eps), median(epc)
		s.CPUSecondsPerMillion, s.MiBPerSecond, s.PeakRSSMiB = median(cpm), median(mibs), median(rss)
		s.GeneratorPerSecond = median(gen)
		if lat != nil {
			lat.P50Ms, lat.P90Ms, lat.P99Ms = median(p50), median(p90), median(p99)
			s.Latency = lat
		}
		if len(delivered) > 0 {
			s.Delivered = int64(median(delivered) + 0.5)
			s.Lost = s.Sent - s.Delivered
			s.MinDelivered, s.MaxDelivered = int64(slices.Min(delivered)), int64(slices.Max(delivered))
		}
		if s.OfferedRate > 0 && s.Runs > 0 {
			s.Saturated = float64(s.Lost) > 0.01*float64(s.Sent) || (s.GeneratorPerSecond > 0 && s.GeneratorPerSecond < 0.95*s.OfferedRate)
		}
		r.Summary = append(r.Summary, s)
	}
	for i := range r.Summary {
		s := &r.Summary[i]
		for j := range r.Summary {
			p := &r.Summary[j]
			if p.Group != s.Group || p.Runs == 0 || s.Runs == 0 {
				continue
			}
			switch p.Daemon {
			case Rsyslog:
				s.VsRsyslog = ratio(s, p)
			case SyslogNG:
				s.VsSyslogNG = ratio(s, p)
			}
		}
	}
}

func ratio(s, p *Summary) *Ratio {
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	return &Ratio{
		EventsPerSecond:    div(s.EventsPerSecond, p.EventsPerSecond),
		EventsPerCPUSecond: div(s.EventsPerCPUSecond, p.EventsPerCPUSecond),
		PeakRSS:            div(s.PeakRSSMiB, p.PeakRSSMiB),
	}
}

// Failures lists the runs that failed.
func (r *Results) Failures() []string {
	var f []string
	for _, m := range r.Runs {
		if m.Error != "" {
			f = append(f, fmt.Sprintf("%s rep %d: %s", m.Case, m.Rep, m.Error))
		}
	}
	return f
}

// ReadResults reads a results file written by WriteFiles, strictly (an
// unknown field is an error), and summarizes it again: a change of the
// tables needs no new run.
func ReadResults(path string) (*Results, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	var r Results
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if r.Schema != SchemaVersion {
		return nil, fmt.Errorf("%s: schema %d, want %d", path, r.Schema, SchemaVersion)
	}
	r.summarize()
	return &r, nil
}

// WriteFiles writes the plot of delivered against offered rate as a PNG
// to plotPath, the results as JSON to jsonPath and as Markdown (which
// links the plot) to mdPath; any may be empty. Without a UDP case at a
// fixed rate there is no plot.
func (r *Results) WriteFiles(jsonPath, mdPath, plotPath string) error {
	if len(r.Runs) == 0 {
		return errNoResults
	}
	if plotPath != "" {
		if png, err := r.Plot(); err == nil {
			if err := writeFile(plotPath, png); err != nil {
				return err
			}
			rel := mdPath
			if rel == "" {
				rel = jsonPath
			}
			if r.PlotFile, err = filepath.Rel(filepath.Dir(rel), plotPath); err != nil {
				r.PlotFile = plotPath
			}
			r.PlotFile = filepath.ToSlash(r.PlotFile)
		}
	}
	if jsonPath != "" {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
		if err := writeFile(jsonPath, b.Bytes()); err != nil {
			return err
		}
	}
	if mdPath != "" {
		var b bytes.Buffer
		r.Markdown(&b)
		if err := writeFile(mdPath, b.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

var pathTitles = map[Path]string{
	PathTCP:    "Syslog over TCP (RFC 5424, octet counting) → parse → anonymize → JSON file",
	PathUDP:    "Syslog over UDP (RFC 5424) → parse → anonymize → JSON file",
	PathNDJSON: "NDJSON over HTTP (`POST /v1/ingest`, 500 lines per request, 4 clients) → anonymize → file (leitstand alone)",
	PathSentry: "Sentry envelopes of the real SDKs (`POST /api/42/envelope/`, 4 clients) → anonymize → file (leitstand alone)",
}

func fmtRatio(r *Ratio, f func(*Ratio) float64) string {
	if r == nil {
		return "–"
	}
	return fmt.Sprintf("%.2f×", f(r))
}

func fmtPII(s Summary) string {
	var parts []string
	for _, k := range []string{"email", "ipv4", "ipv6"} {
		if n, ok := s.PIISent[k]; ok && n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d/%d", k, s.PIISurvived[k], n))
		}
	}
	if len(parts) == 0 {
		return "–"
	}
	return strings.Join(parts, ", ")
}

// Markdown writes the tables: one per path and rate, then the setup.
func (r *Results) Markdown(w io.Writer) {
	fmt.Fprintf(w, "# Whole-process benchmark: leitstand, rsyslog, syslog-ng\n\n")
	fmt.Fprintf(w, "Mode `%s`, %d run(s) per case, medians shown; %s to %s (UTC).\n\n", r.Mode, r.Settings.Reps,
		r.Started.Format("2006-01-02 15:04"), r.Finished.Format("15:04"))
	if r.Command != "" {
		fmt.Fprintf(w, "Reproduce: `%s`\n\n", r.Command)
	}
	groups := []string{}
	for _, s := range r.Summary {
		if !slices.Contains(groups, s.Group) {
			groups = append(groups, s.Group)
		}
	}
	for _, g := range groups {
		var rows []Summary
		for _, s := range r.Summary {
			if s.Group == g {
				rows = append(rows, s)
			}
		}
		title := pathTitles[rows[0].Path]
		if rows[0].OfferedRate > 0 {
			var reached []string
			for _, s := range rows {
				reached = append(reached, fmt.Sprintf("%s %.0f", s.Daemon, s.GeneratorPerSecond))
			}
			title += fmt.Sprintf(", offered %.0f messages/s (the generator reached: %s)", rows[0].OfferedRate, strings.Join(reached, ", "))
		} else {
			title += ", as fast as the receiver takes them"
		}
		fmt.Fprintf(w, "## %s\n\n%s\n\n", g, title)
		fmt.Fprintln(w, "| daemon | delivered / sent | events/s | MiB/s in | events/CPU-s | CPU-s per M events | peak RSS MiB | ×rsyslog events/CPU-s | ×syslog-ng events/CPU-s | ×rsyslog events/s | ×syslog-ng events/s | personal data left (found/sent) |")
		fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
		for _, s := range rows {
			if s.Runs == 0 {
				fmt.Fprintf(w, "| %s | failed (%d runs) | | | | | | | | | | |\n", s.Daemon, s.Failed)
				continue
			}
			lost := ""
			switch {
			case s.Lost < 0:
				// More lines out than events in: the daemon wrote some
				// twice or split them (seen from rsyslog's imtcp).
				lost = fmt.Sprintf(" (%s extra", itoa(-s.Lost))
			case s.Lost != 0 && s.Sent > 0:
				lost = fmt.Sprintf(" (%.1f %% lost", 100*float64(s.Lost)/float64(s.Sent))
			}
			if lost != "" {
				if s.MinDelivered != s.MaxDelivered {
					lost += fmt.Sprintf("; runs %s–%s", itoa(s.MinDelivered), itoa(s.MaxDelivered))
				}
				lost += ")"
			}
			fmt.Fprintf(w, "| %s | %s / %s%s | %.0f | %.1f | %.0f | %.2f | %.1f | %s | %s | %s | %s | %s |\n",
				s.Daemon, itoa(s.Delivered), itoa(s.Sent), lost, s.EventsPerSecond, s.MiBPerSecond, s.EventsPerCPUSecond,
				s.CPUSecondsPerMillion, s.PeakRSSMiB,
				fmtRatio(s.VsRsyslog, func(r *Ratio) float64 { return r.EventsPerCPUSecond }),
				fmtRatio(s.VsSyslogNG, func(r *Ratio) float64 { return r.EventsPerCPUSecond }),
				fmtRatio(s.VsRsyslog, func(r *Ratio) float64 { return r.EventsPerSecond }),
				fmtRatio(s.VsSyslogNG, func(r *Ratio) float64 { return r.EventsPerSecond }),
				fmtPII(s))
		}
		fmt.Fprintln(w)
	}
	r.latencyMarkdown(w)
	r.overloadMarkdown(w)
	if r.PlotFile != "" {
		fmt.Fprintf(w, "## Delivered against offered rate\n\n")
		fmt.Fprintf(w, "Syslog over UDP, the medians of the cases above; offered is the rate the generator reached, delivered the rate the output grew at (the overload case included). TCP is not plotted: its flow control slows the sender down to what the receiver takes, so delivered equals offered up to the capacity in the tables.\n\n")
		fmt.Fprintf(w, "![delivered against offered rate, syslog over UDP](%s)\n\n", r.PlotFile)
	}
	if f := r.Failures(); len(f) > 0 {
		fmt.Fprintf(w, "## Failed runs\n\n")
		for _, x := range f {
			fmt.Fprintf(w, "- %s\n", firstLine(x))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "## Setup\n\n")
	fmt.Fprintf(w, "- Machine: %s, %d CPUs, %d MiB, Linux %s, %s, %s\n", r.Machine.CPU, r.Machine.CPUs, r.Machine.MemoryMiB, r.Machine.Kernel, r.Machine.OS, r.Machine.GoVersion)
	if r.Machine.LoadStart != "" {
		fmt.Fprintf(w, "- Load average (1, 5, 15 min) at the start: %s; at the end: %s (other work shares the machine: compare ratios from one run)\n", r.Machine.LoadStart, r.Machine.LoadEnd)
	}
	for _, k := range []string{Leitstand, Rsyslog, SyslogNG} {
		if v, ok := r.Versions[k]; ok {
			fmt.Fprintf(w, "- %s: %s\n", k, v)
		}
	}
	fmt.Fprintf(w, "- Input: seed %d, %d syslog messages, %d NDJSON lines, %d Sentry envelopes per case; %.0f%% of syslog and NDJSON messages carry e-mail or IP addresses\n",
		r.Settings.Seed, r.Settings.SyslogCount, r.Settings.NDJSONCount, r.Settings.SentryCount, 100*r.Settings.PIIShare)
	fmt.Fprint(w, `- leitstand: file sink without rotation, compression or fsync (as omfile and file() write by default); every anonymizer detector on (e-mail hashed, IPs truncated to /24 and /48, secrets masked, …). leitstand-ip-only: only the IP detector, the work the peers do. leitstand-fsync: as leitstand, with sinks.file.fsync: always (each batch synced to disk before it is acknowledged), in the fixed-rate latency cases.
- rsyslog: imtcp/imudp → mmanon (IPv4 /24, IPv6 /48) → omfile with a JSON template (option.jsonf), default main queue.
- syslog-ng: network() (transport framed for octet counting, flags(syslog-protocol)) → two subst() rewrites (IPv4 /24, IPv6 /48) → file() with $(format-json), flags(flow-control).
- Events counted as lines in the output files; CPU seconds are utime+stime(+cutime+cstime) of the receiving process from /proc/PID/stat between the start of sending and the last event seen; peak RSS is VmHWM. The generator runs as its own process and is not counted.
- "personal data left": occurrences of the input's e-mail addresses and untruncated IP addresses found in the output. The peers truncate IPs only, so the e-mail addresses stay in their files.
`)
}

// latencyMarkdown writes the latency table: the cases at a fixed rate
// below saturation.
func (r *Results) latencyMarkdown(w io.Writer) {
	var rows []Summary
	var saturated []string
	for _, s := range r.Summary {
		if s.Latency == nil || s.Latency.Seen == 0 {
			continue
		}
		if s.Saturated {
			saturated = append(saturated, fmt.Sprintf("%s (p50 %.0f ms)", s.Case, s.Latency.P50Ms))
			continue
		}
		rows = append(rows, s)
	}
	if len(rows) == 0 && len(saturated) == 0 {
		return
	}
	fmt.Fprintf(w, "## End-to-end latency at a fixed offered rate\n\n")
	fmt.Fprintf(w, "From the generator's write of a message to the moment its line was in the output file. One message in %d carries its send time (`lsbt=1` and 15 digits: nanoseconds since the generator's start, from its monotonic clock); the harness polls the output every %s and takes its own monotonic time since it opened the generator's gate. A latency is overstated by up to one poll interval (and by the time the gate takes, well under a millisecond). Medians over the runs of each percentile; max is the largest of any run. Cases at saturation are left out: their latency is the queue's length.\n\n",
		r.Settings.MarkEvery, latencyPollEvery)
	fmt.Fprintln(w, "| case | offered/s | generator reached/s | marks seen / sent | p50 ms | p90 ms | p99 ms | max ms |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, s := range rows {
		l := s.Latency
		fmt.Fprintf(w, "| %s | %.0f | %.0f | %d / %d | %.1f | %.1f | %.1f | %.1f |\n", s.Case, s.OfferedRate, s.GeneratorPerSecond, l.Seen, l.Marks, l.P50Ms, l.P90Ms, l.P99Ms, l.MaxMs)
	}
	if len(saturated) > 0 {
		fmt.Fprintf(w, "\nLeft out as saturated (more than 1 %% lost, or the generator more than 5 %% short of the offered rate; the figures are in results.json): %s.\n", strings.Join(saturated, ", "))
	}
	fmt.Fprintf(w, "\nleitstand's configuration for these figures: the file sink writes each batch with one `write` and no fsync (`fsync: never`; the default `interval` syncs once a second beside the writes; leitstand-fsync runs `always`, which syncs each batch after its write and before it is acknowledged: the line is in the file, where the harness sees it, before the sync, but the next batch waits for it, which is what its latency shows); syslog batches of up to 256 events or 10 ms (`batch_events`, `batch_linger`, the defaults), so below saturation a message waits up to 10 ms for its batch; NDJSON requests of 500 lines, a line's latency includes its whole request; pipeline with the default %s. rsyslog and syslog-ng run as in the tables: `omfile` and `file()` with their default buffering.\n\n", pipelineSetting(r.Settings))
}

func pipelineSetting(s Settings) string {
	q, w := fmt.Sprintf("queue_size %d", pipeline.DefaultConfig().QueueSize), "workers = CPUs"
	if s.QueueSize > 0 {
		q = fmt.Sprintf("queue_size %d (changed for this run)", s.QueueSize)
	}
	if s.Workers > 0 {
		w = fmt.Sprintf("workers %d (changed for this run)", s.Workers)
	}
	return q + ", " + w
}

// overloadMarkdown writes the overload cases' accounting, and that of
// every leitstand UDP run.
func (r *Results) overloadMarkdown(w io.Writer) {
	overload := map[string]bool{}
	for _, c := range r.Cases {
		overload[c.Name] = c.Overload
	}
	var rows []Measurement
	for _, m := range r.Runs {
		if m.Accounting != nil && m.Error == "" && (overload[m.Case] || m.Path == PathUDP) {
			rows = append(rows, m)
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "## Overload and the accounting of every event\n\n")
	if r.Capacity.EventsPerSecond > 0 {
		fmt.Fprintf(w, "The overload cases offer leitstand %d× its capacity, taken as %.0f events/s (%s): UDP at that rate from several sockets, and TCP and NDJSON as fast as %s connections go. They run once each, after the other cases.\n\n",
			overloadFactor, r.Capacity.EventsPerSecond, r.Capacity.Basis, overloadConns(r.Cases))
	}
	fmt.Fprintf(w, "For each leitstand run below, /metrics was scraped before the generator started and after the output stopped growing (before SIGTERM). **sent** is what the generator wrote (UDP) or got acknowledged (TCP, NDJSON); **delivered** the lines in the output; **dropped** `leitstand_events_dropped_total` by reason; **kernel** the datagrams the kernel dropped at leitstand's sockets, by `leitstand_syslog_kernel_drops_total` and by the drops column of `/proc/net/udp`; **unaccounted** is sent − delivered − dropped − kernel (metric): events lost without a counter saying so; **refused** `leitstand_events_refused_total` (answered 429, sent again by the generator). The memory bound is the pipeline queue (`leitstand_queue_capacity_events`; every queued or processing event holds a place) and, for HTTP bodies, `max_inflight_bytes` (256 MiB by default); no spool is configured (the file sink writes directly), so no spool cap applies; the highest queue depth and Go heap in use are from sampling /metrics every 200 ms (overload cases). The queue bounds events, not bytes: on the syslog paths a queued event holds about 1.8 KiB of live heap, so a full queue of 65536 (the default before it became 16384) is some 120 MiB of heap and, with the Go collector's default GOGC=100, about 200 MiB of RSS; [README.md](README.md#memory-what-leitstands-peak-rss-on-the-tcp-path-is) has the measurements and the recommended default.\n\n")
	fmt.Fprintln(w, "| run | offered/s | reached/s | sent | delivered | dropped (metric) | kernel drops metric / proc | unaccounted | refused (resent) | max queue depth / capacity | max heap in use MiB | peak RSS MiB |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, m := range rows {
		a := m.Accounting
		// TCP writes end in the socket buffers: the generator's rate says
		// nothing there.
		reached := "–"
		if m.Generator != nil && m.Path != PathTCP {
			reached = fmt.Sprintf("%.0f", m.Generator.PerSecond)
		}
		offered := "as fast as it goes"
		if m.OfferedRate > 0 {
			offered = fmt.Sprintf("%.0f", m.OfferedRate)
		}
		depth, heap := "–", "–"
		if a.MaxQueueDepth > 0 || a.MaxHeapInuseBytes > 0 {
			depth = fmt.Sprintf("%d / %d", a.MaxQueueDepth, a.QueueCapacity)
			heap = fmt.Sprintf("%.1f", float64(a.MaxHeapInuseBytes)/(1<<20))
		}
		var refused int64
		for _, n := range a.Refused {
			refused += n
		}
		fmt.Fprintf(w, "| %s rep %d | %s | %s | %d | %d | %s | %d / %d | %d | %d | %s | %s | %.1f |\n",
			m.Case, m.Rep, offered, reached, a.Sent, a.Delivered, fmtCounts(a.Dropped), a.KernelDropsMetric, a.KernelDropsProc,
			a.Unaccounted, refused, depth, heap, float64(m.PeakRSSBytes)/(1<<20))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "*unaccounted* must be 0: leitstand counts kernel drops from the `SO_RXQ_OVFL` value each datagram carries and, for drops after the last datagram of a burst, from the socket's own counter (`SO_MEMINFO`) every second and when it stops, so `leitstand_syslog_kernel_drops_total` equals the drops column of `/proc/net/udp`. Where it is not 0, that difference is a loss no counter saw.\n\n")
}

func overloadConns(cs []Case) string {
	for _, c := range cs {
		if c.Overload && c.Path != PathUDP {
			return strconv.Itoa(c.Conns)
		}
	}
	return "many"
}

// fmtCounts prints counts by reason: "queue_full 123", or 0.
func fmtCounts(m map[string]int64) string {
	if len(m) == 0 {
		return "0"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// itoa formats a count for the tables.
func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func numCPU() int       { return runtime.NumCPU() }
func goVersion() string { return runtime.Version() }
