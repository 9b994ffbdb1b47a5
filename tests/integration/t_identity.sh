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
apache_conf "$D" "$P" event
htpasswd -bc "$D/htpasswd" alice alicepw >/dev/null 2>&1
htpasswd -b "$D/htpasswd" bob bobpw >/dev/null 2>&1
chmod 644 "$D/htpasswd"
cat >"$D/whitelist.conf" <<'CONF'
whitelist = { addresses = [ "127.0.0.0/8" ]; };
CONF
for loc in wl xff xfft user sa; do
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
if ! apache_start "$D" || ! wait_port "$PW" || ! wait_port "$PT"; then
    not_ok "apache starts with three servers"
    done_testing
    exit 1
fi
ok "apache starts with three servers"

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

done_testing
