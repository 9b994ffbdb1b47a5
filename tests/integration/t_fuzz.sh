#!/bin/bash
# t_fuzz.sh -- the libFuzzer targets build, replay their seed corpora and
# run briefly without a crash (make fuzz runs them at length).
source "$(dirname "$0")/lib.sh"
cd "$RL2_ROOT"

out=$(FUZZ_SECONDS=${FUZZ_SECONDS:-5} tests/fuzz/run.sh 2>&1)
rc=$?
is "fuzz targets build and run without a crash" 0 "$rc"
for t in config match forwarded headers zone admin accesslog http; do
    n=$(printf '%s\n' "$out" | grep -A1 "^fuzz_$t:" \
        | sed -n 's/^stat::number_of_executed_units: *//p')
    if [ "${n:-0}" -gt 1000 ]; then
        ok "fuzz_$t ran ($n executions)"
    else
        not_ok "fuzz_$t ran (${n:-0} executions)"
        printf '%s\n' "$out" | tail -20 | sed 's/^/# /'
    fi
done
done_testing
