#!/bin/bash
# t_fcgi_admin.sh -- ratelimit2-fcgi's admin path (-a, -K) behind
# lighttpd: the daemon is lighttpd's authorizer for the site and its
# responder for /rl2-admin.  A token file others may read stops the
# start; no token or a wrong one is a 401 that changes nothing; a ban
# POSTed with a token is enforced by the same lighttpd at once, listed by
# ratelimit2ctl, recorded in the audit file as "token:NAME", and kept
# across a restart (from the state file); every bad input is a 400 with
# a JSON error that changes nothing; the admin path is never counted (a
# ban of the operator's own address does not lock it out), and no
# encoded, dot-segment or fragment variant of it goes uncounted behind
# lighttpd or nginx; SIGHUP reads
# a changed token file (a broken one keeps the tokens in use).
. "$(dirname "$0")/fcgi_lib.sh"

CTL="$BUILD/ctl/ratelimit2ctl"
D=$T_DIR/admin
P=$(free_port)
FP=$(free_port)
Z=$(zone_name adm)
STATE=$D/ovr.state
AUDIT=$D/ovr.audit
TOKENS=$D/tokens
F="http://127.0.0.1:$P"
mkdir -p "$D/htdocs"
chmod -R 755 "$D"
echo hello >"$D/htdocs/a.txt"

cat >"$D/policy.conf" <<POLICY
trusted_proxies = [ "127.0.0.1" ];
tiers = [ "free", "pro" ];
overrides = { state_file = "$STATE"; audit_file = "$AUDIT"; };
rules = ( { name = "site"; paths = "/**";
            limits = ( { rate = "100000/hour"; } ); } );
POLICY

# token -- 40 bytes of printable ASCII.
token() {
    head -c 30 /dev/urandom | base64 | tr -d '\n'
}
OPS=$(token)
CI=$(token)
umask 077
printf '# admin tokens\nops %s\n\nci\t%s\n' "$OPS" "$CI" >"$TOKENS"
umask 022

# ---- start-up refusals (nothing is opened before them) ----
start_err() {
    "$FCGI_BIN" -c "$D/policy.conf" -s "127.0.0.1:$(free_port)" -z "$Z" \
        -a /rl2-admin "$@" 2>&1
}
cp "$TOKENS" "$D/open"
chmod 644 "$D/open"
out=$(start_err -K "$D/open")
is "a token file of mode 0644: the daemon does not start" 1 "$?"
like "... and says how to fix it" "$D/open: mode 0644 .*chmod o-rwx $D/open" \
    "$out"
printf 'ops %s\nci short\n' "$OPS" >"$D/bad"
chmod 600 "$D/bad"
out=$(start_err -K "$D/bad")
is "a token of 5 bytes: the daemon does not start" 1 "$?"
like "... and names FILE:LINE" "$D/bad:2: the token of ci must be 32" "$out"
# refused NAME REGEX CONTENT -- a token file of CONTENT (mode 0600): the
# daemon does not start and says REGEX.
refused() {
    printf '%s' "$3" >"$D/bad"
    out=$(start_err -K "$D/bad")
    is "$1: the daemon does not start" 1 "$?"
    like "... and says so ($1)" "$2" "$out"
}
refused "a name twice" "$D/bad:2: ops is named twice" \
    "$(printf 'ops %s\nops %s\n' "$OPS" "$CI")"
refused "a token twice" "$D/bad:2: ci has the token of ops" \
    "$(printf 'ops %s\nci %s\n' "$OPS" "$OPS")"
refused "a name with /" "$D/bad:2: a line is NAME TOKEN" \
    "$(printf 'ops %s\nc/i %s\n' "$OPS" "$CI")"
refused "two tokens on a line" "$D/bad:1: something follows the token" \
    "ops $OPS $CI"
refused "no token" "$D/bad: no token in it" "# nothing yet"
printf 'ops %s\n' "$OPS" >"$D/other"
chmod 600 "$D/other"
chown nobody "$D/other"
out=$(start_err -K "$D/other")
is "a file of another user: the daemon does not start" 1 "$?"
like "... and says so" "owned by uid [0-9]+, neither this daemon's user" \
    "$out"
out=$(start_err -K "$D")
is "a directory: the daemon does not start" 1 "$?"
like "... and says so" "$D: not a regular file" "$out"
out=$("$FCGI_BIN" -c "$D/policy.conf" -a /rl2-admin -K "$D/open" -C 2>&1)
is "-C with the 0644 token file: exit 1" 1 "$?"
like "... saying why" "$D/open: mode 0644" "$out"
"$FCGI_BIN" -c "$D/policy.conf" -a /rl2-admin -K "$TOKENS" -C >/dev/null
is "-C with the good token file: exit 0" 0 "$?"
out=$("$FCGI_BIN" -c "$D/policy.conf" -s 127.0.0.1:1 -a /rl2-admin 2>&1)
is "-a without -K: exit 2" 2 "$?"
like "... saying what is missing" 'give -K FILE' "$out"

# ---- lighttpd: the authorizer for the site, the responder for the path ----
fcgi_start daemon -c "$D/policy.conf" -s "127.0.0.1:$FP" -z "$Z" -t 4 \
    -a /rl2-admin -K "$TOKENS"
cat >"$D/lighttpd.conf" <<CONF
server.port = $P
server.bind = "127.0.0.1"
server.document-root = "$D/htdocs"
server.errorlog = "$D/error.log"
server.modules = ( "mod_fastcgi" )
mimetype.assign = ( ".txt" => "text/plain" )
\$HTTP["url"] != "/rl2-admin" {
    fastcgi.server = ( "/" => (( "host" => "127.0.0.1", "port" => $FP,
        "mode" => "authorizer", "check-local" => "disable" )) )
}
\$HTTP["url"] == "/rl2-admin" {
    fastcgi.server = ( "/rl2-admin" => (( "host" => "127.0.0.1",
        "port" => $FP, "mode" => "responder", "check-local" => "disable" )) )
}
CONF
if ! lighttpd_start "$D"; then
    not_ok "lighttpd starts with the authorizer and the admin path"
    done_testing
    exit 1
fi
ok "lighttpd starts with the authorizer and the admin path"

# admin TOKEN BODY [TYPE] -- POST BODY ("@FILE": the file's) to the
# admin path as TYPE (default application/json; TOKEN "-": no
# Authorization): status in $C, headers in $H, body in $B.
admin() {
    local auth=()
    [ "$1" = - ] || auth=(-H "Authorization: Bearer $1")
    C=$(curl -s -D "$T_DIR/a.h" -o "$T_DIR/a.b" -w '%{http_code}' \
        "${auth[@]}" -H "Content-Type: ${3:-application/json}" -H "Expect:" \
        --data-binary "$2" "$F/rl2-admin")
    H=$(tr -d '\r' <"$T_DIR/a.h")
    B=$(cat "$T_DIR/a.b")
}
# as CLIENT -- the status of /a.txt for a client behind the trusted proxy.
as() {
    code -H "X-Forwarded-For: $1" "$F/a.txt"
}
# snapshot -- the state file and the audit file, as they are.
snapshot() {
    cat "$STATE" "$AUDIT" 2>/dev/null | md5sum
}
C_=("$CTL" -c "$D/policy.conf" -z "$Z" --state "$STATE" --audit "$AUDIT")
BAN='{"verb":"ban","target":"192.0.2.9","ttl":"10min","reason":"INC-1"}'

is "before any change, 192.0.2.9 is served" 200 "$(as 192.0.2.9)"
before=$(snapshot)
admin - "$BAN"
is "no token: 401" 401 "$C"
like "... with WWW-Authenticate" \
    '(^|\n)WWW-Authenticate: Bearer realm="ratelimit2-admin"' "$H"
like "... and a JSON error" '^\{"ok":false,"error":"[^"]+"\}$' "$B"
like "... as application/json, not to be cached" \
    'Content-Type: application/json; charset=utf-8.*Cache-Control: no-store' \
    "$(echo $H)"
admin "${OPS}x" "$BAN"
is "a wrong token (one byte more): 401" 401 "$C"
admin "${OPS%?}" "$BAN"
is "a wrong token (one byte less): 401" 401 "$C"
C=$(code -H "Authorization: Bearer $OPS" -H "Authorization: Bearer $CI" \
    -H 'Content-Type: application/json' --data-binary "$BAN" "$F/rl2-admin")
is "two Authorization headers: 401" 401 "$C"
is "after the 401s: nothing changed" "$before" "$(snapshot)"
is "... and 192.0.2.9 is still served" 200 "$(as 192.0.2.9)"

# ---- a ban through the admin path ----
admin "$OPS" "$BAN"
is "a ban with the ops token: 200" 200 "$C"
like "... changed, with its author" \
    '"ok":true.*"changed":true.*"author":"token:ops"' "$B"
is "lighttpd refuses the banned client at once" 429 "$(as 192.0.2.9)"
is "... and serves another" 200 "$(as 192.0.2.10)"
like "ratelimit2ctl overrides lists the ban" \
    'ban +192\.0\.2\.9 .*token:ops' "$("${C_[@]}" overrides)"
line=$(grep -c '"author":"token:ops","origin":"admin","verb":"ban"' \
    "$AUDIT")
is "the audit file has the change, by token:ops from admin" 1 "$line"

# ---- bad input: 400, a JSON error, nothing changed ----
bad() {
    local name=$1 body=$2 before
    before=$(snapshot)
    admin "$CI" "$body"
    is "$name: 400" 400 "$C"
    like "$name: a JSON error" '^\{"ok":false,"error":"[^"]+"' "$B"
    is "$name: nothing changed" "$before" "$(snapshot)"
}
bad "an unknown verb" '{"verb":"smite","target":"192.0.2.7"}'
bad "a bad duration" '{"verb":"ban","target":"192.0.2.7","ttl":"10parsecs"}'
bad "a bad CIDR" '{"verb":"ban","target":"192.0.2.0/33"}'
bad "an unknown rule" '{"verb":"mode","rule":"nope","mode":"dry_run"}'
bad "an unknown tier" '{"verb":"tier","target":"user:bob","tier":"gold"}'
pad=$(head -c 8200 /dev/zero | tr '\0' a)
bad "a body of 8 KiB and more" \
    "{\"verb\":\"ban\",\"target\":\"192.0.2.7\",\"reason\":\"$pad\"}"
printf '{"verb":"ban","target":"192.0.2.7","reason":"%s"}' \
    "$(head -c 100000 /dev/zero | tr '\0' a)" >"$T_DIR/100k"
bad "a body of 100 KB (refused on its length)" "@$T_DIR/100k"
before=$(snapshot)
C=$(curl -s -D "$T_DIR/g.h" -o /dev/null -w '%{http_code}' \
    -H "Authorization: Bearer $CI" "$F/rl2-admin")
is "GET: 405" 405 "$C"
like "... with Allow: POST" '(^|\n)Allow: POST' "$(tr -d '\r' <"$T_DIR/g.h")"
admin "$CI" "$BAN" text/plain
is "Content-Type text/plain: 415" 415 "$C"
is "after the 405 and the 415: nothing changed" "$before" "$(snapshot)"
is "the banned client is still refused after all of them" 429 \
    "$(as 192.0.2.9)"

# ---- the admin path is never counted ----
admin "$CI" '{"verb":"ban","target":"127.0.0.1","reason":"self"}'
is "a ban of the operator's own address: 200" 200 "$C"
is "... the site refuses it" 429 "$(code "$F/a.txt")"
admin "$CI" '{"verb":"overrides"}'
is "... the admin path still answers it" 200 "$C"
# target_code TARGET -- the status of a request whose target is TARGET
# exactly (no dot segment removed, no fragment cut by curl).
target_code() {
    code --path-as-is --request-target "$1" "$F/"
}
# While 127.0.0.1 is banned, variants of the admin path: the daemon takes
# the raw REQUEST_URI's path (up to '?' or '#') as the admin path or not,
# lighttpd its decoded, normalized url.  Where they differ the request
# is decided (refused: 429 as an authorizer, 403 as the responder), never
# let on uncounted nor answered without a token; where both see the
# admin path it wants a token (401).
for tc in '/rl2-admin?x 401' '/rl2-admin#/../a.txt 401' \
    '/rl2-admin/../a.txt 429' '/./rl2-admin/../a.txt 429' \
    '/rl2-admin%2F..%2Fa.txt 429' '/rl2-admin%23/../a.txt 429' \
    '/rl2-admin;/../a.txt 429' '/rl2-admin/ 429' '/%72l2-admin 403' \
    '//rl2-admin 403'; do
    is "lighttpd: ${tc% *} while banned: ${tc#* }" "${tc#* }" \
        "$(target_code "${tc% *}")"
done
like "... listing both bans" '192\.0\.2\.9.*127\.0\.0\.1|127\.0\.0\.1.*192\.0\.2\.9' \
    "$B"
admin "$CI" '{"verb":"unban","target":"127.0.0.1"}'
is "... and lifts the ban" 200 "$C"
like "... by token:ci" '"author":"token:ci","origin":"admin","verb":"unban"' \
    "$(cat "$AUDIT")"
is "the site serves the operator again" 200 "$(code "$F/a.txt")"

# ---- the authorizer role carries no body: a clear error ----
a=$("$FCGI_CLIENT" "127.0.0.1:$FP" REMOTE_ADDR=127.0.0.1 \
    REQUEST_METHOD=POST REQUEST_URI=/rl2-admin \
    "HTTP_AUTHORIZATION=Bearer $OPS" | tr -d '\r')
like "the admin path in the authorizer role: 500" \
    '^Status: 500 Internal Server Error' "$a"
like "... saying it is answered in the responder role" 'responder role only' \
    "$a"

# ---- a policy without the table: every admin request is a 404 ----
printf 'overrides = { enabled = false; };\n' >"$D/off.conf"
OP=$(free_port)
fcgi_start off -c "$D/off.conf" -s "127.0.0.1:$OP" -z "$(zone_name off)" -t 1 \
    -a /rl2-admin -K "$TOKENS"
a=$("$FCGI_CLIENT" -r responder "127.0.0.1:$OP" REMOTE_ADDR=127.0.0.1 \
    REQUEST_METHOD=POST REQUEST_URI=/rl2-admin CONTENT_TYPE=application/json \
    "HTTP_AUTHORIZATION=Bearer $OPS" | tr -d '\r')
like "overrides off in the policy: the admin path answers 404" \
    '^Status: 404 Not Found' "$a"
like "... saying so" 'runtime overrides are off in the policy' "$a"
fcgi_stop off

# ---- a restart keeps the ban (the state file fills a new table) ----
fcgi_stop daemon
is "ratelimit2-fcgi stops with exit status 0" 0 "$?"
rm -f "/dev/shm/${Z#/}.overrides"
fcgi_start daemon -c "$D/policy.conf" -s "127.0.0.1:$FP" -z "$Z" -t 4 \
    -a /rl2-admin -K "$TOKENS"
is "after a restart (table removed), the ban from the admin path holds" \
    429 "$(as 192.0.2.9)"

# ---- SIGHUP reads the token file again ----
NEW=$(token)
printf 'ops %s\nnew %s\n' "$NEW" "$NEW." >"$TOKENS"
kill -HUP "$(cat "$T_DIR/daemon.pid")"
for _ in $(seq 1 100); do
    admin "$OPS" '{"verb":"overrides"}'
    [ "$C" = 401 ] && break
    sleep 0.05
done
is "after SIGHUP: the old ops token is refused" 401 "$C"
admin "$CI" '{"verb":"overrides"}'
is "... the ci token, gone from the file, is refused" 401 "$C"
admin "$NEW" '{"verb":"unban","target":"192.0.2.9"}'
is "... the new ops token works" 200 "$C"
is "... and its unban is enforced" 200 "$(as 192.0.2.9)"
printf 'ops %s\nbroken line\n' "$(token)" >"$TOKENS"
kill -HUP "$(cat "$T_DIR/daemon.pid")"
for _ in $(seq 1 100); do
    grep -q "admin tokens not reloaded" "$T_DIR/daemon.log" && break
    sleep 0.05
done
like "a broken token file on SIGHUP: logged with FILE:LINE" \
    "admin tokens not reloaded, the previous ones stay: $TOKENS:2: " \
    "$(cat "$T_DIR/daemon.log")"
admin "$NEW" '{"verb":"overrides"}'
is "... and the tokens in use stay" 200 "$C"
if grep -qF -e "$OPS" -e "$NEW" -e "$CI" "$T_DIR/daemon.log"; then
    not_ok "no token is ever logged"
else
    ok "no token is ever logged"
fi

lighttpd_stop "$D"

# ---- nginx: kept FastCGI connections survive bodies left unread ----
# The admin location keeps auth_request on: its check is let on uncounted
# while 127.0.0.1 is banned.  fastcgi_keep_conn sends every request on
# the upstream's kept connections, where a body the daemon did not read
# would be taken for the next request's records.
N=$T_DIR/nginx
NP=$(free_port)
nginx_conf "$N" "$NP" "$FP" <<'CONF'
        location = /rl2-admin {
            fastcgi_pass rl2admin;
            fastcgi_keep_conn on;
            include /etc/nginx/fastcgi_params;
        }
CONF
sed -i "s|^http {|http {\n    upstream rl2admin { server 127.0.0.1:$FP; keepalive 4; }|" \
    "$N/nginx.conf"
echo hello >"$N/htdocs/a.txt"
if ! nginx_start "$N"; then
    not_ok "nginx starts with the admin location"
    done_testing
    exit 1
fi
ok "nginx starts with the admin location"
F="http://127.0.0.1:$NP"
admin "$NEW" '{"verb":"ban","target":"127.0.0.1","reason":"self"}'
is "nginx: a ban of 127.0.0.1 through the admin path: 200" 200 "$C"
is "nginx: the site refuses 127.0.0.1 (429)" 429 "$(code "$F/a.txt")"
# The auth_request check of a site request carries the raw target: only
# one nginx routes to the admin location (it ends the path at '#') goes
# uncounted; every other variant is decided and refused.
for tc in '/rl2-admin#/../a.txt 401' '/rl2-admin%23/../a.txt 429' \
    '/rl2-admin/../a.txt 429' '//rl2-admin/../a.txt 429' \
    '/rl2-admin;/../a.txt 429' '/rl2-admin%2F..%2Fa.txt 429' \
    '/./rl2-admin/../a.txt 429'; do
    is "nginx: ${tc% *} while banned: ${tc#* }" "${tc#* }" \
        "$(target_code "${tc% *}")"
done
head -c 6000 /dev/zero | tr '\0' b >"$T_DIR/6k"
head -c 30000 /dev/zero | tr '\0' b >"$T_DIR/30k"
codes=""
for _ in 1 2; do
    admin - "@$T_DIR/6k"
    codes="$codes $C"
    admin "$NEW" "@$T_DIR/30k"
    codes="$codes $C"
    admin "$NEW" '{"verb":"overrides"}'
    codes="$codes $C"
done
is "nginx, kept connections: 401 (6 KB unread), 400 (30 KB), 200, twice" \
    "$(printf " 401 400 200%.0s" 1 2)" "$codes"
# nginx retries a kept connection the daemon closed: only the daemon's
# log tells that a body left behind broke one.
is "nginx: no kept connection was dropped (every body drained)" "" \
    "$(grep 'dropped a FastCGI connection' "$T_DIR/daemon.log")"
like "nginx passes Authorization: the list names token:ops" \
    '"author":"token:ops"' "$B"
admin "$NEW" '{"verb":"unban","target":"127.0.0.1"}'
is "nginx: the unban: 200" 200 "$C"
is "nginx: the site serves 127.0.0.1 again" 200 "$(code "$F/a.txt")"
nginx_stop "$N"

fcgi_stop daemon
is "ratelimit2-fcgi stops with exit status 0 at the end" 0 "$?"
done_testing
