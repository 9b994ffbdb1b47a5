#!/bin/bash
# t_factor_schedule.sh -- the schedule factor (policy factors.schedule)
# in the real servers: a window built from the current time in a named
# zone (America/New_York) holds now, x0.5: Apache (event MPM) and
# ratelimit2-fcgi admit exactly 5 of 10 on a limit of 10 an hour, their
# metrics show ratelimit2_factor{factor="schedule"}, the change is one
# syslog line (event=factor); a window that starts in two hours leaves
# the limit at 10.
. "$(dirname "$0")/fcgi_lib.sh"

sink_start
mkdir -p "$T_DIR/state"
chmod 777 "$T_DIR/state"
ZONE=America/New_York

# local FMT OFFSET -- the zone's wall clock OFFSET seconds from now.
local_at() {
    TZ=$ZONE date -d "@$(($(date +%s) + $2))" "+$1"
}

# From an hour ago to an hour ahead: may cross midnight, and then its
# day is the one it started on.
HOLD="$(local_at %a -3600) $(local_at %H:%M -3600)-$(local_at %H:%M 3600)"
# Two to three hours ahead: never now.
LATER="$(local_at %a 7200) $(local_at %H:%M 7200)-$(local_at %H:%M 10800)"

# policy FILE NAME WHEN -- limit 10 an hour on /api, x0.5 in WHEN.
policy() {
    cat >"$1" <<POL
overrides = { state_file = "$T_DIR/state/$2.overrides";
              audit_file = "$T_DIR/state/$2.audit"; };
factors = { schedule = { zone = "$ZONE";
                         windows = ( { when = "$3"; factor = 0.5; } ); }; };
rules = (
  { name = "api"; paths = "/api/**"; limits = ( { rate = "10/hour"; } ); }
);
POL
}

factor_lines() {
    grep -c "ratelimit2: event=factor factor=schedule from=1 to=0.5 zone=$ZONE" \
        "$LOG"
}

# wait_lines N -- until N such lines arrived (2 s at most).
wait_lines() {
    for _ in $(seq 1 40); do
        [ "$(factor_lines)" -ge "$1" ] && break
        sleep 0.05
    done
}

# ======================= Apache ==========================================
D=$T_DIR/apache
P=$(free_port)
apache_conf "$D" "$P" event
site_pages "$D/htdocs" api
policy "$D/policy.conf" apache "$HOLD"
cat >>"$D/site.conf" <<CONF
RateLimit2Zone $(zone_name sa) 1000
RateLimit2Policy "$D/policy.conf"
RateLimit2Alerts On socket=$SINK interval=60
<Location /rl2/metrics>
    RateLimit2Engine Off
    SetHandler ratelimit2-metrics
    Require ip 127.0.0.1
</Location>
CONF
apache_start "$D" || { not_ok "apache starts"; done_testing; exit 1; }
ok "apache starts with a schedule factor ($HOLD in $ZONE)"
is "apache: 10/hour in a window of 0.5 admits exactly 5 of 10" 5 \
    "$(admitted 10 4 "http://127.0.0.1:$P/api/x")"
curl -s "http://127.0.0.1:$P/rl2/metrics" >"$T_DIR/metrics.txt"
is "apache: ratelimit2_factor shows 0.5" \
    'ratelimit2_factor{factor="schedule"} 0.5' \
    "$(grep '^ratelimit2_factor{' "$T_DIR/metrics.txt")"
promtool_ok "$T_DIR/metrics.txt"
wait_lines 1
is "apache: the change is one event=factor line" 1 "$(factor_lines)"
apache_stop "$D"

# ======================= ratelimit2-fcgi =================================
# fcgi_codes PORT -- the statuses of 10 requests to /api/x.
fcgi_codes() {
    local codes=""
    for _ in $(seq 1 10); do
        codes="$codes$("$FCGI_CLIENT" "127.0.0.1:$1" REMOTE_ADDR=192.0.2.9 \
            REQUEST_METHOD=GET REQUEST_URI=/api/x \
            | sed -n 's/^Status: \([0-9]*\).*/\1/p') "
    done
    echo "$codes"
}

policy "$T_DIR/fcgi.conf" fcgi "$HOLD"
FP=$(free_port)
fcgi_start d -c "$T_DIR/fcgi.conf" -z "$(zone_name sf)" -t 2 \
    -s "127.0.0.1:$FP" -A "socket=$SINK"
ok "ratelimit2-fcgi starts with a schedule factor"
is "fcgi: 10/hour in a window of 0.5 admits exactly 5 of 10" \
    "$(printf '200 %.0s' 1 2 3 4 5)$(printf '429 %.0s' 1 2 3 4 5)" \
    "$(fcgi_codes "$FP")"
wait_lines 2
is "fcgi: its change is one more event=factor line" 2 "$(factor_lines)"
fcgi_stop d

policy "$T_DIR/later.conf" later "$LATER"
FP=$(free_port)
fcgi_start e -c "$T_DIR/later.conf" -z "$(zone_name sl)" -t 2 \
    -s "127.0.0.1:$FP"
is "fcgi: a window that excludes now ($LATER) admits all 10" \
    "$(printf '200 %.0s' 1 2 3 4 5 6 7 8 9 10)" "$(fcgi_codes "$FP")"
fcgi_stop e
done_testing
