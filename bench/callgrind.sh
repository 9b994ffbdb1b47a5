#!/bin/bash
# callgrind.sh MODE -- instructions per request of Apache with MODE (the
# kinds of bench/lib.sh, each with a limit that never trips):
#   bare     Apache without a limiter
#   local    mod_ratelimit2, one per-address token bucket, local zone,
#            headers on
#   redis    the same counted in a redis-server started here (only
#            Apache's instructions are counted, not Redis')
#   qos      mod_qos, QS_ClientEventLimitCount per client address
#   evasive  mod_evasive, DOSPageCount and DOSSiteCount
# Method (DEVELOPERS): apache2 -X under valgrind --tool=callgrind, serve 5
# and then 1,005 requests with ab -c1, report (total_1005 - total_5)/1000.
# MPM=prefork|event (default event) picks Apache's MPM: under prefork (one
# process, no worker threads) the count repeats to within a few
# instructions; the event MPM's thread wake-ups move it by a few hundred.
# Prints "MODE INSTRUCTIONS".  Set KEEP=FILE to keep the 1,005-run profile.
set -u
MODE=${1:-local}
source "$(dirname "$0")/lib.sh"

case "$MODE" in
bare | local | qos | evasive) ;;
redis) bench_redis || { echo "redis-server did not start" >&2; exit 1; } ;;
*) echo "unknown mode $MODE" >&2; exit 2 ;;
esac
D=$T_DIR/cg
P=$(free_port)
apache_bench "$D" "$P" "${MPM:-event}" "$MODE" free
# Run as nobody from the start: Apache then never switches user, and
# callgrind can write its profile.
chmod -R 777 "$D"

# total N -- instructions of one apache2 -X run serving N requests
total() {
    local z
    rm -f "$D"/cg.*.out
    # Both runs create the zone: one that survived the first run would
    # spare the second the zone's initialisation and bias the difference
    # by its size.
    for z in "$T_DIR"/zones/*; do
        [ -e "$z" ] && rm -f "/dev/shm/$(basename "$z")"*
    done
    runuser -u nobody -- valgrind --tool=callgrind \
        --callgrind-out-file="$D/cg.%p.out" \
        /usr/sbin/apache2 -X -f "$D/httpd.conf" >"$D/vg.log" 2>&1 &
    local vp=$!
    for _ in $(seq 1 300); do rl2_port_busy "$P" && break; sleep 0.1; done
    ab -q -c1 -n "$1" "http://127.0.0.1:$P/index.html" >"$D/ab.log" 2>&1
    kill -TERM "$(cat "$D/httpd.pid")"
    wait "$vp"
    if ! grep -q '^Non-2xx' "$D/ab.log" \
            && grep -q "^Complete requests: *$1\$" "$D/ab.log"; then
        grep -h '^summary:' "$D"/cg.*.out | awk '{ s += $2 } END { print s }'
    else
        echo "$MODE: not every request was answered 200:" >&2
        cat "$D/ab.log" "$D/logs/error.log" >&2
    fi
}

t5=$(total 5)
[ -n "${KEEP:-}" ] && cp "$(ls -S "$D"/cg.*.out | head -1)" "$KEEP.5"
t1005=$(total 1005)
[ -n "${KEEP:-}" ] && cp "$(ls -S "$D"/cg.*.out | head -1)" "$KEEP"
[ -n "$t5" ] && [ -n "$t1005" ] || exit 1
if [ "$MODE" = redis ]; then
    # Failover would answer from the local zone: prove Redis answered
    # (FCALL, or EVALSHA where functions are refused).
    calls=$(redis-cli -p "$RP" info commandstats | tr -d '\r' \
        | sed -En 's/^cmdstat_(fcall|evalsha):calls=([0-9]*),.*/\2/p' \
        | awk '{ s += $1 } END { print s + 0 }')
    if [ "${calls:-0}" -lt 1010 ]; then
        echo "redis: only ${calls:-0} FCALL/EVALSHA for 1,010 requests" >&2
        exit 1
    fi
fi
echo "$MODE $(( (t1005 - t5) / 1000 ))"
