#!/bin/bash
# t_fcgi_lighttpd.sh -- ratelimit2-fcgi as the FastCGI authorizer of
# lighttpd in front of static files and a CGI.  lighttpd spawns the
# daemon itself (bin-path, max-procs 2): two processes, each on the
# socket lighttpd hands it as fd 0, sharing one zone.  A quota of 100 is
# exact across both; a refusal carries 429, Retry-After, the RateLimit
# headers and the JSON body (current_usage, reset_time, the tier's
# upgrade_url); a CGI sees the RATELIMIT_* variables; malformed FastCGI
# input never takes a daemon down; and a daemon whose policy says
# headers.body = "problem+json" refuses with the draft's problem.
. "$(dirname "$0")/fcgi_lib.sh"

D=$T_DIR/lighttpd
P=$(free_port)
Z=$(zone_name lt)
mkdir -p "$D/htdocs/files" "$D/htdocs/cgi"
chmod -R 755 "$D"
echo hello >"$D/htdocs/files/a.txt"
cat >"$D/htdocs/cgi/env.cgi" <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
env | grep '^RATELIMIT_' | sort
CGI
chmod 755 "$D/htdocs/cgi/env.cgi"

cat >"$D/policy.conf" <<'POLICY'
headers = { legacy = true; };
tiers = ( { name = "free"; upgrade_url = "https://example.com/up?x=\"1\"\\"; },
          { name = "pro"; } );
default_tier = "free";
tier_from = { variable = "RL2_TIER"; };
rules = (
  { name = "files"; paths = "/files/**";
    limits = ( { rate = "100/day"; algorithm = "quota"; } ); },
  { name = "cgi"; paths = "/cgi/**";
    limits = ( { rate = "50/hour"; } );
    tiers = { pro = ( { rate = "500/hour"; } ); }; }
);
POLICY

lighttpd_authorizer_conf "$D" "$P" 2 \
    '"mod_setenv", "mod_fastcgi", "mod_cgi"' \
    "-c $D/policy.conf -z $Z -t 4" \
    'mimetype.assign = ( ".txt" => "text/plain" )
cgi.assign = ( ".cgi" => "" )
$HTTP["url"] =~ "^/cgi/" {
    setenv.add-environment = ( "RL2_TIER" => "pro" )
}'

if ! lighttpd_start "$D"; then
    not_ok "lighttpd starts with the authorizer"
    done_testing
    exit 1
fi
ok "lighttpd starts with the authorizer"
LPID=$(cat "$D/lighttpd.pid")
for _ in $(seq 1 100); do
    [ "$(pgrep -P "$LPID" | wc -l)" -ge 2 ] && break
    sleep 0.05
done
DAEMONS=$(pgrep -P "$LPID" | tr '\n' ' ')
is "lighttpd spawned two ratelimit2-fcgi processes" 2 \
    "$(echo $DAEMONS | wc -w)"

# ---- exactness across both processes ----
quota_guard
n=$(admitted 1000 64 "http://127.0.0.1:$P/files/a.txt")
is "quota 100/day admits exactly 100 of 1000 at c=64" 100 "$n"

# ---- a refusal ----
refused_429 "http://127.0.0.1:$P/files/a.txt" quota
like "429 has RateLimit" '^RateLimit: "files";r=0;t=[0-9]+' "$hdrs"
like "429 has RateLimit-Policy" '^RateLimit-Policy: "files";q=100' "$hdrs"
like "429 has X-RateLimit-Limit 100" '^X-RateLimit-Limit: 100' "$hdrs"
like "429 has X-RateLimit-Remaining 0" '^X-RateLimit-Remaining: 0' "$hdrs"
like "429 has Content-Type application/json" \
    '^Content-Type: application/json' "$hdrs"
for k in error message rule limit remaining reset retry_after; do
    like "429 body has key $k" "\"$k\":" "$body"
done
like "429 body names the rule" '"rule":"files"' "$body"
like "429 body retry_after equals Retry-After" "\"retry_after\":${ra}[,}]" \
    "$body"
like "429 body current_usage is the quota used" '"current_usage":100,' "$body"
like "429 body reset_time is ISO 8601 UTC" \
    '"reset_time":"20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]Z"' \
    "$body"
is "429 body upgrade_url of the tier, JSON-escaped" \
    'https://example.com/up?x="1"\' \
    "$(printf '%s' "$body" | python3 -c 'import json,sys; print(json.load(sys.stdin)["upgrade_url"])')"

# ---- allowed requests: variables for the application ----
out=$(curl -s -D "$T_DIR/200.h" "http://127.0.0.1:$P/cgi/env.cgi")
like "the CGI sees RATELIMIT_LIMIT of its tier" '^RATELIMIT_LIMIT=500$' \
    "$out"
like "the CGI sees RATELIMIT_REMAINING" '(^|\n)RATELIMIT_REMAINING=499' \
    "$out"
like "the CGI sees RATELIMIT_RESET" 'RATELIMIT_RESET=[0-9]+' "$out"
like "the CGI sees RATELIMIT_RULE" 'RATELIMIT_RULE=cgi' "$out"
like "the CGI sees RATELIMIT_TIER from the tier variable" \
    'RATELIMIT_TIER=pro' "$out"
# lighttpd keeps only Variable-* of an allowed answer (docs/fastcgi.md).
if tr -d '\r' <"$T_DIR/200.h" | grep -qi '^RateLimit:'; then
    not_ok "lighttpd drops the rate-limit headers of an allowed request"
else
    ok "lighttpd drops the rate-limit headers of an allowed request"
fi

# ---- malformed FastCGI input, straight to one daemon's socket ----
S="$D/rl2.sock-0"
REQ="REMOTE_ADDR=192.0.2.7 REQUEST_METHOD=GET REQUEST_URI=/cgi/x"
still_up() {
    local a
    a=$("$FCGI_CLIENT" "$S" $REQ | head -1 | tr -d '\r')
    is "after $1: the daemon answers the next request" "Status: 200 OK" "$a"
}
"$FCGI_CLIENT" -x truncated "$S" >/dev/null
still_up "a truncated record"
"$FCGI_CLIENT" -x huge "$S" >/dev/null
still_up "a param claiming 2 GiB lengths"
"$FCGI_CLIENT" -x version "$S" >/dev/null
still_up "a record of another version"
a=$("$FCGI_CLIENT" -b 100000:HTTP_X_BIG "$S" $REQ | head -1 | tr -d '\r')
is "100 KB of params get 431" "Status: 431 Request Header Fields Too Large" \
    "$a"
still_up "100 KB of params"
a=$("$FCGI_CLIENT" -b 9000:REQUEST_URI "$S" REMOTE_ADDR=192.0.2.7 \
    REQUEST_METHOD=GET | head -1 | tr -d '\r')
is "a 9000-byte REQUEST_URI gets 414" "Status: 414 URI Too Long" "$a"
a=$("$FCGI_CLIENT" "$S" REQUEST_METHOD=GET REQUEST_URI=/x | head -1 \
    | tr -d '\r')
is "a request without REMOTE_ADDR gets 500" \
    "Status: 500 Internal Server Error" "$a"
still_up "a request without REMOTE_ADDR"
a=$("$FCGI_CLIENT" -r filter "$S" $REQ | head -1 | tr -d '\r')
is "the filter role gets 500" "Status: 500 Internal Server Error" "$a"
alive=0
for pid in $DAEMONS; do
    kill -0 "$pid" 2>/dev/null && alive=$((alive + 1))
done
is "both daemon processes are still running" 2 "$alive"
c=$(code "http://127.0.0.1:$P/cgi/env.cgi")
is "lighttpd still serves through the authorizer" 200 "$c"
log=$(cat "$D/stderr.log")
like "the log names a truncated request" \
    'dropped a FastCGI connection: the connection closed before' "$log"
like "the log names the impossible lengths" \
    "dropped a FastCGI connection: a parameter's length runs past" "$log"
like "the log names the missing REMOTE_ADDR" 'no REMOTE_ADDR' "$log"

lighttpd_stop "$D"

# ---- problem+json: a daemon of another policy, asked directly ----
cat >"$D/problem.conf" <<'POLICY'
headers = { body = "problem+json"; };
rules = ( { name = "p"; limits = ( { name = "tight"; rate = "1/hour"; } ); } );
POLICY
FP=$(free_port)
fcgi_start problem -c "$D/problem.conf" -s "127.0.0.1:$FP" -z "$Z.p" -t 1
for _ in 1 2; do
    a=$("$FCGI_CLIENT" "127.0.0.1:$FP" REMOTE_ADDR=192.0.2.8 \
        REQUEST_METHOD=GET REQUEST_URI=/p | tr -d '\r')
done
like "problem: the second request gets 429" '^Status: 429' "$a"
like "problem: Content-Type application/problem+json" \
    '(^|\n)Content-Type: application/problem\+json(\n|$)' "$a"
b=$(printf '%s\n' "$a" | sed -n '/^{/,$p')
is "problem: exactly the draft's members, typed" \
    "type:str title:str status:int detail:str violated-policies:list[str]" \
    "$(printf '%s' "$b" | python3 "$RL2_ROOT/tests/tools/json_members.py" | tr '\n' ' ' | sed 's/ $//')"
like "problem: quota-exceeded, 429, the refusing policy" \
    '"type":"https://iana.org/assignments/http-problem-types#quota-exceeded","title":"Quota Exceeded","status":429,.*"violated-policies":\["tight"\]\}' \
    "$b"
fcgi_stop problem
rm -f "/dev/shm$Z.p" "/dev/shm$Z.p".*
done_testing
