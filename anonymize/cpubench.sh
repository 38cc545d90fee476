#!/bin/bash
# Per-core throughput from CPU time, independent of other load on the
# machine: each benchmark runs on one P for two fixed counts; the CPU time
# (user+system) of the difference, divided by the extra operations, is the
# cost of one operation without the set-up.
cd "$(dirname "$0")"
go test -c -o /tmp/anon.test . || exit 1
cpu() { /usr/bin/time -f "%U %S" /tmp/anon.test -test.run XXX -test.bench "^$1\$" -test.cpu 1 -test.benchtime "$2x" 2>&1 >/tmp/bout | awk '{print $1+$2}'; }
run() { # name n1 n2 bytes_per_op events_per_op
  c1=$(cpu "$1" $2); c2=$(cpu "$1" $3)
  bpo=$(awk '/^Benchmark/{for(i=1;i<=NF;i++) if($(i+1)=="MB/s"){mbs=$i} ; for(i=1;i<=NF;i++) if($(i+1)=="ns/op"){ns=$i}} END{printf "%.0f", mbs*ns/1000}' /tmp/bout)
  awk -v n="$1" -v c1=$c1 -v c2=$c2 -v n1=$2 -v n2=$3 -v b=$bpo -v e=$4 'BEGIN{per=(c2-c1)/(n2-n1); printf "%-28s %8.1f µs/op CPU  %8.1f MB/s  %10.0f events/s per core\n", n, per*1e6, b/per/1e6, e/per}'
}
run 'BenchmarkSparse/Ours' 2000 8000 64
run 'BenchmarkSparse/Naive' 20 80 64
run 'BenchmarkDense/Ours' 2000 8000 64
run 'BenchmarkDense/Naive' 20 80 64
run 'BenchmarkSentryEvent/Ours' 200 1000 64
run 'BenchmarkSentryEvent/Naive' 5 20 64
