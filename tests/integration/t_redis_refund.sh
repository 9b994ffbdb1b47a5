#!/bin/bash
# t_redis_refund.sh -- a concurrency slot held through Redis survives a
# 200 ms SIGSTOP of Redis.  One event-MPM Apache counts in a
# redis-server with a 50 ms command timeout, failover `closed` (so a 200
# can only come from Redis) and a 100 ms probe.  A CGI holds its slot
# until the suite creates the file its query names, so the suite decides
# when each stream ends; every wait polls a condition.
#
# 1. A stream holds the only slot of a limit of 1.  Redis is stopped, a
#    request on another limit times out and opens the circuit, then the
#    stream ends: its release is queued (the metrics say so), not lost.
#    Redis resumes after 200 ms; within 5 s a new request on the limit is
#    admitted (the probe found Redis back and the release was replayed),
#    not an hour later when the slot's key expires.
# 2. Two streams hold 2 slots of a limit of 2; Redis is stopped while the
#    circuit is closed, and one stream ends: its release is sent to the
#    stopped server, times out and is counted failed, not queued.  Redis
#    runs it when it resumes (1 slot held).  A third stream is admitted
#    and a fourth refused: the release was applied once, not twice.
source "$(dirname "$0")/lib.sh"

# A stopped Redis ignores the exit trap's SIGTERM: resume it first, on
# every exit path.
redis_cont() {
    [ -f "$T_DIR/redis/redis.pid" ] \
        && kill -CONT "$(cat "$T_DIR/redis/redis.pid")" 2>/dev/null
    return 0
}
trap 'redis_cont; rl2_cleanup' EXIT

redis_start_first
RPID=$(cat "$T_DIR/redis/redis.pid")
D=$T_DIR/a
P=$(free_port)
U="http://127.0.0.1:$P"
REL=$T_DIR/release
mkdir -p "$REL"
chmod 755 "$REL"

apache_conf "$D" "$P" event
mkdir -p "$D/cgi-bin"
cat >"$D/cgi-bin/hold" <<CGI
#!/bin/sh
# Answers once $REL/<query> exists.
case "\$QUERY_STRING" in *[!a-z0-9]*|'') exit 1 ;; esac
while [ ! -e "$REL/\$QUERY_STRING" ]; do sleep 0.01; done
printf 'Content-Type: text/plain\r\n\r\ndone\n'
CGI
chmod 755 "$D/cgi-bin" "$D/cgi-bin/hold"
echo ok >"$D/htdocs/trip"
cat >"$D/site.conf" <<CONF
RateLimit2Zone $(zone_name a) 10000
RateLimit2Redis 127.0.0.1:$RP connect_timeout=50 timeout=50
RateLimit2Failover closed probe=100
ScriptSock "$D/cgid.sock"
ScriptAlias /one/ "$D/cgi-bin/"
ScriptAlias /two/ "$D/cgi-bin/"
<Location /one/>
    RateLimit2Limit one 1 algorithm=concurrency
</Location>
<Location /two/>
    RateLimit2Limit two 2 algorithm=concurrency
</Location>
<Location /trip>
    RateLimit2Limit trip 100000/1h
</Location>
<Location /rl2/metrics>
    RateLimit2Engine Off
    SetHandler ratelimit2-metrics
</Location>
CONF
apache_start "$D" || { not_ok "apache starts"; done_testing; exit 1; }

# metric SERIES -- its value in the metrics, "" when absent.
metric() {
    curl -s --max-time 5 "$U/rl2/metrics" \
        | awk -v s="$1" '$1 == s { print $2 }'
}

# metric_becomes SERIES VALUE -- its value once it is VALUE (5 s at most;
# then what it is).
metric_becomes() {
    local v
    for _ in $(seq 1 100); do
        v=$(metric "$1")
        [ "$v" = "$2" ] && break
        sleep 0.05
    done
    echo "$v"
}

# slots_held -- the slots Redis counts: the sum of the concurrency
# states (a bare count; the other algorithms' states have a ':').
slots_held() {
    local k v n=0
    for k in $(redis-cli -p "$RP" --scan --pattern 'rl2:{*'); do
        v=$(redis-cli -p "$RP" GET "$k")
        case "$v" in '' | *[!0-9]*) ;; *) n=$((n + v)) ;; esac
    done
    echo "$n"
}

# slots_become N -- slots_held once it is N (5 s at most; then what it is).
slots_become() {
    local n
    for _ in $(seq 1 100); do
        n=$(slots_held)
        [ "$n" = "$1" ] && break
        sleep 0.05
    done
    echo "$n"
}

# stream PATH NAME -- a request that holds its slot until release NAME;
# its status goes to $T_DIR/NAME.code, its pid to $STREAM.
stream() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 60 \
        "$U/$1/hold?$2" >"$T_DIR/$2.code" &
    STREAM=$!
}

# stop_redis / resume_redis -- SIGSTOP, and SIGCONT once 200 ms have
# passed since the stop (the length of the outage, not a wait for
# anything).
stop_redis() {
    kill -STOP "$RPID"
    STOPPED_NS=$(date +%s%N)
}
resume_redis() {
    local left_ms
    left_ms=$((200 - ($(date +%s%N) - STOPPED_NS) / 1000000))
    [ "$left_ms" -gt 0 ] && sleep "0.$(printf '%03d' "$left_ms")"
    kill -CONT "$RPID"
}

# admitted_within S PATH -- poll $U/PATH (a stream's release file
# already exists) every 20 ms until it is admitted, S seconds at most;
# prints the milliseconds it took, or "never" and the codes seen.
admitted_within() {
    local start end c seen=""
    start=$(date +%s%N)
    end=$((start + $1 * 1000000000))
    while [ "$(date +%s%N)" -lt "$end" ]; do
        c=$(code --max-time 5 "$U/$2")
        [ "$c" = 200 ] && { echo $((($(date +%s%N) - start) / 1000000)); return; }
        case " $seen " in *" $c "*) ;; *) seen="$seen $c" ;; esac
        sleep 0.02
    done
    echo "never (saw:$seen)"
}

is "the circuit starts closed" 1 "$(metric 'ratelimit2_circuit_state{state="closed"}')"

# ---- 1. a release while the circuit is open is queued and replayed ----
stream one a
A=$STREAM
is "a stream holds the slot in Redis" 1 "$(slots_become 1)"
stop_redis
is "Redis stopped: a request times out and is refused (failover closed)" \
    503 "$(code --max-time 5 "$U/trip")"
is "... and the circuit is open" 1 \
    "$(metric 'ratelimit2_circuit_state{state="open"}')"
touch "$REL/a"
wait "$A"
is "the stream ends" 200 "$(cat "$T_DIR/a.code")"
is "its release, while the circuit is open, is queued for Redis" 1 \
    "$(metric_becomes 'ratelimit2_redis_refunds_total{outcome="queued"}' 1)"
is "... one refund pending, none dropped" "1 0" \
    "$(metric ratelimit2_redis_refunds_pending) $(metric \
       'ratelimit2_redis_refunds_total{outcome="dropped"}')"
resume_redis
touch "$REL/b"
took=$(admitted_within 5 "one/hold?b")
like "Redis back after 200 ms: the slot is free again within 5 s ($took ms)" \
    '^[0-9]+$' "$took"
is "the queued release was replayed" 1 \
    "$(metric 'ratelimit2_redis_refunds_total{outcome="replayed"}')"
is "... and nothing is pending" 0 "$(metric ratelimit2_redis_refunds_pending)"
is "no slot is left in Redis once the streams ended" 0 "$(slots_become 0)"

# ---- 2. a release sent to the stopped server is applied once ----
stream two c
C=$STREAM
stream two d
DD=$STREAM
is "two streams hold both slots" 2 "$(slots_become 2)"
is "the circuit is closed" 1 "$(metric 'ratelimit2_circuit_state{state="closed"}')"
stop_redis
touch "$REL/c"
wait "$C"
is "a stream ends while Redis is stopped" 200 "$(cat "$T_DIR/c.code")"
is "its release got no answer: counted failed" 1 \
    "$(metric_becomes 'ratelimit2_redis_refunds_total{outcome="failed"}' 1)"
is "... not queued" "1 0" \
    "$(metric 'ratelimit2_redis_refunds_total{outcome="queued"}') $(metric \
       ratelimit2_redis_refunds_pending)"
resume_redis
is "Redis ran the release it had received when it resumed: 1 slot held" 1 \
    "$(slots_become 1)"
took=$(admitted_within 5 trip)
like "the probe closes the circuit again ($took ms)" '^[0-9]+$' "$took"
stream two e
E=$STREAM
is "a third stream takes the free slot" 2 "$(slots_become 2)"
touch "$REL/f"
is "a fourth is refused: the release was applied once, not twice" 429 \
    "$(code --max-time 5 "$U/two/hold?f")"
touch "$REL/d" "$REL/e"
wait "$DD" "$E"
is "both streams end" "200 200" \
    "$(cat "$T_DIR/d.code") $(cat "$T_DIR/e.code")"
is "no slot is left in Redis" 0 "$(slots_become 0)"

apache_stop "$D"
done_testing
