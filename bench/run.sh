#!/bin/bash
# run.sh -- `make bench`: every measurement of the benchmark in one run,
# then the report (bench/report.py) written from them.
#
#   1. instructions per request (bench/callgrind.sh, five configurations)
#   2. exactness of a quota of 100 (bench/exact.sh)
#   3. Redis bytes per key (bench/redis_mem.sh)
#   4. the core's cost as rules and keys grow (bench/core.sh)
#   5. throughput and latency, interleaved rounds (bench/throughput.sh;
#      with the Redis lines' calls and CPU time per request)
#
# Raw records go to $BUILD/bench/raw.jsonl.  A full run (about 14 min)
# rewrites docs/PERFORMANCE.md and bench/results.json.  BENCH_QUICK=1 (3
# rounds of 2 s, a tenth of the core's decisions; about 5 min; a
# throughput line whose server does not start is left out) writes
# $BUILD/bench/PERFORMANCE.md and results.json instead, so trying the
# benchmark out never replaces the published figures.  BENCH_ONLY="core
# exact" runs the sections named and writes no report.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
BUILD=${BUILD:-build}
export BUILD
OUT=$BUILD/bench
RAW=$ROOT/$OUT/raw.jsonl
export BENCH_OUT="$ROOT/$OUT" RAW
mkdir -p "$OUT"
: >"$RAW"

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
    export BENCH_ROUNDS=${BENCH_ROUNDS:-3} BENCH_DURATION=${BENCH_DURATION:-2}
    DOC=$OUT/PERFORMANCE.md
    JSON=$OUT/results.json
else
    DOC=docs/PERFORMANCE.md
    JSON=bench/results.json
fi
export BENCH_QUICK=$QUICK
SECTIONS=${BENCH_ONLY:-callgrind exact redis_mem core throughput}

source bench/raw.sh

machine() {
    raw machine nproc="$(nproc)" \
        cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo \
               | head -1)" \
        kernel="$(uname -r)" \
        memory_mb="$(awk '/^MemTotal/ { print int($2 / 1024) }' \
                     /proc/meminfo)" \
        loadavg_start="$(cut -d' ' -f1-3 /proc/loadavg)" \
        date_utc="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        commit="$(git rev-parse --short HEAD 2>/dev/null \
                  || echo unknown)$(git diff --quiet HEAD 2>/dev/null \
                  || echo '+changes')" \
        quick="$QUICK" \
        apache="$(apache2 -v | sed -n 's/^Server version: //p')" \
        nginx="$(nginx -v 2>&1 | sed 's/^nginx version: //')" \
        lighttpd="$(lighttpd -v | cut -d' ' -f1)" \
        redis="$(redis-server --version | cut -d' ' -f3)" \
        mod_qos="$(dpkg-query -W -f='${Version}' libapache2-mod-qos)" \
        mod_evasive="$(dpkg-query -W -f='${Version}' \
                       libapache2-mod-evasive)" \
        wrk="$(dpkg-query -W -f='${Version}' wrk)" \
        valgrind="$(valgrind --version)"
}

section() {
    local name=$1 start rc m
    start=$(date +%s)
    echo "bench: $name ..."
    case "$name" in
    callgrind)
        rc=0
        for m in bare local redis qos evasive; do
            read -r _ n <<<"$(MPM=prefork bench/callgrind.sh "$m")"
            if [ -z "${n:-}" ]; then
                rc=1
                break
            fi
            raw callgrind config="$m" mpm=prefork instructions="$n"
            echo "# $m: $n instructions per request"
        done ;;
    exact) bench/exact.sh; rc=$? ;;
    redis_mem) bench/redis_mem.sh; rc=$? ;;
    core) bench/core.sh; rc=$? ;;
    throughput) bench/throughput.sh; rc=$? ;;
    *) echo "bench: unknown section $name" >&2; return 1 ;;
    esac
    raw timing part="$name" seconds=$(( $(date +%s) - start ))
    [ "$rc" = 0 ] || echo "bench: $name failed" >&2
    return "$rc"
}

machine
for s in $SECTIONS; do
    section "$s" || exit 1
done
raw load_end loadavg="$(cut -d' ' -f1-3 /proc/loadavg)"
[ -n "${BENCH_ONLY:-}" ] && { echo "bench: raw records in $RAW"; exit 0; }
# A trial run's page keeps the hand-kept sections of the published one.
python3 -B bench/report.py "$RAW" "$DOC" "$JSON" docs/PERFORMANCE.md || exit 1
echo "bench: wrote $DOC and $JSON"
