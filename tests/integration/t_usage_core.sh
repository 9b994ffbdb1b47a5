#!/bin/bash
# t_usage_core.sh -- the usage series through a real Apache (event MPM):
# known traffic over two rules, two tiers (the policy's own tier mapping:
# a header trusted from the gateway's address), refusals and paths no
# rule applies to; the Prometheus counters per rule, tier and outcome
# and the status page's 24-hour totals per cell equal it exactly; after
# `apache2 -k graceful` both are still there and go on counting.
source "$(dirname "$0")/lib.sh"

D=$T_DIR/a
P=$(free_port)
apache_conf "$D" "$P" event
cat >"$D/policy.conf" <<'POLICY'
tier_from = { header = "X-RateLimit-Tier";
              header_from = [ "127.0.0.1", "127.0.0.3" ]; };
tiers = [ "free", "pro" ];
default_tier = "free";
rules = (
  { name = "login"; paths = "/login"; limits = ( { rate = "3/1h"; } ); },
  { name = "api"; paths = "/api/*";
    tiers = { free = ( { rate = "4/1h"; } );
              pro = ( { rate = "6/1h"; } ); }; }
);
POLICY
cat >"$D/site.conf" <<CONF
RateLimit2Zone $(zone_name a) 1000
RateLimit2Policy $D/policy.conf
<Location /rl2/metrics>
    SetHandler ratelimit2-metrics
</Location>
<Location /rl2/status>
    SetHandler ratelimit2-status
</Location>
CONF
echo ok >"$D/htdocs/login"
mkdir -p "$D/htdocs/api"
echo ok >"$D/htdocs/api/x"
apache_start "$D" || { not_ok "apache starts"; done_testing; exit 1; }
U="http://127.0.0.1:$P"

# hits N PATH [curl args...] -- N requests, their codes on one line.
hits() {
    local n=$1 path=$2 i
    shift 2
    for i in $(seq 1 "$n"); do code "$U$path" "$@"; echo -n " "; done
}

# ---- known traffic ----
# The limits are fixed windows of an hour of the zone's monotonic clock,
# and the counters below add up what they admitted and refused through
# the graceful restart: all of it must fall in one hour.
window_room 3600 60
is "api, free: 4 admitted, 2 refused" "200 200 200 200 429 429 " \
    "$(hits 6 /api/x)"
is "api, free, a second client: 2 admitted" "200 200 " \
    "$(hits 2 /api/x --interface 127.0.0.2)"
is "api, pro (the header from a trusted address): 3 admitted" \
    "200 200 200 " \
    "$(hits 3 /api/x -H 'X-RateLimit-Tier: pro' --interface 127.0.0.3)"
is "login: 3 admitted, 2 refused" "200 200 200 429 429 " "$(hits 5 /login)"
is "no rule: 4 admitted" "200 200 200 404 " \
    "$(hits 3 /index.html; hits 1 /nothing-here)"

# The requests no rule applies to: the four above and each scrape and
# page asked for so far (counted before it is answered), all in the
# default tier.
scrapes=0
scrape() {
    scrapes=$((scrapes + 1))
    curl -s "$U/rl2/metrics" >"$T_DIR/metrics.txt"
}
page() {
    scrapes=$((scrapes + 1))
    curl -s "$U/rl2/status" >"$T_DIR/status.html"
}

# counters -- the request counters against the traffic so far ($extra
# more api/free admissions from 127.0.0.2 after the restart, the last of
# them at its limit).  A refusal of login, a rule with no limits per
# tier, is decided before the tier is resolved: tier "(none)", as for
# every refusal of such a rule.
counters() {
    counters_are "$T_DIR/metrics.txt" <<EXP
ratelimit2_near_limit_total{rule="api",tier="free"} $((1 + extra / 2))
ratelimit2_near_limit_total{rule="api",tier="pro"} 0
ratelimit2_near_limit_total{rule="login",tier="(none)"} 0
ratelimit2_near_limit_total{rule="login",tier="free"} 1
ratelimit2_overflow_total{rule="api",tier="free"} 0
ratelimit2_overflow_total{rule="api",tier="pro"} 0
ratelimit2_overflow_total{rule="login",tier="(none)"} 0
ratelimit2_overflow_total{rule="login",tier="free"} 0
ratelimit2_requests_total{rule="(unmatched)",tier="free",outcome="unmatched"} $((4 + scrapes))
ratelimit2_requests_total{rule="api",tier="free",outcome="allowed"} $((6 + extra))
ratelimit2_requests_total{rule="api",tier="free",outcome="denied"} 2
ratelimit2_requests_total{rule="api",tier="free",outcome="dry_run_denied"} 0
ratelimit2_requests_total{rule="api",tier="pro",outcome="allowed"} 3
ratelimit2_requests_total{rule="api",tier="pro",outcome="denied"} 0
ratelimit2_requests_total{rule="api",tier="pro",outcome="dry_run_denied"} 0
ratelimit2_requests_total{rule="login",tier="(none)",outcome="allowed"} 0
ratelimit2_requests_total{rule="login",tier="(none)",outcome="denied"} 2
ratelimit2_requests_total{rule="login",tier="(none)",outcome="dry_run_denied"} 0
ratelimit2_requests_total{rule="login",tier="free",outcome="allowed"} 3
ratelimit2_requests_total{rule="login",tier="free",outcome="denied"} 0
ratelimit2_requests_total{rule="login",tier="free",outcome="dry_run_denied"} 0
EXP
}

# usage_lines -- each cell's requests and refused of the status page,
# summed from its per-minute series of the last 24 hours (the per-minute
# peaks depend on where the minutes fall: the unit tests check them).
usage_lines() {
    grep -o '<h3>[^<]* &middot; [^<]*: [0-9]* requests, [0-9]* refused' \
        "$T_DIR/status.html" | sed 's/<h3>//' | sort
}

# expected_lines -- the same from the traffic sent.
expected_lines() {
    echo "(unmatched) &middot; free: $((4 + scrapes)) requests, 0 refused"
    echo "api &middot; free: $((8 + extra)) requests, 2 refused"
    echo "api &middot; pro: 3 requests, 0 refused"
    echo "login &middot; (none): 2 requests, 2 refused"
    echo "login &middot; free: 3 requests, 0 refused"
}

extra=0
scrape
counters
page
is "status page: each cell's last 24 hours equal the traffic" \
    "$(expected_lines | sort)" "$(usage_lines)"
like "status page: the top clients by use" '<h2>Top clients by use</h2>' \
    "$(cat "$T_DIR/status.html")"

# ---- a graceful restart keeps the series ----
# Loaded again, the module opens the object again: generation 2 says
# the new generation's children answer (each look is a scrape).
apache_graceful "$D"
gen=""
for _ in $(seq 1 100); do
    scrape
    gen=$(grep '^ratelimit2_policy_generation ' "$T_DIR/metrics.txt")
    [ "$gen" = "ratelimit2_policy_generation 2" ] && break
    sleep 0.1
done
is "graceful restart: the policy loaded again" \
    "ratelimit2_policy_generation 2" "$gen"
is "after graceful: the second client's next 2 admitted" "200 200 " \
    "$(hits 2 /api/x --interface 127.0.0.2)"
extra=2
scrape
counters
page
is "after graceful: the series go on from where they were" \
    "$(expected_lines | sort)" "$(usage_lines)"
apache_stop "$D"
done_testing
