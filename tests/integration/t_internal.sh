#!/bin/bash
# t_internal.sh -- whitelist.internal through real servers: a request the
# server's own configuration flags (the variable RATELIMIT2_INTERNAL) is
# never limited; a client cannot flag its own, neither with a header of
# that name nor with the internal header from an address that is not
# among internal_header_from; the internal header is believed from its
# sender (curl from 127.0.0.2), but not when a second value disagrees.
#
#   Apache with mod_ratelimit2: SetEnvIf in server and directory context
#     and a server-context RewriteRule [E=] are seen before check_access;
#     SetEnv (fixups) is not: on a server whose policy decides nothing
#     after authentication an address-keyed limit counts the request,
#     while a limit keyed by user (decided in fixups) sees the variable
#   Apache mod_authnz_fcgi with ratelimit2-fcgi: SetEnvIf reaches the
#     authorizer, SetEnv (fixups, after authentication) does not
#   nginx with ratelimit2-fcgi behind auth_request: fastcgi_param
#   lighttpd with ratelimit2-fcgi as its authorizer: setenv.add-environment
#   ratelimit2-cgi under Apache mod_cgi: SetEnvIf
# Every rule admits two requests an hour per address (sliding_log: exact,
# no window boundary); each server counts in a zone of its own.
. "$(dirname "$0")/fcgi_lib.sh"

# rule NAME [KEY] -- a rule for /NAME/**, 2 an hour per KEY (ip).
rule() {
    printf '  { name = "%s"; paths = "/%s/**";\n' "$1" "$1"
    printf '    limits = ( { rate = "2/hour"; algorithm = "sliding_log";'
    printf ' key = "%s"; } ); },\n' "${2:-ip}"
}
{
    cat <<'POLICY'
whitelist = { internal = true; internal_header = "X-Internal-Request";
              internal_header_from = [ "127.0.0.2" ]; };
rules = (
POLICY
    for r in internal pub forged hdr gw twice rw dir expr late; do
        rule "$r"
    done
    rule lateuser user
    echo '  { name = "rest"; paths = "/**"; exempt = true; }'
    echo ');'
} >"$T_DIR/policy.conf"
# Address-keyed limits only: nothing is decided in fixups.
{
    sed -n '1,3p' "$T_DIR/policy.conf"
    rule late
    echo '  { name = "rest"; paths = "/**"; exempt = true; }'
    echo ');'
} >"$T_DIR/early.conf"

PAGES="internal pub forged hdr gw twice rw dir expr late lateuser"
GW=(--interface 127.0.0.2)

# codes N URL [curl args...] -- the status codes of N requests.
codes() {
    local n=$1 out=""
    shift
    for _ in $(seq 1 "$n"); do
        out="$out $(code "$@")"
    done
    echo "${out# }"
}

ALL5="200 200 200 200 200"
LIMITED="200 200 429"

# client_tricks LABEL URL -- what every front end must do alike: the
# server's flag bypasses, nothing a client sends does.
client_tricks() {
    local l=$1 u=$2 h
    is "$l: the server flags /internal/: 5 of 5 admitted" "$ALL5" \
        "$(codes 5 "$u/internal/x")"
    h=$(curl -s -D - -o /dev/null "$u/internal/x" | tr -d '\r')
    like "$l: an internal request is answered" '^HTTP/[0-9.]+ 200' "$h"
    if printf '%s\n' "$h" | grep -qi '^RateLimit'; then
        not_ok "$l: an internal request carries no RateLimit fields"
    else
        ok "$l: an internal request carries no RateLimit fields"
    fi
    is "$l: elsewhere still limited" "$LIMITED" "$(codes 3 "$u/pub/x")"
    is "$l: a client's 'RATELIMIT2_INTERNAL: 1' header is limited" \
        "$LIMITED" "$(codes 3 "$u/forged/x" -H "RATELIMIT2_INTERNAL: 1")"
    is "$l: X-Internal-Request from 127.0.0.1 (not its sender) is limited" \
        "$LIMITED" "$(codes 3 "$u/hdr/x" -H "X-Internal-Request: 1")"
    is "$l: X-Internal-Request from its sender 127.0.0.2 bypasses" "$ALL5" \
        "$(codes 5 "$u/gw/x" "${GW[@]}" -H "X-Internal-Request: 1")"
    is "$l: X-Internal-Request twice, 1 and 0, from its sender is limited" \
        "$LIMITED" "$(codes 3 "$u/twice/x" "${GW[@]}" \
            -H "X-Internal-Request: 1" -H "X-Internal-Request: 0")"
}

# ---- Apache with mod_ratelimit2 ----
apache_suite() {
    local D=$T_DIR/apache P PE U
    P=$(free_port)
    PE=$(free_port)
    U="http://127.0.0.1:$P"
    apache_conf "$D" "$P" event
    site_pages "$D/htdocs" $PAGES
    htpasswd -bc "$D/htpasswd" alice alicepw >/dev/null 2>&1
    chmod 644 "$D/htpasswd"
    cat >"$D/site.conf" <<CONF
LoadModule rewrite_module $APACHE_MODDIR/mod_rewrite.so
RateLimit2Zone $(zone_name ap) 1000
RateLimit2Policy "$T_DIR/policy.conf"
# post_read_request: before check_access.
SetEnvIf Request_URI ^/internal/ RATELIMIT2_INTERNAL=1
# The example of docs/configuration.md: the path from some addresses.
SetEnvIfExpr "-R '127.0.0.2' && %{REQUEST_URI} =~ m#^/expr/#" RATELIMIT2_INTERNAL=1
# translate_name: before check_access.
RewriteEngine On
RewriteRule ^/rw/ - [E=RATELIMIT2_INTERNAL:1]
<Location /dir/>
    # header_parser: before check_access.
    SetEnvIf Request_URI . RATELIMIT2_INTERNAL=1
</Location>
Listen 127.0.0.1:$PE
<VirtualHost 127.0.0.1:$PE>
    RateLimit2Policy "$T_DIR/early.conf"
</VirtualHost>
<Location /late/>
    # fixups: after check_access.
    SetEnv RATELIMIT2_INTERNAL 1
</Location>
<Location /lateuser/>
    AuthType Basic
    AuthName "rl2 test"
    AuthBasicProvider file
    AuthUserFile "$D/htpasswd"
    Require valid-user
    SetEnv RATELIMIT2_INTERNAL 1
</Location>
CONF
    if ! apache_start "$D" || ! wait_port "$PE"; then
        not_ok "apache starts"
        return
    fi
    client_tricks apache "$U"
    is "apache: a server-context RewriteRule [E=] bypasses" "$ALL5" \
        "$(codes 5 "$U/rw/x")"
    is "apache: SetEnvIf in <Location> bypasses" "$ALL5" \
        "$(codes 5 "$U/dir/x")"
    is "apache: SetEnvIfExpr on address and path: 127.0.0.2 bypasses" \
        "$ALL5" "$(codes 5 "$U/expr/x" "${GW[@]}")"
    is "apache: SetEnvIfExpr on address and path: 127.0.0.1 is limited" \
        "$LIMITED" "$(codes 3 "$U/expr/x")"
    is "apache: SetEnv comes too late for a limit keyed by address" \
        "$LIMITED" "$(codes 3 "http://127.0.0.1:$PE/late/x")"
    is "apache: SetEnv is seen by a limit keyed by user (fixups)" "$ALL5" \
        "$(codes 5 "$U/lateuser/x" -u alice:alicepw)"
    apache_stop "$D"
}

# ---- Apache mod_authnz_fcgi with ratelimit2-fcgi (no mod_ratelimit2) ----
authnz_suite() {
    local D=$T_DIR/authnz P FP U
    P=$(free_port)
    FP=$(free_port)
    U="http://127.0.0.1:$P"
    fcgi_start authnz-daemon -c "$T_DIR/policy.conf" -s "127.0.0.1:$FP" \
        -z "$(zone_name az)" -t 2
    apache_conf "$D" "$P" event
    sed -i '/^LoadModule ratelimit2_module/d' "$D/httpd.conf"
    site_pages "$D/htdocs" $PAGES
    {
        echo "LoadModule authnz_fcgi_module $APACHE_MODDIR/mod_authnz_fcgi.so"
        sed "s|127\.0\.0\.1:9000|127.0.0.1:$FP|" \
            "$RL2_ROOT/conf/fcgi/apache-authnz-fcgi.conf"
        cat <<'CONF'
SetEnvIf Request_URI ^/internal/ RATELIMIT2_INTERNAL=1
<Location /late/>
    SetEnv RATELIMIT2_INTERNAL 1
</Location>
CONF
    } >"$D/site.conf"
    if ! apache_start "$D"; then
        not_ok "apache with mod_authnz_fcgi starts"
        fcgi_stop authnz-daemon
        return
    fi
    client_tricks authnz_fcgi "$U"
    is "authnz_fcgi: SetEnv comes too late for the authorizer" "$LIMITED" \
        "$(codes 3 "$U/late/x")"
    apache_stop "$D"
    fcgi_stop authnz-daemon
}

# ---- nginx with ratelimit2-fcgi (auth_request) ----
nginx_suite() {
    local D=$T_DIR/nginx P FP U
    P=$(free_port)
    FP=$(free_port)
    U="http://127.0.0.1:$P"
    fcgi_start nginx-daemon -c "$T_DIR/policy.conf" -s "127.0.0.1:$FP" \
        -z "$(zone_name ng)" -t 2
    # Headers with '_' passed on, as HTTP_RATELIMIT2_INTERNAL: the
    # client's header of the variable's name reaches the daemon.
    nginx_conf "$D" "$P" "$FP" <<'CONF'
        underscores_in_headers on;
CONF
    site_pages "$D/htdocs" $PAGES
    sed -i 's|^http {$|&\n    map $request_uri $rl2_internal { ~^/internal/ 1; default ""; }|' \
        "$D/nginx.conf"
    sed -i 's|^\( *\)fastcgi_param RATELIMIT2_REQUEST_ID .*$|&\n\1fastcgi_param RATELIMIT2_INTERNAL $rl2_internal;|' \
        "$D/ratelimit2.conf"
    like "nginx: the snippet passes RATELIMIT2_INTERNAL" \
        'fastcgi_param RATELIMIT2_INTERNAL \$rl2_internal;' \
        "$(cat "$D/ratelimit2.conf")"
    if ! nginx_start "$D"; then
        not_ok "nginx starts"
        fcgi_stop nginx-daemon
        return
    fi
    client_tricks nginx "$U"
    nginx_stop "$D"
    fcgi_stop nginx-daemon
}

# ---- lighttpd with ratelimit2-fcgi as its authorizer ----
lighttpd_suite() {
    local D=$T_DIR/lighttpd P
    P=$(free_port)
    mkdir -p "$D/htdocs"
    chmod 755 "$D" "$D/htdocs"
    site_pages "$D/htdocs" $PAGES
    lighttpd_authorizer_conf "$D" "$P" 1 '"mod_setenv", "mod_fastcgi"' \
        "-c $T_DIR/policy.conf -z $(zone_name lt) -t 2" \
        '$HTTP["url"] =~ "^/internal/" {
    setenv.add-environment = ( "RATELIMIT2_INTERNAL" => "1" )
}'
    if ! lighttpd_start "$D"; then
        not_ok "lighttpd starts"
        return
    fi
    client_tricks lighttpd "http://127.0.0.1:$P"
    lighttpd_stop "$D"
}

# ---- ratelimit2-cgi under Apache mod_cgi (no mod_ratelimit2) ----
cgi_suite() {
    local D=$T_DIR/cgi P W
    P=$(free_port)
    W=$D/bin/ratelimit2-cgi
    apache_conf "$D" "$P" prefork
    sed -i '/^LoadModule ratelimit2_module/d' "$D/httpd.conf"
    mkdir -p "$D/bin"
    chmod 755 "$D/bin"
    cp "$CGI_BIN" "$W"
    printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\nok\\n"\n' \
        >"$D/bin/app"
    chmod 755 "$D/bin/app"
    {
        [ "${SAN:-0}" = 1 ] && echo "PassEnv ASAN_OPTIONS UBSAN_OPTIONS"
        cat <<CONF
SetEnv RATELIMIT2_POLICY "$T_DIR/policy.conf"
SetEnv RATELIMIT2_ZONE "$(zone_name cgi)"
SetEnv RATELIMIT2_TARGET "$D/bin/app"
SetEnvIf Request_URI ^/internal/ RATELIMIT2_INTERNAL=1
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
    client_tricks cgi "http://127.0.0.1:$P"
    apache_stop "$D"
}

# ---- the loader refuses a variable a client could set ----
cat >"$T_DIR/forgeable.conf" <<'POLICY'
whitelist = { internal = true;
              internal_variable = "HTTP_X_INTERNAL"; };
POLICY
out=$("$FCGI_BIN" -C -c "$T_DIR/forgeable.conf" 2>&1)
is "ratelimit2-fcgi -C: a variable named HTTP_* fails the check" 1 "$?"
like "ratelimit2-fcgi -C: ... with its file:line" \
    'forgeable\.conf:2: whitelist\.internal_variable "HTTP_X_INTERNAL" is a variable a client sets' \
    "$out"

apache_suite
authnz_suite
nginx_suite
lighttpd_suite
cgi_suite
done_testing
