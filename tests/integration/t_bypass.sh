#!/bin/bash
# t_bypass.sh -- the ways a client could make the limiter see another
# request than the one the server routes, each driven through real
# servers: Apache (event and prefork) with mod_ratelimit2, and nginx
# 1.22 with ratelimit2-fcgi behind auth_request and a PHP-style
# try_files to a FastCGI index.  Every rule admits one request an hour;
# the trick is the second request, which must not be admitted (or, for
# two API keys, is refused as malformed).
. "$(dirname "$0")/fcgi_lib.sh"

cat >"$T_DIR/policy.conf" <<'POLICY'
api_key = { header = "X-API-Key"; query = "api_key"; };
rules = (
  { name = "health"; paths = "/health"; exempt = true; },
  { name = "login"; methods = "POST"; paths = "/auth/login";
    limits = ( { rate = "1/hour"; key = "global"; } ); },
  { name = "wp"; paths = "/wp-login.php";
    limits = ( { rate = "1/hour"; key = "global"; } ); },
  { name = "stream"; methods = "GET"; paths = "/stream";
    limits = ( { rate = "1/hour"; key = "global"; } ); },
  { name = "host"; hosts = "api.example.com"; paths = "/h";
    limits = ( { rate = "1/hour"; key = "global"; } ); },
  { name = "keyed"; paths = "/k";
    limits = ( { rate = "1/hour"; key = "api_key"; } ); }
);
default = { limits = ( { rate = "100000/hour"; key = "global"; } ); };
POLICY

# status METHOD URL [curl args...] -- the status of one request.
status() {
    local m=$1 u=$2
    shift 2
    curl -s -o /dev/null -w '%{http_code}' -X "$m" --path-as-is "$@" "$u"
}

# raw_status PORT TARGET -- the status of "GET TARGET" sent as written
# (curl drops a fragment; a client need not).
raw_status() {
    local reply
    reply=$(exec 3<>"/dev/tcp/127.0.0.1/$1" \
        && printf 'GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' \
            "$2" >&3 \
        && head -1 <&3)
    printf '%s' "$reply" | awk '{ print $2 }'
}

# second NAME EXPECT FIRST... -- the first request (FIRST: method, url,
# curl args) admitted, then the trick ($TRICK: method, url, args) is
# not: EXPECT is its status.
trick() {
    local name=$1 want=$2 got
    shift 2
    got=$(status "$@")
    is "$name" "$want" "$got"
}

apache_suite() {
    local mpm=$1 D=$T_DIR/apache-$1 P U
    P=$(free_port)
    U="http://127.0.0.1:$P"
    apache_conf "$D" "$P" "$mpm"
    mkdir -p "$D/htdocs/auth"
    for f in wp-login.php stream h k health app.php; do
        echo ok >"$D/htdocs/$f"
    done
    echo ok >"$D/htdocs/auth/login"
    cat >"$D/site.conf" <<CONF
RateLimit2Zone $(zone_name "bp$mpm") 1000
RateLimit2Policy "$T_DIR/policy.conf"
AcceptPathInfo On
CONF
    if ! apache_start "$D"; then
        not_ok "apache ($mpm) starts"
        return
    fi
    # Decoded once: %252e%252e is "%2e%2e" to Apache, never "..": the
    # request is counted (the default rule's fields), not exempt.
    like "apache $mpm: /app.php/%252e%252e/health is not /health" \
        '^RateLimit-Policy: "default"' \
        "$(curl -s -D - -o /dev/null --path-as-is \
            "$U/app.php/%252e%252e/health" | tr -d '\r')"
    status GET "$U/wp-login.php" >/dev/null
    trick "apache $mpm: the script with a PATH_INFO meets its rule" 429 \
        GET "$U/wp-login.php/x"
    status GET "$U/stream" >/dev/null
    trick "apache $mpm: HEAD meets the GET rule" 429 HEAD "$U/stream" -I
    status POST "$U/auth/login" >/dev/null
    trick "apache $mpm: 'post' is POST" 429 post "$U/auth/login"
    trick "apache $mpm: ;params and dot segments" 429 \
        POST "$U/x/../auth/login;jsessionid=1"
    trick "apache $mpm: a dot segment with a ;param is refused" 400 \
        GET "$U/wp-login.php/..;/health"
    status GET "$U/h" -H "Host: api.example.com" >/dev/null
    trick "apache $mpm: Host with a trailing dot and a port" 429 \
        GET "$U/h" -H "Host: API.example.com.:$P"
    status GET "$U/k?api_key=ABC" >/dev/null
    trick "apache $mpm: a percent-encoded query key is the same key" 429 \
        GET "$U/k?api_key=%41BC"
    trick "apache $mpm: the key in the header is the same key" 429 \
        GET "$U/k" -H "X-API-Key: ABC"
    trick "apache $mpm: two different keys are refused" 400 \
        GET "$U/k" -H "X-API-Key: junk" -H "X-API-Key: REAL"
    trick "apache $mpm: header and query naming two keys are refused" 400 \
        GET "$U/k?api_key=REAL" -H "X-API-Key: junk"
    trick "apache $mpm: the refused ones spent nothing of REAL's" 200 \
        GET "$U/k?api_key=REAL"
    apache_stop "$D"
}

nginx_suite() {
    local D=$T_DIR/nginx P FP Z U
    P=$(free_port)
    FP=$(free_port)
    Z=$(zone_name bpng)
    U="http://127.0.0.1:$P"
    fcgi_start daemon -c "$T_DIR/policy.conf" -s "127.0.0.1:$FP" -z "$Z" -t 4
    # Every path no file answers goes to the "application" (a file
    # here, standing for index.php behind FastCGI): what nginx and PHP
    # route on is the decoded path.
    nginx_conf "$D" "$P" "$FP" <<'CONF'
        location / { try_files $uri /index.php; }
CONF
    echo ok >"$D/htdocs/index.php"
    if ! nginx_start "$D"; then
        not_ok "nginx starts"
        return
    fi
    # POST to a static file is 405 in nginx: admitted, then refused.
    trick "nginx: POST /auth/login admitted once" 405 POST "$U/auth/login"
    trick "nginx: /x/..%2Fauth/login is /auth/login" 429 \
        POST "$U/x/..%2Fauth/login"
    trick "nginx: /docs/..%2Fauth%2flogin is /auth/login" 429 \
        POST "$U/docs/..%2Fauth%2flogin"
    status GET "$U/k?api_key=ABC" >/dev/null
    trick "nginx: a percent-encoded query key is the same key" 429 \
        GET "$U/k?api_key=%41BC"
    # A fragment ends the query for nginx and PHP: not a new key.
    is "nginx: a key with a fragment admitted once" 200 \
        "$(raw_status "$P" '/k?api_key=FRAG#1')"
    is "nginx: the same key with another fragment is the same key" 429 \
        "$(raw_status "$P" '/k?api_key=FRAG#2')"
    # nginx 1.22 passes the repeated header as two params.
    c=$(status GET "$U/k" -H "X-API-Key: junk" -H "X-API-Key: REAL")
    if [ "$c" != 200 ] && [ "$c" != 429 ]; then
        ok "nginx: two X-API-Key lines are not admitted ($c)"
    else
        not_ok "nginx: two X-API-Key lines are not admitted ($c)"
    fi
    trick "nginx: and REAL's request is still there" 200 \
        GET "$U/k?api_key=REAL"
    # ratelimit2-fcgi reads the Host header as sent: the core reads the
    # name in it as servers route on it.
    trick "nginx: GET /h on api.example.com admitted once" 200 \
        GET "$U/h" -H "Host: api.example.com"
    trick "nginx: Host with a trailing dot, a port and capitals" 429 \
        GET "$U/h" -H "Host: API.example.com.:$P"
    trick "nginx: GET /stream admitted once" 200 GET "$U/stream"
    trick "nginx: HEAD meets the GET rule" 429 HEAD "$U/stream" -I
    # An internal redirect (try_files to /index.php) is not a second
    # request, though nginx runs auth_request again after it.
    trick "nginx: try_files to the index counts once (first admitted)" 200 \
        GET "$U/wp-login.php"
    trick "nginx: ... and the second refused" 429 GET "$U/wp-login.php"
    nginx_stop "$D"
    fcgi_stop daemon
}

apache_suite event
apache_suite prefork
nginx_suite
done_testing
