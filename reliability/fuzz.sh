#!/usr/bin/env bash
# Runs every native Go fuzz target of the repository for a bounded time
# each. Targets are found, not listed: a new `func FuzzX(f *testing.F)` in
# any _test.go file runs here without touching this script. Their seed
# corpora (f.Add and testdata/fuzz/FuzzX/) also run in every plain
# `go test`; an input that fails is written by go test to the package's
# testdata/fuzz/FuzzX/ — commit it together with the fix.
#
#   reliability/fuzz.sh              every target, FUZZTIME each (default 10s)
#   reliability/fuzz.sh sentry       only packages whose path matches the regexp
#   FUZZTIME=2m reliability/fuzz.sh  longer runs (FUZZMINIMIZETIME, default 2s)
#   reliability/fuzz.sh -list        print the targets and exit
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime="${FUZZTIME:-10s}"
# Go minimizes every new interesting input for up to 60s by default, and
# counts none of those executions: on a slow target with a large input
# (FuzzReader writes a file per run) a 10s run spent most of its time
# minimizing with "execs: 0/sec". Crashers are still minimized, briefly.
minimizetime="${FUZZMINIMIZETIME:-2s}"
filter="${1:-.}"

targets=$(grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . | sed 's/:func /:/' | sort -u)
if [ "$filter" = "-list" ]; then
  echo "$targets" | sed 's#^\./##; s#/[^/]*_test\.go:# #'
  exit 0
fi

# Go before 1.27 can fail a target with a bare "context deadline exceeded"
# when -fuzztime runs out (golang/go#75804: the coordinator reads the
# deadline on the parent context before the workers' child context is
# cancelled). That is not a finding: nothing crashed and no input was
# written. Such a run counts as passed only if no "Failing input written"
# line appeared and the target still passes on its committed corpus (seeds
# and testdata/fuzz; what the run found interesting stays in GOCACHE).
# Every other failure fails the script.
coordinator_race() { # output file
  grep -q '^    context deadline exceeded$' "$1" && ! grep -q 'Failing input written' "$1"
}

log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed=()
races=()
ran=0
start=$(date +%s)
while IFS=: read -r file name; do
  [ -n "$file" ] || continue
  pkg="./$(dirname "${file#./}")"
  [[ "$pkg" =~ $filter ]] || continue
  ran=$((ran + 1))
  printf '\n=== fuzz %s %s for %s\n' "$pkg" "$name" "$fuzztime"
  # -run='^$': only the fuzz target, not the package's other tests.
  if go test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" -fuzzminimizetime="$minimizetime" "$pkg" 2>&1 | tee "$log"; [ "${PIPESTATUS[0]}" -eq 0 ]; then
    continue
  fi
  if coordinator_race "$log"; then
    printf '=== %s: bare "context deadline exceeded" at the end of -fuzztime, no input written (golang/go#75804); replaying the corpus\n' "$name"
    if go test -count=1 -run="^${name}\$" "$pkg"; then
      races+=("$pkg $name")
      continue
    fi
  fi
  failed+=("$pkg $name")
done <<< "$targets"

printf '\n=== fuzz: %d targets, %ss\n' "$ran" "$(( $(date +%s) - start ))"
if [ "${#races[@]}" -gt 0 ]; then
  printf 'coordinator deadline race, corpus replay passed: %s\n' "${races[@]}"
fi
if [ "$ran" -eq 0 ]; then
  echo "no fuzz target matched '$filter'"
  exit 1
fi
if [ "${#failed[@]}" -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}"
  echo "failing inputs are in the packages' testdata/fuzz/ folders"
  exit 1
fi
