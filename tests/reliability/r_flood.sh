#!/bin/bash
# r_flood.sh -- a flood of distinct client addresses through a trusted
# proxy (X-Forwarded-For): Apache's memory stays flat (summed PSS grows by
# less than 5 MB), the bounded zone evicts, and a steady client sending
# 300 requests against a quota of 100 during the flood is admitted
# exactly 100.  100,000 addresses; 1,000,000 with RL2_SOAK=1 (make soak).
source "$(dirname "$0")/../integration/lib.sh"

FLOOD=100000
[ "${RL2_SOAK:-0}" = 1 ] && FLOOD=1000000
ENTRIES=10000

D=$T_DIR/a
P=$(free_port)
apache_conf "$D" "$P" event
Z=$(zone_name flood)
cat >>"$D/site.conf" <<CONF
RateLimit2Zone $Z $ENTRIES
RateLimit2TrustedProxy 127.0.0.1
MaxKeepAliveRequests 0
<Location />
    RateLimit2Limit perip 100/1d key=ip algorithm=token_bucket
</Location>
CONF
if ! apache_start "$D"; then
    not_ok "apache starts"
    done_testing
    exit 1
fi
ok "apache starts with a trusted proxy and a zone of $ENTRIES keys"

# pss -- summed PSS (kB) of the server's processes.
pss() {
    local parent pid sum=0 k
    parent=$(cat "$D/httpd.pid")
    for pid in "$parent" $(pgrep -P "$parent"); do
        k=$(sed -n 's/^Pss: *\([0-9]*\) kB/\1/p' \
            "/proc/$pid/smaps_rollup" 2>/dev/null)
        sum=$((sum + ${k:-0}))
    done
    echo "$sum"
}

stat_of() {
    "$BUILD/tools/rl2_zone_stats" "$Z" | tr ' ' '\n' \
        | sed -n "s/^$1=//p"
}

# Warm up: every worker thread has served requests, the zone is in use.
# The flood's addresses start after the warm-up's.
out=$("$BUILD/tools/rl2_flood" "$P" /index.html 4000 16 0)
like "warm-up: 4000 distinct clients all admitted" \
    'flood_ok=4000 flood_other=0 .* errors=0' "$out"
before=$(pss)
ev0=$(stat_of evictions)

out=$("$BUILD/tools/rl2_flood" "$P" /index.html "$FLOOD" 16 4000 \
    198.51.100.7 300)
echo "# flood: $out"
after=$(pss)
like "flood: $FLOOD distinct clients, each admitted, no error" \
    "flood_ok=$FLOOD flood_other=0 .*status_5xx=0 errors=0" "$out"
is "flood: the steady client gets exactly 100 of 300" \
    "steady_ok=100 steady_429=200 steady_other=0" \
    "$(printf '%s\n' "$out" | grep -o 'steady_ok=[0-9]* steady_429=[0-9]* steady_other=[0-9]*')"

growth=$((after - before))
echo "# PSS before ${before} kB, after ${after} kB"
if [ "$before" -gt 0 ] && [ "$growth" -lt 5120 ]; then
    ok "flood: summed PSS grew by less than 5 MB ($growth kB)"
else
    not_ok "flood: summed PSS grew by less than 5 MB ($growth kB)"
fi
ev=$(stat_of evictions)
used=$(stat_of used)
echo "# zone: $("$BUILD/tools/rl2_zone_stats" "$Z")"
if [ "$((ev - ev0))" -ge $((FLOOD - ENTRIES)) ]; then
    ok "flood: the zone evicted ($((ev - ev0)) evictions)"
else
    not_ok "flood: the zone evicted ($((ev - ev0)) evictions)"
fi
is "flood: the zone is full, not larger" "$ENTRIES" "$used"
code_after=$(curl -s -o /dev/null -w '%{http_code}' \
    -H 'X-Forwarded-For: 198.51.100.7' "http://127.0.0.1:$P/index.html")
is "flood: the steady client is still refused afterwards" 429 "$code_after"
is "no child crashed" "" \
    "$(grep -E 'Segmentation fault|exit signal' "$D/logs/error.log")"

done_testing
