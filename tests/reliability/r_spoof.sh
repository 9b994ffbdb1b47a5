#!/bin/bash
# r_spoof.sh -- what a client can claim and what it cannot.
#
#   P0  no trusted proxy at all
#   P1  trusted proxy 192.0.2.1 (the test's 127.0.0.1 is not it)
#   PT  trusted proxy 127.0.0.1
# From an untrusted peer, X-Forwarded-For, Forwarded and X-Real-IP never
# change the key (t_identity.sh covers X-Forwarded-For on P0 only); from a
# trusted proxy X-Forwarded-For and Forwarded do, X-Real-IP never does;
# the tier header is believed only from a trusted proxy; no spelling of a
# path steps around the rule written for it.
source "$(dirname "$0")/../integration/lib.sh"

D=$T_DIR/a
P0=$(free_port)
P1=$(free_port)
PT=$(free_port)
apache_conf "$D" "$P0" event

# policy FILE TAG TRUSTED TIER_FROM -- the same rules, each server its own
# proxies and tier-header senders
# and its own limit names (so that counts are not shared).  Sixteen rules
# and more are found through the rule index (by first path segment): the
# path spellings below go through it.
policy() {
    local fill="" i
    for i in $(seq 1 14); do
        fill="$fill    { name = \"f$i\"; paths = [ \"/f$i/**\" ];
      limits = ( { name = \"f$i\"; rate = \"1000/1d\"; } ); },
"
    done
    cat >"$1" <<CONF
$3
tiers = [ "free", "pro" ];
tier_from = { header = "X-Tier"; $4 };
rules = (
$fill    { name = "ip"; paths = [ "/ip/**" ];
      limits = ( { name = "ip$2"; rate = "3/1d"; key = "ip";
                   algorithm = "sliding_log"; } ); },
    { name = "t"; paths = [ "/t/**" ]; key = "ip";
      tiers = { free = ( { name = "tfree"; rate = "2/1d"; } );
                pro = ( { name = "tpro"; rate = "5/1d"; } ); }; },
    { name = "login"; paths = [ "/auth/login" ];
      limits = ( { name = "login"; rate = "1000/1d"; } ); },
    { name = "api"; paths = [ "/api/**" ];
      limits = ( { name = "api"; rate = "1000/1d"; } ); }
);
CONF
}
policy "$D/p0.conf" 0 "" 'header_from = [ "192.0.2.1" ];'
policy "$D/p1.conf" 1 'trusted_proxies = [ "192.0.2.1" ];' \
    'header_from = [ "192.0.2.1" ];'
policy "$D/pt.conf" t 'trusted_proxies = [ "127.0.0.1" ];' \
    'header_from = [ "127.0.0.1" ];'
site_pages "$D/htdocs" ip t
cat >>"$D/site.conf" <<CONF
RateLimit2Zone $(zone_name spoof) 10000
RateLimit2Policy "$D/p0.conf"
Listen 127.0.0.1:$P1
Listen 127.0.0.1:$PT
<VirtualHost 127.0.0.1:$P1>
    RateLimit2Policy "$D/p1.conf"
</VirtualHost>
<VirtualHost 127.0.0.1:$PT>
    RateLimit2Policy "$D/pt.conf"
</VirtualHost>
CONF
if ! apache_start "$D" || ! wait_port "$P1" || ! wait_port "$PT"; then
    not_ok "apache starts with three servers"
    done_testing
    exit 1
fi
ok "apache starts with three servers"

# codes_with PORT PATH HEADER... -- one request per header, the codes.
codes_with() {
    local port=$1 path=$2 out=""
    shift 2
    for h in "$@"; do
        out="$out $(code "http://127.0.0.1:$port$path" -H "$h")"
    done
    echo "${out# }"
}

# ---- untrusted peers: nothing they send changes the key ----
for port in $P0 $P1; do
    name="untrusted (port $([ "$port" = "$P0" ] && echo P0 || echo P1))"
    is "$name: XFF, Forwarded, X-Real-IP and a forged chain share one count" \
        "200 200 200 429 429 429" \
        "$(codes_with "$port" /ip/x \
            'X-Forwarded-For: 198.51.100.1' \
            'Forwarded: for=198.51.100.2' \
            'X-Real-IP: 198.51.100.3' \
            'X-Forwarded-For: 198.51.100.4, 192.0.2.1' \
            'Forwarded: for="[2001:db8::4]:80", for=192.0.2.1' \
            'X-Forwarded-For: 192.0.2.1')"
done
like "untrusted: the refusal names the peer" \
    'limited: client=127\.0\.0\.1 limit=ip1' "$(cat "$D/logs/error.log")"
h=$(curl -s -D - -o /dev/null -H 'X-Tier: pro' "http://127.0.0.1:$P1/t/x" \
    | tr -d '\r')
like "untrusted: X-Tier: pro is not believed (free tier's 2)" \
    '^RateLimit-Policy: "tfree";q=2;' "$h"

# ---- a trusted proxy: X-Forwarded-For and Forwarded, not X-Real-IP ----
U=/ip/x
is "trusted: Forwarded for=198.51.100.1 gets its own 3" "200 200 200 429" \
    "$(codes_with "$PT" "$U" 'Forwarded: for=198.51.100.1' \
        'Forwarded: for=198.51.100.1;proto=http' \
        'Forwarded: For="198.51.100.1:4711"' \
        'X-Forwarded-For: 198.51.100.1')"
is "trusted: Forwarded bracketed IPv6 with a port is that address" \
    "200 200 200 429" \
    "$(codes_with "$PT" "$U" 'Forwarded: for="[2001:db8:5::1]:443"' \
        'X-Forwarded-For: 2001:db8:5::2' \
        'Forwarded: for=198.51.100.77, for="[2001:db8:5::3]"' \
        'X-Forwarded-For: 2001:db8:5::4')"
is "trusted: X-Real-IP is never read (three values, one count: the proxy's)" \
    "200 200 200 429" \
    "$(codes_with "$PT" "$U" 'X-Real-IP: 198.51.100.31' \
        'X-Real-IP: 198.51.100.32' 'X-Real-IP: 198.51.100.33' \
        'X-Real-IP: 198.51.100.34')"
is "trusted: ::ffff:198.51.100.40 and 198.51.100.40 are one client" \
    "200 200 200 429" \
    "$(codes_with "$PT" "$U" 'X-Forwarded-For: ::ffff:198.51.100.40' \
        'X-Forwarded-For: 198.51.100.40' \
        'Forwarded: for="[::ffff:198.51.100.40]"' \
        'X-Forwarded-For: 198.51.100.40')"
is "trusted: a zone id is dropped (fe80::1%eth0 is fe80::1's /64)" \
    "200 200 200 429" \
    "$(codes_with "$PT" "$U" 'X-Forwarded-For: fe80::1%eth0' \
        'X-Forwarded-For: fe80::1' 'X-Forwarded-For: fe80::2%lo' \
        'X-Forwarded-For: fe80::3')"
h=$(curl -s -D - -o /dev/null -H 'X-Tier: pro' "http://127.0.0.1:$PT/t/x" \
    | tr -d '\r')
like "trusted: X-Tier: pro from the trusted proxy is believed" \
    '^RateLimit-Policy: "tpro";q=5;' "$h"

# ---- path spellings ----
# remaining PATH -- "name r" of the RateLimit header for a GET of PATH.
remaining() {
    curl -s --path-as-is -D - -o /dev/null "http://127.0.0.1:$P0$1" \
        | tr -d '\r' | sed -n 's/^RateLimit: "\([^"]*\)";r=\([0-9]*\);.*/\1 \2/p'
}
# Longer than the matcher's 2 KiB path buffer, in segments a file system
# can map (Apache answers 403 for a segment over 255 bytes or a path
# over 4 KiB before any module sees the request).
seg=$(head -c 200 /dev/zero | tr '\0' 'a')
lp=""
dots=""
for _ in $(seq 1 15); do
    lp="$lp/$seg"
    dots="$dots/.."
done
long=$(head -c 7000 /dev/zero | tr '\0' 'a')
n=999
for path in /api/x //api/x /api/./x /x/../api/x /x/%2e%2e/api/x \
    /x/%2E%2E/api/x /%61pi/x /%41PI/x /API/x /Api/X /api/x/ /api//x// \
    '/api/x?y=1' "/api$lp" "/x$lp$dots/../api/y"; do
    is "path ${path:0:40}: meets the api rule, same counter (r=$n)" \
        "api $n" "$(remaining "$path")"
    n=$((n - 1))
done
n=999
for path in /auth/login /auth/login/ //auth//login /AUTH/Login \
    /auth/./login /auth/x/../login /%61uth/login; do
    is "path $path: meets the login rule, same counter (r=$n)" \
        "login $n" "$(remaining "$path")"
    n=$((n - 1))
done
is "a 7000-byte segment is refused by Apache (403), not served" 403 \
    "$(code "http://127.0.0.1:$P0/api/$long")"
is "an overlong request line is refused by Apache (414), not served" 414 \
    "$(code "http://127.0.0.1:$P0/api/$long$long")"
c=$(code --path-as-is "http://127.0.0.1:$P0/api%2fx")
case "$c" in
404 | 400) ok "an encoded slash is refused by Apache ($c), not served" ;;
*) not_ok "an encoded slash is refused by Apache ($c), not served" ;;
esac
is "no child crashed" "" \
    "$(grep -E 'Segmentation fault|exit signal' "$D/logs/error.log")"

done_testing
