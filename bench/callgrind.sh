#!/bin/bash
# callgrind.sh MODE -- instructions per request of Apache with MODE (the
# kinds of bench/lib.sh, each with a limit that never trips):
#   bare     Apache without a limiter
#   local    mod_ratelimit2, one per-address token bucket, local zone,
#            headers on
#   redis    the same counted in a redis-server started here (only
#            Apache's instructions are counted, not Redis')
#   bans     local, with 10,000 bans in the runtime override table (a
#            state file read when the table is made, before the first
#            request; none of them the client's); BENCH_BANS=N for N
#   factors  local, with every adaptive factor of the policy on (each
#            raising the limit, so that it never trips); BENCH_FACTORS="load
#            geo" for some of them
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
bare | local | bans | factors | qos | evasive) ;;
redis) bench_redis || { echo "redis-server did not start" >&2; exit 1; } ;;
*) echo "unknown mode $MODE" >&2; exit 2 ;;
esac
D=$T_DIR/cg
P=$(free_port)
apache_bench "$D" "$P" "${MPM:-event}" "$MODE" free
# Run as nobody from the start: Apache then never switches user, and
# callgrind can write its profile.
chmod -R 777 "$D"

# Start-up of apache2 -X under callgrind takes about half a second on an
# idle machine and many times that on a loaded one: it is waited for by
# what it does (the pid file, written once the port is bound and the
# configuration done), and this deadline, in seconds, is only reached when
# something is wrong.
START_DEADLINE=${CALLGRIND_START_DEADLINE:-600}
# The exit trap (tests/integration/lib.sh) stops a server left running.
RL2_PIDFILES+=("$D/httpd.pid")

# why -- what the server said, for a failure: valgrind's and Apache's
# stderr (a start-up failure, such as a port it could not bind, is only
# there) and the error log.
why() {
    local f
    for f in "$D/vg.log" "$D/logs/error.log"; do
        if [ -s "$f" ]; then
            echo "--- $f" >&2
            tail -40 "$f" >&2
        fi
    done
}

# stop SIGNAL PID... -- SIGNAL to each, then wait for the server
# (runuser, which returns once Apache has exited).
stop() {
    local sig=$1
    shift
    [ $# -gt 0 ] && kill "-$sig" "$@" 2>/dev/null
    wait "$VP"
    rm -f "$D/httpd.pid"
}

# up -- apache2 -X under callgrind, as nobody, on $P; 0 once it serves,
# with VP the pid of runuser and AP that of Apache, its child.  free_port
# only saw $P free: any process on the machine may bind it before Apache
# does, and the port is unbound from one run to the next.  Apache then
# exits at once ("could not bind"): the run starts again on another port
# (the port number does not change the difference of the two totals).
up() {
    local tries=0 deadline pid z taken
    # total runs in a subshell: a port changed by an earlier run is known
    # from httpd.conf only.
    P=$(sed -n 's/^Listen 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$D/httpd.conf")
    while :; do
        # Only this attempt's profile is summed.
        rm -f "$D"/cg.*.out
        # Both runs create the zone: one that survived the first run would
        # spare the second the zone's initialisation and bias the
        # difference by its size.
        for z in "$T_DIR"/zones/*; do
            [ -e "$z" ] && rm -f "/dev/shm/$(basename "$z")"*
        done
        # Apache -X leaves its pid file behind: a stale one must not pass
        # for this run's.
        rm -f "$D/httpd.pid"
        runuser -u nobody -- valgrind --tool=callgrind \
            --callgrind-out-file="$D/cg.%p.out" \
            /usr/sbin/apache2 -X -f "$D/httpd.conf" >"$D/vg.log" 2>&1 &
        VP=$!
        deadline=$((SECONDS + START_DEADLINE))
        while kill -0 "$VP" 2>/dev/null; do
            pid=$(cat "$D/httpd.pid" 2>/dev/null)
            if [ -n "$pid" ] \
                    && [ "$(ps -o ppid= -p "$pid" | tr -d ' ')" = "$VP" ] \
                    && rl2_port_busy "$P"; then
                AP=$pid
                return 0
            fi
            if [ "$SECONDS" -ge "$deadline" ]; then
                echo "$MODE: Apache under callgrind did not start on port" \
                     "$P within ${START_DEADLINE}s" >&2
                # shellcheck disable=SC2046 # one pid a word
                stop KILL $(ps -o pid= --ppid "$VP")
                why
                return 1
            fi
            sleep 0.1
        done
        wait "$VP"
        if grep -q 'could not bind to address' "$D/vg.log" \
                && [ "$tries" -lt 5 ]; then
            tries=$((tries + 1))
            taken=$P
            P=$(free_port)
            echo "# port $taken was taken before Apache could bind it;" \
                 "starting again on port $P" >&2
            sed -i "s/^Listen 127\.0\.0\.1:[0-9]*\$/Listen 127.0.0.1:$P/" \
                "$D/httpd.conf"
            continue
        fi
        echo "$MODE: Apache under callgrind exited during start-up:" >&2
        why
        return 1
    done
}

# total N -- instructions of one apache2 -X run serving N requests
# (bans: and one more, in both runs, from a banned address, which must be
# refused: the bans are in the table)
total() {
    local banned=429
    up || return
    ab -q -c1 -n "$1" "http://127.0.0.1:$P/index.html" >"$D/ab.log" 2>&1
    if [ "$MODE" = bans ]; then
        banned=$(code --interface 127.1.0.1 "http://127.0.0.1:$P/index.html")
    fi
    stop TERM "$AP"
    if [ "$banned" != 429 ]; then
        echo "$MODE: a banned address was answered $banned, not 429" >&2
        why
    elif ! grep -q '^Non-2xx' "$D/ab.log" \
            && grep -q "^Complete requests: *$1\$" "$D/ab.log"; then
        grep -h '^summary:' "$D"/cg.*.out | awk '{ s += $2 } END { print s }'
    else
        echo "$MODE: not every request was answered 200:" >&2
        cat "$D/ab.log" >&2
        why
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
