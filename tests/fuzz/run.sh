#!/bin/bash
# run.sh -- build the libFuzzer targets with ASan+UBSan and run each on
# its seed corpus (replayed first) for FUZZ_SECONDS (default 60), or
# until FUZZ_RUNS executions when that is set (FUZZ_SECONDS then caps
# the time).  A crash leaves its input in build/fuzz/ and fails the run.
# With FUZZ_RECORD=FILE, the executions each target reached are written
# into FILE's fuzzing section (make fuzz: docs/PERFORMANCE.md).
# FUZZ_TARGETS="zone ..." runs only those targets; the record keeps the
# other targets' rows as they were.
#
# fuzz_config runs without per-input leak checks: libconfig leaks on some
# syntax errors (lsan.supp), and each suppressed leak costs a full LSan
# scan (900 executions/s instead of 30,000).  Its whole corpus, grown
# included, is then replayed with leak checks on.
set -eu
cd "$(dirname "$0")/../.."
SECONDS_EACH=${FUZZ_SECONDS:-60}
RUNS=${FUZZ_RUNS:-}
RECORD=${FUZZ_RECORD:-}
ALL_TARGETS="config match forwarded headers zone admin accesslog http"
TARGETS=${FUZZ_TARGETS:-$ALL_TARGETS}
for t in $TARGETS; do
    case " $ALL_TARGETS " in
    *" $t "*) ;;
    *) echo "run.sh: no fuzz target '$t' (targets: $ALL_TARGETS)" >&2; exit 2 ;;
    esac
done
OUT=build/fuzz
mkdir -p "$OUT"
CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -Icommon/include -Icommon \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
# The core is compiled once, on every CPU, and linked into each target:
# five targets each compiling the whole core took two minutes of make
# check.  -fsanitize=fuzzer with -c instruments without linking
# libFuzzer's main, which only the targets' link adds.
OBJ="$OUT/obj"
rm -rf "$OBJ"
mkdir -p "$OBJ"
export CFLAGS OBJ
printf '%s\n' common/*/*.c | xargs -P "$(nproc)" -I{} sh -c \
    'o="$OBJ/$(echo "$1" | tr / _ | sed "s/\.c\$/.o/")"; clang $CFLAGS -c -o "$o" "$1"' \
    sh {}
for t in $TARGETS; do
    clang $CFLAGS -o "$OUT/fuzz_$t" "tests/fuzz/fuzz_$t.c" "$OBJ"/*.o \
        -lconfig -lhiredis -lmaxminddb -lpthread -lrt -lz
done
# what TARGET -- the code a target drives, for the record.
what() {
    case "$1" in
    config) echo "policy loader (libconfig text to policy)" ;;
    match) echo "a whole decision: matcher, keys, local store, headers" ;;
    forwarded) echo "X-Forwarded-For / Forwarded parsing, client address" ;;
    headers) echo "RateLimit headers and 429 body from arbitrary verdicts" ;;
    zone) echo "local zone images: attach, then lookups, gets, removals, rebuilds" ;;
    admin) echo "admin interface: JSON body to a change, table lines, answer" ;;
    accesslog) echo "ratelimit2ctl's access-log reader: a line parsed, a file read" ;;
    http) echo "ratelimit2-fcgi -H: request heads to params, answers to HTTP" ;;
    esac
}
status=0
today=$(date -u +%Y-%m-%d)
declare -A row
export LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0"
rows=""
# fuzz_one TARGET -- run it; its report in $OUT/fuzz_TARGET.report, its
# record row in .row, its exit status (0, or 1 for a crash) in .rc.
fuzz_one() {
    local t=$1 work="$OUT/corpus_$1" start rc=0 leaks=1 secs n
    mkdir -p "$work"
    start=$(date +%s)
    [ "$t" = config ] && leaks=0
    (cd "$OUT" && ./"fuzz_$t" -max_total_time="$SECONDS_EACH" \
        ${RUNS:+-runs="$RUNS"} -detect_leaks=$leaks \
        -max_len=4096 -timeout=10 -print_final_stats=1 \
        "corpus_$t" "../../tests/fuzz/corpus/$t") >"$OUT/fuzz_$t.log" 2>&1 \
        || rc=1
    {
        echo "fuzz_$t: ${SECONDS_EACH}s${RUNS:+, at most $RUNS runs}"
        if [ "$leaks" = 0 ] && [ "$rc" = 0 ]; then
            (cd "$OUT" && ./"fuzz_$t" -runs=0 -detect_leaks=1 \
                "corpus_$t" "../../tests/fuzz/corpus/$t") \
                >"$OUT/fuzz_$t.replay.log" 2>&1 || rc=1
            grep -E 'ERROR|SUMMARY' "$OUT/fuzz_$t.replay.log" || true
        fi
        grep -E 'stat::number_of_executed_units|ERROR|SUMMARY' \
            "$OUT/fuzz_$t.log" || true
    } >"$OUT/fuzz_$t.report"
    secs=$(( $(date +%s) - start ))
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$OUT/fuzz_$t.log")
    echo "| fuzz_$t | $(what "$t") | ${n:-0} | $secs | $( [ "$rc" -eq 0 ] && echo none || echo "**crash**, see build/fuzz/fuzz_$t.log" ) | $today |" >"$OUT/fuzz_$t.row"
    echo "$rc" >"$OUT/fuzz_$t.rc"
}
# The targets run side by side, one per CPU: each is one process that
# shares nothing with the others (its own corpus and logs), and make
# check waited for them one after the other.  The reports are printed in
# the targets' order once all have run.
running=0
for t in $TARGETS; do
    if [ "$running" -ge "$(nproc)" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    fuzz_one "$t" &
    running=$((running + 1))
done
wait
for t in $TARGETS; do
    cat "$OUT/fuzz_$t.report"
    row[$t]=$(cat "$OUT/fuzz_$t.row")
    [ "$(cat "$OUT/fuzz_$t.rc")" -ne 0 ] && status=1
done
if [ -n "$RECORD" ]; then
    touch "$RECORD"
    rows=""
    for t in $ALL_TARGETS; do
        r=${row[$t]:-$(grep -F "| fuzz_$t |" "$RECORD" | head -1)}
        [ -n "$r" ] && rows="$rows$r
"
    done
    begin='<!-- fuzz:begin -->'
    end='<!-- fuzz:end -->'
    section="$begin
## Fuzzing (written by \`make fuzz\`)

Each libFuzzer target of \`tests/fuzz/\` (ASan + UBSan), run by
\`make fuzz\` until ${RUNS:-unbounded} executions or ${SECONDS_EACH} s,
its seed corpus in \`tests/fuzz/corpus/\` replayed first:

| target | drives | executions | seconds | crashes | run on |
|---|---|---|---|---|---|
${rows}
Reproduce with \`make fuzz\` (\`FUZZ_RUNS\`, \`FUZZ_SECONDS\` override the
bounds); a crash leaves its input in \`build/fuzz/\`.  \`make check\` runs
each target for 5 s on the same corpora.  fuzz_config runs without
per-input leak checks (libconfig's own leaks on syntax errors make each
one a full LSan scan); its whole corpus is then replayed with them.
$end"
    if grep -qF "$begin" "$RECORD"; then
        awk -v b="$begin" -v e="$end" -v s="$section" '
            $0 == b { print s; skip = 1; next }
            $0 == e { skip = 0; next }
            !skip { print }' "$RECORD" >"$RECORD.tmp"
        mv "$RECORD.tmp" "$RECORD"
    else
        printf '\n%s\n' "$section" >>"$RECORD"
    fi
fi
exit $status
