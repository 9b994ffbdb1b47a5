#!/bin/bash
# t_fcgi_redis.sh -- Apache (mod_ratelimit2) and lighttpd (ratelimit2-fcgi
# as its authorizer, -R) counting in one redis-server under one policy
# file: a quota of 100 split across both admits exactly 100; two
# ratelimit2ctl -R changes and an automatic ban are three entries of the
# audit stream.  Then Redis is SIGKILLed: the authorizer keeps answering
# on local counters (failover local), with no 5xx; and a daemon in
# failover "closed" answers 503 with Retry-After.  The authorizer's health
# says its runtime override table mirrors Redis, in sync; while Redis is
# down, not in sync since the last sync (status "degraded"); in sync
# again once Redis is back.
. "$(dirname "$0")/fcgi_lib.sh"

redis_start_first

# A syslog stand-in the alerts go to ($SINK, lines in $LOG).
sink_start

# One policy for both servers: same rule and limit names, algorithms and
# windows, so both compute the same Redis keys for 127.0.0.1.
POLICY=$T_DIR/policy.conf
cat >"$POLICY" <<'POLICY'
rules = (
  { name = "fw"; paths = "/fw/**";
    limits = ( { rate = "100/hour"; algorithm = "fixed_window"; } ); },
  { name = "sl"; paths = "/sl/**";
    limits = ( { rate = "100/hour"; algorithm = "sliding_log"; } ); },
  { name = "tb"; paths = "/tb/**";
    limits = ( { rate = "100/hour"; algorithm = "token_bucket"; } ); },
  { name = "lb"; paths = "/lb/**";
    limits = ( { rate = "100/hour"; algorithm = "leaky_bucket"; } ); },
  { name = "free"; paths = "/free/**";
    limits = ( { rate = "100000/hour"; algorithm = "token_bucket"; } ); }
);
POLICY
DIRS="fw sl tb lb free"

# ---- Apache ----
A=$T_DIR/apache
PA=$(free_port)
apache_conf "$A" "$PA" event
cat >"$A/site.conf" <<CONF
RateLimit2Zone $(zone_name ap) 10000
RateLimit2Policy "$POLICY"
RateLimit2Redis 127.0.0.1:$RP timeout=300
RateLimit2Alerts On socket=$SINK interval=60
CONF
site_pages "$A/htdocs" $DIRS
apache_start "$A" || { not_ok "apache starts"; done_testing; exit 1; }
ok "apache starts with RateLimit2Redis and the policy file"

# ---- lighttpd with ratelimit2-fcgi -R ----
D=$T_DIR/lighttpd
PL=$(free_port)
Z=$(zone_name lt)
site_pages "$D/htdocs" $DIRS
chmod -R 755 "$D"
ARGS="-c $POLICY -z $Z -t 8 -R 127.0.0.1:$RP -O timeout=300"
ARGS="$ARGS -F local,probe=500 -A socket=$SINK,interval=60"
lighttpd_authorizer_conf "$D" "$PL" 1 '"mod_fastcgi"' "$ARGS"
if ! lighttpd_start "$D"; then
    not_ok "lighttpd starts with ratelimit2-fcgi -R"
    done_testing
    exit 1
fi
ok "lighttpd starts with ratelimit2-fcgi -R"
S="$D/rl2.sock-0"
for _ in $(seq 1 100); do [ -S "$S" ] && break; sleep 0.05; done

h=$(fcgi_health "$S")
like "health says the store is redis, circuit closed" \
    '"store":"redis","circuit":"closed"' "$h"
like "health: the override table mirrors Redis, in sync" \
    '^\{"status":"ok",.*"overrides":\{"source":"redis","in_sync":true,"last_sync":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{15}Z","entries":0\}' \
    "$h"

# health_until REGEX -- the health JSON once it matches REGEX (5 s at
# most; a sync is due once a second), else the last one; requests go
# through lighttpd meanwhile, so that the circuit moves on.
health_until() {
    local h
    for _ in $(seq 1 50); do
        h=$(fcgi_health "$S")
        printf '%s\n' "$h" | grep -Eq -- "$1" && break
        code "http://127.0.0.1:$PL/free/x" >/dev/null
        sleep 0.1
    done
    printf '%s\n' "$h"
}

# ---- one quota across Apache and lighttpd ----
quota_guard
for alg in fw sl tb lb; do
    # One request through each server first, so the count is shared
    # deterministically (which server wins the race below is not).
    first="$(code "http://127.0.0.1:$PA/$alg/x") \
$(code "http://127.0.0.1:$PL/$alg/x")"
    is "$alg: one request through each server passes" "200 200" "$first"
    admitted 500 32 "http://127.0.0.1:$PA/$alg/x" >"$T_DIR/$alg.a" &
    ja=$!
    admitted 500 32 "http://127.0.0.1:$PL/$alg/x" >"$T_DIR/$alg.l" &
    jl=$!
    wait "$ja" "$jl"   # never a bare wait: the sink and servers live on
    a=$(cat "$T_DIR/$alg.a")
    l=$(cat "$T_DIR/$alg.l")
    is "$alg: 100 split across Apache and lighttpd admits exactly 100 \
(2 first, then apache $a, lighttpd $l)" 100 $((2 + a + l))
done
# Counter keys only: rl2:violations is the violation log's stream.
keys=$(redis-cli -p "$RP" --scan --pattern 'rl2:{*' | wc -l)
is "one key per limit in Redis, shared by both servers" 4 "$keys"

# ---- ratelimit2-cgi counts in the same Redis (RATELIMIT2_REDIS) ----
TGT=$T_DIR/target.cgi
printf '#!/bin/sh\nprintf "Status: 200 OK\\r\\n\\r\\nran\\n"\n' >"$TGT"
chmod 755 "$TGT"
cgi_run() {
    env $(rl2_san_env) RATELIMIT2_POLICY="$POLICY" \
        RATELIMIT2_ZONE="$(zone_name cgi)" RATELIMIT2_TARGET="$TGT" \
        RATELIMIT2_REDIS="127.0.0.1:$RP" RATELIMIT2_ALERTS=off \
        REMOTE_ADDR=127.0.0.1 REQUEST_METHOD=GET "$@" "$CGI_BIN" \
        </dev/null | head -1 | tr -d '\r'
}
is "cgi wrapper: the quota used up in Redis refuses it" \
    "Status: 429 Too Many Requests" "$(cgi_run REQUEST_URI=/fw/x)"
is "cgi wrapper: a limit with room runs the target" "Status: 200 OK" \
    "$(cgi_run REQUEST_URI=/free/x)"

# ---- the fleet's audit stream ----
# Two ratelimit2ctl changes with -R and an automatic ban by a
# ratelimit2-fcgi -R are exactly three entries of the stream, which
# ratelimit2ctl audit -R reads.
CTL="$BUILD/ctl/ratelimit2ctl"
AC=("$CTL" -c /nonexistent -R "127.0.0.1:$RP" -z "$(zone_name actl)"
    --state "$T_DIR/actl.overrides" --audit "$T_DIR/actl.audit")
# (No syslog here: its warning goes to ctl.err.)
"${AC[@]}" ban 198.51.100.1 --ttl 1h --reason "audit one" \
    >/dev/null 2>>"$T_DIR/ctl.err"
"${AC[@]}" unban 198.51.100.1 --reason "audit two" \
    >/dev/null 2>>"$T_DIR/ctl.err"
cat >"$T_DIR/abuse.conf" <<POL
overrides = { state_file = "$T_DIR/abuse.overrides"; };
abuse = { denials = "1/1min"; ban = "10min"; };
rules = ( { name = "login"; paths = "/login";
            limits = ( { rate = "1/hour"; } ); } );
POL
BP=$(free_port)
fcgi_start abuse -c "$T_DIR/abuse.conf" -s "127.0.0.1:$BP" \
    -z "$(zone_name ab)" -t 2 -R "127.0.0.1:$RP"
for _ in 1 2 3 4 5; do
    "$FCGI_CLIENT" "127.0.0.1:$BP" REMOTE_ADDR=198.51.100.9 \
        REQUEST_METHOD=POST REQUEST_URI=/login >/dev/null
done
fcgi_stop abuse
is "two ratelimit2ctl changes and an automatic ban: three entries" \
    "3 ctl:ban ctl:unban auto:ban 198.51.100.9" \
    "$("${AC[@]}" audit --json | python3 -c '
import json, sys
a = json.load(sys.stdin)
print(len(a), " ".join(e["origin"] + ":" + e["verb"] for e in a),
      a[-1]["target"])')"
is "the stream holds them beside the override hash" 3 \
    "$(redis-cli -p "$RP" XLEN '{rl2:overrides}:audit')"
is "audit --local reads this host's file: the two ratelimit2ctl made" 2 \
    "$("${AC[@]}" audit --local --json | grep -c '"origin":"ctl"')"

# ---- Redis killed: the authorizer goes on, local counters ----
kill -KILL "$(cat "$RDIR/redis.pid")"
rm -f "$RDIR/redis.pid"
out=$(ab -q -n 200 -c 8 "http://127.0.0.1:$PL/free/x" 2>&1)
is "redis down: lighttpd answers every request" "200" \
   "$(printf '%s\n' "$out" | sed -n 's/^Complete requests: *//p')"
is "redis down: no 5xx from lighttpd (no non-2xx)" "" \
   "$(printf '%s\n' "$out" | sed -n 's/^Non-2xx responses: *//p')"
# From another address: Redis refused 127.0.0.1 on fw above, and the
# over-limit cache goes on refusing it, outage or not, until that
# refusal ends.
n=$(admitted 300 8 "http://127.0.0.1:$PL/fw/x" -B 127.0.0.2)
is "redis down: the local zone enforces 100 (local failover)" 100 "$n"
h=$(fcgi_health "$S")
like "health shows the circuit open" \
    '"store":"redis","circuit":"(open|half_open)"' "$h"
h=$(health_until '"in_sync":false')
like "redis down: the overrides mirror is not in sync, since its last sync" \
    '"overrides":\{"source":"redis","in_sync":false,"last_sync":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{15}Z","entries":0\}' \
    "$h"
like "redis down: health says degraded" '^\{"status":"degraded",' "$h"
sleep 0.5
like "a redis_down alert was sent" 'event=redis_down' "$(cat "$LOG")"

is "cgi wrapper, redis down, failover closed: 503" \
    "Status: 503 Service Unavailable" \
    "$(cgi_run REQUEST_URI=/free/x RATELIMIT2_FAILOVER=closed \
       RATELIMIT2_REDIS_OPTIONS=connect_timeout=100,timeout=100)"

# ---- failover closed: 503 with Retry-After, Status first ----
FP=$(free_port)
fcgi_start closed -c "$POLICY" -z "$(zone_name cl)" -t 2 -s "127.0.0.1:$FP" \
    -R "127.0.0.1:$RP" -O connect_timeout=100,timeout=100 \
    -F closed,probe=2000 -A off
r=$("$FCGI_CLIENT" "127.0.0.1:$FP" REMOTE_ADDR=127.0.0.1 \
    REQUEST_METHOD=GET REQUEST_URI=/free/x | tr -d '\r')
is "failover closed: Status: 503 first" "Status: 503 Service Unavailable" \
    "$(printf '%s\n' "$r" | head -1)"
like "failover closed: Retry-After 2" '(^|\n)Retry-After: 2(\n|$)' "$r"
fcgi_stop closed
is "the closed-mode daemon exits 0 on SIGTERM" 0 $?

# ---- bad store options are refused at start ----
"$FCGI_BIN" -c "$POLICY" -s 127.0.0.1:1 -O db=1 2>"$T_DIR/bad1.log"
is "-O without -R: exit 2" 2 $?
"$FCGI_BIN" -c "$POLICY" -s 127.0.0.1:1 -R 127.0.0.1:$RP -F sideways \
    2>"$T_DIR/bad2.log"
is "-F with a bad mode: exit 2" 2 $?
like "-F error names the option" '^ratelimit2-fcgi: -F: failover' \
    "$(cat "$T_DIR/bad2.log")"

# ---- Redis back: the mirror in sync again ----
redis_start || not_ok "redis-server starts again"
h=$(health_until '"in_sync":true')
like "redis back: the overrides mirror is in sync again" \
    '^\{"status":"ok",.*"overrides":\{"source":"redis","in_sync":true,' "$h"

lighttpd_stop "$D"
apache_stop "$A"
done_testing
