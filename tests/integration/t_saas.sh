#!/bin/bash
# t_saas.sh -- conf/examples/saas-api.conf, the reference policy
# (docs/tiers.md), enforced by a real Apache: one test per row of the
# table, the per-route limits, the endpoint overrides, the special users
# and the exemptions.
#
# The limiter runs on the suite's clock (fake_clock_on): it stands still
# while the requests of a test are sent, however slowly a loaded machine
# sends them, and moves only where a test moves it.  Most limits here
# refill in seconds (api_requests one unit per 3.6 s and its overflow one
# per 6 s, refresh_user one per 6 s, stream_per_user one a second): on the
# real clock, what a test admits would depend on how long it took.
source "$(dirname "$0")/lib.sh"

D=$T_DIR/saas
PORT=$(free_port)
apache_conf "$D" "$PORT" event
POLICY="$RL2_ROOT/conf/examples/saas-api.conf"
ZONE=$(zone_name saas)
mkdir -p "$D/cgi" "$D/run"
# A stream says it has started, then lasts until the test lets it end
# (at most 30 s): no timing guess about a loaded machine.
cat >"$D/cgi/app.sh" <<APP
#!/bin/sh
case "\$REQUEST_URI" in
*/stream*)
    touch "$D/run/started.\$\$"
    i=0
    while [ ! -e "$D/run/end" ] && [ \$i -lt 300 ]; do
        sleep 0.1; i=\$((i + 1))
    done ;;
esac
printf 'Content-Type: text/plain\r\n\r\nok\n'
APP
chmod 755 "$D/cgi" "$D/cgi/app.sh"
chmod 777 "$D/run"
: >"$D/empty"
users="alice paul betty erin fred fiona frank pat pam premium_user_123
beta_tester_456 gina glen"
first=1
for u in $users; do
    if [ $first = 1 ]; then
        htpasswd -bc "$D/htpasswd" "$u" pw 2>/dev/null
        first=0
    else
        htpasswd -b "$D/htpasswd" "$u" pw 2>/dev/null
    fi
done
chmod 644 "$D/htpasswd"
cat >"$D/site.conf" <<CONF
RateLimit2Zone $ZONE 10000
RateLimit2Policy "$POLICY"
# The tests speak as the trusted front proxy: X-RateLimit-Tier and
# X-Forwarded-For from 127.0.0.1 are believed.
RateLimit2TrustedProxy 127.0.0.1
ScriptAliasMatch "^/.*" "$D/cgi/app.sh"
<Directory "$D/cgi">
    Require all granted
</Directory>
<Location />
    AuthType Basic
    AuthName api
    AuthUserFile "$D/htpasswd"
    <If "-n req('Authorization')">
        Require valid-user
    </If>
    <Else>
        Require all granted
    </Else>
</Location>
CONF
fake_clock_on || { not_ok "the suite's clock builds"; done_testing; exit 1; }
apache_start "$D" || { not_ok "apache starts"; done_testing; exit 1; }
URL="http://127.0.0.1:$PORT"

# req USER TIER METHOD PATH -> status code ("-" for anonymous / no tier)
req() {
    local args=(-X "$3")
    [ "$1" != - ] && args+=(-u "$1:pw")
    [ "$2" != - ] && args+=(-H "X-RateLimit-Tier: $2")
    code "${args[@]}" "$URL$4"
}

# headers USER TIER METHOD PATH -> response headers
headers() {
    local args=(-X "$3")
    [ "$1" != - ] && args+=(-u "$1:pw")
    [ "$2" != - ] && args+=(-H "X-RateLimit-Tier: $2")
    curl -s -D - -o /dev/null "${args[@]}" "$URL$4"
}

# codes N USER TIER METHOD PATH -> the N status codes, space-separated
codes() {
    local n=$1 out="" i
    shift
    for i in $(seq 1 "$n"); do
        out="$out $(req "$@")"
    done
    echo "${out# }"
}

# burst N C USER TIER METHOD PATH -> how many were admitted
burst() {
    local n=$1 c=$2 user=$3 tier=$4 method=$5 path=$6 args=()
    [ "$user" != - ] && args+=(-A "$user:pw")
    [ "$tier" != - ] && args+=(-H "X-RateLimit-Tier: $tier")
    [ "$method" = POST ] && args+=(-p "$D/empty" -T text/plain)
    admitted "$n" "$c" "$URL$path" "${args[@]}"
}

# ---- ai_generation ----
is "free user: 5 generations, then the overflow 2, then 429" \
   "200 200 200 200 200 200 200 429" \
   "$(codes 8 alice - POST /ai/generate)"
h=$(headers alice - POST /ai/generate)
like "free user's refusal names ai_generation" '"ai_generation";r=0' "$h"
like "free ai_generation also has the daily quota of 20" \
     '"ai_generation.2";q=20;w=86400' "$(headers gina - POST /ai/generate)"
like "pro ai_generation is 50/hour" 'X-RateLimit-Limit: 50' \
     "$(headers paul pro POST /ai/generate)"
like "business ai_generation is 200/hour with 2000/day" \
     '"ai_generation";q=200;w=3600, "ai_generation.2";q=2000;w=86400' \
     "$(headers betty business POST /ai/generate)"

# ---- special users ----
h=$(headers premium_user_123 - POST /ai/generate)
like "premium_user_123 gets ai_generation 100/hour" \
     '"ai_generation";q=100;w=3600' "$h"
like "premium_user_123 is business elsewhere (api_requests 50000)" \
     'X-RateLimit-Limit: 50000' \
     "$(headers premium_user_123 - GET /anything)"
is "beta_tester_456 (enterprise): 30 generations, never refused" \
   "30" "$(burst 30 4 beta_tester_456 - POST /ai/generate)"
h=$(headers beta_tester_456 - POST /ai/generate)
if printf '%s' "$h" | grep -q '^RateLimit:'; then
    not_ok "unlimited sends no RateLimit header"
else
    ok "unlimited sends no RateLimit header"
fi
# used LIMIT-NAME: units counted so far for beta_tester_456
used() {
    # The peek reads the zone on the suite's clock too.
    env $(rl2_apache_env) "$BUILD/tools/rl2_peek" "$ZONE" "$POLICY" \
        POST /ai/generate 127.0.0.1 beta_tester_456 \
        | awk -v n="$1" '$1 == n { print $2 - $3 }'
}
before=$(used ai_generation.unlimited)
codes 7 beta_tester_456 - POST /ai/generate >/dev/null
is "unlimited enterprise is still counted (7 more)" "$((before + 7))" \
   "$(used ai_generation.unlimited)"
is "erin (enterprise by header) has api_requests unlimited too" "" \
   "$(headers erin enterprise GET /x | grep '^RateLimit:')"

# ---- endpoint overrides ----
is "free: /api/v2/generation/generate is 3/hour" "200 200 200 429" \
   "$(codes 4 fred - POST /api/v2/generation/generate)"
like "pro: /api/v2/generation/generate is 30/hour" \
     '"generate_endpoint";q=30;w=3600' \
     "$(headers pat pro POST /api/v2/generation/generate)"
is "free: /generations/*/export is 2/hour" "200 200 429" \
   "$(codes 3 fiona - POST /generations/g1/export)"

# ---- the other operations ----
is "free project_validation: 50/hour + overflow 10" "60" \
   "$(burst 70 8 frank - POST /projects/validate)"
is "free file_operations: 100/hour + overflow 20" "120" \
   "$(burst 150 8 glen - GET /generations/g1/files)"
is "free api_requests (default rule): 1000/hour + overflow 50" "1050" \
   "$(burst 1100 16 alice - GET /v1/things)"
clock_advance 3600000
is "api_requests: 3.6 s later, one unit more (1000/hour)" "200 429" \
   "$(codes 2 alice - GET /v1/things)"
clock_advance 2400000
is "api_requests: 6 s after it began, the overflow has one unit (50/5min)" \
   "200 429" "$(codes 2 alice - GET /v1/things)"
is "free auth_operations: 10 per 10 min" "10" \
   "$(burst 12 1 gina - POST /auth/refresh)"
like "the refusal names the tightest layer, auth_operations" \
     '"rule":"auth_operations"' \
     "$(curl -s -X POST -u gina:pw "$URL/auth/refresh")"

# ---- per-route limits on top ----
is "iterate: 3/min per user" "200 200 200 429" \
   "$(codes 4 pam pro POST /generations/iterate)"
is "preview: 20/hour" "20" "$(burst 25 4 pat pro POST /projects/preview)"
is "GET /projects/: 100/hour" "100" "$(burst 110 8 pat pro GET /projects/)"
is "download: 10/hour" "10" \
   "$(burst 12 2 pat pro GET /generations/g2/download)"
is "pro export: 5/hour" "5" "$(burst 7 1 paul pro POST /generations/g2/export)"
is "login: 5/min per address" "200 200 200 200 200 429" \
   "$(codes 6 - - POST /auth/login)"
is "register: 3/hour per address" "200 200 200 429" \
   "$(codes 4 - - POST /auth/register)"
is "refresh: 10/min per user" "10" "$(burst 11 1 erin pro POST /auth/refresh)"

# ---- exemptions ----
is "exempt paths are never limited" "60" "$(burst 60 4 - - GET /health)"
is "exempt paths carry no RateLimit header" "" \
   "$(headers - - GET /openapi.json | grep '^RateLimit')"
is "the internal network 10.0.0.0/8 is never limited" "200 200 200 200" \
   "$(for i in 1 2 3 4; do code -X POST -H 'X-Forwarded-For: 10.1.2.3' \
       "$URL/auth/register"; echo; done | xargs)"

# ---- concurrent streams: 1 for free, 3 for pro ----
S=/api/v2/generation/generate/s1/stream

# started N -- until N streams have started (at most 10 s)
started() {
    local i
    for i in $(seq 1 200); do
        [ "$(ls "$D/run" | grep -c '^started')" -ge "$1" ] && return 0
        sleep 0.05
    done
    return 1
}

# refused_by USER TIER -> the rule named by a refused stream, or the code
refused_by() {
    local out
    out=$(curl -s -w ' %{http_code}' -u "$1:pw" -H "X-RateLimit-Tier: $2" \
        "$URL$S")
    case "$out" in
    *' 429') printf '%s' "$out" | grep -o '"rule":"[a-z_]*"' ;;
    *) echo "${out##* }" ;;
    esac
}

rm -f "$D"/run/*
req frank - GET "$S" >"$T_DIR/s1" &
started 1 || echo "# the first stream did not start"
clock_advance 1000000   # stream_per_user allows 1/s
is "free: a second concurrent stream is refused by concurrent_streams" \
   '"rule":"concurrent_streams"' "$(refused_by frank free)"
touch "$D/run/end"
wait
is "free: the first stream was served" "200" "$(cat "$T_DIR/s1")"
is "free: its slot is released when it ends" "200" "$(req frank - GET "$S")"

rm -f "$D"/run/*
for i in 1 2 3; do
    clock_advance 1000000   # stream_per_user allows 1/s
    req pam pro GET "$S" >"$T_DIR/p$i" &
    started "$i" || echo "# stream $i did not start"
done
clock_advance 1000000
is "pro: a fourth concurrent stream is refused by concurrent_streams" \
   '"rule":"concurrent_streams"' "$(refused_by pam pro)"
touch "$D/run/end"
wait
is "pro: three concurrent streams were served" "200 200 200" \
   "$(cat "$T_DIR/p1") $(cat "$T_DIR/p2") $(cat "$T_DIR/p3")"
first=$(req gina pro GET "$S")
second=$(req gina pro GET "$S")
is "stream: 1/s per user" "200 429" "$first $second"

done_testing
