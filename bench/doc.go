// Package bench is the whole-process benchmark behind bench/run: it builds
// leitstand and cmd/leitstand-load, starts leitstand, rsyslog and syslog-ng
// one after the other on loopback, sends each the same generated input,
// and measures what arrives in their output files, the CPU time and peak
// memory of the receiving process, and how much of the input's personal
// data is still in the output. At fixed rates it measures the end-to-end
// latency of marked messages; for leitstand it reconciles sent, delivered
// and its drop counters from /metrics, and runs overload cases at three
// times its capacity. It draws delivered against offered rate as a PNG.
// See README.md.
//
// It owns the cases, the daemons' benchmark configurations, the
// measurement and the results (JSON and Markdown). It must not assert
// timings (its test checks counts and the results file only) and must not
// leave processes behind: every process it starts is its child, stopped by
// its PID, and killed by the kernel if the harness dies (Pdeathsig).
//
// It imports internal/peers, the test-support package that installs and
// starts the peers, from non-test code: the benchmark is test tooling run
// as a program, and sharing the peers' installation and start-up with the
// integration tests is the point.
package bench
