#!/usr/bin/env bash
# Passes `go test -v` output through and ends it with one line
# "e2e: N passed, N failed" so that a reader (and CI) sees the count.
# Before it, for each failed test, the last lines its test files logged
# (the "name_test.go:N:" lines, not the dumps that follow them): the
# reason of a failure stays in the last screen of a long run's output.
# A test that was still running when go test's -timeout ended the run
# counts as failed, with its last lines too.
set -euo pipefail
passed=0 failed=0
declare -A said=()
failures=()
current=""
keep=12
timedout=""
while IFS= read -r line; do
  printf '%s\n' "$line"
  if [[ -n $timedout ]]; then
    # "panic: test timed out after 80m0s", "running tests:", then one
    # tab-indented "TestName (duration)" line per test.
    if [[ $line =~ ^$'\t\t'([A-Za-z0-9_/]+)\ \( ]]; then
      failed=$((failed + 1))
      failures+=("${BASH_REMATCH[1]}")
      continue
    elif [[ $line != *"running tests:"* ]]; then
      timedout=""
    fi
  fi
  case "$line" in
    "panic: test timed out after "*)
      timedout=${line#panic: test timed out after }
      echo "e2e: the run timed out after $timedout"
      ;;
    "=== RUN   "*|"=== CONT  "*|"=== NAME  "*|"=== PAUSE "*)
      current=${line:10}
      ;;
    "--- PASS: "*|"    --- PASS: "*) passed=$((passed + 1)) ;;
    "--- FAIL: "*|"    --- FAIL: "*)
      failed=$((failed + 1))
      name=${line#*FAIL: }
      failures+=("${name%% (*}")
      ;;
    *)
      if [[ -n $current && $line =~ ^\ +[A-Za-z0-9_]+_test\.go:[0-9]+:\  ]]; then
        # A subtest's lines count for its parent too.
        for t in "$current" "${current%%/*}"; do
          s="${said[$t]:-}${line}"$'\n'
          while (( $(grep -c '' <<<"$s") > keep + 1 )); do s=${s#*$'\n'}; done
          said[$t]=$s
          [[ $t == "${current%%/*}" ]] && break
        done
      fi
      ;;
  esac
done
for t in "${failures[@]}"; do
  echo "e2e: $t failed; its last logged lines:"
  printf '%s' "${said[$t]:-    (none)
}"
done
echo "e2e: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
