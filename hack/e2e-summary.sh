#!/usr/bin/env bash
# Passes `go test -v` output through and ends it with one line
# "e2e: N passed, N failed" so that a reader (and CI) sees the count.
set -euo pipefail
passed=0 failed=0
while IFS= read -r line; do
  printf '%s\n' "$line"
  case "$line" in
    "--- PASS: "*|"    --- PASS: "*) passed=$((passed + 1)) ;;
    "--- FAIL: "*|"    --- FAIL: "*) failed=$((failed + 1)) ;;
  esac
done
echo "e2e: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
