#!/bin/bash
# t_identity.sh -- who the client is: whitelisted addresses, forwarded
# addresses believed only from trusted proxies, authenticated users (after
# authentication, unauthenticated requests not counted), and "Satisfy Any"
# unable to let a refused request through.
#
# One Apache, three servers on three ports:
#   P   main server: no trusted proxy
#   PW  vhost with a policy whose whitelist holds 127.0.0.0/8
#   PT  vhost with RateLimit2TrustedProxy 127.0.0.1
# Small limits use sliding_log: exact, and no window boundary to cross.
. "$(dirname "$0")/lib.sh"

D=$T_DIR/a
P=$(free_port)
PW=$(free_port)
PT=$(free_port)
PB=$(free_port)
PP=$(free_port)
apache_conf "$D" "$P" event
htpasswd -bc "$D/htpasswd" alice alicepw >/dev/null 2>&1
htpasswd -b "$D/htpasswd" bob bobpw >/dev/null 2>&1
chmod 644 "$D/htpasswd"
cat >"$D/whitelist.conf" <<'CONF'
whitelist = { addresses = [ "127.0.0.0/8" ]; };
CONF
# The 429 body and X-RateLimit-Scope: a limit keyed by user, for a user
# (/opt, authenticated) and for anonymous clients (/anon, by address);
# a tier's upgrade_url that JSON must escape.
cat >"$D/body.conf" <<'CONF'
tiers = ( { name = "free";
            upgrade_url = "https://example.com/up?a=\"q\"&b=\\"; } );
default_tier = "free";
headers = { scope = true; };
rules = ( { name = "u"; paths = [ "/opt/**", "/anon/**" ];
            limits = ( { name = "peru"; rate = "1/1h"; key = "user";
                         algorithm = "sliding_log"; } ); } );
CONF
for loc in wl xff xfft user sa opt anon; do
    mkdir -p "$D/htdocs/$loc"
    echo "hello $loc" >"$D/htdocs/$loc/x"
done
cat >"$D/site.conf" <<CONF
RateLimit2Zone $(zone_name identity) 10000
Listen 127.0.0.1:$PW
Listen 127.0.0.1:$PT
<VirtualHost 127.0.0.1:$PW>
    RateLimit2Policy "$D/whitelist.conf"
</VirtualHost>
<VirtualHost 127.0.0.1:$PT>
    RateLimit2TrustedProxy 127.0.0.1
</VirtualHost>
Listen 127.0.0.1:$PB
Listen 127.0.0.1:$PP
<VirtualHost 127.0.0.1:$PB>
    RateLimit2Policy "$D/body.conf"
</VirtualHost>
<VirtualHost 127.0.0.1:$PP>
    RateLimit2Policy "$D/body.conf"
    RateLimit2BodyFormat problem+json
</VirtualHost>
<Location /opt>
    AuthType Basic
    AuthName "rl2 test"
    AuthBasicProvider file
    AuthUserFile "$D/htpasswd"
    Require valid-user
</Location>
<Location /wl>
    RateLimit2Limit wl 1/1h algorithm=sliding_log
</Location>
<Location /xff>
    RateLimit2Limit xff 3/1h key=ip algorithm=sliding_log
</Location>
<Location /xfft>
    RateLimit2Limit xfft 3/1h key=ip algorithm=sliding_log
</Location>
<Location /user>
    AuthType Basic
    AuthName "rl2 test"
    AuthBasicProvider file
    AuthUserFile "$D/htpasswd"
    Require valid-user
    RateLimit2Limit peruser 3/1h key=user algorithm=sliding_log
</Location>
<Location /sa>
    Order deny,allow
    Deny from all
    Satisfy Any
    AuthType Basic
    AuthName "rl2 test"
    AuthBasicProvider file
    AuthUserFile "$D/htpasswd"
    Require valid-user
    RateLimit2Limit sa 2/1h algorithm=sliding_log
</Location>
CONF
if ! apache_start "$D" || ! wait_port "$PW" || ! wait_port "$PT" \
    || ! wait_port "$PB" || ! wait_port "$PP"; then
    not_ok "apache starts with five servers"
    done_testing
    exit 1
fi
ok "apache starts with five servers"

# codes N URL [curl args] -- N status codes, space-separated.
codes() {
    local n=$1 out=""
    shift
    for _ in $(seq 1 "$n"); do
        out="$out $(code "$@")"
    done
    echo "${out# }"
}

# ---- (a) whitelist ----
out=""
nohdr=0
for _ in $(seq 1 20); do
    h=$(curl -s -D - -o /dev/null "http://127.0.0.1:$PW/wl/x" | tr -d '\r')
    out="$out $(printf '%s\n' "$h" | sed -n 's/^HTTP[^ ]* \([0-9]*\).*/\1/p')"
    printf '%s\n' "$h" | grep -qi '^RateLimit' || nohdr=$((nohdr + 1))
done
is "whitelist: 20 requests against 1/1h are all 200" \
    "$(printf '200 %.0s' $(seq 1 20) | sed 's/ $//')" "${out# }"
is "whitelist: no response carries a RateLimit header" 20 "$nohdr"
is "whitelist: the same limit on the main server admits 1" \
    "200 429" "$(codes 2 "http://127.0.0.1:$P/wl/x")"

# ---- (b) X-Forwarded-For from an untrusted peer is ignored ----
out=""
for ip in 198.51.100.1 198.51.100.2 198.51.100.3 198.51.100.4; do
    out="$out $(code "http://127.0.0.1:$P/xff/x" -H "X-Forwarded-For: $ip")"
done
is "untrusted XFF: four different X-Forwarded-For share one counter" \
    "200 200 200 429" "${out# }"
like "untrusted XFF: the refusal is logged for the peer address" \
    'limited: client=127\.0\.0\.1 limit=xff' "$(cat "$D/logs/error.log")"

# ---- (c) X-Forwarded-For from a trusted proxy ----
U=http://127.0.0.1:$PT/xfft/x
is "trusted XFF: 198.51.100.1 gets its own 3" "200 200 200 429" \
    "$(codes 4 "$U" -H "X-Forwarded-For: 198.51.100.1")"
is "trusted XFF: 198.51.100.2 gets its own 3" "200 200 200 429" \
    "$(codes 4 "$U" -H "X-Forwarded-For: 198.51.100.2")"
is "trusted XFF: no header counts as the proxy itself" "200 200 200 429" \
    "$(codes 4 "$U")"
out="$(codes 2 "$U" -H "X-Forwarded-For: 203.0.113.9")"
out="$out $(code "$U" -H "X-Forwarded-For: 203.0.113.9, 127.0.0.1")"
out="$out $(code "$U" -H "X-Forwarded-For: 203.0.113.9")"
is "trusted XFF: '203.0.113.9, 127.0.0.1' counts as 203.0.113.9" \
    "200 200 200 429" "$out"
out="$(codes 3 "$U" -H "X-Forwarded-For: 10.9.9.9, 203.0.113.77")"
out="$out $(code "$U" -H "X-Forwarded-For: 203.0.113.77")"
out="$out $(code "$U" -H "X-Forwarded-For: 10.9.9.9")"
is "trusted XFF: the right-most untrusted hop is the client" \
    "200 200 200 429 200" "$out"
like "trusted XFF: the refusal is logged for the forwarded address" \
    'limited: client=203\.0\.113\.9 limit=xfft' "$(cat "$D/logs/error.log")"

# ---- (d) limits keyed by user, after authentication ----
U=http://127.0.0.1:$P/user/x
is "user: 10 unauthenticated requests get 401" \
    "$(printf '401 %.0s' $(seq 1 10) | sed 's/ $//')" "$(codes 10 "$U")"
is "user: a wrong password gets 401" 401 "$(code "$U" -u alice:nope)"
is "user: alice gets 3 then 429 (401s used no quota)" "200 200 200 429" \
    "$(codes 4 "$U" -u alice:alicepw)"
h=$(curl -s -D - -o /dev/null -u alice:alicepw "$U" | tr -d '\r')
like "user: alice's 429 names the user limit" '^RateLimit: "peruser";r=0;' \
    "$h"
like "user: alice's 429 has Retry-After" '^Retry-After: [1-9][0-9]*$' "$h"
h=$(curl -s -D - -o /dev/null -u bob:bobpw "$U" | tr -d '\r')
like "user: bob from the same address still gets 200" '^HTTP/[0-9.]+ 200' \
    "$h"
like "user: bob has his own count (r=2)" '^RateLimit: "peruser";r=2;' "$h"

# ---- (e) Satisfy Any cannot pass a refusal ----
U=http://127.0.0.1:$P/sa/x
is "satisfy any: 2 authenticated 200s, then 429 (not 200)" \
    "200 200 429" "$(codes 3 "$U" -u alice:alicepw)"
is "satisfy any: still 429 for another user from that address" 429 \
    "$(code "$U" -u bob:bobpw)"
c=$(code "$U")
case "$c" in
401 | 429) ok "satisfy any: unauthenticated over the limit is refused ($c)" ;;
*) not_ok "satisfy any: unauthenticated over the limit is refused ($c)" ;;
esac

# ---- (f) the 429 body; the scope is the key counted ----
# refused URL [curl args] -- request URL until refused (at most 3 times);
# the last answer's fields in $T_DIR/r.h, its body in $T_DIR/r.b.
refused() {
    local u=$1 c
    shift
    for _ in 1 2 3; do
        c=$(curl -s -D "$T_DIR/r.h" -o "$T_DIR/r.b" -w '%{http_code}' "$@" \
            "$u")
        [ "$c" = 429 ] && break
    done
    echo "$c"
}
is "body: an anonymous client over a user limit gets 429" 429 \
    "$(refused "http://127.0.0.1:$PB/anon/x")"
h=$(tr -d '\r' <"$T_DIR/r.h")
b=$(cat "$T_DIR/r.b")
like "body: counted by address, the scope says ip" '^X-RateLimit-Scope: ip$' \
    "$h"
like "body: application/json" '^Content-Type: application/json$' "$h"
like "body: current_usage is the limit's count" '"current_usage":1,' "$b"
like "body: reset_time is ISO 8601 UTC" \
    '"reset":[0-9]+,"reset_time":"20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]Z",' \
    "$b"
is "body: upgrade_url is there, JSON-escaped" \
    'https://example.com/up?a="q"&b=\' \
    "$(printf '%s' "$b" | python3 -c 'import json,sys; print(json.load(sys.stdin)["upgrade_url"])')"
is "body: every member, typed" \
    "error:str message:str rule:str limit:int remaining:int current_usage:int reset:int reset_time:str retry_after:int upgrade_url:str" \
    "$(printf '%s' "$b" | python3 "$RL2_ROOT/tests/tools/json_members.py" | tr '\n' ' ' | sed 's/ $//')"
is "body: alice over the user limit gets 429" 429 \
    "$(refused "http://127.0.0.1:$PB/opt/x" -u alice:alicepw)"
like "body: counted by user, the scope says user" \
    '^X-RateLimit-Scope: user$' "$(tr -d '\r' <"$T_DIR/r.h")"
is "problem: an anonymous client gets 429" 429 \
    "$(refused "http://127.0.0.1:$PP/anon/x")"
like "problem: Content-Type application/problem+json" \
    '^Content-Type: application/problem\+json$' "$(tr -d '\r' <"$T_DIR/r.h")"
b=$(cat "$T_DIR/r.b")
is "problem: exactly the draft's members, typed" \
    "type:str title:str status:int detail:str violated-policies:list[str]" \
    "$(printf '%s' "$b" | python3 "$RL2_ROOT/tests/tools/json_members.py" | tr '\n' ' ' | sed 's/ $//')"
like "problem: quota-exceeded, 429, the refusing policy" \
    '^\{"type":"https://iana.org/assignments/http-problem-types#quota-exceeded","title":"Quota Exceeded","status":429,.*"violated-policies":\["peru"\]\}$' \
    "$b"

done_testing
