#!/bin/bash
# t_redis_sentinel.sh -- Apache finds its Redis master through Sentinel
# and follows a failover: a master, a replica and one sentinel on loopback;
# the master is killed, the sentinel promotes the replica, and requests go
# on being answered (no 5xx) while the counters move to the new master.
source "$(dirname "$0")/lib.sh"

P1=$(free_port)
P2=$(free_port)
PS=$(free_port)
SDIR=$T_DIR/sentinel
mkdir -p "$SDIR/m" "$SDIR/r" "$SDIR/s"

# sredis NAME PORT [args...] -- a redis-server with its files in
# $SDIR/NAME, stopped at exit; 0 once it answers PING.
sredis() {
    local name=$1 port=$2
    shift 2
    redis-server "$@" --port "$port" --bind 127.0.0.1 --save '' \
        --appendonly no --dir "$SDIR/$name" --daemonize yes \
        --pidfile "$SDIR/$name/redis.pid" \
        --logfile "$SDIR/$name/redis.log" >/dev/null
    RL2_PIDFILES+=("$SDIR/$name/redis.pid")
    for _ in $(seq 1 100); do
        redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.05
    done
    return 1
}

sredis m "$P1" || { not_ok "the master starts"; done_testing; exit 1; }
sredis r "$P2" --replicaof 127.0.0.1 "$P1" \
    || { not_ok "the replica starts"; done_testing; exit 1; }
# The sentinel rewrites its file: it must be writable and its own.
cat >"$SDIR/s/sentinel.conf" <<CONF
sentinel monitor m 127.0.0.1 $P1 1
sentinel down-after-milliseconds m 1000
sentinel failover-timeout m 3000
CONF
redis-server "$SDIR/s/sentinel.conf" --sentinel --port "$PS" \
    --bind 127.0.0.1 --dir "$SDIR/s" --daemonize yes \
    --pidfile "$SDIR/s/redis.pid" --logfile "$SDIR/s/redis.log" >/dev/null
RL2_PIDFILES+=("$SDIR/s/redis.pid")

# master_port -- the port the sentinel names for m ("" if none).
master_port() {
    redis-cli -p "$PS" SENTINEL get-master-addr-by-name m 2>/dev/null \
        | sed -n 2p
}

for _ in $(seq 1 100); do
    [ "$(master_port)" = "$P1" ] && break
    sleep 0.05
done
is "the sentinel names the master" "$P1" "$(master_port)"
synced=0
for _ in $(seq 1 100); do
    if redis-cli -p "$P2" info replication \
            | grep -q 'master_link_status:up'; then
        synced=1
        break
    fi
    sleep 0.1
done
is "the replica follows the master" 1 "$synced"

D=$T_DIR/apache
PA=$(free_port)
apache_conf "$D" "$PA" event
cat >"$D/site.conf" <<CONF
RateLimit2Zone $(zone_name a) 10000
RateLimit2Redis sentinel:m@127.0.0.1:$PS timeout=300
<Location /free>
    RateLimit2Limit free 100000/1h algorithm=fixed_window
</Location>
<Location /after>
    RateLimit2Limit after 100000/1h algorithm=fixed_window
</Location>
CONF
site_pages "$D/htdocs" free after
apache_start "$D" || { not_ok "apache starts"; done_testing; exit 1; }
ok "apache starts with RateLimit2Redis sentinel:m@127.0.0.1:$PS"

is "before the failover: 50 requests admitted" 50 \
   "$(admitted 50 4 "http://127.0.0.1:$PA/free/x")"
keys=$(redis-cli -p "$P1" --scan --pattern 'rl2:{*' | wc -l)
if [ "$keys" -ge 1 ]; then
    ok "the counters live on the master the sentinel named ($keys keys)"
else
    not_ok "the counters live on the master the sentinel named (0 keys)"
fi

# The replica holds copies of these keys: only keys written after the
# failover (by /after, never asked before) show that the new master counts.
# Limit keys only ("rl2:{"): the usage a request pushes when it ends a
# minute ("rl2:usage:") would show a write that is no count.
for _ in $(seq 1 50); do
    [ "$(redis-cli -p "$P2" --scan --pattern 'rl2:{*' | wc -l)" -ge "$keys" ] \
        && break
    sleep 0.1
done
copied=$(redis-cli -p "$P2" --scan --pattern 'rl2:{*' | wc -l)

# ---- the master dies; the sentinel promotes the replica ----
kill -KILL "$(cat "$SDIR/m/redis.pid")"
rm -f "$SDIR/m/redis.pid"
promoted=0
non2xx=0
for _ in $(seq 1 150); do
    c=$(code "http://127.0.0.1:$PA/free/x")
    case "$c" in 2*) ;; *) non2xx=$((non2xx + 1)) ;; esac
    if [ "$(master_port)" = "$P2" ]; then
        promoted=1
        break
    fi
    sleep 0.2
done
is "the sentinel promotes the replica within 30 s" 1 "$promoted"
is "during the failover every request is answered 2xx" 0 "$non2xx"

# ---- the counters follow the new master ----
moved=0
for _ in $(seq 1 100); do
    c=$(code "http://127.0.0.1:$PA/after/x")
    case "$c" in 2*) ;; *) non2xx=$((non2xx + 1)) ;; esac
    n=$(redis-cli -p "$P2" --scan --pattern 'rl2:{*' | wc -l)
    if [ "$n" -gt "$copied" ]; then
        moved=1
        break
    fi
    sleep 0.1
done
is "after the failover the counters appear on the new master within 10 s" \
   1 "$moved"
[ "$moved" = 1 ] || tail -5 "$D/logs/error.log" | sed 's/^/# /'
out=$(ab -q -n 200 -c 8 "http://127.0.0.1:$PA/free/x" 2>&1)
is "after the failover: every request answered" "200" \
   "$(printf '%s\n' "$out" | sed -n 's/^Complete requests: *//p')"
is "after the failover: no 5xx (ab sees no non-2xx)" "" \
   "$(printf '%s\n' "$out" | sed -n 's/^Non-2xx responses: *//p')"
is "no non-2xx answer at any point" 0 "$non2xx"

# ---- a bad sentinel address stops configtest with a clear message ----
B=$T_DIR/bad
apache_conf "$B" "$(free_port)" event
echo "RateLimit2Redis sentinel:m@127.0.0.1" >"$B/site.conf"
like "a sentinel without a port fails configtest, naming it" \
     'RateLimit2Redis: redis: sentinel "127.0.0.1" is not HOST:PORT' \
     "$(apache_configtest "$B")"
echo "RateLimit2Redis sentinel:@127.0.0.1:26379" >"$B/site.conf"
like "a sentinel spec without a master name fails configtest" \
     'RateLimit2Redis: redis: expected sentinel:NAME@' \
     "$(apache_configtest "$B")"

done_testing
