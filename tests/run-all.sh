#!/bin/bash
# Run every test suite of mod_ratelimit2 and print one summary line.
#
# Unit suites are the cmocka programs in $BUILD/tests; integration suites
# are tests/integration/t_*.sh, which start their own servers on loopback
# and print TAP-style "ok N - what" / "not ok N - what" lines.  Each
# suite's time is printed; the last line is "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/rl2-check.XXXXXX")
trap 'rm -rf "$LOGDIR"' EXIT

passed=0
failed=0
ONLY=${ONLY:-}

# count_cmocka LOG -> "P F"
count_cmocka() {
    local p f
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$1" | tail -1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$1" | tail -1)
    echo "${p:-0} ${f:-0}"
}

count_tap() {
    local p f
    p=$(grep -c '^ok ' "$1")
    f=$(grep -c '^not ok ' "$1")
    echo "$p $f"
}

run_suite() {
    local kind=$1 name=$2 log="$LOGDIR/${2//\//_}.log" start end p f rc
    shift 2
    [ -n "$ONLY" ] && [[ "$name" != *$ONLY* ]] && return
    start=$(date +%s.%N)
    "$@" >"$log" 2>&1
    rc=$?
    end=$(date +%s.%N)
    if [ "$kind" = cmocka ]; then
        read -r p f < <(count_cmocka "$log")
    else
        read -r p f < <(count_tap "$log")
    fi
    # A suite that crashed or exited non-zero without reporting a
    # failure still fails.
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
        echo "  (exit status $rc)" >>"$log"
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    printf '%-28s %4d passed %3d failed %7.1fs\n' "$name" "$p" "$f" \
        "$(awk -v a="$start" -v b="$end" 'BEGIN{print b-a}')"
    if [ "$f" -ne 0 ] || [ -n "${VERBOSE:-}" ]; then
        grep -E '^(not ok|\[  FAILED|\[  ERROR|.*ERROR|#)' "$log" | head -40
        [ "$f" -ne 0 ] && tail -30 "$log"
    fi
}

total_start=$(date +%s)
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    run_suite cmocka "unit/$(basename "$t")" "$t"
done
for t in tests/integration/t_*.sh; do
    [ -f "$t" ] || continue
    run_suite tap "integration/$(basename "$t" .sh)" bash "$t"
done
# Reliability suites (faults, floods, spoofing, bad input): bounded sizes
# here, long ones with RL2_SOAK=1 (make soak).
for t in tests/reliability/r_*.sh; do
    [ -f "$t" ] || continue
    run_suite tap "reliability/$(basename "$t" .sh)" bash "$t"
done
echo "total time $(( $(date +%s) - total_start ))s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
