#!/bin/bash
# t_fcgi_metrics.sh -- what ratelimit2-fcgi shows: after known traffic
# through the authorizer role, the metrics path (responder role, behind
# a bearer token) has the exact counters and passes promtool; the health
# path answers the same JSON as the Apache module; a flooding client
# gets one event=limited line per interval with a local store too.
source "$(dirname "$0")/fcgi_lib.sh"

sink_start
cat >"$T_DIR/policy.conf" <<'POLICY'
rules = (
  { name = "login"; paths = "/login"; limits = ( { rate = "3/1h"; } ); }
);
POLICY
echo "s3cret-token" >"$T_DIR/token"
FP=$(free_port)
fcgi_start d -c "$T_DIR/policy.conf" -z "$(zone_name f)" -t 2 \
    -s "127.0.0.1:$FP" -m /rl2/metrics -T "$T_DIR/token" \
    -A "socket=$SINK" -E limited=60,ban=4/60
ok "ratelimit2-fcgi starts with -m, -T, -A and -E and no Redis"

auth() {
    "$FCGI_CLIENT" "127.0.0.1:$FP" REMOTE_ADDR=192.0.2.9 REQUEST_METHOD=GET \
        "REQUEST_URI=$1" | sed -n 's/^Status: \([0-9]*\).*/\1/p'
}
# login is a fixed window of an hour of the zone's monotonic clock: its
# refusals are counted on through the reload below, to the ban candidate
# of the fifth, so all of them must fall in one hour.
window_room 3600 60
codes=""
for _ in 1 2 3 4 5 6; do codes="$codes$(auth /login) "; done
is "login: 3 admitted, 3 refused" "200 200 200 429 429 429 " "$codes"
is "a path no rule takes: admitted" 200 "$(auth /other)"

scrape() {
    "$FCGI_CLIENT" -r responder "127.0.0.1:$FP" REMOTE_ADDR=127.0.0.1 \
        REQUEST_METHOD=GET REQUEST_URI=/rl2/metrics "$@"
}
like "metrics without the token: 403" '^Status: 403' "$(scrape)"
like "metrics with a wrong token: 403" '^Status: 403' \
    "$(scrape 'HTTP_AUTHORIZATION=Bearer s3cret-tokeN')"
scrape 'HTTP_AUTHORIZATION=Bearer s3cret-token' >"$T_DIR/scrape"
like "metrics with the token: 200, exposition content type" \
    '^Status: 200 OK.Content-Type: text/plain; version=0.0.4' \
    "$(head -2 "$T_DIR/scrape" | tr -d '\r' | tr '\n' '.')"
sed '1,/^\r\{0,1\}$/d' "$T_DIR/scrape" >"$T_DIR/metrics.txt"
promtool_ok "$T_DIR/metrics.txt"
# The one request no rule takes: /other (the scrapes are the responder's,
# not decided).
counters_are "$T_DIR/metrics.txt" <<'EXP'
ratelimit2_near_limit_total{rule="login",tier="(none)"} 1
ratelimit2_overflow_total{rule="login",tier="(none)"} 0
ratelimit2_requests_total{rule="(unmatched)",tier="(none)",outcome="unmatched"} 1
ratelimit2_requests_total{rule="login",tier="(none)",outcome="allowed"} 3
ratelimit2_requests_total{rule="login",tier="(none)",outcome="denied"} 3
ratelimit2_requests_total{rule="login",tier="(none)",outcome="dry_run_denied"} 0
EXP
is "one limited line sent, two held" \
    "ratelimit2_limited_lines_total 1 ratelimit2_limited_lines_held_total 2" \
    "$(grep -E '^ratelimit2_limited_lines(_held)?_total ' \
       "$T_DIR/metrics.txt" | tr '\n' ' ' | sed 's/ $//')"
is "generation 1" "ratelimit2_policy_generation 1" \
    "$(grep '^ratelimit2_policy_generation ' "$T_DIR/metrics.txt")"
sleep 0.3
is "one event=limited line for 192.0.2.9" 1 \
    "$(grep -c 'ratelimit2: event=limited client=192.0.2.9 rule=login ' \
       "$LOG")"

h=$(fcgi_health "127.0.0.1:$FP")
like "health: the Apache module's JSON" \
    '^\{"status":"ok","generation":1,"store":"local","zone":\{"entries":100000,"used":1,"evictions":0,"occupancy":0\.0000,"live":1,"bytes_used":[0-9]+,"bytes_reserved":[0-9]+,"reclaimed":0\},"overrides":\{"source":"local","entries":0\},"uptime":[0-9]+\}$' \
    "$h"

# Decision time: a worker thread times one decision in 64 of its own,
# so any 640 decisions in a row on one thread time exactly 10.  One
# connection (FCGI_KEEP_CONN) is served by one thread from its first
# request to its last.
decided() {
    scrape 'HTTP_AUTHORIZATION=Bearer s3cret-token' | tr -d '\r' \
        | sed -n 's/^ratelimit2_decision_seconds_count \([0-9]*\)$/\1/p'
}
t0=$(decided)
"$FCGI_CLIENT" -k 640 "127.0.0.1:$FP" REMOTE_ADDR=192.0.2.10 \
    REQUEST_METHOD=GET REQUEST_URI=/other >"$T_DIR/k640"
is "640 requests on one connection: all answered 200" 640 \
    "$(grep -c '^Status: 200' "$T_DIR/k640")"
is "640 decisions on one thread: 10 timed" 10 $(($(decided) - t0))
scrape 'HTTP_AUTHORIZATION=Bearer s3cret-token' | tr -d '\r' \
    | sed '1,/^$/d' >"$T_DIR/metrics_d.txt"
promtool_ok "$T_DIR/metrics_d.txt"

# A reload keeps the counters (the rule keeps its slot by name).
cat >"$T_DIR/policy.conf" <<'POLICY'
rules = (
  { name = "new"; paths = "/new"; limits = ( { rate = "3/1h"; } ); },
  { name = "login"; paths = "/login"; limits = ( { rate = "3/1h"; } ); }
);
POLICY
kill -HUP "$(cat "$T_DIR/d.pid")"
for _ in $(seq 1 100); do
    fcgi_health "127.0.0.1:$FP" | grep -q '"generation":2' && break
    sleep 0.05
done
is "after a reload, a refusal counts on" 429 "$(auth /login)"
is "the new rule counts too" 200 "$(auth /new)"
scrape 'HTTP_AUTHORIZATION=Bearer s3cret-token' >"$T_DIR/scrape2"
like "login denied 4 after the reload" \
    'ratelimit2_requests_total\{rule="login",tier="\(none\)",outcome="denied"\} 4' \
    "$(cat "$T_DIR/scrape2")"
like "new allowed 1" \
    'ratelimit2_requests_total\{rule="new",tier="\(none\)",outcome="allowed"\} 1' \
    "$(cat "$T_DIR/scrape2")"
like "generation 2" 'ratelimit2_policy_generation 2' "$(cat "$T_DIR/scrape2")"
sleep 0.3
is "4 refusals > ban=4/60: still no ban candidate" 0 \
    "$(grep -c 'event=ban_candidate' "$LOG")"
auth /login >/dev/null
sleep 0.3
is "the fifth refusal: one ban_candidate line" 1 \
    "$(grep -c 'event=ban_candidate client=192.0.2.9 ' "$LOG")"

# The CGI wrapper counts into the same zone's metrics.
out=$(env -i RATELIMIT2_POLICY="$T_DIR/policy.conf" \
    RATELIMIT2_ZONE="$(zone_name f)" RATELIMIT2_TARGET=/bin/echo \
    REQUEST_METHOD=GET REQUEST_URI=/new REMOTE_ADDR=192.0.2.10 \
    GATEWAY_INTERFACE=CGI/1.1 "$CGI_BIN" 2>&1)
is "the CGI wrapper runs its target" "" "$out"
like "its request is counted: new allowed 2" \
    'ratelimit2_requests_total\{rule="new",tier="\(none\)",outcome="allowed"\} 2' \
    "$(scrape 'HTTP_AUTHORIZATION=Bearer s3cret-token')"

"$FCGI_BIN" -c "$T_DIR/policy.conf" -E limited=x >/dev/null 2>"$T_DIR/e.log"
is "-E with a bad item: exit status 2" 2 "$?"
like "... naming it" 'events: bad item "limited=x"' "$(cat "$T_DIR/e.log")"
"$FCGI_BIN" -c "$T_DIR/policy.conf" -T "$T_DIR/token" >/dev/null \
    2>"$T_DIR/e.log"
is "-T without -m: exit status 2" 2 "$?"

fcgi_stop d
is "SIGTERM: clean exit" 0 "$?"
done_testing
