#!/bin/bash
# core.sh -- the core's cost per decision as the policy and the live keys
# grow (bench/rl2_core_bench.c; built by `make bench`).
#   rules  10, 100, 1,000, 10,000 first-match rules; a request matching
#          the first rule and one matching the last
#   keys   1k, 10k, 100k, 1M live client keys in a zone of 1,048,576
#          entries; and 1M keys through a zone of 100,000 (the default
#          size), which evicts
# Reading the clock (rl2_clock_now) is timed apart and taken out.
# Decisions per timed run scale down as a decision gets dearer, so that
# every point takes about the same time.  BENCH_QUICK=1 runs a tenth.
#
# Writes "core_rules" and "core_keys" records to $RAW.
set -u
source "$(dirname "$0")/lib.sh"

CORE_BENCH=${CORE_BENCH:-$BUILD/bench/rl2_core_bench}
SCALE=10
[ "${BENCH_QUICK:-0}" = 1 ] && SCALE=1

out=$("$CORE_BENCH" clock $((SCALE * 100000))) || exit 1
raw core_clock ns="${out#clock }"
echo "# rl2_clock_now: ${out#clock } ns (taken out of the figures)" >&2

for n in 10 100 1000 10000; do
    # the last rule costs about 10 ns per rule tried
    d=$(( SCALE * 2000000 / (n + 20) + 1000 ))
    out=$("$CORE_BENCH" rules "$n" "$d") || exit 1
    read -r _ rules first last <<<"$out"
    [ -n "$last" ] || exit 1
    raw core_rules rules="$rules" decisions="$d" first_ns="$first" \
        last_ns="$last"
    echo "# $rules rules: first $first ns, last $last ns" >&2
done

for spec in 1000:1048576 10000:1048576 100000:1048576 1000000:1048576 \
            1000000:100000; do
    out=$("$CORE_BENCH" keys "${spec%%:*}" "${spec#*:}" $((SCALE * 20000))) \
        || exit 1
    read -r _ keys entries ns zbytes shmem used evictions <<<"$out"
    [ -n "$evictions" ] || exit 1
    raw core_keys keys="$keys" entries="$entries" ns="$ns" \
        zone_bytes="$zbytes" zone_resident_kb="$shmem" live="$used" \
        evictions="$evictions"
    echo "# $keys keys in $entries entries: $ns ns, zone $zbytes bytes" \
         "($shmem KiB resident), $used live, $evictions evictions" >&2
done
