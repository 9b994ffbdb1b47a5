#!/bin/bash
# t_redis.sh -- one limit across two Apache servers through one real
# redis-server, and what happens when Redis goes away: decisions continue
# on local counters (failover "local"), one alert each way, decisions go
# back to Redis when it returns; failover "closed" answers 503.
source "$(dirname "$0")/lib.sh"

redis_start_first

# A syslog stand-in the alerts go to ($SINK, lines in $LOG).
sink_start

# apache_redis NAME [extra directives] -- an Apache counting in Redis;
# its port is left in $PORT (not echoed: a command substitution would run
# it in a subshell and lose its pid file for the cleanup).
apache_redis() {
    local d=$T_DIR/$1 p
    p=$(free_port)
    apache_conf "$d" "$p" event
    cat >"$d/site.conf" <<CONF
RateLimit2Zone $(zone_name "$1") 10000
RateLimit2Redis 127.0.0.1:$RP timeout=300
RateLimit2Alerts On socket=$SINK interval=60
${2:-}
$(algo_locations)
<Location /sw>
    RateLimit2Limit sw 100/1h algorithm=sliding_window
</Location>
<Location /quota>
    RateLimit2Limit daily 100/day algorithm=quota
</Location>
<Location /three>
    RateLimit2Limit three 3/1h algorithm=sliding_log
</Location>
<Location /free>
    RateLimit2Limit free 100000/1h algorithm=token_bucket
</Location>
CONF
    site_pages "$d/htdocs" fw sl tb lb sw quota three free
    apache_start "$d" || return 1
    PORT=$p
}

apache_redis a || { not_ok "apache a starts"; done_testing; exit 1; }
PA=$PORT
apache_redis b || { not_ok "apache b starts"; done_testing; exit 1; }
PB=$PORT

# ---- one quota across two servers ----
# Its fixed window counts an hour of Redis TIME, the quota a UTC day:
# the runs below must not straddle the end of either (at an hour's end
# the fixed window admitted 200).
window_room 3600 60
for alg in fw sl tb lb; do
    admitted 500 32 "http://127.0.0.1:$PA/$alg/x" >"$T_DIR/$alg.a" &
    ja=$!
    admitted 500 32 "http://127.0.0.1:$PB/$alg/x" >"$T_DIR/$alg.b" &
    wait $ja $!   # not a bare wait: the syslog sink never ends
    a=$(cat "$T_DIR/$alg.a")
    b=$(cat "$T_DIR/$alg.b")
    is "$alg: a quota of 100 split across two servers admits exactly 100" \
       100 $((a + b))
done
# sliding_window weighs the previous window: exact within one window,
# within 1% in general; a calendar quota is exact.
for alg in sw quota; do
    admitted 500 32 "http://127.0.0.1:$PA/$alg/x" >"$T_DIR/$alg.a" &
    ja=$!
    admitted 500 32 "http://127.0.0.1:$PB/$alg/x" >"$T_DIR/$alg.b" &
    wait $ja $!
    total=$(( $(cat "$T_DIR/$alg.a") + $(cat "$T_DIR/$alg.b") ))
    if [ "$total" -ge 99 ] && [ "$total" -le 101 ]; then
        ok "$alg: across two servers within 1% of 100 ($total)"
    else
        not_ok "$alg: across two servers within 1% of 100 ($total)"
    fi
done
is "quota: a daily quota of 100 across two servers admits exactly 100" \
   100 $(( $(cat "$T_DIR/quota.a") + $(cat "$T_DIR/quota.b") ))
keys=$(redis-cli -p "$RP" --scan --pattern 'rl2:{*' | wc -l)
if [ "$keys" -ge 4 ]; then
    ok "the counters live in Redis ($keys keys)"
else
    not_ok "the counters live in Redis ($keys keys)"
fi

# ---- Redis killed: local counters, one alert, no 5xx ----
kill -KILL "$(cat "$RDIR/redis.pid")"
rm -f "$RDIR/redis.pid"
out=$(ab -q -n 200 -c 8 "http://127.0.0.1:$PA/free/x" 2>&1)
is "redis down: every request still answered" "200" \
   "$(printf '%s\n' "$out" | sed -n 's/^Complete requests: *//p')"
is "redis down: no 5xx (ab sees no non-2xx)" "" \
   "$(printf '%s\n' "$out" | sed -n 's/^Non-2xx responses: *//p')"
sleep 0.5
is "exactly one redis_down line for server a" "1" \
   "$(grep -c 'event=redis_down' "$LOG")"
like "the alert line is key=value with a fixed prefix" \
     'ratelimit2: event=redis_down' "$(cat "$LOG")"

# ---- Redis back: decisions return to Redis ----
redis_start || not_ok "redis-server restarts"
# On a limit whose key outlives the check: a token bucket of 100000/1h
# keeps its key 36 ms after a request, which a loaded machine's redis-cli
# could start too late to see.  From another address: 127.0.0.1 is over
# the sw limit, and the over-limit cache refuses it without asking Redis
# until that refusal ends.
back=0
for _ in $(seq 1 100); do
    code "http://127.0.0.1:$PA/sw/x" --interface 127.0.0.2 >/dev/null
    if [ "$(redis-cli -p "$RP" --scan --pattern 'rl2:{*' | wc -l)" -gt 0 ]; then
        back=1
        break
    fi
    sleep 0.1
done
is "redis back: counters appear in Redis again within 10 s" 1 "$back"
sleep 0.5
is "exactly one redis_up line" "1" "$(grep -c 'event=redis_up' "$LOG")"

# ---- failover closed: 503 with Retry-After while Redis is down ----
apache_redis c "RateLimit2Failover closed probe=2000" \
    || not_ok "apache c starts"
PC=$PORT
apache_redis d "RateLimit2Failover open" || not_ok "apache d starts"
PD=$PORT
kill -KILL "$(cat "$RDIR/redis.pid")"
rm -f "$RDIR/redis.pid"
h=$(curl -s -D - -o /dev/null "http://127.0.0.1:$PC/free/x")
like "failover closed: 503 while Redis is down" '^HTTP/1.1 503' "$h"
like "failover closed: with Retry-After" 'Retry-After: [0-9]+' "$h"
codes=""
for _ in 1 2 3 4 5 6; do
    codes="$codes $(code "http://127.0.0.1:$PD/three/x")"
done
is "failover open: everything passes while Redis is down" \
   " 200 200 200 200 200 200" "$codes"

# ---- a bad store directive stops configtest with a clear message ----
D=$T_DIR/bad
apache_conf "$D" "$(free_port)" event
echo "RateLimit2Redis 127.0.0.1:6379 dbx=1" >"$D/site.conf"
out=$(apache_configtest "$D")
like "a bad RateLimit2Redis option fails configtest, naming it" \
     'RateLimit2Redis: redis: unknown option "dbx"' "$out"
echo "RateLimit2Failover sideways" >"$D/site.conf"
like "a bad failover mode fails configtest" 'RateLimit2Failover: ' \
     "$(apache_configtest "$D")"

done_testing
