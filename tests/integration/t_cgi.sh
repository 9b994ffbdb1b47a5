#!/bin/bash
# t_cgi.sh -- the CGI wrapper ratelimit2-cgi under Apache mod_cgi
# (prefork, no mod_ratelimit2): every request is a separate process, and
# all of them share one zone, so a limit of 50 admits exactly 50 of 300
# at c=16.  The wrapped script's output and exit status are what they are
# without the wrapper; allowed scripts see RATELIMIT_*; refusals are a
# CGI 429; the target is refused unless it is an absolute path to an
# executable file, and PATH_TRANSLATED is used only behind a handler;
# wrapper processes and ratelimit2-fcgi count in one zone; a refusal's
# body has current_usage, reset_time and the tier's upgrade_url, or is
# the draft's problem with headers.body = "problem+json".
. "$(dirname "$0")/fcgi_lib.sh"

D=$T_DIR/cgi
P=$(free_port)
Z=$(zone_name cgi)
apache_conf "$D" "$P" prefork
sed -i '/^LoadModule ratelimit2_module/d' "$D/httpd.conf"
mkdir -p "$D/cgi" "$D/bin" "$D/htdocs/act"
cp "$CGI_BIN" "$D/bin/ratelimit2-cgi"
chmod 755 "$D/cgi" "$D/bin" "$D/htdocs/act"

cat >"$D/cgi/hello.sh" <<'S'
#!/bin/sh
printf 'Content-Type: text/plain\r\nX-Script: hello\r\n\r\n'
echo "hello from the script"
exit 3
S
cat >"$D/cgi/env.sh" <<'S'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
env | grep '^RATELIMIT_' | sort
S
cat >"$D/cgi/silent.sh" <<'S'
#!/bin/sh
echo "silent.sh fails" >&2
exit 1
S
cat >"$D/htdocs/act/page.rl2" <<'S'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
echo "page through the handler"
S
printf '#!/bin/sh\necho not executable\n' >"$D/cgi/noexec.sh"
chmod 755 "$D/cgi/hello.sh" "$D/cgi/env.sh" "$D/cgi/silent.sh" \
    "$D/htdocs/act/page.rl2"
chmod 644 "$D/cgi/noexec.sh"

cat >"$D/policy.conf" <<'POLICY'
rules = (
  { name = "count"; paths = "/wrapped/count";
    limits = ( { rate = "50/hour"; algorithm = "sliding_log"; } ); },
  { name = "other"; paths = "/**";
    limits = ( { rate = "1000/hour"; } ); }
);
POLICY

W=$D/bin/ratelimit2-cgi
{
    echo "LoadModule actions_module $APACHE_MODDIR/mod_actions.so"
    [ "${SAN:-0}" = 1 ] && echo "PassEnv ASAN_OPTIONS UBSAN_OPTIONS"
    cat <<CONF
ScriptAlias /direct/ "$D/cgi/"
ScriptAlias /rl2bin/ "$D/bin/"
<Directory "$D/cgi">
    Require all granted
</Directory>
<Directory "$D/bin">
    Require all granted
</Directory>
SetEnv RATELIMIT2_POLICY "$D/policy.conf"
SetEnv RATELIMIT2_ZONE "$Z"
ScriptAlias /wrapped/hello "$W"
ScriptAlias /wrapped/env "$W"
ScriptAlias /wrapped/silent "$W"
ScriptAlias /wrapped/count "$W"
<Location /wrapped/hello>
    SetEnv RATELIMIT2_TARGET "$D/cgi/hello.sh"
</Location>
<Location /wrapped/count>
    SetEnv RATELIMIT2_TARGET "$D/cgi/hello.sh"
</Location>
<Location /wrapped/env>
    SetEnv RATELIMIT2_TARGET "$D/cgi/env.sh"
</Location>
<Location /wrapped/silent>
    SetEnv RATELIMIT2_TARGET "$D/cgi/silent.sh"
</Location>
# The handler way: the wrapper runs for *.rl2 files, with the file in
# PATH_TRANSLATED.
<Directory "$D/htdocs/act">
    AddHandler ratelimit2-wrapped .rl2
    Action ratelimit2-wrapped /rl2bin/ratelimit2-cgi
</Directory>
CONF
} >"$D/site.conf"
if ! apache_start "$D"; then
    not_ok "apache starts with mod_cgi"
    done_testing
    exit 1
fi
ok "apache starts with mod_cgi"

# response URL -> status line, headers and body; without Date, and
# without the framing mod_cgi picks by timing (Content-Length when the
# script had finished before the headers went out, chunked otherwise).
response() {
    curl -s -i "$1" | tr -d '\r' \
        | grep -Ev '^(Date|Content-Length|Transfer-Encoding):'
}

# ---- output and status pass through ----
direct=$(response "http://127.0.0.1:$P/direct/hello.sh")
wrapped=$(response "http://127.0.0.1:$P/wrapped/hello")
like "the script answers directly" 'hello from the script' "$direct"
is "wrapped, the script's response is unchanged" "$direct" "$wrapped"
direct=$(response "http://127.0.0.1:$P/direct/silent.sh" | head -1)
wrapped=$(response "http://127.0.0.1:$P/wrapped/silent" | head -1)
like "a script that fails directly gets 500" '^HTTP/1.1 500' "$direct"
is "wrapped, the failing script gets the same status" "$direct" "$wrapped"
out=$(response "http://127.0.0.1:$P/act/page.rl2")
like "behind Action, the wrapper runs PATH_TRANSLATED" \
    'page through the handler' "$out"

# ---- variables ----
out=$(curl -s "http://127.0.0.1:$P/wrapped/env")
like "the script sees RATELIMIT_LIMIT" 'RATELIMIT_LIMIT=1000' "$out"
like "the script sees RATELIMIT_REMAINING" 'RATELIMIT_REMAINING=99[0-9]' \
    "$out"
like "the script sees RATELIMIT_RESET" 'RATELIMIT_RESET=[0-9]+' "$out"
like "the script sees RATELIMIT_RULE" 'RATELIMIT_RULE=other' "$out"

# ---- exactness across processes ----
n=$(admitted 300 16 "http://127.0.0.1:$P/wrapped/count")
is "50/hour admits exactly 50 of 300 at c=16" 50 "$n"
refused_429 "http://127.0.0.1:$P/wrapped/count"
like "429 has RateLimit" '^RateLimit: "count";r=0;t=[0-9]+' "$hdrs"
like "429 has Content-Type application/json" \
    '^Content-Type: application/json' "$hdrs"
like "429 body is the JSON object" \
    '^\{"error":"too_many_requests",.*"rule":"count"' "$(cat "$B")"
like "429 body current_usage is the window's count" '"current_usage":50,' \
    "$(cat "$B")"
like "429 body reset_time is ISO 8601 UTC" \
    '"reset_time":"20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]Z"' \
    "$(cat "$B")"
apache_stop "$D"

# ---- the wrapper as a process: exit status and refusals ----
# wrap ENV... -- run the wrapper as a CGI with a request's environment;
# stdout in $T_DIR/w.out, stderr in $T_DIR/w.err, returns its status.
wrap() {
    env -i $(rl2_san_env) REQUEST_METHOD=GET REMOTE_ADDR=192.0.2.9 \
        REQUEST_URI=/wrapped/x RATELIMIT2_POLICY="$D/policy.conf" \
        RATELIMIT2_ZONE="$Z" "$@" "$W" >"$T_DIR/w.out" 2>"$T_DIR/w.err"
}

# ---- a zone of another user ----
# Apache ran the wrapper as nobody, so the zone is nobody's: run as root,
# the wrapper must not map it (nobody could read and steer its counters),
# and lets the request through with the reason on stderr.  Then it goes,
# for the root processes below.
if [ "$(id -u)" = 0 ]; then
    wrap RATELIMIT2_TARGET="$D/cgi/hello.sh"
    is "a wrapper facing another user's zone still runs the script" 3 "$?"
    like "a wrapper facing another user's zone says whose it is" \
        "refusing /dev/shm$Z, owned by uid $(id -u nobody)" \
        "$(cat "$T_DIR/w.err")"
    rm -f "/dev/shm$Z" "/dev/shm$Z".*
fi

wrap RATELIMIT2_TARGET="$D/cgi/hello.sh"
is "the wrapper exits with the script's status" 3 "$?"
is "the wrapper's output is the script's" "$("$D/cgi/hello.sh")" \
    "$(cat "$T_DIR/w.out")"
wrap RATELIMIT2_TARGET=cgi/hello.sh
like "a relative target gets 500" '^Status: 500' "$(cat "$T_DIR/w.out")"
like "a relative target is logged" 'is not an absolute path' \
    "$(cat "$T_DIR/w.err")"
wrap RATELIMIT2_TARGET="$D/cgi/noexec.sh"
like "a target that is not executable gets 500" '^Status: 500' \
    "$(cat "$T_DIR/w.out")"
like "a target that is not executable is logged" \
    'is not an executable regular file' "$(cat "$T_DIR/w.err")"
wrap RATELIMIT2_TARGET="$D/cgi"
like "a directory as target gets 500" '^Status: 500' "$(cat "$T_DIR/w.out")"
wrap PATH_TRANSLATED="$D/cgi/hello.sh"
like "PATH_TRANSLATED without a handler (REDIRECT_STATUS) is refused" \
    '^Status: 500' "$(cat "$T_DIR/w.out")"
cat >"$T_DIR/conc.conf" <<'POL'
rules = ( { name = "s";
            limits = ( { algorithm = "concurrency"; limit = 2; } ); } );
POL
wrap RATELIMIT2_TARGET="$D/cgi/hello.sh" RATELIMIT2_POLICY="$T_DIR/conc.conf"
like "a concurrency policy gets 500" '^Status: 500' "$(cat "$T_DIR/w.out")"
like "a concurrency policy is logged with file:line" \
    "conc.conf:2: limit 's' is a concurrency limit" "$(cat "$T_DIR/w.err")"
echo 'rules = ( { name = "s"; limits = ( { rate = "5/fortnight"; } ); } );' \
    >"$T_DIR/bad.conf"
wrap RATELIMIT2_TARGET="$D/cgi/hello.sh" RATELIMIT2_POLICY="$T_DIR/bad.conf"
like "a broken policy gets 500" '^Status: 500' "$(cat "$T_DIR/w.out")"
like "a broken policy is logged with file:line" 'bad.conf:1: ' \
    "$(cat "$T_DIR/w.err")"
wrap RATELIMIT2_TARGET="$D/cgi/hello.sh" REMOTE_ADDR=
like "a request without REMOTE_ADDR gets 500" '^Status: 500' \
    "$(cat "$T_DIR/w.out")"

# ---- the body: upgrade_url, and problem+json ----
cat >"$T_DIR/up.conf" <<'POL'
tiers = ( { name = "free"; upgrade_url = "https://example.com/u?\"a\"\\"; } );
default_tier = "free";
rules = ( { name = "one"; limits = ( { name = "once"; rate = "1/hour"; } ); } );
POL
cat >"$T_DIR/problem.conf" <<'POL'
headers = { body = "problem+json"; };
rules = ( { name = "one"; limits = ( { name = "once"; rate = "1/hour"; } ); } );
POL
for _ in 1 2; do
    wrap RATELIMIT2_TARGET="$D/cgi/hello.sh" RATELIMIT2_POLICY="$T_DIR/up.conf" \
        RATELIMIT2_ZONE="$Z.u"
done
out=$(tr -d '\r' <"$T_DIR/w.out")
like "wrapper: the second request gets 429" '^Status: 429' "$out"
is "wrapper: the body's upgrade_url, JSON-escaped" \
    'https://example.com/u?"a"\' \
    "$(printf '%s\n' "$out" | sed -n '/^{/,$p' | python3 -c 'import json,sys; print(json.load(sys.stdin)["upgrade_url"])')"
for _ in 1 2; do
    wrap RATELIMIT2_TARGET="$D/cgi/hello.sh" \
        RATELIMIT2_POLICY="$T_DIR/problem.conf" RATELIMIT2_ZONE="$Z.q"
done
out=$(tr -d '\r' <"$T_DIR/w.out")
like "problem: Content-Type application/problem+json" \
    '(^|\n)Content-Type: application/problem\+json(\n|$)' "$out"
b=$(printf '%s\n' "$out" | sed -n '/^{/,$p')
is "problem: exactly the draft's members, typed" \
    "type:str title:str status:int detail:str violated-policies:list[str]" \
    "$(printf '%s' "$b" | python3 "$RL2_ROOT/tests/tools/json_members.py" | tr '\n' ' ' | sed 's/ $//')"
like "problem: quota-exceeded, the refusing policy" \
    '#quota-exceeded","title":"Quota Exceeded","status":429,.*"violated-policies":\["once"\]\}' \
    "$b"
rm -f "/dev/shm$Z.u" "/dev/shm$Z.u".* "/dev/shm$Z.q" "/dev/shm$Z.q".*

# ---- one zone for the wrapper and the daemon ----
FP=$(free_port)
fcgi_start daemon -c "$D/policy.conf" -s "127.0.0.1:$FP" -z "$Z" -t 2
n=0
for _ in $(seq 1 40); do
    wrap RATELIMIT2_TARGET="$D/cgi/hello.sh" REMOTE_ADDR=192.0.2.50 \
        REQUEST_URI=/wrapped/count
    [ $? = 3 ] && n=$((n + 1))
    a=$("$FCGI_CLIENT" "127.0.0.1:$FP" REMOTE_ADDR=192.0.2.50 \
        REQUEST_METHOD=GET REQUEST_URI=/wrapped/count | head -1)
    case "$a" in "Status: 200"*) n=$((n + 1)) ;; esac
done
is "wrapper and daemon on one zone admit exactly 50 of 80 together" 50 "$n"
fcgi_stop daemon

done_testing
