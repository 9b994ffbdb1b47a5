#!/bin/bash
# t_redis_policy.sh -- Redis, failover and alerts configured only in the
# policy file (its redis, failover and alerts groups): Apache and
# lighttpd + ratelimit2-fcgi, given nothing but the file, count one quota
# in one redis-server; a directive or option replaces the file's group;
# bad values stop configtest and the daemon with file:line; the example
# policies for each Redis topology pass configtest.
. "$(dirname "$0")/fcgi_lib.sh"

redis_start_first
sink_start

POLICY=$T_DIR/policy.conf
cat >"$POLICY" <<POLICY
redis = { server = "127.0.0.1:$RP"; timeout = 1000; };
failover = { mode = "local"; probe = 500; };
alerts = { socket = "$SINK"; interval = 60; };
rules = (
  { name = "fw"; paths = "/fw/**";
    limits = ( { rate = "100/hour"; algorithm = "fixed_window"; } ); },
  { name = "hour"; paths = "/hour/**";
    limits = ( { rate = "1000/hour"; algorithm = "fixed_window"; } ); },
  { name = "free"; paths = "/free/**";
    limits = ( { rate = "100000/hour"; algorithm = "token_bucket"; } ); }
);
POLICY

# ---- Apache: RateLimit2Policy, no store directive ----
A=$T_DIR/apache
PA=$(free_port)
apache_conf "$A" "$PA" event
cat >"$A/site.conf" <<CONF
RateLimit2Zone $(zone_name ap) 10000
RateLimit2Policy "$POLICY"
CONF
site_pages "$A/htdocs" fw free
apache_start "$A" || { not_ok "apache starts"; done_testing; exit 1; }
ok "apache starts with the policy file only"
for _ in $(seq 1 50); do
    grep -q 'shared through Redis' "$A/logs/error.log" && break
    sleep 0.1
done
like "apache's log says it counts through Redis" 'shared through Redis' \
     "$(cat "$A/logs/error.log")"

# ---- lighttpd + ratelimit2-fcgi -c, no -R/-F/-A ----
D=$T_DIR/lighttpd
PL=$(free_port)
site_pages "$D/htdocs" fw free
chmod -R 755 "$D"
lighttpd_authorizer_conf "$D" "$PL" 1 '"mod_fastcgi"' \
    "-c $POLICY -z $(zone_name lt) -t 8"
lighttpd_start "$D" || { not_ok "lighttpd starts"; done_testing; exit 1; }
ok "lighttpd starts with ratelimit2-fcgi -c only"
S="$D/rl2.sock-0"
for _ in $(seq 1 100); do [ -S "$S" ] && break; sleep 0.05; done
like "ratelimit2-fcgi's store is redis, from the file" \
     '"store":"redis","circuit":"closed"' "$(fcgi_health "$S")"

# ---- one quota across both ----
# The fixed window counts an hour of Redis TIME: the counts below must
# not straddle its end.
window_room 3600 60
first="$(code "http://127.0.0.1:$PA/fw/x") $(code "http://127.0.0.1:$PL/fw/x")"
is "one request through each server passes" "200 200" "$first"
admitted 300 16 "http://127.0.0.1:$PA/fw/x" >"$T_DIR/fw.a" &
ja=$!
admitted 300 16 "http://127.0.0.1:$PL/fw/x" >"$T_DIR/fw.l" &
jl=$!
wait "$ja" "$jl"
a=$(cat "$T_DIR/fw.a")
l=$(cat "$T_DIR/fw.l")
is "100 split across Apache and lighttpd admits exactly 100 (apache $a, \
lighttpd $l, 2 first)" 100 $((2 + a + l))
# Counter keys are rl2:{DIGEST}:s (the violation log's stream,
# rl2:violations, is not one).
is "the shared counter lives in the file's Redis" 1 \
   "$(redis-cli -p "$RP" --scan --pattern 'rl2:{*' | wc -l)"

# ---- ratelimit2ctl reads the same Redis from the file, without -R ----
st=$("$BUILD/ctl/ratelimit2ctl" -c "$POLICY" -z "$(zone_name ap)" -p /fw/x \
    status 127.0.0.1)
like "ratelimit2ctl status names the file's Redis as its store" \
     'store redis' "$st"
is "ratelimit2ctl status sees the quota spent in Redis (remaining 0)" 0 \
   "$(printf '%s\n' "$st" | awk '$1 == "fw" { print $6 }')"

# ---- a directive or option replaces the file's redis group ----
# A second redis-server in its own directory (redis_start's is taken).
RP1=$RP
RP2=$(free_port)
R2=$T_DIR/redis2
redis_start_at "$RP2" "$R2"
B=$T_DIR/apache-b
PB=$(free_port)
apache_conf "$B" "$PB" event
cat >"$B/site.conf" <<CONF
RateLimit2Zone $(zone_name apb) 10000
RateLimit2Policy "$POLICY"
RateLimit2Redis 127.0.0.1:$RP2 timeout=2000
CONF
site_pages "$B/htdocs" fw free
apache_start "$B" || not_ok "apache b starts"
is "RateLimit2Redis wins over the file: b's request passes" 200 \
   "$(code "http://127.0.0.1:$PB/fw/x")"
is "... and is counted in the directive's Redis" 1 \
   "$(redis-cli -p "$RP2" --scan --pattern 'rl2:{*' | wc -l)"
FP=$(free_port)
fcgi_start opt -c "$POLICY" -z "$(zone_name opt)" -t 2 -s "127.0.0.1:$FP" \
    -R "127.0.0.1:$RP2" -O timeout=2000,connect_timeout=2000
r=$("$FCGI_CLIENT" "127.0.0.1:$FP" REMOTE_ADDR=127.0.0.1 \
    REQUEST_METHOD=GET REQUEST_URI=/hour/x | tr -d '\r' | head -1)
is "ratelimit2-fcgi -R wins over the file: allowed" "Status: 200 OK" "$r"
# (Fixed windows: a token bucket's key of 100000/hour expires in 36 ms.)
is "... and counted in -R's Redis (fw from apache b, hour from -R)" 2 \
   "$(redis-cli -p "$RP2" --scan --pattern 'rl2:{*' | wc -l)"
is "... and not in the file's" 1 \
   "$(redis-cli -p "$RP1" --scan --pattern 'rl2:{*' | wc -l)"
fcgi_stop opt
is "the -R daemon exits 0 on SIGTERM" 0 $?

# -F alone, with the file's redis group: accepted (it refines the file).
P2=$T_DIR/policy2.conf
cp "$POLICY" "$P2"
FP=$(free_port)
fcgi_start fonly -c "$P2" -z "$(zone_name fo)" -t 2 \
    -s "127.0.0.1:$FP" -F open -A off
h=$("$FCGI_CLIENT" -r responder "127.0.0.1:$FP" REMOTE_ADDR=127.0.0.1 \
    REQUEST_METHOD=GET REQUEST_URI=/ratelimit2/health | sed -n '/^{/p')
like "-F and -A without -R use the file's Redis" '"store":"redis"' "$h"
# A reload keeps the store: a changed redis group is reported, not applied.
sed -i 's/timeout = 1000;/timeout = 900;/' "$P2"
kill -HUP "$(cat "$T_DIR/fonly.pid")"
for _ in $(seq 1 50); do
    grep -q 'read at start only' "$T_DIR/fonly.log" && break
    sleep 0.1
done
like "SIGHUP with a changed redis group: a warning to restart" \
     'redis, failover and alerts are read at start only' \
     "$(cat "$T_DIR/fonly.log")"
fcgi_stop fonly

# ---- the file's alerts and failover: Redis killed ----
kill -KILL "$(cat "$RDIR/redis.pid")"
rm -f "$RDIR/redis.pid"
out=$(ab -q -n 100 -c 4 "http://127.0.0.1:$PA/free/x" 2>&1)
is "redis down: apache answers everything (failover local from the file)" \
   100 "$(printf '%s\n' "$out" | sed -n 's/^Complete requests: *//p')"
is "redis down: no non-2xx" "" \
   "$(printf '%s\n' "$out" | sed -n 's/^Non-2xx responses: *//p')"
for _ in $(seq 1 50); do
    grep -q 'event=redis_down' "$LOG" && break
    sleep 0.1
done
like "the alert goes to the file's socket" 'ratelimit2: event=redis_down' \
     "$(cat "$LOG")"

# ---- bad values: file:line from configtest and from the daemon ----
BAD=$T_DIR/bad.conf
printf 'mode = "enforce";\nredis = {\n  server = "127.0.0.1:0";\n};\n' \
    >"$BAD"
C=$T_DIR/cfg
apache_conf "$C" "$(free_port)" event
echo "RateLimit2Policy \"$BAD\"" >"$C/site.conf"
like "a bad redis server fails configtest with file:line" \
     "bad.conf:3: redis: .127.0.0.1:0.: the port must be a number" \
     "$(apache_configtest "$C")"
"$FCGI_BIN" -c "$BAD" -s 127.0.0.1:1 2>"$T_DIR/bad.log"
rc=$?
if [ "$rc" -ne 0 ]; then ok "ratelimit2-fcgi refuses it (exit $rc)"
else not_ok "ratelimit2-fcgi refuses it (exit $rc)"; fi
like "... naming file:line" \
     "bad.conf:3: redis: .127.0.0.1:0.: the port must be a number" \
     "$(cat "$T_DIR/bad.log")"
printf 'failover = {\n  mode = "closed";\n  share = 7;\n};\n' >"$BAD"
like "a bad failover share fails configtest with file:line" \
     "bad.conf:3: " "$(apache_configtest "$C")"

# ---- virtual hosts: the store is the main server's ----
# vhost_conf DIR VHOST_POLICY -- a server whose virtual host has its own
# RateLimit2Policy.
vhost_conf() {
    local p
    p=$(free_port)
    apache_conf "$1" "$p" event
    cat >"$1/site.conf" <<CONF
RateLimit2Zone $(zone_name "vh$p") 1000
RateLimit2Policy "$POLICY"
<VirtualHost 127.0.0.1:$p>
    ServerName vhost.example
    RateLimit2Policy "$2"
</VirtualHost>
CONF
}
V=$T_DIR/vhost
vhost_conf "$V" "$POLICY"
if apache_start "$V"; then
    ok "a virtual host reading the same policy file starts"
else
    not_ok "a virtual host reading the same policy file starts"
fi
apache_stop "$V"
W=$T_DIR/vhost-other
sed "s/timeout = 1000;/timeout = 999;/" "$POLICY" >"$T_DIR/other.conf"
vhost_conf "$W" "$T_DIR/other.conf"
RL2_PIDFILES+=("$W/httpd.pid")
env $(rl2_apache_env) /usr/sbin/apache2 -f "$W/httpd.conf" -k start \
    >/dev/null 2>&1
for _ in $(seq 1 50); do
    grep -q "main server's policy only" "$W/logs/error.log" 2>/dev/null \
        && break
    sleep 0.1
done
like "a virtual host's policy with other store groups stops the start" \
     "other.conf: redis, failover and alerts are read from the main" \
     "$(cat "$W/logs/error.log" 2>/dev/null)"

# ---- the example policies for each Redis topology ----
for ex in policy-redis-standalone policy-redis-unix policy-redis-sentinel; do
    echo "RateLimit2Policy \"$RL2_ROOT/conf/examples/$ex.conf\"" \
        >"$C/site.conf"
    like "conf/examples/$ex.conf passes configtest" 'Syntax OK' \
         "$(apache_configtest "$C")"
done

lighttpd_stop "$D"
apache_stop "$A"
apache_stop "$B"
done_testing
