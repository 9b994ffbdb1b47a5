#!/bin/bash
# t_bypass.sh -- the ways a client could make the limiter see another
# request than the one the server routes, each driven through real
# servers: Apache (event and prefork) with mod_ratelimit2; nginx 1.22
# with ratelimit2-fcgi behind auth_request and a PHP-style try_files to
# a FastCGI index, over FastCGI and over HTTP/1.1 (-H); lighttpd with ratelimit2-fcgi as its FastCGI
# authorizer and a PHP-style rewrite to a CGI index; and the CGI wrapper
# ratelimit2-cgi as the handler of Apache's PHP-style front controller.
# Every rule admits one request an hour; the trick is the second
# request, which must not be admitted (or, for two API keys, is refused
# as malformed).
. "$(dirname "$0")/fcgi_lib.sh"
# Its counted limits are fixed windows of an hour (the zone's monotonic
# hours, or Redis TIME's): the suite takes well under a minute, so it
# starts with a minute's room in the hour of both clocks.
window_room 3600 60

cat >"$T_DIR/policy.conf" <<'POLICY'
api_key = { header = "X-API-Key"; query = "api_key"; };
method_override = true;
# 127.0.0.2 stands for a load balancer, whose own requests (health
# checks) are never limited.
trusted_proxies = [ "127.0.0.2" ];
whitelist = { addresses = [ "127.0.0.2" ]; };
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
    limits = ( { rate = "1/hour"; key = "api_key"; } ); },
  { name = "client"; paths = "/ip";
    limits = ( { rate = "1/hour"; key = "ip"; } ); }
);
default = { limits = ( { rate = "100000/hour"; key = "global"; } ); };
POLICY

# status METHOD URL [curl args...] -- the status of one request.
status() {
    local m=$1 u=$2
    shift 2
    curl -s -o /dev/null -w '%{http_code}' -X "$m" --path-as-is "$@" "$u"
}

# raw_status PORT TARGET [HOST] -- the status of "GET TARGET" sent as
# written (curl drops a fragment and rewrites an absolute-form target; a
# client need not), with "Host: HOST" (x by default, none for -).
raw_status() {
    local host="Host: ${3:-x}"$'\r\n' reply
    [ "${3:-}" = - ] && host=""
    reply=$(exec 3<>"/dev/tcp/127.0.0.1/$1" \
        && printf 'GET %s HTTP/1.1\r\n%sConnection: close\r\n\r\n' \
            "$2" "$host" >&3 \
        && head -1 <&3)
    printf '%s' "$reply" | awk '{ print $2 }'
}

# trick NAME EXPECT METHOD URL [curl args...] -- a test: the request's
# status is EXPECT.
trick() {
    local name=$1 want=$2 got
    shift 2
    got=$(status "$@")
    is "$name" "$want" "$got"
}

# not_admitted NAME STATUS -- a test: STATUS is a refusal (4xx or 5xx),
# whoever refused it.
not_admitted() {
    case "$2" in
    [45][0-9][0-9]) ok "$1 ($2)" ;;
    *) not_ok "$1 ($2)" ;;
    esac
}

# proxy_tricks LABEL URL -- through the trusted, whitelisted proxy
# (curl from 127.0.0.2), the client is the right-most address the proxy
# wrote, whatever the client's own headers say.
proxy_tricks() {
    local l=$1 u=$2/ip a b
    local -a lb=(--interface 127.0.0.2)
    trick "$l: 192.0.2.77 behind the proxy admitted once" 200 \
        GET "$u" "${lb[@]}" -H "X-Forwarded-For: 192.0.2.77"
    trick "$l: the client's own X-Forwarded-For line before its proxy's" \
        429 GET "$u" "${lb[@]}" -H "X-Forwarded-For: 198.51.100.1" \
        -H "X-Forwarded-For: 192.0.2.77"
    trick "$l: the client's open quote in Forwarded" 429 \
        GET "$u" "${lb[@]}" -H 'Forwarded: for="198.51.100.2' \
        -H "Forwarded: for=192.0.2.77"
    # A hop that is no address is a client of its own, not the proxy
    # (whose address is whitelisted).
    a=$(status GET "$u" "${lb[@]}" -H "X-Forwarded-For: _hidden")
    b=$(status GET "$u" "${lb[@]}" -H "X-Forwarded-For: _hidden")
    is "$l: a hop that is no address is limited" "200 429" "$a $b"
}

# app_script FILE -- FILE: a CGI program standing for the application
# (PHP): it answers 200 and names the rule the limiter applied.
app_script() {
    cat >"$1" <<'APP'
#!/bin/sh
printf 'Content-Type: text/plain\r\nX-Rule: %s\r\n\r\nok\n' "$RATELIMIT_RULE"
APP
    chmod 755 "$1"
}

# rule_of URL -- the rule the application was told of (app_script).
rule_of() {
    curl -s -D - -o /dev/null --path-as-is "$1" | tr -d '\r' \
        | sed -n 's/^X-Rule: //p'
}

apache_suite() {
    local mpm=$1 D=$T_DIR/apache-$1 P U
    P=$(free_port)
    U="http://127.0.0.1:$P"
    apache_conf "$D" "$P" "$mpm"
    mkdir -p "$D/htdocs/auth"
    for f in wp-login.php stream h k ip health app.php; do
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
    trick "apache $mpm: a POST overridden to GET meets the GET rule" 429 \
        POST "$U/stream" -H "X-HTTP-Method-Override: GET"
    status POST "$U/auth/login" >/dev/null
    trick "apache $mpm: 'post' is POST" 429 post "$U/auth/login"
    trick "apache $mpm: ;params and dot segments" 429 \
        POST "$U/x/../auth/login;jsessionid=1"
    trick "apache $mpm: a dot segment with a ;param is refused" 400 \
        GET "$U/wp-login.php/..;/health"
    status GET "$U/h" -H "Host: api.example.com" >/dev/null
    trick "apache $mpm: Host with a trailing dot and a port" 429 \
        GET "$U/h" -H "Host: API.example.com.:$P"
    is "apache $mpm: the request line's host, not Host" 429 \
        "$(raw_status "$P" http://api.example.com/h other)"
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
    proxy_tricks "apache $mpm" "$U"
    apache_stop "$D"
}

# nginx_suite fastcgi|http -- the tricks through nginx and the daemon
# over FastCGI (nginx-auth-request.conf), or over HTTP/1.1 on kept
# connections (ratelimit2-fcgi -H, nginx-auth-request-http.conf): the
# same answer to each, so the limiter sees the same request either way.
nginx_suite() {
    local mode=$1 D=$T_DIR/nginx-$1 P FP Z U n=nginx sock old_umask
    P=$(free_port)
    Z=$(zone_name "bpng$mode")
    U="http://127.0.0.1:$P"
    # Every path no file answers goes to the "application" (a file
    # here, standing for index.php behind FastCGI): what nginx and PHP
    # route on is the decoded path.
    if [ "$mode" = http ]; then
        n="nginx -H"
        sock=$D/rl2.sock
        nginx_http_conf "$D" "$P" "$sock" <<'CONF'
        location / { try_files $uri /index.php; }
CONF
        old_umask=$(umask)
        umask 000
        fcgi_start "daemon-$mode" -H -c "$T_DIR/policy.conf" -s "$sock" \
            -z "$Z" -t 4
        umask "$old_umask"
        for _ in $(seq 1 100); do
            [ -S "$sock" ] && break
            sleep 0.05
        done
    else
        FP=$(free_port)
        fcgi_start "daemon-$mode" -c "$T_DIR/policy.conf" \
            -s "127.0.0.1:$FP" -z "$Z" -t 4
        nginx_conf "$D" "$P" "$FP" <<'CONF'
        location / { try_files $uri /index.php; }
CONF
    fi
    echo ok >"$D/htdocs/index.php"
    if ! nginx_start "$D"; then
        not_ok "$n starts"
        return
    fi
    # POST to a static file is 405 in nginx: admitted, then refused.
    trick "$n: POST /auth/login admitted once" 405 POST "$U/auth/login"
    trick "$n: /x/..%2Fauth/login is /auth/login" 429 \
        POST "$U/x/..%2Fauth/login"
    trick "$n: /docs/..%2Fauth%2flogin is /auth/login" 429 \
        POST "$U/docs/..%2Fauth%2flogin"
    status GET "$U/k?api_key=ABC" >/dev/null
    trick "$n: a percent-encoded query key is the same key" 429 \
        GET "$U/k?api_key=%41BC"
    # A fragment ends the query for nginx and PHP: not a new key.
    is "$n: a key with a fragment admitted once" 200 \
        "$(raw_status "$P" '/k?api_key=FRAG#1')"
    is "$n: the same key with another fragment is the same key" 429 \
        "$(raw_status "$P" '/k?api_key=FRAG#2')"
    # nginx 1.22 passes the repeated header as two params.
    c=$(status GET "$U/k" -H "X-API-Key: junk" -H "X-API-Key: REAL")
    if [ "$c" != 200 ] && [ "$c" != 429 ]; then
        ok "$n: two X-API-Key lines are not admitted ($c)"
    else
        not_ok "$n: two X-API-Key lines are not admitted ($c)"
    fi
    trick "$n: and REAL's request is still there" 200 \
        GET "$U/k?api_key=REAL"
    # ratelimit2-fcgi reads the Host header as sent: the core reads the
    # name in it as servers route on it.
    trick "$n: GET /h on api.example.com admitted once" 200 \
        GET "$U/h" -H "Host: api.example.com"
    trick "$n: Host with a trailing dot, a port and capitals" 429 \
        GET "$U/h" -H "Host: API.example.com.:$P"
    is "$n: the request line's host, not Host" 429 \
        "$(raw_status "$P" http://api.example.com/h other)"
    trick "$n: GET /stream admitted once" 200 GET "$U/stream"
    trick "$n: HEAD meets the GET rule" 429 HEAD "$U/stream" -I
    trick "$n: a POST overridden to GET meets the GET rule" 429 \
        POST "$U/stream" -H "X-HTTP-Method-Override: GET"
    # An internal redirect (try_files to /index.php) is not a second
    # request, though nginx runs auth_request again after it.
    trick "$n: try_files to the index counts once (first admitted)" 200 \
        GET "$U/wp-login.php"
    trick "$n: ... and the second refused" 429 GET "$U/wp-login.php"
    proxy_tricks "$n" "$U"
    nginx_stop "$D"
    fcgi_stop "daemon-$mode"
}

# lighttpd spawns ratelimit2-fcgi as its authorizer for every path; a
# path no file answers is rewritten to the "application" index.php (a
# CGI here, standing for PHP), as PHP sites on lighttpd are set up.
# lighttpd decodes the path (%2F too), removes dot segments, lowercases
# Host and joins a repeated header itself; the authorizer gets the raw
# REQUEST_URI, fragment included.
lighttpd_suite() {
    local D=$T_DIR/lighttpd P U a b
    P=$(free_port)
    U="http://127.0.0.1:$P"
    mkdir -p "$D/htdocs"
    chmod 755 "$D" "$D/htdocs"
    for f in index.php app.php wp-login.php; do
        app_script "$D/htdocs/$f"
    done
    lighttpd_authorizer_conf "$D" "$P" 1 \
        '"mod_rewrite", "mod_fastcgi", "mod_cgi"' \
        "-c $T_DIR/policy.conf -z $(zone_name bplt) -t 4" \
        'cgi.assign = ( ".php" => "" )
url.rewrite-if-not-file = ( "" => "/index.php${url.path}${qsa}" )'
    if ! lighttpd_start "$D"; then
        not_ok "lighttpd starts"
        return
    fi
    is "lighttpd: /app.php/%252e%252e/health is not /health" default \
        "$(rule_of "$U/app.php/%252e%252e/health")"
    # The rewrite to the index does not ask the authorizer again.  (A
    # POST without a body needs Content-Length: 0 in lighttpd.)
    trick "lighttpd: POST /auth/login admitted once" 200 \
        POST "$U/auth/login" -d ""
    trick "lighttpd: /x/..%2Fauth/login is /auth/login" 429 \
        POST "$U/x/..%2Fauth/login" -d ""
    trick "lighttpd: /x/%2e%2e/auth/login is /auth/login" 429 \
        POST "$U/x/%2e%2e/auth/login" -d ""
    trick "lighttpd: ;params and dot segments" 429 \
        POST "$U/x/../auth/login;jsessionid=1" -d ""
    not_admitted "lighttpd: 'post' is not admitted" \
        "$(status post "$U/auth/login" -d "")"
    trick "lighttpd: GET /wp-login.php admitted once" 200 GET "$U/wp-login.php"
    trick "lighttpd: the script with a PATH_INFO meets its rule" 429 \
        GET "$U/wp-login.php/x"
    trick "lighttpd: a dot segment with a ;param is refused" 400 \
        GET "$U/wp-login.php/..;/health"
    trick "lighttpd: GET /stream admitted once" 200 GET "$U/stream"
    trick "lighttpd: HEAD meets the GET rule" 429 HEAD "$U/stream" -I
    trick "lighttpd: a POST overridden to GET meets the GET rule" 429 \
        POST "$U/stream" -d "" -H "X-HTTP-Method-Override: GET"
    trick "lighttpd: GET /h on api.example.com admitted once" 200 \
        GET "$U/h" -H "Host: api.example.com"
    trick "lighttpd: Host with a trailing dot, a port and capitals" 429 \
        GET "$U/h" -H "Host: API.example.com.:$P"
    is "lighttpd: the request line's host" 429 \
        "$(raw_status "$P" http://api.example.com/h -)"
    not_admitted "lighttpd: the request line's host beside another Host" \
        "$(raw_status "$P" http://api.example.com/h other)"
    # A server that passes the absolute form on in REQUEST_URI (Apache
    # does) beside the client's own Host: the request line's host is read.
    like "ratelimit2-fcgi: an absolute-form REQUEST_URI names the host" \
        '^Status: 429' "$("$FCGI_CLIENT" "$D/rl2.sock-0" \
            REMOTE_ADDR=192.0.2.9 REQUEST_METHOD=GET HTTP_HOST=other \
            REQUEST_URI=http://api.example.com/h | head -1)"
    trick "lighttpd: GET /k?api_key=ABC admitted once" 200 \
        GET "$U/k?api_key=ABC"
    trick "lighttpd: a percent-encoded query key is the same key" 429 \
        GET "$U/k?api_key=%41BC"
    trick "lighttpd: the key in the header is the same key" 429 \
        GET "$U/k" -H "X-API-Key: ABC"
    trick "lighttpd: an empty header does not hide the query's key" 429 \
        GET "$U/k?api_key=ABC" -H "X-API-Key;"
    trick "lighttpd: two X-API-Key lines naming two keys are refused" 400 \
        GET "$U/k" -H "X-API-Key: junk" -H "X-API-Key: REAL"
    trick "lighttpd: header and query naming two keys are refused" 400 \
        GET "$U/k?api_key=REAL" -H "X-API-Key: junk"
    trick "lighttpd: the parameter twice with two keys is refused" 400 \
        GET "$U/k?api_key=junk&api_key=REAL"
    trick "lighttpd: the refused ones spent nothing of REAL's" 200 \
        GET "$U/k?api_key=REAL"
    # lighttpd passes the fragment in REQUEST_URI: it is no part of the key.
    a=$(raw_status "$P" '/k?api_key=FRAG#1')
    b=$(raw_status "$P" '/k?api_key=FRAG#2')
    is "lighttpd: a key with another fragment is the same key" "200 429" \
        "$a $b"
    proxy_tricks lighttpd "$U"
    lighttpd_stop "$D"
}

# The CGI wrapper under Apache (prefork, mod_cgi, no mod_ratelimit2):
# the front controller of every path (ScriptAliasMatch), and a script
# of its own name (ScriptAlias /wp-login.php), running the "application"
# when allowed.  It reads the raw REQUEST_URI (the request line's target,
# absolute form included; Apache refuses a fragment itself) and the
# HTTP_* variables, which Apache joins for a repeated header.
cgi_suite() {
    local D=$T_DIR/cgi P U W
    P=$(free_port)
    U="http://127.0.0.1:$P"
    W=$D/bin/ratelimit2-cgi
    apache_conf "$D" "$P" prefork
    sed -i '/^LoadModule ratelimit2_module/d' "$D/httpd.conf"
    mkdir -p "$D/bin"
    chmod 755 "$D/bin"
    cp "$CGI_BIN" "$W"
    app_script "$D/bin/app"
    {
        [ "${SAN:-0}" = 1 ] && echo "PassEnv ASAN_OPTIONS UBSAN_OPTIONS"
        cat <<CONF
SetEnv RATELIMIT2_POLICY "$T_DIR/policy.conf"
SetEnv RATELIMIT2_ZONE "$(zone_name bpcgi)"
SetEnv RATELIMIT2_TARGET "$D/bin/app"
# A framework routes the path it decodes, %2F included.
AllowEncodedSlashes NoDecode
ScriptAlias /wp-login.php "$W"
ScriptAliasMatch "^/" "$W"
<Directory "$D/bin">
    Require all granted
</Directory>
CONF
    } >"$D/site.conf"
    if ! apache_start "$D"; then
        not_ok "apache with the CGI wrapper starts"
        return
    fi
    is "cgi: /app.php/%252e%252e/health is not /health" default \
        "$(rule_of "$U/app.php/%252e%252e/health")"
    trick "cgi: POST /auth/login admitted once" 200 POST "$U/auth/login"
    trick "cgi: /x/..%2Fauth/login is /auth/login" 429 \
        POST "$U/x/..%2Fauth/login"
    trick "cgi: /x/%2e%2e/auth/login is /auth/login" 429 \
        POST "$U/x/%2e%2e/auth/login"
    trick "cgi: ;params and dot segments" 429 \
        POST "$U/x/../auth/login;jsessionid=1"
    trick "cgi: 'post' is POST" 429 post "$U/auth/login"
    trick "cgi: GET /wp-login.php admitted once" 200 GET "$U/wp-login.php"
    trick "cgi: the script with a PATH_INFO meets its rule" 429 \
        GET "$U/wp-login.php/x"
    trick "cgi: a dot segment with a ;param is refused" 400 \
        GET "$U/app.php/..;/health"
    trick "cgi: GET /stream admitted once" 200 GET "$U/stream"
    trick "cgi: HEAD meets the GET rule" 429 HEAD "$U/stream" -I
    trick "cgi: a POST overridden to GET meets the GET rule" 429 \
        POST "$U/stream" -H "X-HTTP-Method-Override: GET"
    trick "cgi: GET /h on api.example.com admitted once" 200 \
        GET "$U/h" -H "Host: api.example.com"
    trick "cgi: Host with a trailing dot, a port and capitals" 429 \
        GET "$U/h" -H "Host: API.example.com.:$P"
    is "cgi: the request line's host, not Host" 429 \
        "$(raw_status "$P" http://api.example.com/h other)"
    trick "cgi: GET /k?api_key=ABC admitted once" 200 GET "$U/k?api_key=ABC"
    trick "cgi: a percent-encoded query key is the same key" 429 \
        GET "$U/k?api_key=%41BC"
    trick "cgi: the key in the header is the same key" 429 \
        GET "$U/k" -H "X-API-Key: ABC"
    trick "cgi: an empty header does not hide the query's key" 429 \
        GET "$U/k?api_key=ABC" -H "X-API-Key;"
    trick "cgi: two X-API-Key lines naming two keys are refused" 400 \
        GET "$U/k" -H "X-API-Key: junk" -H "X-API-Key: REAL"
    trick "cgi: header and query naming two keys are refused" 400 \
        GET "$U/k?api_key=REAL" -H "X-API-Key: junk"
    trick "cgi: the parameter twice with two keys is refused" 400 \
        GET "$U/k?api_key=junk&api_key=REAL"
    trick "cgi: the refused ones spent nothing of REAL's" 200 \
        GET "$U/k?api_key=REAL"
    proxy_tricks cgi "$U"
    apache_stop "$D"
}

apache_suite event
apache_suite prefork
nginx_suite fastcgi
nginx_suite http
lighttpd_suite
cgi_suite
done_testing
