#!/bin/bash
# t_fcgi_apache.sh -- ratelimit2-fcgi as the authorizer of Apache httpd
# through mod_authnz_fcgi (not mod_ratelimit2), configured with the
# shipped conf/fcgi/apache-authnz-fcgi.conf.  The daemon is started by
# systemd-socket-activate, as the shipped .socket unit would: it gets its
# socket through LISTEN_FDS.  Exactly N admitted; refusals are 429 with
# Retry-After and the JSON body; allowed responses carry the RateLimit
# headers and a CGI sees the RATELIMIT_* variables; SIGTERM exits 0; the
# shipped systemd units pass systemd-analyze verify.
. "$(dirname "$0")/fcgi_lib.sh"

D=$T_DIR/apache
P=$(free_port)
FP=$(free_port)
Z=$(zone_name ap)
apache_conf "$D" "$P" event
# This suite is about the daemon: Apache without the module.
sed -i '/^LoadModule ratelimit2_module/d' "$D/httpd.conf"
mkdir -p "$D/cgi"
chmod 755 "$D/cgi"
cat >"$D/cgi/env.cgi" <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
env | grep '^RATELIMIT_' | sort
CGI
chmod 755 "$D/cgi/env.cgi"

cat >"$T_DIR/policy.conf" <<'POLICY'
rules = (
  { name = "cgi"; paths = "/cgi/**";
    limits = ( { rate = "1000/hour"; } ); },
  { name = "site"; paths = "/**";
    limits = ( { rate = "50/hour"; algorithm = "sliding_log"; } ); }
);
POLICY

san=()
if [ "${SAN:-0}" = 1 ]; then
    export $(rl2_san_env)
    san=(-E ASAN_OPTIONS -E UBSAN_OPTIONS)
fi
systemd-socket-activate -l "127.0.0.1:$FP" "${san[@]}" "$FCGI_BIN" \
    -c "$T_DIR/policy.conf" -z "$Z" -t 4 2>"$T_DIR/daemon.log" &
echo $! >"$T_DIR/daemon.pid"
RL2_PIDFILES+=("$T_DIR/daemon.pid")
wait_port "$FP"

{
    echo "LoadModule authnz_fcgi_module $APACHE_MODDIR/mod_authnz_fcgi.so"
    sed "s|127\.0\.0\.1:9000|127.0.0.1:$FP|" \
        "$RL2_ROOT/conf/fcgi/apache-authnz-fcgi.conf"
    cat <<CONF
ScriptAlias /cgi/ "$D/cgi/"
<Directory "$D/cgi">
    Require valid-user
</Directory>
CONF
} >"$D/site.conf"
if ! apache_start "$D"; then
    not_ok "apache starts with mod_authnz_fcgi"
    done_testing
    exit 1
fi
ok "apache starts with mod_authnz_fcgi"

# ---- an allowed response ----
H=$T_DIR/200.h
c=$(curl -s -D "$H" -o /dev/null -w '%{http_code}' \
    "http://127.0.0.1:$P/index.html")
is "the first request gets 200" 200 "$c"
like "the daemon got its socket from systemd" \
    'threads on the socket from systemd' "$(cat "$T_DIR/daemon.log")"
hdrs=$(tr -d '\r' <"$H")
like "200 has RateLimit with r=49" '^RateLimit: "site";r=49;t=[0-9]+' \
    "$hdrs"
like "200 has RateLimit-Policy" '^RateLimit-Policy: "site";q=50;w=3600' \
    "$hdrs"
like "200 has RateLimit r=49" '^RateLimit: "site";r=49;' \
    "$hdrs"
if printf '%s\n' "$hdrs" | grep -qi '^Variable-'; then
    not_ok "Variable-* headers do not reach the client"
else
    ok "Variable-* headers do not reach the client"
fi
if printf '%s\n' "$hdrs" | grep -qi '^WWW-Authenticate'; then
    not_ok "no WWW-Authenticate on an allowed response"
else
    ok "no WWW-Authenticate on an allowed response"
fi

# ---- exactness ----
n=$(admitted 500 32 "http://127.0.0.1:$P/index.html")
is "50/hour admits exactly 50 in all (49 more of 500 at c=32)" 49 "$n"

# ---- a refusal ----
refused_429 "http://127.0.0.1:$P/index.html"
like "429 has RateLimit" '^RateLimit: "site";r=0;t=[0-9]+' "$hdrs"
like "429 has RateLimit r=0" '^RateLimit: "site";r=0;' "$hdrs"
like "429 body is the JSON object" \
    '^\{"error":"too_many_requests",.*"rule":"site".*"retry_after":' "$body"

# ---- variables for an application behind Apache ----
out=$(curl -s "http://127.0.0.1:$P/cgi/env.cgi")
like "a CGI sees RATELIMIT_LIMIT" 'RATELIMIT_LIMIT=1000' "$out"
like "a CGI sees RATELIMIT_REMAINING" 'RATELIMIT_REMAINING=999' "$out"
like "a CGI sees RATELIMIT_RULE" 'RATELIMIT_RULE=cgi' "$out"

# ---- the shipped units, as systemd would read them ----
mkdir -p "$T_DIR/units"
sed "s|/usr/sbin/ratelimit2-fcgi|$FCGI_BIN|" \
    "$RL2_ROOT/conf/fcgi/ratelimit2-fcgi.service" \
    >"$T_DIR/units/ratelimit2-fcgi.service"
cp "$RL2_ROOT/conf/fcgi/ratelimit2-fcgi.socket" "$T_DIR/units/"
# --man=no: the man page the units name is installed by the package, not
# here (t_package verifies the installed units with it).
out=$(cd "$T_DIR/units" && timeout 30 systemd-analyze verify --man=no \
    ./ratelimit2-fcgi.socket ./ratelimit2-fcgi.service 2>&1)
is "systemd-analyze verify accepts the shipped units" "0:" "$?:$out"

apache_stop "$D"
fcgi_stop daemon
is "SIGTERM: the daemon exits 0" 0 "$?"
like "SIGTERM: the daemon says it stopped" 'stopped$' \
    "$(cat "$T_DIR/daemon.log")"
done_testing
