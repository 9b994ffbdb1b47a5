#!/bin/bash
# t_factor_geo.sh -- the geo factor (policy factors.geo) in the real
# servers, each admitting exactly the scaled count of a limit of 10 an
# hour and showing the factor in X-RateLimit-Factors.  Apache (event
# MPM): a variable set by mod_setenvif (and preferred to the header),
# the header from a header_from sender (and ignored from another, or
# from a trusted proxy), and a lookup in a MaxMind DB file this suite
# builds (tests/tools/make_mmdb.pl) of the client a trusted proxy names
# in X-Forwarded-For, IPv4 and IPv6.  ratelimit2-fcgi as lighttpd's
# authorizer: the country in a FastCGI parameter lighttpd sets.
. "$(dirname "$0")/fcgi_lib.sh"
# Its counted limits are fixed windows of an hour (the zone's monotonic
# hours, or Redis TIME's): the suite takes well under a minute, so it
# starts with a minute's room in the hour of both clocks.
window_room 3600 60

MMDB=$T_DIR/geo.mmdb
perl "$RL2_ROOT/tests/tools/make_mmdb.pl" "$MMDB" <<'NETS'
192.0.2.0/24    DE
198.51.100.0/24 JP
2001:db8::/32   FR
NETS
chmod 644 "$MMDB"

# A limit of 10 an hour per client on each path; DE x0.5, FR x0.3, JP
# x0.2, anything else x0.8.  127.0.0.1 sets the header; 127.0.0.3 is a
# load balancer (trusted_proxies), never a sender of the header.
cat >"$T_DIR/policy.conf" <<POL
overrides = { enabled = false; };
headers = { factors = true; };
trusted_proxies = [ "127.0.0.3" ];
rules = (
  { name = "var"; paths = "/var/**"; limits = ( { rate = "10/hour"; } ); },
  { name = "hdr"; paths = "/hdr/**"; limits = ( { rate = "10/hour"; } ); },
  { name = "db";  paths = "/db/**";  limits = ( { rate = "10/hour"; } ); }
);
factors = { geo = {
    variable = "GEOIP_COUNTRY_CODE";
    header = "X-Country"; header_from = [ "127.0.0.1" ];
    database = "$MMDB";
    countries = { DE = 0.5; FR = 0.3; };
    regions = ( { name = "asia"; countries = [ "JP", "CN" ]; factor = 0.2; } );
    default = 0.8;
}; };
POL

# run N URL CURL_ARGS... -- N requests one after the other on one
# connection: their statuses into $T_DIR/codes, their headers into
# $T_DIR/h1; prints how many got 200.
run() {
    local n=$1 url=$2 i args=()
    shift 2
    for i in $(seq 1 "$n"); do
        args+=(-o /dev/null "$url")
    done
    curl -s -D "$T_DIR/h1" -w '%{http_code}\n' "$@" "${args[@]}" \
        >"$T_DIR/codes"
    grep -c '^200$' "$T_DIR/codes"
}

# The X-RateLimit-Factors of the first response of the last run.
factors() {
    tr -d '\r' <"$T_DIR/h1" | sed -n 's/^X-RateLimit-Factors: //p' | head -1
}

# exact NAME N FACTOR -- the last run admitted N, then only 429s, and
# showed geo=FACTOR.
exact() {
    is "$1: exactly $2 of 10 admitted, then 429" \
        "$(printf '200 %.0s' $(seq 1 "$2"))$(printf '429 %.0s' \
            $(seq 1 $((10 - $2))))" "$(tr '\n' ' ' <"$T_DIR/codes")"
    is "$1: X-RateLimit-Factors shows geo=$3" "geo=$3" "$(factors)"
}

# ======================= Apache ==========================================
D=$T_DIR/apache
P=$(free_port)
apache_conf "$D" "$P" event
site_pages "$D/htdocs" var hdr db
cat >>"$D/site.conf" <<CONF
RateLimit2Zone $(zone_name ga) 1000
RateLimit2Policy "$T_DIR/policy.conf"
SetEnvIf X-Test-Country ^(..)\$ GEOIP_COUNTRY_CODE=\$1
CONF
apache_start "$D" || { not_ok "apache starts"; done_testing; exit 1; }
ok "apache starts with a geo factor and a MaxMind DB file"
U=http://127.0.0.1:$P

# (a) The variable (lower case) wins over the header of a sender.
run 10 "$U/var/x" -H 'X-Test-Country: de' -H 'X-Country: FR' >/dev/null
exact "apache variable de (header FR too)" 5 0.5

# (b) The header from 127.0.0.1, a header_from sender.
run 10 "$U/hdr/x" -H 'X-Country: FR' >/dev/null
exact "apache header FR from its sender" 3 0.3
# From 127.0.0.2 it is not believed: 127.0.0.2 is in no range, x0.8.
run 10 "$U/hdr/x" --interface 127.0.0.2 -H 'X-Country: FR' >/dev/null
exact "apache header FR from another address (ignored)" 8 0.8
# A malformed value from the sender names no country.
run 1 "$U/hdr/x" --interface 127.0.0.1 -H 'X-Country: FRA' \
    -H 'X-Test-Country: d1' >/dev/null
is "apache header FRA and variable d1: the default, geo=0.8" "geo=0.8" \
    "$(factors)"

# (c) The database: the client 127.0.0.3 (a trusted proxy) names; its
# header is a client's, ignored.
run 10 "$U/db/x" --interface 127.0.0.3 -H 'X-Forwarded-For: 192.0.2.7' \
    -H 'X-Country: FR' >/dev/null
exact "apache database 192.0.2.7 (DE) behind a trusted proxy" 5 0.5
run 10 "$U/db/x" --interface 127.0.0.3 \
    -H 'X-Forwarded-For: 2001:db8::7' >/dev/null
exact "apache database 2001:db8::7 (FR) behind a trusted proxy" 3 0.3
run 10 "$U/db/x" --interface 127.0.0.3 \
    -H 'X-Forwarded-For: 198.51.100.9' >/dev/null
exact "apache database 198.51.100.9 (JP, a region)" 2 0.2
# The same header from an untrusted peer names no client: 127.0.0.4
# itself, in no range.
run 10 "$U/db/x" --interface 127.0.0.4 \
    -H 'X-Forwarded-For: 192.0.2.8' >/dev/null
exact "apache X-Forwarded-For from an untrusted peer (ignored)" 8 0.8
apache_stop "$D"
if grep -q 'AH00052\|segfault\|ratelimit2:.*error' "$D/logs/error.log"; then
    not_ok "apache's error log is clean"
    sed 's/^/# /' "$D/logs/error.log" | tail -5
else
    ok "apache's error log is clean"
fi

# ======================= lighttpd + ratelimit2-fcgi ======================
L=$T_DIR/lighttpd
LP=$(free_port)
mkdir -p "$L/htdocs/var" "$L/htdocs/hdr"
echo ok >"$L/htdocs/var/x"
echo ok >"$L/htdocs/hdr/x"
chmod -R 755 "$L"
lighttpd_authorizer_conf "$L" "$LP" 1 '"mod_setenv", "mod_fastcgi"' \
    "-c $T_DIR/policy.conf -z $(zone_name gl) -t 2" \
    '$HTTP["url"] =~ "^/var/" {
    setenv.add-environment = ( "GEOIP_COUNTRY_CODE" => "DE" )
}'
if ! lighttpd_start "$L"; then
    not_ok "lighttpd starts with the authorizer"
    done_testing
    exit 1
fi
ok "lighttpd starts with ratelimit2-fcgi and a geo factor"
LU=http://127.0.0.1:$LP

# (d) The parameter lighttpd sets; the refusal carries the factor.
run 10 "$LU/var/x" >/dev/null
is "fcgi parameter DE: exactly 5 of 10 admitted, then 429" \
    "200 200 200 200 200 429 429 429 429 429 " \
    "$(tr '\n' ' ' <"$T_DIR/codes")"
curl -s -D "$T_DIR/h1" -o /dev/null "$LU/var/x"
is "fcgi: the 429 shows geo=0.5" "geo=0.5" "$(factors)"
# A client's own header is HTTP_GEOIP_COUNTRY_CODE, never the variable;
# X-Country from lighttpd's own peer (127.0.0.1) is the sender's.
run 10 "$LU/hdr/x" -H 'GEOIP_COUNTRY_CODE: JP' -H 'X-Country: FR' >/dev/null
is "fcgi header FR from its sender: exactly 3 of 10" \
    "200 200 200 429 429 429 429 429 429 429 " \
    "$(tr '\n' ' ' <"$T_DIR/codes")"
lighttpd_stop "$L"
done_testing
