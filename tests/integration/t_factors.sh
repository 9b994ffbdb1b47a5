#!/bin/bash
# t_factors.sh -- the host's adaptive factors (policy factors.load and
# factors.schedule) in the real servers, one policy for both front ends:
# - the load file is the suite's (0.93: x0.5 above 0.8), scoped to rule
#   api;
# - the schedule is in a named zone (America/New_York): its first window,
#   two hours ahead, never holds now (x0.1 if it wrongly did); its second,
#   built from the current time, holds now (x0.5), for every rule.
# Apache (event MPM) and ratelimit2-fcgi then admit exactly 20 x 0.5 x 0.5
# = 5 on /api and 20 x 0.5 = 10 on /web, X-RateLimit-Factors lists both
# factors, the metrics show ratelimit2_factor for each, and each change is
# one syslog line (event=factor) per host, however many requests and
# processes saw it.  Then Apache's own load, its share of busy workers
# (source "scoreboard"), also through a graceful restart while old
# workers are busy, which ratelimit2-fcgi refuses.
. "$(dirname "$0")/fcgi_lib.sh"
# Its counted limits are fixed windows of an hour (the zone's monotonic
# hours, or Redis TIME's): the suite takes well under a minute, so it
# starts with a minute's room in the hour of both clocks.
window_room 3600 60

sink_start
LOADF=$T_DIR/loadavg
echo "0.93 0.50 0.40 1/100 1234" >"$LOADF"
chmod 644 "$LOADF"
mkdir -p "$T_DIR/state"
chmod 777 "$T_DIR/state"
ZONE=America/New_York

# local_at FMT OFFSET -- the zone's wall clock OFFSET seconds from now.
local_at() {
    TZ=$ZONE date -d "@$(($(date +%s) + $2))" "+$1"
}

# From an hour ago to an hour ahead: may cross midnight, and then its
# day is the one it started on.
HOLD="$(local_at %a -3600) $(local_at %H:%M -3600)-$(local_at %H:%M 3600)"
# Two to three hours ahead: never now.
LATER="$(local_at %a 7200) $(local_at %H:%M 7200)-$(local_at %H:%M 10800)"

# policy FILE NAME -- limit 20 an hour on /api and on /web.
policy() {
    cat >"$1" <<POL
overrides = { state_file = "$T_DIR/state/$2.overrides";
              audit_file = "$T_DIR/state/$2.audit"; };
headers = { factors = true; };
factors = {
  load = { source = "$LOADF"; per_cpu = false; rules = "api";
           steps = ( { above = 0.8; factor = 0.5; },
                     { below = 0.3; factor = 2; } ); hold = "30s"; };
  schedule = { zone = "$ZONE";
               windows = ( { when = "$LATER"; factor = 0.1; },
                           { when = "$HOLD"; factor = 0.5; } ); };
};
rules = (
  { name = "api"; paths = "/api/**"; limits = ( { rate = "20/hour"; } ); },
  { name = "web"; paths = "/web/**"; limits = ( { rate = "20/hour"; } ); }
);
POL
}

# lines FACTOR -- the event=factor lines of FACTOR the sink caught so far.
lines() {
    case $1 in
    load) grep -c 'ratelimit2: event=factor factor=load from=1 to=0.5 load=0.93' \
              "$LOG" ;;
    *) grep -c "ratelimit2: event=factor factor=schedule from=1 to=0.5 zone=$ZONE" \
           "$LOG" ;;
    esac
}

# wait_lines N -- until N lines of each factor arrived (2 s at most).
wait_lines() {
    for _ in $(seq 1 40); do
        [ "$(lines load)" -ge "$1" ] && [ "$(lines schedule)" -ge "$1" ] && break
        sleep 0.05
    done
}

# gauges FILE -- the ratelimit2_factor samples of a metrics page, one line.
gauges() {
    tr -d '\r' <"$1" | grep '^ratelimit2_factor{' | sort | tr '\n' ' '
}
GAUGES='ratelimit2_factor{factor="load"} 0.5 ratelimit2_factor{factor="schedule"} 0.5 '

# ======================= Apache ==========================================
D=$T_DIR/apache
P=$(free_port)
apache_conf "$D" "$P" event
site_pages "$D/htdocs" api web
policy "$D/policy.conf" apache
cat >>"$D/site.conf" <<CONF
RateLimit2Zone $(zone_name fa) 1000
RateLimit2Policy "$D/policy.conf"
RateLimit2Alerts On socket=$SINK interval=60
<Location /rl2/metrics>
    RateLimit2Engine Off
    SetHandler ratelimit2-metrics
    Require ip 127.0.0.1
</Location>
CONF
apache_start "$D" || { not_ok "apache starts"; done_testing; exit 1; }
ok "apache starts with load and schedule factors ($LATER, then $HOLD in $ZONE)"
is "apache: /api, 20/hour x load 0.5 x schedule 0.5, admits exactly 5 of 20" \
    5 "$(admitted 20 4 "http://127.0.0.1:$P/api/x")"
is "apache: /web, out of the load factor's scope, admits exactly 10 of 20" \
    10 "$(admitted 20 4 "http://127.0.0.1:$P/web/x")"
hdrs=$(curl -s -D - -o /dev/null "http://127.0.0.1:$P/api/x" | tr -d '\r')
like "apache: X-RateLimit-Factors lists both factors" \
    '^X-RateLimit-Factors: load=0.5;schedule=0.5$' "$hdrs"
like "apache: RateLimit-Policy shows the effective quota" \
    '^RateLimit-Policy: "api";q=5;w=3600' "$hdrs"
curl -s "http://127.0.0.1:$P/rl2/metrics" >"$T_DIR/metrics.txt"
is "apache: ratelimit2_factor shows both" "$GAUGES" "$(gauges "$T_DIR/metrics.txt")"
promtool_ok "$T_DIR/metrics.txt"
wait_lines 1
is "apache: the load change is one event=factor line" 1 "$(lines load)"
is "apache: the schedule change is one event=factor line" 1 "$(lines schedule)"
# A reload that takes the factors away: the table keeps their last
# values, but the gauge shows only the factors in force.
sed -i '/^factors = {/,/^};/d' "$D/policy.conf"
apache_graceful "$D"
for _ in $(seq 1 100); do
    [ "$(grep -c 'resuming normal operations' "$D/logs/error.log")" -ge 2 ] \
        && break
    sleep 0.1
done
curl -s "http://127.0.0.1:$P/rl2/metrics" >"$T_DIR/metrics2.txt"
is "apache: after a reload without factors, no ratelimit2_factor gauge" "" \
    "$(gauges "$T_DIR/metrics2.txt")"
apache_stop "$D"

# ======================= Apache's scoreboard =============================
# factors.load source "scoreboard": the share of Apache's workers busy.
# Four prefork workers, two held by connections that sent half a request:
# with the request being served, 3 of 4 (0.75) are busy, over 0.6: x0.5.
D=$T_DIR/scoreboard
P=$(free_port)
apache_conf "$D" "$P" prefork
sed -i 's/^StartServers .*/StartServers 4/; s/^MaxRequestWorkers .*/MaxRequestWorkers 4/;
        s/^MinSpareServers .*/MinSpareServers 1/; s/^MaxSpareServers .*/MaxSpareServers 4/;
        s/^ServerLimit .*/ServerLimit 4/' "$D/httpd.conf"
site_pages "$D/htdocs" api
cat >"$D/policy.conf" <<POL
overrides = { state_file = "$T_DIR/state/sb.overrides";
              audit_file = "$T_DIR/state/sb.audit"; };
headers = { factors = true; };
factors = { load = { source = "scoreboard";
                     steps = ( { above = 0.6; factor = 0.5; } ); }; };
rules = (
  { name = "api"; paths = "/api/**"; limits = ( { rate = "10/hour"; } ); }
);
POL
cat >>"$D/site.conf" <<CONF
RateLimit2Zone $(zone_name fs) 1000
RateLimit2Policy "$D/policy.conf"
CONF
apache_start "$D" || { not_ok "apache starts"; done_testing; exit 1; }
exec 7<>"/dev/tcp/127.0.0.1/$P" 8<>"/dev/tcp/127.0.0.1/$P"
printf 'GET /api/x HTTP/1.1\r\n' >&7
printf 'GET /api/x HTTP/1.1\r\n' >&8
is "apache: 10/hour with 3 of 4 workers busy (x0.5) admits exactly 5 of 10" \
    5 "$(admitted 10 1 "http://127.0.0.1:$P/api/x")"
like "apache: X-RateLimit-Factors shows the scoreboard's load factor" \
    '^X-RateLimit-Factors: load=0.5$' \
    "$(curl -s -D - -o /dev/null "http://127.0.0.1:$P/api/x" | tr -d '\r')"
# A graceful restart while two old workers still hold their connections:
# the new generation's children walk a scoreboard that holds the old
# one's workers, and answer with the factor.
apache_graceful "$D"
for _ in $(seq 1 100); do
    [ "$(grep -c 'resuming normal operations' "$D/logs/error.log")" -ge 2 ] \
        && break
    sleep 0.1
done
is "apache: the graceful restart is done" 2 \
    "$(grep -c 'resuming normal operations' "$D/logs/error.log")"
out=$(curl -s -D - -o /dev/null "http://127.0.0.1:$P/api/x" | tr -d '\r')
like "apache: after a graceful restart with workers busy, still load=0.5" \
    '^X-RateLimit-Factors: load=0.5$' "$out"
exec 7>&- 8>&-
apache_stop "$D"
if grep -q 'AH00052\|segfault\|exit signal' "$D/logs/error.log"; then
    not_ok "apache: no child died walking the scoreboard"
    sed 's/^/# /' "$D/logs/error.log" | tail -5
else
    ok "apache: no child died walking the scoreboard"
fi
RL2_SB_POLICY=$D/policy.conf

# ======================= ratelimit2-fcgi =================================
# fcgi_codes PORT PATH N -- the statuses of N requests to PATH.
fcgi_codes() {
    local codes=""
    for _ in $(seq 1 "$3"); do
        codes="$codes$("$FCGI_CLIENT" "127.0.0.1:$1" REMOTE_ADDR=192.0.2.9 \
            REQUEST_METHOD=GET "REQUEST_URI=$2" \
            | sed -n 's/^Status: \([0-9]*\).*/\1/p') "
    done
    echo "$codes"
}

policy "$T_DIR/fcgi.conf" fcgi
echo "s3cret-token" >"$T_DIR/token"
FP=$(free_port)
fcgi_start d -c "$T_DIR/fcgi.conf" -z "$(zone_name ff)" -t 2 \
    -s "127.0.0.1:$FP" -m /rl2/metrics -T "$T_DIR/token" -A "socket=$SINK"
ok "ratelimit2-fcgi starts with load and schedule factors"
is "fcgi: /api admits exactly 5" \
    "$(printf '200 %.0s' 1 2 3 4 5)$(printf '429 %.0s' 1 2 3)" \
    "$(fcgi_codes "$FP" /api/x 8)"
is "fcgi: /web admits exactly 10" \
    "$(printf '200 %.0s' 1 2 3 4 5 6 7 8 9 10)$(printf '429 %.0s' 1 2)" \
    "$(fcgi_codes "$FP" /web/x 12)"
like "fcgi: X-RateLimit-Factors lists both factors" \
    '^X-RateLimit-Factors: load=0.5;schedule=0.5$' \
    "$("$FCGI_CLIENT" "127.0.0.1:$FP" REMOTE_ADDR=192.0.2.10 \
       REQUEST_METHOD=GET REQUEST_URI=/api/x | tr -d '\r')"
"$FCGI_CLIENT" -r responder "127.0.0.1:$FP" REMOTE_ADDR=127.0.0.1 \
    REQUEST_METHOD=GET REQUEST_URI=/rl2/metrics \
    'HTTP_AUTHORIZATION=Bearer s3cret-token' >"$T_DIR/fmetrics.txt"
is "fcgi: ratelimit2_factor shows both" "$GAUGES" "$(gauges "$T_DIR/fmetrics.txt")"
wait_lines 2
is "fcgi: its load change is one more event=factor line" 2 "$(lines load)"
is "fcgi: its schedule change is one more event=factor line" 2 \
    "$(lines schedule)"
fcgi_stop d
out=$(timeout 10 "$FCGI_BIN" -c "$RL2_SB_POLICY" -s "127.0.0.1:$(free_port)" 2>&1)
like "fcgi: a policy whose load is Apache's scoreboard is refused with its line" \
    'policy.conf:4: factors.load: source "scoreboard" is Apache' "$out"
done_testing
