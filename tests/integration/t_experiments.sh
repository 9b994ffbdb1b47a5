#!/bin/bash
# t_experiments.sh -- experiments in a rule (docs/configuration.md,
# "Experiments: variants and a challenger") across two Apaches (event
# MPM) that share nothing but one redis-server and the policy; clients
# are told apart by X-Forwarded-For from loopback (trusted_proxies):
#   - 16 clients get the same X-RateLimit-Variant from both servers, both
#     variants occur, and again after one server restarts;
#   - a client of variant A (3 an hour) and one of B (5 an hour), each
#     sending 10 requests alternately to both servers, are admitted
#     exactly 3 and 5 times (the variants count in Redis, apart);
#   - the same traffic to rule web (a challenger of 2 an hour beside an
#     enforced 100) and rule webx (the same 2 an hour enforced): web
#     refuses nothing and shows no trace of it in its headers, and the
#     servers' ratelimit2_challenger_total{rule="web",outcome="deny"}
#     add up to exactly webx's refusals, as do the violation log's
#     challenger entries; ratelimit2ctl report shows web/(challenger)
#     and the variants' refusals by rule/variant.
. "$(dirname "$0")/lib.sh"

CTL="$BUILD/ctl/ratelimit2ctl"

redis_start_first
POL=$T_DIR/policy.conf
cat >"$POL" <<POLICY
redis = { server = "127.0.0.1:$RP"; timeout = 300; };
trusted_proxies = [ "127.0.0.1" ];
headers = { variant = true; legacy = true; scope = true; algorithm = true; };
experiment_seed = "t_experiments";
rules = (
  { name = "api"; paths = "/api/**"; variant_by = "ip";
    variants = (
      { name = "A"; weight = 50;
        limits = ( { rate = "3/1h"; algorithm = "fixed_window"; } ); },
      { name = "B"; weight = 50;
        limits = ( { rate = "5/1h"; algorithm = "fixed_window"; } ); } ); },
  { name = "web"; paths = "/web/**";
    limits = ( { rate = "100/1h"; algorithm = "fixed_window"; } );
    challenger = { limits = ( { name = "web_tight"; rate = "2/1h";
                                algorithm = "fixed_window"; } ); }; },
  { name = "webx"; paths = "/webx/**";
    limits = ( { rate = "100/1h"; algorithm = "fixed_window"; },
               { name = "webx_tight"; rate = "2/1h";
                 algorithm = "fixed_window"; } ); }
);
POLICY

# server NAME -- an Apache in $T_DIR/NAME on a free port, its own zone;
# URL its base.  (Not in a subshell: the exit trap must know its pid.)
server() {
    local d=$T_DIR/$1 p
    p=$(free_port)
    apache_conf "$d" "$p" event
    cat >"$d/site.conf" <<CONF
RateLimit2Zone $(zone_name "$1") 1000
RateLimit2Policy $POL
<Location /rl2/metrics>
    SetHandler ratelimit2-metrics
    Require ip 127.0.0.1
</Location>
CONF
    mkdir -p "$d/htdocs/api" "$d/htdocs/web" "$d/htdocs/webx"
    for f in api web webx; do echo ok >"$d/htdocs/$f/x"; done
    apache_start "$d" || { not_ok "apache $1 starts"; done_testing; exit 1; }
    URL="http://127.0.0.1:$p"
}
server s1
U1=$URL
server s2
U2=$URL
ok "two Apaches on one Redis"

# batch -- one curl for many requests (a process per request is slow on
# a loaded machine): each line "BASE PATH CLIENT" of stdin is a request
# from CLIENT (X-Forwarded-For), in order; each prints "CODE VARIANT
# POLICY": its status, its X-RateLimit-Variant (- for none) and its
# RateLimit-Policy.
batch() {
    local -a args=()
    local base path client
    while read -r base path client; do
        [ ${#args[@]} -gt 0 ] && args+=(--next)
        args+=(-s -o /dev/null -H "X-Forwarded-For: $client"
            -w '%{http_code}|%header{x-ratelimit-variant}|%header{ratelimit-policy}\n'
            "$base$path")
    done
    curl "${args[@]}" \
        | awk -F'|' '{ print $1, ($2 == "" ? "-" : $2), $3 }'
}

# ---- the same variant on both servers, and after a restart ----
declare -A VAR
out=$(for i in $(seq 1 16); do
    echo "$U1 /api/x 10.9.0.$i"
    echo "$U2 /api/x 10.9.0.$i"
done | batch | awk '{ print $2 }')
same=0 n_a=0 n_b=0 i=0
while read -r v1 && read -r v2; do
    i=$((i + 1))
    VAR[$i]=$v1
    [ "$v1" = "$v2" ] && [ "$v1" != - ] && same=$((same + 1))
    [ "$v1" = A ] && n_a=$((n_a + 1))
    [ "$v1" = B ] && n_b=$((n_b + 1))
done <<<"$out"
is "16 clients: the same variant from both servers" 16 "$same"
if [ "$n_a" -gt 0 ] && [ "$n_b" -gt 0 ]; then
    ok "both variants occur ($n_a A, $n_b B)"
else
    not_ok "both variants occur ($n_a A, $n_b B)"
fi

apache_stop "$T_DIR/s2"
apache_start "$T_DIR/s2" || not_ok "s2 restarts"
out=$(for i in $(seq 1 16); do echo "$U2 /api/x 10.9.0.$i"; done | batch \
    | awk '{ print $2 }')
same=0 i=0
while read -r v; do
    i=$((i + 1))
    [ "$v" = "${VAR[$i]}" ] && same=$((same + 1))
done <<<"$out"
is "after s2 restarts: the same variants" 16 "$same"

# ---- each variant admits its own count, across both servers ----
# 40 new clients ask once (that counts); the first of each variant then
# asks 9 times more, alternately to s2 and s1: 10 in all.
out=$(for i in $(seq 1 40); do echo "$U1 /api/x 10.8.0.$i"; done | batch)
for want in A:3 B:5; do
    v=${want%%:*}
    i=$(awk -v v="$v" '$2 == v { print NR; exit }' <<<"$out")
    admitted=$(awk -v n="$i" 'NR == n && $1 == 200 { print 1 }' <<<"$out")
    admitted=$((${admitted:-0} + $(for k in $(seq 1 9); do
        [ $((k % 2)) = 0 ] && echo "$U1 /api/x 10.8.0.$i" \
            || echo "$U2 /api/x 10.8.0.$i"
    done | batch | grep -c '^200 ')))
    is "variant $v (10.8.0.$i): 10 requests over both servers, admitted" \
        "${want#*:}" "$admitted"
    [ "$v" = A ] && CA=10.8.0.$i
done
# Every field at once (legacy, scope, algorithm, variant) on a refusal:
# none crowds Retry-After out.
h=$(curl -s -o /dev/null -D - -H "X-Forwarded-For: $CA" "$U1/api/x" \
    | tr -d '\r' | grep -iE '^(HTTP/|x-ratelimit-variant|retry-after)' \
    | sort | tr '\n' ' ')
like "a refusal of variant A: 429, X-RateLimit-Variant and Retry-After" \
    '^HTTP/1.1 429 .*Retry-After: [0-9]+ X-RateLimit-Variant: A $' "$h"

# ---- the challenger against the enforced copy ----
# Clients 10.7.0.1..4 send 2, 3, 4 and 5 requests each to web and webx,
# alternately to s1 and s2.
out=$(for i in 1 2 3 4; do
    for k in $(seq 1 $((i + 1))); do
        base=$U1
        [ $((k % 2)) = 0 ] && base=$U2
        echo "$base /web/x 10.7.0.$i"
        echo "$base /webx/x 10.7.0.$i"
    done
done | batch)
web=$(awk 'NR % 2 == 1' <<<"$out")
webx=$(awk 'NR % 2 == 0' <<<"$out")
webx_refused=$(grep -c '^429 ' <<<"$webx")
# Against 2 an hour: 0 + 1 + 2 + 3.
is "webx (enforced copy) refuses" 6 "$webx_refused"
is "web (challenger) refuses nothing" 0 "$(grep -c '^429 ' <<<"$web")"
is "web: 14 answers announcing web's limit, none the challenger's" \
    "14 14 0" "$(wc -l <<<"$web") $(grep -c '"web";q=100' <<<"$web") \
$(grep -c web_tight <<<"$web")"

metric() {
    curl -s "$1/rl2/metrics" | awk -v s="$2" '$1 == s { print $2 }'
}
curl -s "$U1/rl2/metrics" >"$T_DIR/metrics.txt"
promtool_ok "$T_DIR/metrics.txt"
S='ratelimit2_challenger_total{rule="web",outcome="deny"}'
deny=$(($(metric "$U1" "$S") + $(metric "$U2" "$S")))
is "challenger deny metric (both servers) = webx's refusals" \
    "$webx_refused" "$deny"
S='ratelimit2_challenger_total{rule="web",outcome="allow"}'
allow=$(($(metric "$U1" "$S") + $(metric "$U2" "$S")))
is "challenger allow metric = the rest of the 14 requests" \
    $((14 - webx_refused)) "$allow"
S='ratelimit2_variant_requests_total{rule="api",variant="A",outcome="denied"}'
va=$(($(metric "$U1" "$S") + $(metric "$U2" "$S")))
is "variant A denied metric (both servers)" 8 "$va"

# ---- the violation log and the report ----
xr=$(redis-cli -p "$RP" --no-raw XRANGE rl2:violations - + 2>/dev/null)
n_chal=$(redis-cli -p "$RP" XRANGE rl2:violations - + \
    | awk 'p == "challenger" && $0 == "1" { n++ } { p = $0 } END { print n + 0 }')
is "violation log: one challenger entry per would-refuse" \
    "$webx_refused" "$n_chal"
like "violation log: a refusal of variant A names it" '"variant"' "$xr"
C=("$CTL" -c "$POL" -R "127.0.0.1:$RP" -z "$(zone_name ctl)")
text=$("${C[@]}" report 2>&1)
like "report: denials by rule/variant" 'api/A +8' "$text"
like "report: the challenger's would-denials apart" \
    "web/\\(challenger\\) +$webx_refused" "$text"
n=$((8 + 5 + webx_refused))
like "report: refusals only in its totals" \
    "violation log: $n entries, $n denials" "$text"

like "ratelimit2ctl check shows the variants and the challenger" \
    'variants by ip, of 100: A=50 B=50.*challenger +web_tight' \
    "$("$CTL" check "$POL" | tr '\n' ' ')"

done_testing
