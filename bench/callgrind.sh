#!/bin/bash
# callgrind.sh MODE -- instructions per request of Apache with MODE:
#   bare   Apache without mod_ratelimit2
#   local  mod_ratelimit2, one per-address token bucket that never trips,
#          local zone, headers on
# Method (DEVELOPERS): apache2 -X under valgrind --tool=callgrind, serve 5
# and then 1,005 requests with ab -c1, report (total_1005 - total_5)/1000.
# Prints "MODE INSTRUCTIONS".  Set KEEP=FILE to keep the 1,005-run profile.
set -u
MODE=${1:-local}
source "$(dirname "$0")/../tests/integration/lib.sh"

D=$T_DIR/cg
P=$(free_port)
apache_conf "$D" "$P" event
sed -i 's/^LogLevel info/LogLevel warn/' "$D/httpd.conf"
case "$MODE" in
bare)
    sed -i '/ratelimit2_module/d' "$D/httpd.conf" ;;
local)
    cat >"$D/site.conf" <<CONF
RateLimit2Zone $(zone_name cg) 10000
# Server-wide, as most sites would write it: a <Location> would add
# Apache's per-request section merge, which any module's section pays.
RateLimit2Limit perip 1000000/1h key=ip algorithm=token_bucket
CONF
    ;;
*)
    echo "unknown mode $MODE" >&2; exit 2 ;;
esac
# Run as nobody from the start: Apache then never switches user, and
# callgrind can write its profile.
chmod -R 777 "$D"

# total N -- instructions of one apache2 -X run serving N requests
total() {
    rm -f "$D"/cg.*.out
    # Each run creates its zone afresh: attaching to the previous run's
    # zone would skip the creation cost in one run and not the other.
    rm -f /dev/shm/rl2t-$$-cg*
    runuser -u nobody -- valgrind --tool=callgrind \
        --callgrind-out-file="$D/cg.%p.out" \
        /usr/sbin/apache2 -X -f "$D/httpd.conf" >"$D/vg.log" 2>&1 &
    local vp=$! i
    for i in $(seq 1 300); do rl2_port_busy "$P" && break; sleep 0.1; done
    ab -q -c1 -n "$1" "http://127.0.0.1:$P/index.html" >"$D/ab.log" 2>&1
    kill -TERM "$(cat "$D/httpd.pid")"
    wait "$vp"
    grep -h '^summary:' "$D"/cg.*.out | awk '{ s += $2 } END { print s }'
}

t5=$(total 5)
[ -n "${KEEP:-}" ] && cp "$(ls -S "$D"/cg.*.out | head -1)" "$KEEP.5"
t1005=$(total 1005)
[ -n "${KEEP:-}" ] && cp "$(ls -S "$D"/cg.*.out | head -1)" "$KEEP"
echo "$MODE $(( (t1005 - t5) / 1000 ))"
