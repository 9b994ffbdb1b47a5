#!/bin/bash
# r_badinput.sh -- hostile bytes: oversized headers and API keys, invalid
# UTF-8 and NUL bytes in paths, keys and headers, odd forwarded
# addresses.  Each gets a defined answer; keys stay exact (long keys are
# hashed whole, never cut); no child crashes or is replaced.
source "$(dirname "$0")/../integration/lib.sh"

D=$T_DIR/a
P=$(free_port)
PT=$(free_port)
apache_conf "$D" "$P" event
cat >"$D/policy.conf" <<'CONF'
api_key = { header = "X-API-Key"; query = "api_key"; };
rules = (
    { name = "key"; paths = [ "/key/**" ]; key = "api_key";
      limits = ( { name = "key"; rate = "2/1d"; algorithm = "sliding_log"; } ); },
    { name = "hdr"; paths = [ "/hdr/**" ];
      limits = ( { name = "hdr"; rate = "2/1d"; key = "header:X-Client";
                   algorithm = "sliding_log"; } ); },
    { name = "ip"; paths = [ "/ip/**" ];
      limits = ( { name = "ip"; rate = "1000/1d"; } ); },
    { name = "api"; paths = [ "/api/**" ];
      limits = ( { name = "api"; rate = "1000/1d"; } ); }
);
CONF
cat >>"$D/site.conf" <<CONF
RateLimit2Zone $(zone_name badinput) 10000
RateLimit2Policy "$D/policy.conf"
Listen 127.0.0.1:$PT
<VirtualHost 127.0.0.1:$PT>
    RateLimit2TrustedProxy 127.0.0.1
</VirtualHost>
CONF
site_pages "$D/htdocs" key hdr ip api
if ! apache_start "$D" || ! wait_port "$PT"; then
    not_ok "apache starts"
    done_testing
    exit 1
fi
ok "apache starts"
# The children once the server has settled (StartServers 2).
for _ in $(seq 1 100); do
    [ -s "$D/httpd.pid" ] \
        && [ "$(pgrep -c -P "$(cat "$D/httpd.pid")")" -ge 2 ] && break
    sleep 0.05
done
children=$(pgrep -P "$(cat "$D/httpd.pid")" | sort | tr '\n' ' ')

# raw PORT BYTES -- send BYTES (printf %b escapes) as a request; the
# status code of the answer.
raw() {
    local line
    line=$(exec 3<>"/dev/tcp/127.0.0.1/$1" && printf '%b' "$2" >&3 \
        && timeout 5 head -1 <&3)
    printf '%s\n' "$line" | tr -d '\r' | awk '{ print $2 }'
}

# ---- oversized keys: hashed whole ----
k8000=$(head -c 8000 /dev/zero | tr '\0' 'k')
is "an 8000-byte API key: 2 of the quota, then 429" "200 200 429" \
    "$(for _ in 1 2 3; do printf '%s ' "$(code "http://127.0.0.1:$P/key/x" \
        -H "X-API-Key: ${k8000}A")"; done | sed 's/ $//')"
is "another 8000-byte key differing only in its last byte has its own" \
    "200 200 429" \
    "$(for _ in 1 2 3; do printf '%s ' "$(code "http://127.0.0.1:$P/key/x" \
        -H "X-API-Key: ${k8000}B")"; done | sed 's/ $//')"
is "8000-byte header values keyed by header: hashed whole too" \
    "200 200 200 429" \
    "$(for t in A A B A; do printf '%s ' "$(code "http://127.0.0.1:$P/hdr/x" \
        -H "X-Client: ${k8000}$t")"; done | sed 's/ $//')"
k8k=$(head -c 8192 /dev/zero | tr '\0' 'k')
is "an 8 KiB API key header is refused by Apache (400)" 400 \
    "$(code "http://127.0.0.1:$P/key/x" -H "X-API-Key: $k8k")"
big=$(head -c 300 /dev/zero | tr '\0' 'q')
is "a 300-byte api_key in the query (over 255) counts as no key: by address" \
    "200 200 429" \
    "$(for _ in 1 2 3; do printf '%s ' \
        "$(code "http://127.0.0.1:$P/key/x?api_key=$big")"; done \
        | sed 's/ $//')"

# ---- invalid UTF-8 and NUL ----
is "raw invalid UTF-8 in an API key: hashed, counted" "200 200 429" \
    "$(for _ in 1 2 3; do printf '%s ' "$(raw "$P" \
        "GET /key/x HTTP/1.1\r\nHost: a\r\nX-API-Key: \xff\xfe\xc0\r\nConnection: close\r\n\r\n")"; done \
        | sed 's/ $//')"
c=$(code "http://127.0.0.1:$P/key/x?api_key=ab%00cd")
is "%00 in a query API key: taken as text, counted" 200 "$c"
h=$(curl -s --path-as-is -D - -o /dev/null \
    "http://127.0.0.1:$P/api/%ff%fe%c0%80/x" | tr -d '\r')
like "invalid UTF-8 escapes in a path meet the path's rule" \
    '^RateLimit: "api";r=' "$h"
c=$(raw "$P" "GET /api/\xff\xfe/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
case "$c" in
400 | 404) ok "raw invalid UTF-8 in a path: a defined answer ($c)" ;;
*) not_ok "raw invalid UTF-8 in a path: a defined answer ($c)" ;;
esac
c=$(code --path-as-is "http://127.0.0.1:$P/api/a%00b")
case "$c" in
400 | 404) ok "%00 in a path is refused by Apache ($c)" ;;
*) not_ok "%00 in a path is refused by Apache ($c)" ;;
esac
is "a raw NUL in a header line is refused by Apache (400)" 400 \
    "$(raw "$P" "GET /api/x HTTP/1.1\r\nHost: a\r\nX-API-Key: a\x00b\r\nConnection: close\r\n\r\n")"
is "a raw NUL in the request line is refused by Apache (400)" 400 \
    "$(raw "$P" "GET /api/\x00x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")"

# ---- odd forwarded addresses from a trusted proxy ----
hops=$(for _ in $(seq 1 400); do printf '198.51.100.%d, ' $((RANDOM % 250)); done)
commas=$(head -c 7000 /dev/zero | tr '\0' ',')
quotes=$(head -c 3000 /dev/zero | tr '\0' '"')
bad=0
for v in "X-Forwarded-For: [::1]:80" "X-Forwarded-For: 1.2.3.4:5678" \
    "X-Forwarded-For: ::ffff:999.1.1.1" "X-Forwarded-For: fe80::1%" \
    "X-Forwarded-For: fe80::1%$(head -c 200 /dev/zero | tr '\0' z)" \
    "X-Forwarded-For: ${hops}203.0.113.1" "X-Forwarded-For: $commas" \
    "X-Forwarded-For: $(printf '\xff\xfe')" "Forwarded: for=\"[::1" \
    "Forwarded: for=$quotes" "Forwarded: $commas" \
    "Forwarded: for=\"\\\\\\\"\", for" "Forwarded: ;;;;=;=,=;for==" \
    "Forwarded: for=\"[fe80::1%25eth0]:1\"" "Forwarded: FOR=1.2.3.4:x:y"; do
    c=$(code "http://127.0.0.1:$PT/ip/x" -H "$v")
    if [ "$c" != 200 ]; then
        bad=$((bad + 1))
        echo "# $c for ${v:0:60}"
    fi
done
is "odd X-Forwarded-For and Forwarded values: each answered 200" 0 "$bad"

sleep 0.3
is "the children are the same processes (none crashed or was replaced)" \
    "$children" "$(pgrep -P "$(cat "$D/httpd.pid")" | sort | tr '\n' ' ')"
is "no segfault or child exit in the error log" "" \
    "$(grep -E 'Segmentation fault|exit signal|AH00052' "$D/logs/error.log")"

done_testing
