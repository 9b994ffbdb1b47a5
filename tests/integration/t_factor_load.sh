#!/bin/bash
# t_factor_load.sh -- the load factor (policy factors.load) in the real
# servers: the suite writes the load file; Apache (event MPM) and
# ratelimit2-fcgi admit exactly the limit scaled by the step the load is
# in (10 an hour under x0.5: 5), their metrics show
# ratelimit2_factor{factor="load"}, and the change is one syslog line
# (event=factor), however many requests and processes saw the load.
. "$(dirname "$0")/fcgi_lib.sh"

sink_start
LOADF=$T_DIR/loadavg
echo "0.93 0.50 0.40 1/100 1234" >"$LOADF"
chmod 644 "$LOADF"
mkdir -p "$T_DIR/state"
chmod 777 "$T_DIR/state"

# policy FILE NAME -- limit 10 an hour on /api, x0.5 above a load of 0.8.
policy() {
    cat >"$1" <<POL
overrides = { state_file = "$T_DIR/state/$2.overrides";
              audit_file = "$T_DIR/state/$2.audit"; };
factors = { load = { source = "$LOADF"; per_cpu = false;
                     steps = ( { above = 0.8; factor = 0.5; },
                               { below = 0.3; factor = 2; } );
                     hold = "30s"; }; };
rules = (
  { name = "api"; paths = "/api/**"; limits = ( { rate = "10/hour"; } ); }
);
POL
}

# factor_lines -- the event=factor lines the sink caught so far.
factor_lines() {
    grep -c 'ratelimit2: event=factor factor=load from=1 to=0.5 load=0.93' \
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
ok "apache starts with a load factor"
is "apache: 10/hour under a load factor of 0.5 admits exactly 5 of 20" 5 \
    "$(admitted 20 4 "http://127.0.0.1:$P/api/x")"
curl -s "http://127.0.0.1:$P/rl2/metrics" >"$T_DIR/metrics.txt"
is "apache: ratelimit2_factor shows 0.5" 'ratelimit2_factor{factor="load"} 0.5' \
    "$(grep '^ratelimit2_factor{' "$T_DIR/metrics.txt")"
promtool_ok "$T_DIR/metrics.txt"
wait_lines 1
is "apache: the change is one event=factor line" 1 "$(factor_lines)"
apache_stop "$D"

# ======================= ratelimit2-fcgi =================================
policy "$T_DIR/fcgi.conf" fcgi
echo "s3cret-token" >"$T_DIR/token"
FP=$(free_port)
fcgi_start d -c "$T_DIR/fcgi.conf" -z "$(zone_name ff)" -t 2 \
    -s "127.0.0.1:$FP" -m /rl2/metrics -T "$T_DIR/token" -A "socket=$SINK"
ok "ratelimit2-fcgi starts with a load factor"
codes=""
for _ in $(seq 1 12); do
    codes="$codes$("$FCGI_CLIENT" "127.0.0.1:$FP" REMOTE_ADDR=192.0.2.9 \
        REQUEST_METHOD=GET REQUEST_URI=/api/x \
        | sed -n 's/^Status: \([0-9]*\).*/\1/p') "
done
is "fcgi: 10/hour under a load factor of 0.5 admits exactly 5" \
    "$(printf '200 %.0s' 1 2 3 4 5)$(printf '429 %.0s' 1 2 3 4 5 6 7)" \
    "$codes"
is "fcgi: ratelimit2_factor shows 0.5" 'ratelimit2_factor{factor="load"} 0.5' \
    "$("$FCGI_CLIENT" -r responder "127.0.0.1:$FP" REMOTE_ADDR=127.0.0.1 \
       REQUEST_METHOD=GET REQUEST_URI=/rl2/metrics \
       'HTTP_AUTHORIZATION=Bearer s3cret-token' \
       | tr -d '\r' | grep '^ratelimit2_factor{')"
wait_lines 2
is "fcgi: its change is one more event=factor line" 2 "$(factor_lines)"
fcgi_stop d
done_testing
