#!/bin/bash
# t_redis_tiers.sh -- a client's tier from the Redis hash a billing system
# writes (tier_from.redis), with Apache configured only through the policy
# file: a user whose hash says "pro" gets pro limits; a change to the hash
# takes effect after the cache time; an unknown user is free; with Redis
# down the next source (a variable set by a trusted upstream) decides,
# with no 5xx and no wait beyond the command timeout.
source "$(dirname "$0")/lib.sh"
# Its counted limits are fixed windows of an hour (the zone's monotonic
# hours, or Redis TIME's): the suite takes well under a minute, so it
# starts with a minute's room in the hour of both clocks.
window_room 3600 60

redis_start_first
sink_start

D=$T_DIR/apache
PA=$(free_port)
apache_conf "$D" "$PA" event
htpasswd -bc "$D/users" alice pw >/dev/null 2>&1
for u in bob carol dave erin; do
    htpasswd -b "$D/users" "$u" pw >/dev/null 2>&1
done
cat >"$D/policy.conf" <<POLICY
redis = { server = "127.0.0.1:$RP"; timeout = 1000; };
alerts = { socket = "$SINK"; };
tiers = [ "free", "pro" ];
default_tier = "free";
api_key = { header = "X-API-Key"; };
tier_from = {
    variable = "RL2_TIER";
    redis = { key = "billing:user:%s"; field = "tier"; cache = 2;
              by = [ "user", "api_key" ]; };
};
rules = (
  { name = "api"; paths = "/api/**"; key = "user";
    tiers = { free = ( { rate = "3/hour"; } );
              pro = ( { rate = "10/hour"; } ); }; },
  { name = "keyed"; paths = "/k/**"; key = "api_key";
    tiers = { free = ( { rate = "3/hour"; } );
              pro = ( { rate = "10/hour"; } ); }; }
);
POLICY
# One child process: the cache is per process, and the test of its
# expiry needs every request to meet the same cache.
cat >"$D/site.conf" <<CONF
StartServers 1
ServerLimit 1
MaxRequestWorkers 32
RateLimit2Zone $(zone_name tiers) 10000
RateLimit2Policy "$D/policy.conf"
# The trusted upstream of this test: a header turned into the variable.
SetEnvIf X-Upstream-Tier "^(.+)\$" RL2_TIER=\$1
<Location /api>
    AuthType Basic
    AuthName rl2
    AuthBasicProvider file
    AuthUserFile "$D/users"
    Require valid-user
</Location>
CONF
mkdir -p "$D/htdocs/api" "$D/htdocs/k"
echo ok >"$D/htdocs/api/x"
echo ok >"$D/htdocs/k/x"
apache_start "$D" || { not_ok "apache starts"; done_testing; exit 1; }
ok "apache starts with Redis and the tier lookup from the policy file"
U="http://127.0.0.1:$PA/api/x"

# limit_of USER [curl args] -- the quota (q=) of the RateLimit-Policy
# of one request.
limit_of() {
    local u=$1
    shift
    curl -s -o /dev/null -D - -u "$u:pw" "$@" "$U" | tr -d '\r' \
        | sed -n 's/^RateLimit-Policy: .*;q=\([0-9]*\).*/\1/p'
}

redis-cli -p "$RP" HSET billing:user:alice tier pro >/dev/null
is "alice's hash says pro: she gets pro's limit" 10 "$(limit_of alice)"
is "alice is admitted exactly 10 of 30 (pro; one request above)" 9 \
   "$(admitted 29 4 "$U" -A alice:pw)"
is "bob has no entry: free's limit" 3 "$(limit_of bob)"
is "bob is admitted exactly 3 of 20 (free; one request above)" 2 \
   "$(admitted 19 4 "$U" -A bob:pw)"

# API keys: the billing system writes the SHA-256 of the key, as
# docs/operations.md shows.
KEY="k-$$-secret"
redis-cli -p "$RP" HSET \
    "billing:user:$(printf %s "$KEY" | sha256sum | cut -c1-64)" tier pro \
    >/dev/null
q=$(curl -s -o /dev/null -D - -H "X-API-Key: $KEY" \
    "http://127.0.0.1:$PA/k/x" | tr -d '\r' \
    | sed -n 's/^RateLimit-Policy: .*;q=\([0-9]*\).*/\1/p')
is "an API key whose SHA-256 the hash lists as pro gets pro" 10 "$q"
q=$(curl -s -o /dev/null -D - -H "X-API-Key: other-key" \
    "http://127.0.0.1:$PA/k/x" | tr -d '\r' \
    | sed -n 's/^RateLimit-Policy: .*;q=\([0-9]*\).*/\1/p')
is "an unknown API key is free" 3 "$q"
is "the key itself is nowhere in Redis" "" \
   "$(redis-cli -p "$RP" --scan --pattern "*$KEY*")"

# The billing system upgrades carol: the answer is cached for 2 s.
redis-cli -p "$RP" HSET billing:user:carol tier free >/dev/null
is "carol starts free" 3 "$(limit_of carol)"
redis-cli -p "$RP" HSET billing:user:carol tier pro >/dev/null
is "right after the upgrade, the cached answer still holds" 3 \
   "$(limit_of carol)"
sleep 2.5
is "after the cache time, carol is pro" 10 "$(limit_of carol)"
lims=""
for _ in 1 2 3 4 5 6; do lims="$lims $(limit_of carol)"; done
is "and stays pro" " 10 10 10 10 10 10" "$lims"

# ---- Redis down: the next source, no 5xx ----
kill -KILL "$(cat "$RDIR/redis.pid")"
rm -f "$RDIR/redis.pid"
start=$(date +%s%N)
is "redis down: dave's tier comes from the upstream's variable" 10 \
   "$(limit_of dave -H 'X-Upstream-Tier: pro')"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
what="redis down: no longer than the timeout + 1 s ($ms ms)"
if [ "$ms" -lt 2000 ]; then ok "$what"; else not_ok "$what"; fi
is "redis down: erin without a variable is free" 3 "$(limit_of erin)"
out=$(ab -q -n 40 -c 4 -A erin:pw "$U" 2>&1)
is "redis down: every request answered" 40 \
   "$(printf '%s\n' "$out" | sed -n 's/^Complete requests: *//p')"
n5xx=$(grep -c '" 5[0-9][0-9]$' "$D/logs/access.log")
is "redis down: no 5xx in the access log" 0 "$n5xx"

# ---- a bad tier_from.redis stops configtest with file:line ----
B=$T_DIR/bad
apache_conf "$B" "$(free_port)" event
cat >"$B/policy.conf" <<'POLICY'
tiers = [ "free", "pro" ];
tier_from = {
    redis = { key = "billing:user"; };
};
POLICY
echo "RateLimit2Policy \"$B/policy.conf\"" >"$B/site.conf"
like "a tier lookup without %s fails configtest with file:line" \
     "policy.conf:3: exactly one of 'key' and 'field' must hold" \
     "$(apache_configtest "$B")"
cat >"$B/policy.conf" <<'POLICY'
tiers = [ "free", "pro" ];
tier_from = {
    redis = { key = "billing:user:%s"; };
};
POLICY
# The store is assembled in post_config, after configtest's checks: the
# server refuses to start, saying why in its error log.
RL2_PIDFILES+=("$B/httpd.pid")
env $(rl2_apache_env) /usr/sbin/apache2 -f "$B/httpd.conf" -k start \
    >/dev/null 2>&1
for _ in $(seq 1 50); do
    grep -q 'tier_from' "$B/logs/error.log" 2>/dev/null && break
    sleep 0.1
done
like "a tier lookup without a Redis server stops the start, with file:line" \
     "policy.conf:3: tier_from.redis needs a Redis server" \
     "$(cat "$B/logs/error.log" 2>/dev/null)"

apache_stop "$D"
done_testing
