#!/bin/bash
# t_fcgi_nginx.sh -- ratelimit2-fcgi behind nginx auth_request, with the
# shipped conf/fcgi/nginx-auth-request.conf included in the server block:
# the daemon answers the subrequest in the responder role (403 on a
# refusal), the snippet turns the 403 into 429 with Retry-After and the
# RateLimit headers, or, as X-RateLimit2-Status says, into a runtime
# ban's 403 or the emergency allow-list's 503.  Exactly N admitted; allowed responses carry the
# headers; a 403 that is not the limiter's stays 403; the health path
# answers through nginx without being counted; the snippet's fastest
# setting (a unix socket) counts exactly too, and fastcgi_keep_conn with
# an upstream keepalive keeps no connection of auth_request's.
. "$(dirname "$0")/fcgi_lib.sh"

D=$T_DIR/nginx
P=$(free_port)
FP=$(free_port)
Z=$(zone_name ng)

cat >"$T_DIR/policy.conf" <<POLICY
headers = { legacy = true; };
overrides = { state_file = "$T_DIR/ng.overrides"; ban_status = 403; };
rules = (
  { name = "site"; paths = "/**";
    limits = ( { rate = "50/hour"; algorithm = "sliding_log"; } ); }
);
POLICY

fcgi_start daemon -c "$T_DIR/policy.conf" -s "127.0.0.1:$FP" -z "$Z" -t 4
nginx_conf "$D" "$P" "$FP" <<'CONF'
        location /forbidden { deny all; }
CONF
echo hello >"$D/htdocs/a.txt"
if ! nginx_start "$D"; then
    not_ok "nginx starts with the snippet"
    done_testing
    exit 1
fi
ok "nginx starts with the snippet"

# ---- an allowed response, and exactness ----
site_allowed_checks "http://127.0.0.1:$P/a.txt"

# ---- a refusal ----
refused_429 "http://127.0.0.1:$P/a.txt"
like "429 has RateLimit" '^RateLimit: "site";r=0;t=[0-9]+' "$hdrs"
like "429 has X-RateLimit-Remaining 0" '^X-RateLimit-Remaining: 0' "$hdrs"
like "429 has Content-Type application/json" \
    '^Content-Type: application/json' "$hdrs"
like "429 body carries retry_after" "\"retry_after\":${ra}[,}]" \
    "$(cat "$B")"

# ---- a runtime ban and the emergency allow-list ----
# The daemon's 403 names the status the client gets (X-RateLimit2-Status):
# a ban with the policy's ban_status 403 stays 403, the emergency
# allow-list is 503, each with Retry-After and its own JSON error.
SET="$BUILD/tools/rl2_override_set"
"$SET" "$Z" "$T_DIR/ng.overrides" set ban 127.0.0.1
c=$(curl -s -D "$H" -o "$B" -w '%{http_code}' "http://127.0.0.1:$P/a.txt")
is "a banned client gets the policy's ban_status, 403" 403 "$c"
like "the ban's 403 has Retry-After" '^Retry-After: [0-9]+' \
    "$(tr -d '\r' <"$H")"
like "the ban's 403 body says banned" '^\{"error":"banned","retry_after":[0-9]+\}$' \
    "$(cat "$B")"
"$SET" "$Z" "$T_DIR/ng.overrides" remove ban 127.0.0.1
"$SET" "$Z" "$T_DIR/ng.overrides" set emergency '*' 0
c=$(curl -s -D "$H" -o "$B" -w '%{http_code}' "http://127.0.0.1:$P/a.txt")
is "the emergency allow-list answers 503" 503 "$c"
like "the 503 has Retry-After 60" '^Retry-After: 60' "$(tr -d '\r' <"$H")"
like "the 503 body says unavailable" '^\{"error":"unavailable","retry_after":60\}$' \
    "$(cat "$B")"
"$SET" "$Z" "$T_DIR/ng.overrides" remove emergency '*'
is "with both lifted, the limit's 429 again" 429 \
    "$(code "http://127.0.0.1:$P/a.txt")"

# ---- what is not the limiter's ----
c=$(code "http://127.0.0.1:$P/forbidden")
is "a 403 of the site stays 403" 403 "$c"
h=$(curl -s "http://127.0.0.1:$P/ratelimit2/health")
like "the health path answers JSON through nginx" \
    '^\{"status":"ok","generation":1,"store":"local","zone":\{"entries":' \
    "$h"

# ---- the snippet's fastest setting: a unix socket ----
# As its "Fastest" note says: fastcgi_pass unix:... in both locations, the
# daemon on that socket (writable by nginx's user, nobody).  Exact through
# it at 16 connections, and the daemon answered every request on its own
# (the fast path) without logging a failed answer.
D2=$T_DIR/nginx-unix
P2=$(free_port)
nginx_conf "$D2" "$P2" 9000 </dev/null
SOCK=$D2/rl2.sock
sed -i "s|^\( *\)fastcgi_pass 127\.0\.0\.1:9000;|\1fastcgi_pass unix:$SOCK;|" \
    "$D2/ratelimit2.conf"
is "the note's setting replaces both fastcgi_pass lines" 2 \
    "$(grep -c "^ *fastcgi_pass unix:$SOCK;\$" "$D2/ratelimit2.conf")"
echo hello >"$D2/htdocs/a.txt"
old_umask=$(umask)
umask 000
fcgi_start unix -c "$T_DIR/policy.conf" -s "$SOCK" -z "$(zone_name ngu)" -t 4
umask "$old_umask"
for _ in $(seq 1 200); do
    [ -S "$SOCK" ] && break
    sleep 0.05
done
if nginx_start "$D2"; then
    n=$(admitted 200 16 "http://127.0.0.1:$P2/a.txt")
    is "over the unix socket: 50/hour admits exactly 50 of 200 at c=16" 50 \
        "$n"
    is "... the others get the snippet's 429" 429 \
        "$(code "http://127.0.0.1:$P2/a.txt")"
    is "... and the daemon logged no failed answer" 0 \
        "$(grep -c 'could not send' "$T_DIR/unix.log")"
    nginx_stop "$D2"
else
    not_ok "nginx starts with the snippet on a unix socket"
fi

# ---- fastcgi_keep_conn cannot keep an auth_request connection ----
# What the snippet's note says: with an upstream keepalive and
# fastcgi_keep_conn, nginx still closes the daemon's connection after
# each auth_request subrequest (it marks a FastCGI connection reusable
# only after reading the response's body); an ordinary request through
# the same upstream (the health path) is kept, and the daemon serves it.
D3=$T_DIR/nginx-keep
P3=$(free_port)
nginx_conf "$D3" "$P3" 9000 </dev/null
sed -i -e "s|^\( *\)fastcgi_pass 127\.0\.0\.1:9000;|\1fastcgi_pass rl2keep;\n\1fastcgi_keep_conn on;|" \
    "$D3/ratelimit2.conf"
sed -i "s|^http {|http {\n    upstream rl2keep { server unix:$SOCK; keepalive 8; }|" \
    "$D3/nginx.conf"
echo hello >"$D3/htdocs/a.txt"

# established SOCK WANT -- the connections on SOCK's daemon side, once
# they number WANT or after 5 s: the daemon closes its end of a
# connection nginx closed as soon as it sees the close, not at once.
established() {
    local n
    for _ in $(seq 1 100); do
        n=$(ss -x -H state established 2>/dev/null | grep -c " $1 ")
        [ "$n" = "$2" ] && break
        sleep 0.05
    done
    echo "$n"
}

if nginx_start "$D3"; then
    for _ in 1 2 3; do
        code "http://127.0.0.1:$P3/a.txt" >/dev/null
    done
    is "keep_conn + keepalive: no connection is kept after auth_request" 0 \
        "$(established "$SOCK" 0)"
    like "... while the health path through the same upstream answers" \
        '^\{"status":"ok"' "$(curl -s "http://127.0.0.1:$P3/ratelimit2/health")"
    is "... and its connection stays open for the next request" 1 \
        "$(established "$SOCK" 1)"
    nginx_stop "$D3"
else
    not_ok "nginx starts with an upstream keepalive"
fi
fcgi_stop unix
is "SIGTERM: the unix-socket daemon exits 0" 0 "$?"

nginx_stop "$D"
fcgi_stop daemon
is "SIGTERM: the daemon exits 0" 0 "$?"
done_testing
