#!/bin/bash
# t_factor_reputation.sh -- the reputation factor (policy
# factors.reputation) in the real servers.  Clients are made distinct
# from loopback by X-Forwarded-For (127.0.0.1 a trusted proxy).  On a
# limit of 10 a day with min_requests 4, a client is x1 for 4 requests,
# then x1.2 (no refusal): exactly 12 of its requests pass, 10 x 1.2; its
# refusals then lower it step by step (x0.961538, x0.928571, x0.9,
# x0.875: 1 of 13 refused, 2 of 14, ...), as X-RateLimit-Factors shows:
# Apache (event MPM) and lighttpd with ratelimit2-fcgi; another client is
# untouched.  Two Apaches sharing one Redis read and write one history:
# each sees the requests and refusals the other counted.
. "$(dirname "$0")/fcgi_lib.sh"

redis_start_first
mkdir -p "$T_DIR/state"
chmod 777 "$T_DIR/state"

# The windows (a day) follow the monotonic clock in a zone and the real
# one in Redis: never count across either's boundary.
window_room 86400 60

# policy FILE NAME [EXTRA] -- 10 a day per client on /api, the
# reputation factor shown in X-RateLimit-Factors.
policy() {
    cat >"$1" <<POL
overrides = { state_file = "$T_DIR/state/$2.overrides";
              audit_file = "$T_DIR/state/$2.audit"; };
trusted_proxies = [ "127.0.0.1" ];
headers = { factors = true; };
factors = { reputation = { window = "24h"; min_requests = 4; }; };
rules = (
  { name = "api"; paths = "/api/**";
    limits = ( { rate = "10/day"; algorithm = "fixed_window"; } ); }
);
${3:-}
POL
}

# hits URL N CLIENT -- N requests in turn (one curl, one connection),
# one line each: the status and X-RateLimit-Factors ("-" when absent).
hits() {
    local args=()
    for _ in $(seq 1 "$2"); do
        args+=(-o /dev/null "$1")
    done
    curl -s -H "X-Forwarded-For: $3" \
        -w '%{http_code} %header{x-ratelimit-factors}\n' "${args[@]}" \
        | awk '{ print $1, (NF > 1 ? $2 : "-") }'
}

# The history the tests follow: 4 requests at x1, 8 admitted at x1.2,
# then refused at x1.2 and lower.
STEPS="$(for _ in 1 2 3 4; do echo "200 reputation=1"; done
for _ in 1 2 3 4 5 6 7 8; do echo "200 reputation=1.2"; done)
429 reputation=1.2
429 reputation=0.961538
429 reputation=0.928571
429 reputation=0.9
429 reputation=0.875"

# apache_with DIR PORT NAME [EXTRA] -- an Apache on PORT with the policy.
apache_with() {
    apache_conf "$1" "$2" event
    site_pages "$1/htdocs" api
    policy "$1/policy.conf" "$3" "${4:-}"
    cat >>"$1/site.conf" <<CONF
RateLimit2Zone $(zone_name "$3") 1000
RateLimit2Policy "$1/policy.conf"
CONF
    apache_start "$1"
}

# ======================= Apache, its zone =================================
A=$T_DIR/apache
PA=$(free_port)
apache_with "$A" "$PA" ra || { not_ok "apache starts"; done_testing; exit 1; }
ok "apache starts with the reputation factor"
out=$(hits "http://127.0.0.1:$PA/api/x" 17 192.0.2.1)
is "apache: x1 for 4, x1.2 for 9, then each refusal lowers it" "$STEPS" "$out"
is "apache: exactly 10 x 1.2 = 12 admitted" 12 "$(grep -c '^200 ' <<<"$out")"
is "apache: another client is untouched" "200 reputation=1" \
    "$(hits "http://127.0.0.1:$PA/api/x" 1 192.0.2.2)"
# Stopped meanwhile: the suite waits for it at the end.
apache_stop "$A" &
STOPPING=($!)

# ======================= lighttpd + ratelimit2-fcgi ========================
D=$T_DIR/lighttpd
PL=$(free_port)
site_pages "$D/htdocs" api
chmod -R 755 "$D"
policy "$D/policy.conf" rl
lighttpd_authorizer_conf "$D" "$PL" 1 '"mod_fastcgi"' \
    "-c $D/policy.conf -z $(zone_name rl) -t 4"
lighttpd_start "$D" || { not_ok "lighttpd starts"; done_testing; exit 1; }
ok "lighttpd starts with ratelimit2-fcgi and the reputation factor"
out=$(hits "http://127.0.0.1:$PL/api/x" 17 192.0.2.1)
is "fcgi: exactly 10 x 1.2 = 12 admitted" 12 "$(grep -c '^200 ' <<<"$out")"
is "fcgi: its refusals show x1.2, then each lowers it" \
    "$(grep '^429' <<<"$STEPS")" "$(grep '^429' <<<"$out")"
lighttpd_stop "$D"

# ======================= two Apaches, one Redis ===========================
REDIS="redis = { server = \"127.0.0.1:$RP\"; timeout = 1000; };"
A1=$T_DIR/apache1
A2=$T_DIR/apache2
# After A1 listens, so that free_port never hands out its port again.
P1=$(free_port)
apache_with "$A1" "$P1" r1 "$REDIS" \
    || { not_ok "apache 1 starts"; done_testing; exit 1; }
P2=$(free_port)
apache_with "$A2" "$P2" r2 "$REDIS" \
    || { not_ok "apache 2 starts"; done_testing; exit 1; }
ok "two apaches start on one redis-server"
U1="http://127.0.0.1:$P1/api/x"
U2="http://127.0.0.1:$P2/api/x"
out="$(hits "$U1" 4 192.0.2.3)
$(hits "$U2" 8 192.0.2.3)
$(hits "$U1" 1 192.0.2.3)
$(hits "$U2" 1 192.0.2.3)
$(hits "$U1" 1 192.0.2.3)
$(hits "$U2" 1 192.0.2.3)
$(hits "$U1" 1 192.0.2.3)"
is "redis: each apache reads the history the other wrote" "$STEPS" "$out"
is "redis: exactly 12 admitted between them" 12 "$(grep -c '^200 ' <<<"$out")"
is "redis: another client is untouched" \
    "200 reputation=1" "$(hits "$U1" 1 192.0.2.4)"
apache_stop "$A1" &
STOPPING+=($!)
apache_stop "$A2"
wait "${STOPPING[@]}"
done_testing
