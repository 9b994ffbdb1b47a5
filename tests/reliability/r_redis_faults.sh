#!/bin/bash
# r_redis_faults.sh -- Redis killed, restarted and hung under load.
#
#   a (event) and b (prefork, 8+ processes) share one redis-server; each
#   alerts to its own datagram sink.  Redis is SIGKILLed in the middle of
#   an ab run on both: no 5xx, no request waits past the command timeout
#   plus one second, decisions go on in the local zone within the
#   local_share bound, one redis_down line per server however many
#   processes it has.  Redis restarted: its keys come back within 10 s,
#   one redis_up line per server.
#   c (event, long probe interval) meets a SIGSTOPped Redis under load: no
#   request waits past the timeout plus one second, and once the circuit
#   is open the load no longer reaches Redis (INFO commandstats), then it
#   recovers.
source "$(dirname "$0")/../integration/lib.sh"

TIMEOUT_MS=200
LOAD_S=5
[ "${RL2_SOAK:-0}" = 1 ] && LOAD_S=30

redis_start_first

# sink_at NAME -- a syslog stand-in at $T_DIR/NAME.sock writing
# $T_DIR/NAME.log, stopped at exit.
sink_at() {
    : >"$T_DIR/$1.log"
    "$BUILD/tools/rl2_dgram_sink" "$T_DIR/$1.sock" "$T_DIR/$1.log" \
        >/dev/null 2>&1 </dev/null &
    echo $! >"$T_DIR/$1.sink.pid"
    RL2_PIDFILES+=("$T_DIR/$1.sink.pid")
    for _ in $(seq 1 100); do [ -S "$T_DIR/$1.sock" ] && break; sleep 0.05; done
}

# apache_at NAME MPM PROBE_MS -- an Apache counting in Redis with failover
# local share=0.5; its port is left in $PORT.
apache_at() {
    local d=$T_DIR/$1 p
    p=$(free_port)
    sink_at "$1"
    apache_conf "$d" "$p" "$2"
    cat >>"$d/site.conf" <<CONF
RateLimit2Zone $(zone_name "$1") 10000
RateLimit2Redis 127.0.0.1:$RP timeout=$TIMEOUT_MS connect_timeout=$TIMEOUT_MS
RateLimit2Failover local share=0.5 probe=$3
RateLimit2Alerts On socket=$T_DIR/$1.sock interval=60
<Location /free>
    RateLimit2Limit free 1000000/1h algorithm=token_bucket
</Location>
<Location /q>
    RateLimit2Limit q 100/1h algorithm=sliding_log
</Location>
# Keys that outlive the test (a token bucket of a million per hour
# expires milliseconds after each request).
<Location /k>
    RateLimit2Limit k 1000/1h algorithm=sliding_window
</Location>
CONF
    site_pages "$d/htdocs" free q k
    apache_start "$d" || return 1
    PORT=$p
}

# ab_bg NAME URL -- ab for $LOAD_S seconds at -c 16 in the background,
# its output in $T_DIR/NAME.ab, its pid in $AB_PID.
ab_bg() {
    ab -q -t "$LOAD_S" -n 10000000 -c 16 -s 10 "$2" >"$T_DIR/$1.ab" 2>&1 &
    AB_PID=$!
}

abfield() {
    sed -n "s/^$2: *\\([0-9]*\\).*/\\1/p" "$T_DIR/$1.ab"
}

# check_load NAME WHAT -- every request of the ab run answered, 2xx, in
# time.
check_load() {
    local n failed non2xx longest
    n=$(abfield "$1" "Complete requests")
    failed=$(abfield "$1" "Failed requests")
    non2xx=$(abfield "$1" "Non-2xx responses")
    longest=$(sed -n 's/^ *100% *\([0-9]*\).*/\1/p' "$T_DIR/$1.ab")
    if [ "${n:-0}" -gt 100 ] && [ "$failed" = 0 ] && [ -z "$non2xx" ]; then
        ok "$2: all $n requests answered 2xx"
    else
        not_ok "$2: all requests answered 2xx (complete ${n:-?}," \
            "failed ${failed:-?}, non-2xx ${non2xx:-0})"
        tail -30 "$T_DIR/$1.ab" | sed 's/^/#   /'
    fi
    if [ -n "$longest" ] && [ "$longest" -le $((TIMEOUT_MS + 1000)) ]; then
        ok "$2: no request waited past timeout + 1 s (longest $longest ms)"
    else
        not_ok "$2: no request waited past timeout + 1 s" \
            "(longest ${longest:-?} ms)"
    fi
}

no5xx() {
    is "$1: no 5xx in the access log" 0 \
        "$(grep -c '" 5[0-9][0-9]$' "$T_DIR/$1/logs/access.log")"
}

# Calls of the store's Lua: FCALL, or EVALSHA and EVAL where functions are
# refused.
evals() {
    redis-cli -p "$RP" info commandstats | tr -d '\r' \
        | sed -En 's/^cmdstat_(fcall|evalsha|eval):calls=([0-9]*).*/\2/p' \
        | awk '{ s += $1 } END { print s + 0 }'
}

rl2_keys() {
    redis-cli -p "$RP" --scan --pattern 'rl2:{*' | wc -l
}

apache_at a event 1000 || { not_ok "apache a starts"; done_testing; exit 1; }
PA=$PORT
apache_at b prefork 1000 || { not_ok "apache b starts"; done_testing; exit 1; }
PB=$PORT
ok "apache a (event) and b (prefork) count in Redis"
is "before the outage: a answers" 200 "$(code "http://127.0.0.1:$PA/k/x")"
is "before the outage: b answers" 200 "$(code "http://127.0.0.1:$PB/k/x")"
[ "$(rl2_keys)" -gt 0 ] && ok "before the outage: keys in Redis" \
    || not_ok "before the outage: keys in Redis"

# ---- SIGKILL in the middle of the load ----
ab_bg a "http://127.0.0.1:$PA/free/x"
ja=$AB_PID
ab_bg b "http://127.0.0.1:$PB/free/x"
jb=$AB_PID
sleep 1.5
kill -KILL "$(cat "$RDIR/redis.pid")"
rm -f "$RDIR/redis.pid"
wait "$ja" "$jb"
nb=$(pgrep -c -P "$(cat "$T_DIR/b/httpd.pid")")
check_load a "redis killed, server a"
check_load b "redis killed, server b"
no5xx a
no5xx b
sleep 0.5
is "redis killed: exactly one redis_down line from a (event)" 1 \
    "$(grep -c 'event=redis_down' "$T_DIR/a.log")"
is "redis killed: exactly one redis_down line from b ($nb processes)" 1 \
    "$(grep -c 'event=redis_down' "$T_DIR/b.log")"

# Decisions go on in each local zone, each limit scaled by share=0.5:
# at most N x share x limit = 2 x 0.5 x 100 admitted across both.
admitted 300 8 "http://127.0.0.1:$PA/q/x" >"$T_DIR/q.a" &
ja=$!
admitted 300 8 "http://127.0.0.1:$PB/q/x" >"$T_DIR/q.b" &
wait "$ja" $!
qa=$(cat "$T_DIR/q.a")
qb=$(cat "$T_DIR/q.b")
is "redis down: server a decides on local counters (50 of 300)" 50 "$qa"
is "redis down: server b decides on local counters (50 of 300)" 50 "$qb"
if [ "$((qa + qb))" -le 100 ]; then
    ok "redis down: over-admission within N x share x limit ($((qa + qb)) <= 100)"
else
    not_ok "redis down: over-admission within N x share x limit ($((qa + qb)) > 100)"
fi

# ---- Redis restarted: keys come back, one redis_up each ----
redis_start || not_ok "redis-server restarts"
for s in a b; do
    port=$PA
    [ "$s" = b ] && port=$PB
    redis-cli -p "$RP" flushall >/dev/null
    back=0
    start=$(date +%s.%N)
    while [ "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{print (b-a<10)}')" = 1 ]; do
        code "http://127.0.0.1:$port/k/x" >/dev/null
        if [ "$(rl2_keys)" -gt 0 ]; then
            back=1
            break
        fi
        sleep 0.1
    done
    is "redis back: server $s writes its keys to Redis again within 10 s" 1 "$back"
done
sleep 0.5
is "redis back: exactly one redis_up line from a" 1 \
    "$(grep -c 'event=redis_up' "$T_DIR/a.log")"
is "redis back: exactly one redis_up line from b" 1 \
    "$(grep -c 'event=redis_up' "$T_DIR/b.log")"

# ---- SIGSTOP: hung Redis ----
# c probes every 8 s: the circuit, once open, stays open long enough to
# measure that the load does not reach Redis.
PROBE_MS=8000
apache_at c event $PROBE_MS || { not_ok "apache c starts"; done_testing; exit 1; }
PC=$PORT
c0=$(evals)
ab -q -n 200 -c 4 "http://127.0.0.1:$PC/free/x" >/dev/null 2>&1
c1=$(evals)
if [ "$((c1 - c0))" -ge 200 ]; then
    ok "control: 200 requests with Redis up are 200 scripts ($((c1 - c0)))"
else
    not_ok "control: 200 requests with Redis up are 200 scripts ($((c1 - c0)))"
fi

ab_bg c "http://127.0.0.1:$PC/free/x"
jc=$AB_PID
sleep 1
RPID=$(cat "$RDIR/redis.pid")
kill -STOP "$RPID"
t_stop=$(date +%s.%N)
# The circuit opens on the first command that times out (TIMEOUT_MS).
sleep 1
kill -CONT "$RPID"
# Redis now runs what timed-out connections left in its buffers; wait
# until the count settles, then count again after more of the load.
prev=-1
for _ in $(seq 1 10); do
    cur=$(evals)
    [ "$cur" = "$prev" ] && break
    prev=$cur
    sleep 0.3
done
s1=$(evals)
n1=$(wc -l <"$T_DIR/c/logs/access.log")
sleep 1.5
s2=$(evals)
n2=$(wc -l <"$T_DIR/c/logs/access.log")
elapsed=$(awk -v a="$t_stop" -v b="$(date +%s.%N)" 'BEGIN{printf "%d", (b-a)*1000}')
echo "# circuit open: $((n2 - n1)) requests, scripts $s1 -> $s2, ${elapsed} ms after SIGSTOP"
if [ "$elapsed" -lt $((PROBE_MS - 500)) ] && [ "$((n2 - n1))" -gt 100 ]; then
    is "redis hung: with the circuit open, $((n2 - n1)) requests run no script in Redis" \
        0 "$((s2 - s1))"
else
    not_ok "redis hung: the measurement fit before the probe (${elapsed} ms," \
        "$((n2 - n1)) requests)"
fi
wait "$jc"
check_load c "redis hung"
no5xx c
sleep 0.3
is "redis hung: exactly one redis_down line from c" 1 \
    "$(grep -c 'event=redis_down' "$T_DIR/c.log")"

# Recovery: after the probe interval the circuit closes again.
back=0
for _ in $(seq 1 $(((PROBE_MS + 4000) / 100))); do
    before=$(evals)
    code "http://127.0.0.1:$PC/free/x" >/dev/null
    if [ "$(evals)" -gt "$before" ]; then
        back=1
        break
    fi
    sleep 0.1
done
is "redis hung then resumed: requests reach Redis again after the probe" 1 "$back"
sleep 0.3
is "redis resumed: exactly one redis_up line from c" 1 \
    "$(grep -c 'event=redis_up' "$T_DIR/c.log")"
for s in a b c; do
    is "server $s: no child crashed" "" \
        "$(grep -E 'Segmentation fault|exit signal' "$T_DIR/$s/logs/error.log")"
done

done_testing
