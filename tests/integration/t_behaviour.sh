#!/bin/bash
# t_behaviour.sh -- how the module behaves around the limit itself: dry
# run, a custom ErrorDocument for 429, counts surviving a graceful
# restart, configuration errors with file:line, concurrency slots released
# at the end of the request, and requests counted once through mod_dir.
# Small limits use sliding_log: exact, and no window boundary to cross.
. "$(dirname "$0")/lib.sh"

# codes N URL [curl args] -- N status codes, space-separated.
codes() {
    local n=$1 out=""
    shift
    for _ in $(seq 1 "$n"); do
        out="$out $(code "$@")"
    done
    echo "${out# }"
}

# repeat WORD N -- WORD N times, space-separated.
repeat() {
    local i out=""
    for i in $(seq 1 "$2"); do
        out="$out $1"
    done
    echo "${out# }"
}

# cgi_setup DIR -- a CGI under /slow/ that marks its start in DIR/run
# (writable by the CGI's user), sleeps 2 s and answers.
cgi_setup() {
    local dir=$1
    mkdir -p "$dir/cgi" "$dir/run"
    chmod 755 "$dir/cgi"
    chmod 777 "$dir/run"
    cat >"$dir/cgi/slow.sh" <<SH
#!/bin/sh
touch "$dir/run/started.\$\$"
sleep 2
printf 'Content-Type: text/plain\r\n\r\nslow done\n'
SH
    printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\nquick\\n"\n' \
        >"$dir/cgi/quick.sh"
    chmod 755 "$dir/cgi/slow.sh" "$dir/cgi/quick.sh"
    cat >>"$dir/site.conf" <<CONF
ScriptAlias /slow/ "$dir/cgi/"
<Directory "$dir/cgi">
    Require all granted
</Directory>
<Location /slow/>
    RateLimit2Limit streams 1 algorithm=concurrency
</Location>
CONF
}

# wait_started DIR -- until a CGI has started (at most 10 s).
wait_started() {
    local i
    for i in $(seq 1 200); do
        ls "$1/run"/started.* >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    return 1
}

# concurrency_checks MPM DIR PORT
concurrency_checks() {
    local mpm=$1 dir=$2 port=$3 url quick first c i
    url=http://127.0.0.1:$port/slow/slow.sh
    quick=http://127.0.0.1:$port/slow/quick.sh
    rm -f "$dir/run"/started.*
    code "$url" >"$dir/first.code" &
    first=$!
    if wait_started "$dir"; then
        ok "$mpm concurrency: the first request is running"
    else
        not_ok "$mpm concurrency: the first request is running"
    fi
    is "$mpm concurrency: a second concurrent request gets 429" 429 \
        "$(code "$url")"
    wait "$first"
    is "$mpm concurrency: the first request gets 200" 200 \
        "$(cat "$dir/first.code")"
    # The slot is released when the response's end passes the module,
    # before the client has read it: the next request finds it free.
    is "$mpm concurrency: right after it finished a new request gets 200" \
        200 "$(code "$url")"
    c=$(for i in $(seq 1 50); do code "$quick"; echo; done | sort | uniq -c |
        xargs)
    is "$mpm concurrency: 50 back-to-back requests all get 200" "50 200" "$c"
}

D=$T_DIR/a
P=$(free_port)
apache_conf "$D" "$P" event
for loc in dry ed gr dir dir2; do
    mkdir -p "$D/htdocs/$loc"
    echo "hello $loc" >"$D/htdocs/$loc/x"
done
echo "RL2-CUSTOM-LIMITED-PAGE" >"$D/htdocs/limited.html"
echo "dir index" >"$D/htdocs/dir/index.html"
cat >"$D/site.conf" <<CONF
RateLimit2Zone $(zone_name behaviour) 10000
<Location /dry>
    RateLimit2Mode dry_run
    RateLimit2Limit dry 2/1h algorithm=sliding_log
</Location>
<Location /ed>
    RateLimit2Limit ed 1/1h algorithm=sliding_log
    ErrorDocument 429 /limited.html
</Location>
<Location /gr>
    RateLimit2Limit gr 10/1h algorithm=sliding_log
</Location>
<Directory "$D/htdocs/dir">
    DirectoryIndex index.html
    RateLimit2Limit dirl 5/1h algorithm=sliding_log
</Directory>
<Directory "$D/htdocs/dir2">
    RateLimit2Limit dir2l 5/1h algorithm=sliding_log
</Directory>
CONF
cgi_setup "$D"
if ! apache_start "$D"; then
    not_ok "event: apache starts"
    done_testing
    exit 1
fi
ok "event: apache starts"

# ---- (a) dry run ----
U=http://127.0.0.1:$P/dry/x
is "dry run: 10 requests against 2/1h are all 200" "$(repeat 200 9)" \
    "$(codes 9 "$U")"
h=$(curl -s -D - -o /dev/null "$U" | tr -d '\r')
like "dry run: the 10th is 200 too" '^HTTP/[0-9.]+ 200' "$h"
like "dry run: it carries RateLimit (r=0)" '^RateLimit: "dry";r=0;' "$h"
like "dry run: it carries RateLimit-Policy" '^RateLimit-Policy: "dry";q=2;' \
    "$h"
if printf '%s\n' "$h" | grep -qi '^Retry-After:'; then
    not_ok "dry run: no Retry-After on a request let through"
else
    ok "dry run: no Retry-After on a request let through"
fi
like "dry run: error.log says dry_run: would limit" \
    'dry_run: would limit' "$(cat "$D/logs/error.log")"

# ---- (b) ErrorDocument 429 ----
U=http://127.0.0.1:$P/ed/x
is "ErrorDocument: the first request gets 200" 200 "$(code "$U")"
c=$(curl -s -D "$T_DIR/ed.h" -o "$T_DIR/ed.b" -w '%{http_code}' "$U")
h=$(tr -d '\r' <"$T_DIR/ed.h")
is "ErrorDocument: the refused request keeps status 429" 429 "$c"
like "ErrorDocument: the body is the custom page" 'RL2-CUSTOM-LIMITED-PAGE' \
    "$(cat "$T_DIR/ed.b")"
like "ErrorDocument: Retry-After is sent" '^Retry-After: [1-9][0-9]*$' "$h"
like "ErrorDocument: RateLimit is sent" '^RateLimit: "ed";r=0;' "$h"
like "ErrorDocument: the page keeps its own type" '^Content-Type: text/html' \
    "$h"
is "ErrorDocument: the error page itself is not counted" 429 \
    "$(code "$U")"

# ---- (c) graceful restart ----
U=http://127.0.0.1:$P/gr/x
is "graceful: 6 of 10/1h before the restart" "$(repeat 200 6)" \
    "$(codes 6 "$U")"
# The new generation is told apart by an alias the old one lacks.
echo "Alias /gen2 \"$D/htdocs/index.html\"" >>"$D/site.conf"
apache_graceful "$D"
c=000
for i in $(seq 1 200); do
    c=$(code "http://127.0.0.1:$P/gen2")
    [ "$c" = 200 ] && break
    sleep 0.05
done
is "graceful: the new generation serves" 200 "$c"
is "graceful: 10 more requests admit exactly 4" 4 \
    "$(admitted 10 2 "$U")"
is "graceful: the zone is attached once per generation (logged twice)" 2 \
    "$(grep -cE 'RL20006: zone [^ ]+: 10000 entries of [0-9]+ bytes' \
        "$D/logs/error.log")"

# ---- (f) mod_dir's index is counted once ----
U=http://127.0.0.1:$P/dir/
is "DirectoryIndex: 5 requests to /dir/ are all 200" "$(repeat 200 5)" \
    "$(codes 5 "$U")"
is "DirectoryIndex: the 6th is 429" 429 "$(code "$U")"
is "DirectoryIndex: the index page itself is limited too" 429 \
    "$(code "http://127.0.0.1:$P/dir/index.html")"
h=$(curl -s -D - -o /dev/null "http://127.0.0.1:$P/dir2" | tr -d '\r')
like "mod_dir: the trailing-slash redirect is 301" '^HTTP/[0-9.]+ 301' "$h"
like "mod_dir: the 301 carries RateLimit (counted once, r=4)" \
    '^RateLimit: "dir2l";r=4;' "$h"

# ---- (e) concurrency, event MPM with mod_cgid ----
concurrency_checks event "$D" "$P"
apache_stop "$D"

# ---- (e) concurrency, prefork MPM with mod_cgi ----
D2=$T_DIR/b
P2=$(free_port)
apache_conf "$D2" "$P2" prefork
echo "RateLimit2Zone $(zone_name behaviour-prefork) 10000" >"$D2/site.conf"
cgi_setup "$D2"
if apache_start "$D2"; then
    ok "prefork: apache starts"
    concurrency_checks prefork "$D2" "$P2"
    apache_stop "$D2"
else
    not_ok "prefork: apache starts"
fi

# ---- (d) configuration errors name file:line ----
D3=$T_DIR/c
apache_conf "$D3" "$(free_port)" event
cat >"$D3/bad-policy.conf" <<'CONF'
mode = "enforce";
match = "first";
bogus_key = 1;
CONF
cat >"$D3/site.conf" <<CONF
RateLimit2Zone $(zone_name bad1) 10000
RateLimit2Policy "$D3/bad-policy.conf"
CONF
out=$(apache_configtest "$D3")
rc=$?
is "bad policy: configtest fails" 1 "$([ "$rc" -ne 0 ] && echo 1 || echo 0)"
like "bad policy: the message names file:line" \
    "$D3/bad-policy.conf:3:" "$out"
like "bad policy: the message names the key" 'bogus_key' "$out"

# A policy one of whose requests would meet 17 limits (one rule a line
# from line 3): configtest names the rule that tips it over.
{
    printf 'match = "all";\nrules = (\n'
    for i in $(seq 0 16); do
        printf '%s{ name = "r%d"; limits = ( { rate = "5/min"; } ); }\n' \
            "$([ "$i" -gt 0 ] && echo ,)" "$i"
    done
    printf ');\n'
} >"$D3/bound-policy.conf"
cat >"$D3/site.conf" <<CONF
RateLimit2Zone $(zone_name bad3) 10000
RateLimit2Policy "$D3/bound-policy.conf"
CONF
out=$(apache_configtest "$D3")
rc=$?
is "17 limits for one request: configtest fails" 1 \
    "$([ "$rc" -ne 0 ] && echo 1 || echo 0)"
like "17 limits for one request: file:line of the rule, and the numbers" \
    "$D3/bound-policy.conf:19: rule 'r16' can bring one request to 17 limits, more than the 16" \
    "$out"

cat >"$D3/site.conf" <<CONF
RateLimit2Zone $(zone_name bad2) 10000
<Location /x>
    RateLimit2Limit fortnightly 5/fortnight
</Location>
CONF
out=$(apache_configtest "$D3")
rc=$?
is "bad RateLimit2Limit: configtest fails" 1 \
    "$([ "$rc" -ne 0 ] && echo 1 || echo 0)"
like "bad RateLimit2Limit: the message names the directive" \
    'RateLimit2Limit fortnightly' "$out"
like "bad RateLimit2Limit: the message names the bad rate" 'fortnight' \
    "$(printf '%s\n' "$out" | sed 's/RateLimit2Limit fortnightly//')"
like "bad RateLimit2Limit: the message names site.conf:3" \
    "site.conf.*3|line 3" "$out"

# ---- (f) a zone object someone else made is refused at start ----
# Anyone may create /dev/shm/NAME before the server starts.  An object
# open to other users, or owned by one, must not become Apache's zone
# (they could read and steer its counters in the children): the start
# fails with a message saying how to clear it, and the object is left
# alone.  In the foreground, so that the failing post_config ends the
# command itself.
D4=$T_DIR/d
apache_conf "$D4" "$(free_port)" event
Z4=$(zone_name planted)
echo "RateLimit2Zone $Z4 10000" >"$D4/site.conf"
# start_refused WHAT EXPECT -- apache does not start; the log says EXPECT.
start_refused() {
    local rc
    : >"$D4/logs/error.log"
    timeout 30 env $(rl2_apache_env) /usr/sbin/apache2 -f "$D4/httpd.conf" \
        -DFOREGROUND >"$D4/logs/start.log" 2>&1
    rc=$?
    is "$1: apache refuses to start" 1 "$([ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && echo 1 || echo 0)"
    like "$1: the log names the object and the fault" "$2" \
        "$(cat "$D4/logs/error.log" "$D4/logs/start.log")"
}
: >"/dev/shm$Z4"
chmod 666 "/dev/shm$Z4"
start_refused "a world-writable zone" \
    "cannot open the store \(zone $Z4\): zone $Z4: refusing /dev/shm$Z4, mode 0666 .*rm /dev/shm$Z4"
is "a world-writable zone is left as it was" "666 0" \
    "$(stat -c '%a %s' "/dev/shm$Z4")"
if [ "$(id -u)" = 0 ]; then
    chown nobody "/dev/shm$Z4"
    chmod 600 "/dev/shm$Z4"
    start_refused "another user's zone" \
        "refusing /dev/shm$Z4, owned by uid $(id -u nobody), not by root"
    is "another user's zone is left as it was" "$(id -u nobody) 600" \
        "$(stat -c '%u %a' "/dev/shm$Z4")"
fi
rm -f "/dev/shm$Z4"

done_testing
