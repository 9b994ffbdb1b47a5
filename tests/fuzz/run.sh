#!/bin/bash
# run.sh -- build the libFuzzer targets with ASan+UBSan and run each for
# FUZZ_SECONDS (default 60) on its seed corpus.  A crash leaves its input
# in build/fuzz/ and fails the run.
set -eu
cd "$(dirname "$0")/../.."
SECONDS_EACH=${FUZZ_SECONDS:-60}
OUT=build/fuzz
mkdir -p "$OUT"
CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -Icommon/include \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
for t in config match; do
    clang $CFLAGS -o "$OUT/fuzz_$t" "tests/fuzz/fuzz_$t.c" common/*.c \
        -lconfig -lhiredis -lpthread -lrt
done
status=0
export LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0"
for t in config match; do
    work="$OUT/corpus_$t"
    mkdir -p "$work"
    echo "fuzz_$t: ${SECONDS_EACH}s"
    (cd "$OUT" && ./"fuzz_$t" -max_total_time="$SECONDS_EACH" \
        -max_len=4096 -timeout=10 -print_final_stats=1 \
        "corpus_$t" "../../tests/fuzz/corpus/$t") >"$OUT/fuzz_$t.log" 2>&1 \
        || status=1
    grep -E 'stat::number_of_executed_units|ERROR|SUMMARY' \
        "$OUT/fuzz_$t.log" || true
done
exit $status
