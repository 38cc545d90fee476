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
#   FUZZTIME=2m reliability/fuzz.sh  longer runs
#   reliability/fuzz.sh -list        print the targets and exit
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime="${FUZZTIME:-10s}"
filter="${1:-.}"

targets=$(grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . | sed 's/:func /:/' | sort -u)
if [ "$filter" = "-list" ]; then
  echo "$targets" | sed 's#^\./##; s#/[^/]*_test\.go:# #'
  exit 0
fi

failed=()
ran=0
start=$(date +%s)
while IFS=: read -r file name; do
  [ -n "$file" ] || continue
  pkg="./$(dirname "${file#./}")"
  [[ "$pkg" =~ $filter ]] || continue
  ran=$((ran + 1))
  printf '\n=== fuzz %s %s for %s\n' "$pkg" "$name" "$fuzztime"
  # -run='^$': only the fuzz target, not the package's other tests.
  if ! go test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "$pkg"; then
    failed+=("$pkg $name")
  fi
done <<< "$targets"

printf '\n=== fuzz: %d targets, %ss\n' "$ran" "$(( $(date +%s) - start ))"
if [ "$ran" -eq 0 ]; then
  echo "no fuzz target matched '$filter'"
  exit 1
fi
if [ "${#failed[@]}" -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}"
  echo "failing inputs are in the packages' testdata/fuzz/ folders"
  exit 1
fi
