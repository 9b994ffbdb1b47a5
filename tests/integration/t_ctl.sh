#!/bin/bash
# t_ctl.sh -- the violation log and ratelimit2ctl against a real Apache
# (local zone) and a real redis-server:
#   - N refusals make N log entries (below the sampling rate), which
#     survive a full stop and start of Apache on the same zone, and which
#     `report` shows as text, JSON and an HTML page that headless Chromium
#     renders with no console error and no request of its own;
#   - `status` shows the remaining count the client's X-RateLimit-Remaining
#     shows, for an address and an API key, locally and through Redis;
#     `reset` lets a refused client through again;
#   - with Redis, the entries go to the stream (XLEN grows by N), and to
#     the local ring while Redis is down;
#   - ratelimit2-fcgi records its refusals in its zone's log too;
#   - `check` refuses a bad policy with file:line (exit 1); `docs` renders
#     every rule of conf/examples/saas-api.conf.
source "$(dirname "$0")/fcgi_lib.sh"
# Its counted limits are fixed windows of an hour (the zone's monotonic
# hours, or Redis TIME's): the suite takes well under a minute, so it
# starts with a minute's room in the hour of both clocks.
window_room 3600 60

CTL="$BUILD/ctl/ratelimit2ctl"
CHROMIUM=$(command -v chromium || true)

# remaining_hdr URL [curl args] -- X-RateLimit-Remaining of one request.
remaining_hdr() {
    curl -s -D - -o /dev/null "$@" | tr -d '\r' \
        | sed -n 's/^X-RateLimit-Remaining: //Ip'
}

# ctl_remaining LIMIT COMMAND... -- the REMAINING column of LIMIT's line
# in what the status command prints.
ctl_remaining() {
    local limit=$1
    shift
    "$@" | awk -v l="$limit" '$2 == l { print $6 }'
}

POLICY=$T_DIR/policy.conf
# X-RateLimit-Remaining is opt-in (headers.legacy).
cat >"$POLICY" <<'CONF'
api_key = { header = "X-API-Key"; };
headers = { legacy = true; };
violation_log = { rate = 1000; capacity = 500; stream = "t:violations"; };
rules = (
    { name = "api"; paths = [ "/api/**" ];
      limits = ( { name = "api_ip"; rate = "3/hour"; key = "ip"; } ); },
    { name = "keyed"; paths = [ "/keyed/**" ];
      limits = ( { name = "keyed_key"; rate = "2/hour";
                   key = "api_key"; } ); }
);
CONF

# apache_site DIR PORT ZONE [extra directives]
apache_site() {
    apache_conf "$1" "$2" event
    cat >"$1/site.conf" <<CONF
RateLimit2Zone $3 10000
RateLimit2Policy $POLICY
${4:-}
CONF
    mkdir -p "$1/htdocs/api" "$1/htdocs/keyed"
    echo ok >"$1/htdocs/api/x"
    echo ok >"$1/htdocs/keyed/x"
}

# ---- local zone ----
Z=$(zone_name ctl)
DA=$T_DIR/a
PA=$(free_port)
apache_site "$DA" "$PA" "$Z"
apache_start "$DA" || { not_ok "apache starts"; done_testing; exit 1; }
ok "apache starts"
U="http://127.0.0.1:$PA"
C=("$CTL" -c "$POLICY" -z "$Z")

is "status before any request: 3 remaining" 3 \
   "$(ctl_remaining api_ip "${C[@]}" -p /api/x status 127.0.0.1)"
curl -s -D "$T_DIR/h1" -o /dev/null "$U/api/x"
h=$(tr -d '\r' <"$T_DIR/h1" | sed -n 's/^X-RateLimit-Remaining: //Ip')
r=$(tr -d '\r' <"$T_DIR/h1" | sed -n 's/^RateLimit: .*;r=\([0-9]*\).*/\1/Ip')
is "status shows the remaining count of the header (local zone)" "$h" \
   "$(ctl_remaining api_ip "${C[@]}" -p /api/x status 127.0.0.1)"
is "the header said 2" 2 "$h"
is "and so did the IETF RateLimit field (r=)" 2 "$r"

refused=0
for _ in $(seq 1 7); do
    [ "$(code "$U/api/x")" = 429 ] && refused=$((refused + 1))
done
is "2 admitted, then 5 refused" 5 "$refused"
like "status: refused with 0 remaining" \
     'api_ip +127\.0\.0\.1 +3 +3 +0 .*refused' \
     "$("${C[@]}" -p /api/x status 127.0.0.1)"

json=$("${C[@]}" report --json)
like "N refusals make N entries" '"entries":5,"denials":5,' "$json"
like "entries are by rule/limit" \
     '"by_limit":\[\{"name":"api/api_ip","denials":5' "$json"
like "the breathing room: (3 + 5 in one hour) / 3" \
     '"peak_in_window":5,"breathing_room":2\.667' "$json"
like "top client is the address" \
     '"top_clients":\[\{"name":"127\.0\.0\.1","denials":5' "$json"

# A full stop and start on the same zone: the ring is still there.
apache_stop "$DA"
apache_start "$DA" || { not_ok "apache starts again"; done_testing; exit 1; }
like "entries survive a stop and start of Apache" '"entries":5,' \
     "$("${C[@]}" report --json)"
is "so do the counters: still refused" 429 "$(code "$U/api/x")"
like "and a new refusal is appended" '"entries":6,' "$("${C[@]}" report --json)"
apache_graceful "$DA"
sleep 1
is "after a graceful restart the address is still refused" 429 \
   "$(code "$U/api/x")"
like "and its refusal joins the entries that were there" '"entries":7,' \
     "$("${C[@]}" report --json)"

text=$("${C[@]}" report)
like "report (text) counts them" 'violation log: 7 entries, 7 denials' "$text"
like "report (text) by rule/limit" 'api/api_ip +7 +limit 3' "$text"
like "report (text) top clients" '127\.0\.0\.1 +7' "$text"

# An API key: hashed in the log, never written plain.
h=$(remaining_hdr -H 'X-API-Key: secret-k1' "$U/keyed/x")
is "status key: shows the header's remaining count" "$h" \
   "$(ctl_remaining keyed_key "${C[@]}" -p /keyed/x status key:secret-k1)"
code -H 'X-API-Key: secret-k1' "$U/keyed/x" >/dev/null
is "the key is refused at its third request" 429 \
   "$(code -H 'X-API-Key: secret-k1' "$U/keyed/x")"
json=$("${C[@]}" report --json)
like "the key's entry names it by hash" '"name":"key:[0-9a-f]{16}"' "$json"
if grep -q secret-k1 /dev/shm"$Z".vlog; then
    not_ok "the plain API key is nowhere in the ring"
else
    ok "the plain API key is nowhere in the ring"
fi

# reset
"${C[@]}" -p /api/x reset 127.0.0.1 >"$T_DIR/reset.out"
is "reset exits 0" 0 $?
like "reset names the limit" 'reset api api_ip 127\.0\.0\.1' \
     "$(cat "$T_DIR/reset.out")"
is "after reset the address is let through" 200 "$(code "$U/api/x")"
"${C[@]}" -p /keyed/x reset key:secret-k1 >/dev/null
is "after reset the key is let through" 200 \
   "$(code -H 'X-API-Key: secret-k1' "$U/keyed/x")"

# A path with CR, LF and a quote (Apache decodes %0D%0A%22): escaped.
for _ in 1 2; do
    code -H 'X-API-Key: k-esc' "$U/keyed/a%0D%0Ab%22c?q=1" >/dev/null
done
# Its User-Agent: quotes, a backslash and bytes that are no UTF-8.
is "a third request of a new key is refused" 429 \
   "$(code -H 'X-API-Key: k-esc' -A $'evil "ua" \\ \xff\xfe' \
       "$U/keyed/a%0D%0Ab%22c?q=1")"
like "CR, LF and quote are escaped in the log, the query left out" \
     '"method":"GET","path":"/keyed/a\\\\x0d\\\\x0ab\\\\x22c","factors":"",' \
     "$("${C[@]}" report --json)"
like "the user agent is escaped, the count the key's limit reached" \
     '"user_agent":"evil \\\\x22ua\\\\x22 \\\\x5c \\\\xff\\\\xfe","count":2,"skipped":0\}\]' \
     "$("${C[@]}" report --json)"
like "the text report lists the latest denials" \
     'latest denials.*keyed/keyed_key tier=- client=key:[0-9a-f]{16} GET '\
'/keyed/a\\x0d.* count=2 ua="evil \\x22ua\\x22 \\x5c \\xff\\xfe"' \
     "$("${C[@]}" report | tr '\n' ' ')"

# HTML in headless Chromium
"${C[@]}" report --html -o "$T_DIR/report.html"
is "report --html writes the page" 0 $?
if grep -Eiq '(https?:|src=|href=|url\()' "$T_DIR/report.html"; then
    not_ok "the page references nothing outside itself"
else
    ok "the page references nothing outside itself"
fi
if [ -z "$CHROMIUM" ]; then
    not_ok "chromium is installed (scripts/deps.sh)"
else
    mkdir -p "$T_DIR/chrome"
    CH=(env HOME="$T_DIR/chrome" "$CHROMIUM" --headless --no-sandbox
        --disable-gpu --disable-background-networking
        --user-data-dir="$T_DIR/chrome" --enable-logging=stderr --v=0)
    timeout 120 "${CH[@]}" --dump-dom "file://$T_DIR/report.html" \
        >"$T_DIR/dom.html" 2>"$T_DIR/chrome.log"
    like "chromium renders the charts" \
         '<svg id="by-limit".*<rect' "$(tr -d '\n' <"$T_DIR/dom.html")"
    like "the per-minute chart has a bar" '<svg id="per-minute"' \
         "$(cat "$T_DIR/dom.html")"
    like "the latest denials are a table, their text escaped" \
         '<table id="latest">.*/keyed/a\\x0d\\x0ab\\x22c</td>' \
         "$(tr -d '\n' <"$T_DIR/dom.html")"
    if grep -E 'CONSOLE|Refused to|ERR_' "$T_DIR/chrome.log" \
            | grep -v 'dbus' >"$T_DIR/console.txt"; then
        not_ok "no console error and no blocked request"
        sed 's/^/#   /' "$T_DIR/console.txt" | head -10
    else
        ok "no console error and no blocked request"
    fi
    timeout 120 "${CH[@]}" --screenshot="$T_DIR/report.png" \
        --window-size=1000,1400 "file://$T_DIR/report.html" \
        >/dev/null 2>&1
    [ -s "$T_DIR/report.png" ] && ok "a screenshot is produced" \
        || not_ok "a screenshot is produced"
fi

# ---- check and docs ----
cat >"$T_DIR/bad.conf" <<'CONF'
mode = "enforce";
rules = (
  { name = "x"; limits = ( { rate = "5/min"; burts = 3; } ); }
);
CONF
err=$("$CTL" check "$T_DIR/bad.conf" 2>&1 >/dev/null)
is "check fails with exit status 1 on a bad policy" 1 \
   "$("$CTL" check "$T_DIR/bad.conf" >/dev/null 2>&1; echo $?)"
like "check names file:line" "bad\.conf:3: unknown key 'burts'" "$err"
out=$("$CTL" check "$POLICY")
is "check passes a good policy" 0 $?
like "check prints the effective rules" 'rule keyed .*keyed_key +2/h' \
     "$(printf '%s' "$out" | tr '\n' ' ')"
SAAS=$RL2_ROOT/conf/examples/saas-api.conf
docs=$("$CTL" docs "$SAAS")
missing=""
n=0
# Rules are the groups indented once inside "rules = ( ... );".
for r in $(sed -n '/^rules = (/,/^);/p' "$SAAS" \
           | sed -n 's/^    { name = "\([a-z_0-9]*\)".*/\1/p'); do
    n=$((n + 1))
    printf '%s\n' "$docs" | grep -q "| \*\*$r\*\* |" || missing="$missing $r"
done
is "docs renders every rule of saas-api.conf ($n)" "" "$missing"
[ "$n" -ge 15 ] && ok "the rule list was read ($n rules)" \
    || not_ok "the rule list was read ($n rules)"
like "docs renders the default rule's tiers" \
     '\| \*\*default\*\* \| any request \| pro \| `api_requests` \| 10000/h' \
     "$docs"
is "a bad subcommand is a usage error (2)" 2 \
   "$("$CTL" frobnicate >/dev/null 2>&1; echo $?)"

apache_stop "$DA"

# ---- ratelimit2-fcgi records its refusals too ----
ZF=$(zone_name ctlf)
FP=$(free_port)
fcgi_start fcgid -c "$POLICY" -s "127.0.0.1:$FP" -z "$ZF" -t 2
refused=0
for _ in $(seq 1 6); do
    "$FCGI_CLIENT" "127.0.0.1:$FP" REMOTE_ADDR=192.0.2.9 \
        REQUEST_METHOD=GET REQUEST_URI=/api/x >"$T_DIR/fcgi.out" 2>&1
    grep -q '^Status: 429' "$T_DIR/fcgi.out" && refused=$((refused + 1))
done
is "ratelimit2-fcgi: 3 admitted, then 3 refused" 3 "$refused"
like "ratelimit2-fcgi: each refusal is an entry" \
     '"entries":3,.*"top_clients":\[\{"name":"192\.0\.2\.9","denials":3' \
     "$("$CTL" -z "$ZF" report --json)"
fcgi_stop fcgid
is "ratelimit2-fcgi stops cleanly" 0 $?

# ---- Redis ----
RP=$(free_port)
redis_start || { not_ok "redis-server starts"; done_testing; exit 1; }
ZR=$(zone_name ctlr)
DR=$T_DIR/r
PR=$(free_port)
apache_site "$DR" "$PR" "$ZR" "RateLimit2Redis 127.0.0.1:$RP timeout=300"
apache_start "$DR" || { not_ok "apache (redis) starts"; done_testing; exit 1; }
UR="http://127.0.0.1:$PR"
CR=("$CTL" -c "$POLICY" -z "$ZR" -R "127.0.0.1:$RP")

h=$(remaining_hdr "$UR/api/x")
is "status through Redis shows the header's remaining count" "$h" \
   "$(ctl_remaining api_ip "${CR[@]}" -p /api/x status 127.0.0.1)"
xlen0=$(redis-cli -p "$RP" xlen t:violations)
refused=0
for _ in $(seq 1 6); do
    [ "$(code "$UR/api/x")" = 429 ] && refused=$((refused + 1))
done
is "2 admitted, then 4 refused (Redis)" 4 "$refused"
is "XLEN grows by N" $((xlen0 + 4)) "$(redis-cli -p "$RP" xlen t:violations)"
like "report reads the stream" '"entries":4,"denials":4,.*"redis":true' \
     "$("${CR[@]}" report --json)"
"${CR[@]}" -p /api/x reset 127.0.0.1 >/dev/null
is "reset through Redis lets the client through" 200 "$(code "$UR/api/x")"
is "and status shows the count again" 2 \
   "$(ctl_remaining api_ip "${CR[@]}" -p /api/x status 127.0.0.1)"

# Redis gone: the local zone decides (failover local) and the refusals
# go to the local ring, without waiting for Redis.
kill -KILL "$(cat "$RDIR/redis.pid")"
rm -f "$RDIR/redis.pid"
refused=0
for _ in $(seq 1 6); do
    [ "$(code "$UR/api/x")" = 429 ] && refused=$((refused + 1))
done
is "Redis down: 3 admitted by the local zone, then 3 refused" 3 "$refused"
like "Redis down: the refusals are in the local ring" \
     '"entries":3,"denials":3,.*"ring":true,"redis":false' \
     "$("$CTL" -z "$ZR" report --json)"
apache_stop "$DR"

done_testing
