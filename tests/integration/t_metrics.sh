#!/bin/bash
# t_metrics.sh -- what the Apache module shows, after a scripted run of
# known traffic: every counter of the Prometheus exposition equals the
# value the traffic must produce, and the exposition passes promtool; the
# status page renders its charts in headless Chromium with no console
# error and no reference outside the page (a screenshot is kept); health
# answers 200, and 503 in failover closed mode with Redis down; the
# event=limited lines are matched by the shipped fail2ban filter, and
# nothing else is; a flooding client gets at most one line per interval;
# a client refused too often gets one ban_candidate line; a small zone
# whose clients expired shows no live key, and zone_full fires again.
source "$(dirname "$0")/lib.sh"

sink_start
D=$T_DIR/a
P=$(free_port)
apache_conf "$D" "$P" event
cat >"$D/policy.conf" <<'POLICY'
tiers = [ "free", "pro" ];
tier_from = { variable = "RL2_TIER"; };
whitelist = { addresses = [ "127.0.0.2" ]; };
rules = (
  { name = "docs"; paths = "/docs"; exempt = true; },
  { name = "login"; paths = "/login"; limits = ( { rate = "3/1h"; } ); },
  { name = "trial"; paths = "/trial"; mode = "dry_run";
    limits = ( { rate = "2/1h"; } ); },
  { name = "api"; paths = "/api/*";
    tiers = { free = ( { rate = "4/1h"; } );
              pro = ( { rate = "6/2h"; } ); }; },
  { name = "burst"; paths = "/burst";
    limits = ( { rate = "2/1h"; overflow = "2/1h"; } ); }
);
POLICY
cat >"$D/site.conf" <<CONF
RateLimit2Zone $(zone_name a) 1000
RateLimit2Policy $D/policy.conf
RateLimit2Alerts On socket=$SINK interval=60
RateLimit2Events limited=2 ban=5/60
SetEnvIf X-Plan "^pro\$" RL2_TIER=pro
<Location /rl2/metrics>
    SetHandler ratelimit2-metrics
    Require ip 127.0.0.1
</Location>
<Location /rl2/health>
    SetHandler ratelimit2-health
</Location>
<Location /rl2/status>
    SetHandler ratelimit2-status
    Require ip 127.0.0.1
</Location>
CONF
for f in docs login trial burst; do echo ok >"$D/htdocs/$f"; done
mkdir -p "$D/htdocs/api"
echo ok >"$D/htdocs/api/x"
apache_start "$D" || { not_ok "apache starts"; done_testing; exit 1; }
ok "apache starts with the metrics handlers"
U="http://127.0.0.1:$P"

# hits N PATH [curl args...] -- N requests, their codes on one line.
hits() {
    local n=$1 path=$2 i
    shift 2
    for i in $(seq 1 "$n"); do code "$U$path" "$@"; echo -n " "; done
}

# ---- known traffic ----
# Its limits are fixed windows of an hour of the zone's monotonic clock:
# the traffic must fall in one hour, or a refusal below is admitted.
window_room 3600 60
is "login: 3 admitted, 2 refused" "200 200 200 429 429 " "$(hits 5 /login)"
is "trial (dry run): all 4 admitted" "200 200 200 200 " "$(hits 4 /trial)"
is "api, free tier: 4 admitted, 2 refused" "200 200 200 200 429 429 " \
    "$(hits 6 /api/x)"
is "api, pro tier: 6 admitted, 1 refused" \
    "200 200 200 200 200 200 429 " "$(hits 7 /api/x -H 'X-Plan: pro')"
is "burst: 2 admitted, 2 by overflow, 1 refused" "200 200 200 200 429 " \
    "$(hits 5 /burst)"
is "whitelisted address: never refused" "200 200 200 200 200 " \
    "$(hits 5 /login --interface 127.0.0.2)"
is "exempt path: never refused" "200 200 " "$(hits 2 /docs)"

# ---- Prometheus ----
curl -s "$U/rl2/metrics" >"$T_DIR/metrics.txt"
is "metrics: text/plain; version=0.0.4" \
    "text/plain; version=0.0.4; charset=utf-8" \
    "$(curl -s -o /dev/null -w '%{content_type}' "$U/rl2/metrics")"
promtool_ok "$T_DIR/metrics.txt"
# The one request no rule applies to is the scrape itself (/rl2/metrics,
# in the default tier "free").
counters_are "$T_DIR/metrics.txt" <<'EXP'
ratelimit2_near_limit_total{rule="api",tier="free"} 1
ratelimit2_near_limit_total{rule="api",tier="pro"} 2
ratelimit2_near_limit_total{rule="burst",tier="(none)"} 0
ratelimit2_near_limit_total{rule="burst",tier="free"} 3
ratelimit2_near_limit_total{rule="login",tier="(none)"} 0
ratelimit2_near_limit_total{rule="login",tier="free"} 1
ratelimit2_near_limit_total{rule="trial",tier="free"} 1
ratelimit2_overflow_total{rule="api",tier="free"} 0
ratelimit2_overflow_total{rule="api",tier="pro"} 0
ratelimit2_overflow_total{rule="burst",tier="(none)"} 0
ratelimit2_overflow_total{rule="burst",tier="free"} 2
ratelimit2_overflow_total{rule="login",tier="(none)"} 0
ratelimit2_overflow_total{rule="login",tier="free"} 0
ratelimit2_overflow_total{rule="trial",tier="free"} 0
ratelimit2_requests_total{rule="(bypass)",tier="(none)",outcome="bypassed"} 7
ratelimit2_requests_total{rule="(unmatched)",tier="free",outcome="unmatched"} 1
ratelimit2_requests_total{rule="api",tier="free",outcome="allowed"} 4
ratelimit2_requests_total{rule="api",tier="free",outcome="denied"} 2
ratelimit2_requests_total{rule="api",tier="free",outcome="dry_run_denied"} 0
ratelimit2_requests_total{rule="api",tier="pro",outcome="allowed"} 6
ratelimit2_requests_total{rule="api",tier="pro",outcome="denied"} 1
ratelimit2_requests_total{rule="api",tier="pro",outcome="dry_run_denied"} 0
ratelimit2_requests_total{rule="burst",tier="(none)",outcome="allowed"} 0
ratelimit2_requests_total{rule="burst",tier="(none)",outcome="denied"} 1
ratelimit2_requests_total{rule="burst",tier="(none)",outcome="dry_run_denied"} 0
ratelimit2_requests_total{rule="burst",tier="free",outcome="allowed"} 4
ratelimit2_requests_total{rule="burst",tier="free",outcome="denied"} 0
ratelimit2_requests_total{rule="burst",tier="free",outcome="dry_run_denied"} 0
ratelimit2_requests_total{rule="login",tier="(none)",outcome="allowed"} 0
ratelimit2_requests_total{rule="login",tier="(none)",outcome="denied"} 2
ratelimit2_requests_total{rule="login",tier="(none)",outcome="dry_run_denied"} 0
ratelimit2_requests_total{rule="login",tier="free",outcome="allowed"} 3
ratelimit2_requests_total{rule="login",tier="free",outcome="denied"} 0
ratelimit2_requests_total{rule="login",tier="free",outcome="dry_run_denied"} 0
ratelimit2_requests_total{rule="trial",tier="free",outcome="allowed"} 2
ratelimit2_requests_total{rule="trial",tier="free",outcome="denied"} 0
ratelimit2_requests_total{rule="trial",tier="free",outcome="dry_run_denied"} 2
EXP
# 6 refusals of 127.0.0.1 within the 2 s interval: one line, 5 held (the
# run above takes well under 2 s on any machine this runs on; if not, the
# sum still holds).
lines=$(sed -n 's/^ratelimit2_limited_lines_total \([0-9]*\)$/\1/p' \
        "$T_DIR/metrics.txt")
held=$(sed -n 's/^ratelimit2_limited_lines_held_total \([0-9]*\)$/\1/p' \
       "$T_DIR/metrics.txt")
is "every refusal is a limited line or held back (6)" 6 $((lines + held))
is "one ban candidate (6 refusals > 5 in 60 s)" \
    "ratelimit2_ban_candidates_total 1" \
    "$(grep '^ratelimit2_ban_candidates_total ' "$T_DIR/metrics.txt")"
like "zone gauges" 'ratelimit2_zone_entries 1000' \
    "$(cat "$T_DIR/metrics.txt")"
is "no Redis: no store call timed" \
    'ratelimit2_store_duration_seconds_count 0' \
    "$(grep '^ratelimit2_store_duration_seconds_count' "$T_DIR/metrics.txt")"
is "metrics are protected by Require" 403 \
    "$(code "$U/rl2/metrics" --interface 127.0.0.2)"

# ---- health ----
h=$(curl -s "$U/rl2/health")
is "health: 200" 200 "$(code "$U/rl2/health")"
like "health: JSON with generation, store, zone, overrides and uptime" \
    '^\{"status":"ok","generation":1,"store":"local","zone":\{"entries":1000,"used":[0-9]+,"evictions":0,"occupancy":0\.[0-9]+,"live":[0-9]+,"bytes_used":[0-9]+,"bytes_reserved":[0-9]+,"reclaimed":[0-9]+\},"overrides":\{"source":"local","entries":0\},"uptime":[0-9]+\}$' \
    "$h"

# ---- status page in headless Chromium ----
curl -s "$U/rl2/status" >"$T_DIR/status.html"
is "status page: no script, no external reference" "" \
    "$(grep -oiE '<script|src=|href=|url\(|@import|https?://' \
       "$T_DIR/status.html")"
SHOT=$(mktemp "${TMPDIR:-/tmp}/rl2-status.XXXXXX")
mv "$SHOT" "$SHOT.png"
SHOT=$SHOT.png
before=$(wc -l <"$D/logs/access.log")
chromium_run() {
    timeout 120 chromium --headless --no-sandbox --disable-gpu \
        --disable-background-networking --disable-extensions \
        --user-data-dir="$T_DIR/chromium" --window-size=1000,1600 \
        --enable-logging=stderr --v=0 "$@" "$U/rl2/status"
}
chromium_run --screenshot="$SHOT" >"$T_DIR/chromium.out" 2>"$T_DIR/chromium.log"
chromium_run --dump-dom >"$T_DIR/dom.html" 2>>"$T_DIR/chromium.log"
if [ -s "$SHOT" ] && file "$SHOT" | grep -q 'PNG image'; then
    ok "status page screenshot: $SHOT"
else
    not_ok "status page screenshot: $SHOT"
fi
is "chromium: no console error" "" \
    "$(grep -iE 'CONSOLE|Uncaught|ERR_' "$T_DIR/chromium.log" | head -3)"
# Four rules with counted traffic (docs is exempt): four charts.
is "chromium renders one chart per rule with traffic" 4 \
    "$(grep -o '<svg class="chart"' "$T_DIR/dom.html" | wc -l)"
like "charts have bars" '<rect class="d" x=' "$(cat "$T_DIR/dom.html")"
like "a rule without traffic is listed" 'No request in the last hour: docs' \
    "$(cat "$T_DIR/dom.html")"
like "top limited clients: the refused address" \
    '<td>127\.0\.0\.1</td><td>(login|api|burst)</td><td>6</td>' \
    "$(cat "$T_DIR/dom.html")"
# Every request Chromium made went to this server, for the page only.
is "chromium requested nothing but the page" "" \
    "$(tail -n +"$((before + 1))" "$D/logs/access.log" \
       | grep -v '"GET /rl2/status HTTP/1.1" 200' \
       | grep -v '"GET /favicon.ico HTTP/1.1" 404')"

# ---- flooding: one line per client per interval ----
# Only the flood's lines: the known traffic above sent one or two (two
# when it took over 2 s on a loaded machine).
pre=$(grep -c 'event=limited client=127.0.0.1 ' "$LOG")
start=$(date +%s.%N)
for _ in $(seq 1 10); do
    ab -q -n 200 -c 4 "$U/login" >/dev/null 2>&1
    sleep 0.5
done
end=$(date +%s.%N)
sleep 0.3
n=$(($(grep -c 'event=limited client=127.0.0.1 ' "$LOG") - pre))
max=$(awk -v a="$start" -v b="$end" 'BEGIN{print int((b-a)/2)+2}')
ok_lines=$([ "$n" -ge 2 ] && [ "$n" -le "$max" ] && echo yes)
is "flood of 2000 over $(awk -v a="$start" -v b="$end" \
    'BEGIN{printf "%.1f", b-a}') s: 2..$max limited lines with limited=2 \
(got $n)" yes "$ok_lines"
is "one ban_candidate line for 127.0.0.1" 1 \
    "$(grep -c 'event=ban_candidate client=127.0.0.1 ' "$LOG")"
like "a later line reports the held-back refusals" \
    'event=limited client=127\.0\.0\.1 rule=login .* suppressed=[0-9]+' \
    "$(cat "$LOG")"

# ---- fail2ban ----
# As rsyslog writes them to a file: date, host, tag, message.
sed -E 's/^<[0-9]+>([A-Z][a-z]{2} [ 0-9][0-9] [0-9:]{8}) /\1 testhost /' \
    "$LOG" >"$T_DIR/syslog"
# Lines that must not match: other programs quoting our format, and a
# client-controlled value that looks like a limited line.
cat >>"$T_DIR/syslog" <<'BAD'
Nov 23 03:00:00 testhost sshd[1]: Invalid user ratelimit2: event=limited client=6.6.6.6 from 7.7.7.7
Nov 23 03:00:01 testhost ratelimit2[2]: ratelimit2: event=config_error error="x event=limited client=6.6.6.6"
Nov 23 03:00:02 testhost ratelimit2[2]: ratelimit2: event=ban_candidate client=6.6.6.6 rule=login count=9 window=60s
BAD
# And an IPv6 client, as the module writes it; and an automatic ban's
# line (test_abuse makes the ban; the line is the one rl2_mx_banned
# writes).
echo 'Nov 23 03:00:03 testhost ratelimit2[2]: ratelimit2: event=limited client=2001:db8::7 rule=login limit=login tier=free retry_after=5' \
    >>"$T_DIR/syslog"
echo 'Nov 23 03:00:04 testhost ratelimit2[2]: ratelimit2: event=banned client=192.0.2.77 target=user:mallory seconds=600 rule=login' \
    >>"$T_DIR/syslog"
want=$(( $(grep -c 'ratelimit2: event=limited client=' "$LOG") + 2 ))
# The filter includes fail2ban's common.conf, found beside it as it will
# be once installed in /etc/fail2ban/filter.d.
mkdir -p "$T_DIR/f2b/filter.d"
cp "$RL2_ROOT/conf/fail2ban/filter.d/ratelimit2.conf" "$T_DIR/f2b/filter.d/"
ln -s /etc/fail2ban/filter.d/common.conf "$T_DIR/f2b/filter.d/common.conf"
fail2ban-regex -v --print-no-missed "$T_DIR/syslog" "$T_DIR/f2b/filter.d/ratelimit2.conf" \
    >"$T_DIR/f2b.log" 2>&1
is "fail2ban-regex matches every limited and banned line ($want) and nothing else" \
    "$want matched" \
    "$(sed -n 's/^Lines: .* \([0-9]*\) matched.*/\1 matched/p' "$T_DIR/f2b.log")"
like "fail2ban finds the client address" '127\.0\.0\.1' \
    "$(cat "$T_DIR/f2b.log")"
like "fail2ban finds an IPv6 client" '2001:db8::7' "$(cat "$T_DIR/f2b.log")"
like "fail2ban finds the address of a banned client" '192\.0\.2\.77' \
    "$(cat "$T_DIR/f2b.log")"
is "fail2ban finds no other host" "" \
    "$(grep -oE '6\.6\.6\.6|7\.7\.7\.7' "$T_DIR/f2b.log")"

# ---- decision time: one decision in 64 per thread ----
# Each worker thread times one decision in 64 of its own, so n decisions
# on a thread time floor(n/64) or ceil(n/64) of them.  Which thread takes
# a request is Apache's choice, among at most 64 (MaxRequestWorkers, no
# process replaced here): 4096 requests of one decision or two each give
# between (4096 - 63*64)/64 = 1 and (8192 + 63*64)/64 = 191 timed ones.
decided() {
    curl -s "$U/rl2/metrics" \
        | sed -n 's/^ratelimit2_decision_seconds_count \([0-9]*\)$/\1/p'
}
echo ok >"$D/htdocs/other"
t0=$(decided)
seq 1 4096 | sed "s|.*|url = \"$U/other\"\noutput = /dev/null|" \
    >"$T_DIR/urls"
curl -s -K "$T_DIR/urls"
t1=$(decided)
timed=$((t1 - t0))
if [ "$timed" -ge 1 ] && [ "$timed" -le 191 ]; then
    ok "4096 requests: $timed decisions timed (1 to 191)"
else
    not_ok "4096 requests: $timed decisions timed (1 to 191)"
fi
m3=$(curl -s "$U/rl2/metrics")
is "decision time: _count is the +Inf bucket" \
    "$(sed -n 's/^ratelimit2_decision_seconds_bucket{le="+Inf"} //p' <<<"$m3")" \
    "$(sed -n 's/^ratelimit2_decision_seconds_count //p' <<<"$m3")"
like "decision time: a sum in seconds" \
    '^ratelimit2_decision_seconds_sum [0-9]+\.[0-9]{9}$' \
    "$(grep '^ratelimit2_decision_seconds_sum ' <<<"$m3")"
promtool_ok <(printf '%s\n' "$m3")

# ---- a graceful restart keeps the counts ----
series='ratelimit2_requests_total{rule="login",tier="(none)",outcome="denied"}'
before=$(curl -s "$U/rl2/metrics" | grep -F "$series ")
apache_graceful "$D"
for _ in $(seq 1 100); do
    curl -s "$U/rl2/metrics" | grep -q '^ratelimit2_policy_generation 2$' \
        && break
    sleep 0.1
done
m2=$(curl -s "$U/rl2/metrics")
like "after a graceful restart: generation 2" \
    'ratelimit2_policy_generation 2' "$m2"
is "after a graceful restart: the counts continue" "$before" \
    "$(printf '%s\n' "$m2" | grep -F "$series ")"

apache_stop "$D"

# ---- health in failover closed mode with Redis down ----
RP=$(free_port)
if redis_start; then
    D2=$T_DIR/b
    P2=$(free_port)
    apache_conf "$D2" "$P2" event
    cat >"$D2/site.conf" <<CONF
RateLimit2Zone $(zone_name b) 1000
RateLimit2Redis 127.0.0.1:$RP timeout=200
RateLimit2Failover closed probe=60000
RateLimit2Alerts On socket=$SINK
RateLimit2Limit all 100000/1h
<Location /rl2>
    RateLimit2Engine Off
</Location>
<Location /rl2/health>
    SetHandler ratelimit2-health
</Location>
<Location /rl2/metrics>
    SetHandler ratelimit2-metrics
</Location>
CONF
    apache_start "$D2" || not_ok "apache with redis starts"
    U2="http://127.0.0.1:$P2"
    is "redis up: a request passes" 200 "$(code "$U2/index.html")"
    is "one phase, verdict not kept: counted" 1 "$(curl -s "$U2/rl2/metrics" \
        | sed -n 's/^ratelimit2_requests_total{rule="all",tier="(none)",outcome="allowed"} //p')"
    is "redis up: health 200" 200 "$(code "$U2/rl2/health")"
    like "redis up: health says circuit closed" \
        '"store":"redis","circuit":"closed","failover":"closed"' \
        "$(curl -s "$U2/rl2/health")"
    like "redis up: store latency is timed" \
        'ratelimit2_store_duration_seconds_count [1-9]' \
        "$(curl -s "$U2/rl2/metrics")"
    kill -TERM "$(cat "$T_DIR/redis/redis.pid")"
    rl2_wait_gone "$T_DIR/redis/redis.pid"
    is "redis down, failover closed: 503" 503 "$(code "$U2/index.html")"
    is "redis down, failover closed: health 503" 503 \
        "$(code "$U2/rl2/health")"
    like "health says unavailable, circuit open" \
        '^\{"status":"unavailable",.*"circuit":"open"' \
        "$(curl -s "$U2/rl2/health")"
    like "metrics count the Redis error" 'ratelimit2_redis_errors_total [1-9]' \
        "$(curl -s "$U2/rl2/metrics")"
    apache_stop "$D2"
else
    not_ok "redis-server starts"
fi

# ---- the zone's live keys, and zone_full re-armed ----
# A zone of 64 entries (the smallest), keys that live 3 s after their
# request (a token bucket of 3 s refills in 3 s, whenever the request
# came): 150 clients fill it (a critical zone_full line);
# once their windows end, a scrape shows no live key, the entries taken
# back; the upkeep re-arms the alert, and 150 more clients make a second
# critical line.
D4=$T_DIR/d
P4=$(free_port)
apache_conf "$D4" "$P4" event
cat >"$D4/policy.conf" <<'POLICY'
rules = (
  { name = "wide"; paths = "/wide"; key = "header:X-Who";
    limits = ( { name = "wide3s"; rate = "100/3s";
                 algorithm = "token_bucket"; } ); }
);
POLICY
cat >"$D4/site.conf" <<CONF
RateLimit2Zone $(zone_name d) 64
RateLimit2Policy $D4/policy.conf
RateLimit2Alerts On socket=$SINK interval=60
RateLimit2Events zone_full=50%/90%
<Location /rl2/metrics>
    SetHandler ratelimit2-metrics
</Location>
<Location /rl2/health>
    SetHandler ratelimit2-health
</Location>
<Location /rl2/status>
    SetHandler ratelimit2-status
</Location>
CONF
echo ok >"$D4/htdocs/wide"
apache_start "$D4" || not_ok "apache with a zone of 64 starts"
U4="http://127.0.0.1:$P4"

# clients FROM TO -- one request each from clients FROM..TO, one curl
# (`next` between them: each URL its own header).
clients() {
    local i
    for i in $(seq "$1" "$2"); do
        [ "$i" -gt "$1" ] && echo next
        printf 'url = "%s/wide"\nheader = "X-Who: c%s"\noutput = "/dev/null"\n' \
            "$U4" "$i"
    done >"$T_DIR/clients.curl"
    curl -s -K "$T_DIR/clients.curl"
}

# criticals N -- poll (a request of client "poll" runs the upkeep, at
# most once a second) until N critical zone_full lines were sent.
criticals() {
    local i
    for i in $(seq 1 50); do
        [ "$(grep -c 'event=zone_full level=critical' "$LOG")" -ge "$1" ] \
            && break
        curl -s -o /dev/null -H 'X-Who: poll' "$U4/wide"
        sleep 0.2
    done
    grep -c 'event=zone_full level=critical' "$LOG"
}

clients 1 150
is "150 clients in a zone of 64: one critical zone_full line" 1 \
    "$(criticals 1)"
like "the line gives live keys, bytes and the threshold" \
    'event=zone_full level=critical live=6[0-4] entries=64 percent=(9[0-9]|100) bytes=[0-9]+ threshold=90%' \
    "$(cat "$LOG")"
m4=""
for _ in $(seq 1 60); do
    m4=$(curl -s "$U4/rl2/metrics")
    grep -q '^ratelimit2_zone_live_keys 0$' <<<"$m4" && break
    sleep 0.2
done
is "their windows ended: no live key" "ratelimit2_zone_live_keys 0" \
    "$(grep '^ratelimit2_zone_live_keys ' <<<"$m4")"
is "used entries are the live keys (expired ones taken back)" \
    "ratelimit2_zone_used_entries 0" \
    "$(grep '^ratelimit2_zone_used_entries ' <<<"$m4")"
reclaimed=$(sed -n 's/^ratelimit2_zone_reclaimed_total //p' <<<"$m4")
is "the 64 entries (and the poll's) were taken back" yes \
    "$([ "${reclaimed:-0}" -ge 64 ] && echo yes)"
like "bytes in use and reserved" \
    'ratelimit2_zone_used_bytes [0-9]+.*ratelimit2_zone_reserved_bytes [0-9]+' \
    "$(tr '\n' ' ' <<<"$m4")"
like "health: no live key, occupancy 0" \
    '"zone":\{"entries":64,"used":0,"evictions":[0-9]+,"occupancy":0\.0000,"live":0,' \
    "$(curl -s "$U4/rl2/health")"
clients 151 155
m4=$(curl -s "$U4/rl2/metrics")
is "five clients now: five live keys of limit wide3s" \
    'ratelimit2_zone_limit_keys{limit="wide3s"} 5' \
    "$(grep '^ratelimit2_zone_limit_keys{limit="wide3s"}' <<<"$m4")"
like "status page: live keys of the zone and per limit" \
    '5 live keys of 64 entries.*wide3s 5' \
    "$(curl -s "$U4/rl2/status" | tr '\n' ' ')"
promtool_ok <(printf '%s\n' "$m4")
clients 156 305
is "the alert re-armed: 150 more clients, a second critical line" 2 \
    "$(criticals 2)"
apache_stop "$D4"

# ---- directives ----
D3=$T_DIR/c
apache_conf "$D3" "$(free_port)" event
echo "RateLimit2Events limited=30 ban=5" >"$D3/site.conf"
like "configtest names a bad RateLimit2Events option" \
    'RateLimit2Events ban=5: expected' "$(apache_configtest "$D3")"
echo "RateLimit2Events zone_full=50M/40M" >"$D3/site.conf"
like "configtest refuses a warning above the critical level" \
    'RateLimit2Events zone_full=50M/40M: zone_full=50M/40M: the warning must be below' \
    "$(apache_configtest "$D3")"
echo "RateLimit2Events limited=off ban=5/60 evictions=off zone_full=40M/50M" \
    >"$D3/site.conf"
like "RateLimit2Events with every option passes configtest" 'Syntax OK' \
    "$(apache_configtest "$D3")"

done_testing
