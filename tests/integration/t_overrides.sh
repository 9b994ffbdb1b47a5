#!/bin/bash
# t_overrides.sh -- the runtime override table (overrides.h) as the real
# servers read it: Apache (event MPM) and lighttpd with ratelimit2-fcgi
# attach the table beside their zone, and a change made from outside
# (tests/tools/rl2_override_set, which sets one entry as ratelimit2ctl
# does) holds from the next request.  A ban is refused with 429 and
# Retry-After (or the policy's ban_status, 403), ends by itself when its
# time is up and at once when removed; a boost of x2 admits twice a
# rule's limit, and the rule's own limit holds again once it is gone; a
# rule put in dry run stops refusing; the emergency allow-list answers
# 503 with Retry-After to everyone but the clients allowed at run time; a
# ban of a user is refused though the policy counts by address only.
# A virtual host without limits refuses a ban with its own ban_status;
# one whose policy disables the table serves the banned client; in the
# responder role (nginx) a refusal is a 403 with Retry-After.  The table
# survives a graceful restart, a stop and start (from shared memory, and
# from the state file once the object is gone), a SIGHUP reload and a
# restart of ratelimit2-fcgi; the CGI wrapper reads it too.  Without
# its state directory a server starts, serves and says so, and a change
# is refused rather than made and lost.  What the servers show of the
# table: Apache's status page lists an operator's ban of a user named
# <script> (escaped) and, apart, an automatic ban a client earned (policy
# abuse) with its rule; ratelimit2_bans_active counts each origin in
# Apache's and ratelimit2-fcgi's metrics; health says the table is the
# host's own ("source":"local") and how many entries it holds.  An
# automatic ban is one entry of the audit file (origin auto).
. "$(dirname "$0")/fcgi_lib.sh"
# Its counted limits are fixed windows of an hour (the zone's monotonic
# hours, or Redis TIME's): the suite takes well under a minute, so it
# starts with a minute's room in the hour of both clocks.
window_room 3600 60

SET="$BUILD/tools/rl2_override_set"

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
    local out=""
    for _ in $(seq 1 "$2"); do
        out="$out $1"
    done
    echo "${out# }"
}

# fetch URL [curl args] -- one request: its status in $C, its header
# lines (CR dropped) in $H, its body in $B.
fetch() {
    C=$(curl -s -D "$T_DIR/f.h" -o "$T_DIR/f.b" -w '%{http_code}' "$@")
    H=$(tr -d '\r' <"$T_DIR/f.h")
    B=$(cat "$T_DIR/f.b")
}

# wait_code CODE URL [curl args] -- until URL answers CODE (5 s at most);
# the last code seen.
wait_code() {
    local want=$1 c
    shift
    for _ in $(seq 1 100); do
        c=$(code "$@")
        [ "$c" = "$want" ] && break
        sleep 0.05
    done
    echo "$c"
}

# retry_between NAME LO HI -- a test: $H has a Retry-After from LO to HI.
retry_between() {
    local ra
    ra=$(retry_after "$H")
    if [ -n "$ra" ] && [ "$ra" -ge "$2" ] 2>/dev/null && [ "$ra" -le "$3" ]; then
        ok "$1 has Retry-After $ra (from $2 to $3)"
    else
        not_ok "$1 has Retry-After from $2 to $3 (got '$ra')"
    fi
}

# ======================= Apache ==========================================
D=$T_DIR/apache
P=$(free_port)
Z=$(zone_name ap)
# The state file's folder is writable by Apache's children (User
# nobody), which write automatic bans to it; a ban of ours (root)
# replaces the file they wrote, hence no sticky bit.
mkdir -p "$T_DIR/astate"
chmod 777 "$T_DIR/astate"
AS=$T_DIR/astate/apache.overrides
A="http://127.0.0.1:$P"
apache_conf "$D" "$P" event
site_pages "$D/htdocs" api dr ab private
htpasswd -cbB "$D/htpasswd" alice alice-pw >/dev/null 2>&1
htpasswd -bB "$D/htpasswd" bob bob-pw >/dev/null 2>&1

# policy BAN_STATUS -- the Apache policy; every limit is keyed by address.
policy() {
    cat >"$D/policy.conf" <<POL
overrides = { state_file = "$AS"; ban_status = $1; };
abuse = { denials = "20/1min"; ban = "10min"; };
rules = (
  { name = "api"; paths = "/api/**"; limits = ( { rate = "3/hour"; } ); },
  { name = "dr"; paths = "/dr/**"; limits = ( { rate = "1/hour"; } ); },
  { name = "ab"; paths = "/ab/**"; limits = ( { rate = "1/hour"; } ); },
  { name = "site"; paths = "/**"; limits = ( { rate = "100000/hour"; } ); }
);
POL
}
policy 429
# Two more virtual hosts: one whose policy limits nothing and answers a
# ban with 403, one whose policy leaves the table alone.
echo 'overrides = { ban_status = 403; };' >"$D/quiet.conf"
echo 'overrides = { enabled = false; };' >"$D/off.conf"
cat >>"$D/site.conf" <<CONF
RateLimit2Zone $Z 1000
RateLimit2Policy "$D/policy.conf"
<Location /rl2>
    RateLimit2Engine Off
</Location>
<Location /rl2/status>
    SetHandler ratelimit2-status
</Location>
<Location /rl2/metrics>
    SetHandler ratelimit2-metrics
</Location>
<Location /rl2/health>
    SetHandler ratelimit2-health
</Location>
<Location /private>
    AuthType Basic
    AuthName private
    AuthUserFile "$D/htpasswd"
    Require valid-user
</Location>
<VirtualHost 127.0.0.1:$P>
    ServerName 127.0.0.1
</VirtualHost>
<VirtualHost 127.0.0.1:$P>
    ServerName quiet.test
    RateLimit2Policy "$D/quiet.conf"
</VirtualHost>
<VirtualHost 127.0.0.1:$P>
    ServerName off.test
    RateLimit2Policy "$D/off.conf"
</VirtualHost>
CONF
if ! apache_start "$D"; then
    not_ok "Apache starts with the override table attached"
    done_testing
    exit 1
fi
ok "Apache starts with the override table attached"
like "the table is in shared memory beside the zone" '^-rw-------' \
    "$(ls -l "/dev/shm$Z.overrides" 2>&1)"

# ---- a ban: refused from the next request, with Retry-After ----
is "before any override, 127.0.0.1 is served" 200 "$(code "$A/index.html")"
t0=$(date +%s%N)
"$SET" "$Z" "$AS" set ban 127.0.0.1
fetch "$A/index.html"
ms=$((($(date +%s%N) - t0) / 1000000))
is "a ban of 127.0.0.1 is refused with 429" 429 "$C"
if [ "$ms" -lt 1000 ]; then
    ok "the refusal came ${ms} ms after the ban was set (< 1 s)"
else
    not_ok "the refusal came within 1 s of the ban (${ms} ms)"
fi
retry_between "the ban's 429" 86400 86400
like "the ban's body says banned" '"error":"banned"' "$B"
like "the ban's body is JSON" '^Content-Type: application/json' "$H"
is "every path is refused to the banned client" "429 429" \
    "$(codes 1 "$A/api/x") $(codes 1 "$A/private/x" -u alice:alice-pw)"
like "the state file keeps the ban" "^ban	127\.0\.0\.1	" "$(cat "$AS")"
fetch "$A/index.html" -H 'Host: quiet.test'
is "a virtual host without limits refuses the ban with its 403" 403 "$C"
retry_between "its 403" 86400 86400
is "a virtual host with overrides disabled serves the banned client" 200 \
    "$(code -H 'Host: off.test' "$A/index.html")"
"$SET" "$Z" "$AS" remove ban 127.0.0.1
is "the ban removed, the client is served at once" 200 \
    "$(code "$A/index.html")"

# ---- a ban that ends by itself ----
"$SET" "$Z" "$AS" set ban 127.0.0.0/8 - 2
fetch "$A/index.html"
is "a 2 s ban of 127.0.0.0/8 is refused" 429 "$C"
retry_between "the 2 s ban's 429" 1 2
sleep 2.1
is "2 s later, the client is served with no command" 200 \
    "$(code "$A/index.html")"

# ---- a boost of x2 on a rule, then its own limit again ----
"$SET" "$Z" "$AS" set boost rule:api 2
is "boosted x2, rule api (3/hour) admits 6, then refuses" \
    "$(repeat 200 6) 429" "$(codes 7 "$A/api/x")"
fetch "$A/api/x"
like "the boosted limit is the one shown" '^RateLimit-Policy: "api";q=6;' "$H"
"$SET" "$Z" "$AS" remove boost rule:api
fetch "$A/api/x"
is "the boost removed, rule api refuses (6 counted, 3 allowed)" 429 "$C"
like "the rule's own limit is shown again" '^RateLimit-Policy: "api";q=3;' \
    "$H"

# ---- a rule in dry run ----
is "rule dr (1/hour) admits one, then refuses" "200 429" \
    "$(codes 2 "$A/dr/x")"
"$SET" "$Z" "$AS" set mode rule:dr dry_run
is "rule dr in dry run at run time refuses nothing" "200 200 200" \
    "$(codes 3 "$A/dr/x")"
like "the dry run is logged" 'dry_run: would limit client=127\.0\.0\.1' \
    "$(cat "$D/logs/error.log")"
"$SET" "$Z" "$AS" remove mode rule:dr
is "the mode removed, rule dr refuses again" 429 "$(code "$A/dr/x")"

# ---- the emergency allow-list ----
"$SET" "$Z" "$AS" set emergency '*' 0 30
fetch "$A/index.html"
is "emergency allow-list: a client not allowed gets 503" 503 "$C"
retry_between "the emergency 503" 29 30
like "the 503's body says unavailable" '"error":"unavailable"' "$B"
"$SET" "$Z" "$AS" set allow 127.0.0.1
is "a client allowed at run time is served" 200 "$(code "$A/index.html")"
is "another client (127.0.0.2) still gets 503" 503 \
    "$(code --interface 127.0.0.2 "$A/index.html")"
"$SET" "$Z" "$AS" remove emergency '*'
"$SET" "$Z" "$AS" remove allow 127.0.0.1
is "the switch off, everyone is served" "200 200" \
    "$(code "$A/index.html") $(code --interface 127.0.0.2 "$A/index.html")"

# ---- a user's ban, though the policy counts by address only ----
is "alice is served before her ban" 200 \
    "$(code -u alice:alice-pw "$A/private/x")"
"$SET" "$Z" "$AS" set ban user:alice
fetch "$A/private/x" -u alice:alice-pw
is "a ban of user:alice refuses her after authentication" 429 "$C"
like "her 429 says banned" '"error":"banned"' "$B"
is "bob, from the same address, is served" 200 \
    "$(code -u bob:bob-pw "$A/private/x")"
is "without credentials the server still asks for them" 401 \
    "$(code "$A/private/x")"
"$SET" "$Z" "$AS" remove ban user:alice
is "her ban removed, alice is served" 200 \
    "$(code -u alice:alice-pw "$A/private/x")"

# ---- what Apache shows: status page, metrics, health ----
# bans_active ORIGIN URL -- the gauge's value for ORIGIN.
bans_active() {
    curl -s "$2" | sed -n "s/^ratelimit2_bans_active{origin=\"$1\"} //p"
}
is "no ban yet: bans_active 0 for operators and automatic bans" "0 0" \
    "$(bans_active operator "$A/rl2/metrics") $(bans_active auto "$A/rl2/metrics")"
"$SET" "$Z" "$AS" set ban 'user:<script>alert(1)</script>'
# 127.0.0.3 is refused by rule ab (1/hour) more than 20 times a minute:
# the 21st refusal bans it (policy abuse), and the next request says so.
# Up to 50 tries: the refusals' window may turn over on the way.
for _ in $(seq 1 50); do
    fetch "$A/ab/x" --interface 127.0.0.3
    case $B in *'"error":"banned"'*) break ;; esac
done
like "a client refused too often is banned automatically" '"error":"banned"' \
    "$B"
is "bans_active: the operator's ban and the automatic one" "1 1" \
    "$(bans_active operator "$A/rl2/metrics") $(bans_active auto "$A/rl2/metrics")"
curl -s "$A/rl2/status" >"$T_DIR/status.html"
is "the status page holds no markup of the user's name" "" \
    "$(grep -o '<script' "$T_DIR/status.html")"
like "the status page lists the operator's ban, its target escaped" \
    '<tr><td>ban</td><td>user:&lt;script&gt;alert\(1\)&lt;/script&gt;</td><td>banned</td><td>no end</td><td>test</td><td>rl2_override_set</td></tr>' \
    "$(cat "$T_DIR/status.html")"
like "the status page lists the automatic ban apart, with its rule" \
    '<h3>Automatic bans \(1\)</h3>.*<tr><td>127\.0\.0\.3</td><td>ab</td><td>(599|600) s</td>' \
    "$(tr -d '\n' <"$T_DIR/status.html")"
like "the status page says the table is the host's own" \
    "<p>This host's table \(no Redis side\)\.</p>" \
    "$(cat "$T_DIR/status.html")"
like "health: the table is the host's own, with its 2 entries" \
    '^\{"status":"ok",.*"overrides":\{"source":"local","entries":2\},"uptime":[0-9]+\}$' \
    "$(curl -s "$A/rl2/health")"
"$SET" "$Z" "$AS" remove ban 'user:<script>alert(1)</script>'
"$SET" "$Z" "$AS" remove ban 127.0.0.3
is "both bans removed: bans_active 0 and 0" "0 0" \
    "$(bans_active operator "$A/rl2/metrics") $(bans_active auto "$A/rl2/metrics")"

# ---- graceful restart, stop and start ----
"$SET" "$Z" "$AS" set ban 127.0.0.1
policy 403
apache_graceful "$D"
is "after a graceful restart (ban_status = 403) the ban answers 403" 403 \
    "$(wait_code 403 "$A/index.html")"
fetch "$A/index.html"
retry_between "the 403" 86400 86400
apache_stop "$D"
apache_start "$D"
is "after a stop and start the ban holds (shared memory kept it)" 403 \
    "$(code "$A/index.html")"
apache_stop "$D"
rm -f "/dev/shm$Z.overrides"
apache_start "$D"
is "with the table's object removed, the ban is back from the state file" \
    403 "$(code "$A/index.html")"
"$SET" "$Z" "$AS" remove ban 127.0.0.1
is "and it is removed as before" 200 "$(code "$A/index.html")"
apache_stop "$D"

# ======================= lighttpd + ratelimit2-fcgi =======================
L=$T_DIR/lighttpd
LP=$(free_port)
FP=$(free_port)
FZ=$(zone_name fc)
FS=$T_DIR/fcgi.overrides
F="http://127.0.0.1:$LP"
mkdir -p "$L/htdocs"
chmod -R 755 "$L"
echo hello >"$L/htdocs/a.txt"
fpolicy() {
    cat >"$T_DIR/fpolicy.conf" <<POL
overrides = { state_file = "$FS"; ban_status = $1; };
rules = ( { name = "site"; paths = "/**";
            limits = ( { rate = "100000/hour"; } ); } );
POL
}
fpolicy 429
fcgi_start daemon -c "$T_DIR/fpolicy.conf" -s "127.0.0.1:$FP" -z "$FZ" -t 4 \
    -m /rl2/metrics
sed "s|\"port\" *=> 9000|\"port\" => $FP|" \
    "$RL2_ROOT/conf/fcgi/lighttpd-ratelimit2.conf" >"$L/ratelimit2.conf"
cat >"$L/lighttpd.conf" <<CONF
server.port = $LP
server.bind = "127.0.0.1"
server.document-root = "$L/htdocs"
server.errorlog = "$L/error.log"
mimetype.assign = ( ".txt" => "text/plain" )
include "$L/ratelimit2.conf"
CONF
if ! lighttpd_start "$L"; then
    not_ok "lighttpd starts with ratelimit2-fcgi as its authorizer"
    done_testing
    exit 1
fi
ok "lighttpd starts with ratelimit2-fcgi as its authorizer"

is "lighttpd: 127.0.0.1 is served before any override" 200 \
    "$(code "$F/a.txt")"
"$SET" "$FZ" "$FS" set ban 127.0.0.1
fetch "$F/a.txt"
is "lighttpd: a ban of 127.0.0.1 is refused with 429" 429 "$C"
is "ratelimit2-fcgi's metrics: bans_active 1 for operators, 0 automatic" \
    "1 0" "$("$FCGI_CLIENT" -r responder "127.0.0.1:$FP" \
    REMOTE_ADDR=127.0.0.1 REQUEST_METHOD=GET REQUEST_URI=/rl2/metrics \
    | sed -n 's/^ratelimit2_bans_active{origin="\(operator\|auto\)"} //p' \
    | tr '\n' ' ' | sed 's/ $//')"
retry_between "lighttpd: the ban's 429" 86400 86400
like "lighttpd: the ban's body says banned" '"error":"banned"' "$B"
like "ratelimit2-fcgi logs the ban" 'limit=\(banned\)' \
    "$(cat "$T_DIR/daemon.log")"
"$SET" "$FZ" "$FS" remove ban 127.0.0.1
is "lighttpd: the ban removed, the client is served at once" 200 \
    "$(code "$F/a.txt")"
"$SET" "$FZ" "$FS" set ban 127.0.0.1 - 2
is "lighttpd: a 2 s ban is refused" 429 "$(code "$F/a.txt")"
sleep 2.1
is "lighttpd: 2 s later, the client is served with no command" 200 \
    "$(code "$F/a.txt")"

"$SET" "$FZ" "$FS" set emergency '*' 0
fetch "$F/a.txt"
is "lighttpd: the emergency allow-list answers 503" 503 "$C"
retry_between "lighttpd: the emergency 503" 60 60
# nginx asks in the responder role, where auth_request takes no refusal
# but 403: the snippet turns a 403 with Retry-After into its 429.
H=$("$FCGI_CLIENT" -r responder "127.0.0.1:$FP" REMOTE_ADDR=127.0.0.1 \
    REQUEST_METHOD=GET REQUEST_URI=/a.txt | tr -d '\r')
like "responder role (nginx): the emergency refusal is a 403" \
    '^Status: 403 Forbidden' "$H"
retry_between "responder role (nginx): the 403" 60 60
"$SET" "$FZ" "$FS" set allow 127.0.0.1
is "lighttpd: a client allowed at run time is served" 200 \
    "$(code "$F/a.txt")"
"$SET" "$FZ" "$FS" remove emergency '*'
"$SET" "$FZ" "$FS" remove allow 127.0.0.1

# ---- reload, restart ----
"$SET" "$FZ" "$FS" set ban 127.0.0.1
fpolicy 403
kill -HUP "$(cat "$T_DIR/daemon.pid")"
is "after a SIGHUP reload (ban_status = 403) the ban answers 403" 403 \
    "$(wait_code 403 "$F/a.txt")"
fcgi_stop daemon
is "ratelimit2-fcgi stops with exit status 0" 0 "$?"
fcgi_start daemon -c "$T_DIR/fpolicy.conf" -s "127.0.0.1:$FP" -z "$FZ" -t 4
is "after ratelimit2-fcgi restarts the ban holds" 403 \
    "$(wait_code 403 "$F/a.txt")"

# ---- the CGI wrapper, on the daemon's zone and table ----
printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\nran\\n"\n' \
    >"$T_DIR/hello.sh"
chmod 755 "$T_DIR/hello.sh"
wrap() {
    env -i $(rl2_san_env) REQUEST_METHOD=GET REMOTE_ADDR=127.0.0.1 \
        REQUEST_URI=/a.txt RATELIMIT2_POLICY="$T_DIR/fpolicy.conf" \
        RATELIMIT2_ZONE="$FZ" RATELIMIT2_TARGET="$T_DIR/hello.sh" \
        "$CGI_BIN" 2>"$T_DIR/wrap.err" | tr -d '\r'
}
out=$(wrap)
like "ratelimit2-cgi answers the ban with the policy's 403" \
    '^Status: 403 Forbidden' "$out"
like "ratelimit2-cgi's 403 has Retry-After" '^Retry-After: 86400$' "$out"
"$SET" "$FZ" "$FS" remove ban 127.0.0.1
is "the ban removed, ratelimit2-cgi runs the script" "ran" \
    "$(wrap | tail -1)"
is "the ban removed, lighttpd serves the client" 200 "$(code "$F/a.txt")"

lighttpd_stop "$L"
fcgi_stop daemon

# ---- a state directory that does not exist ----
NP=$(free_port)
NZ=$(zone_name no)
NS=$T_DIR/missing/dir/x.overrides
cat >"$T_DIR/npolicy.conf" <<POL
overrides = { state_file = "$NS"; };
POL
fcgi_start nodir -c "$T_DIR/npolicy.conf" -s "127.0.0.1:$NP" -z "$NZ" -t 2
ask() {
    "$FCGI_CLIENT" "127.0.0.1:$NP" REMOTE_ADDR=192.0.2.1 REQUEST_METHOD=GET \
        REQUEST_URI=/ | head -1 | tr -d '\r'
}
is "without its state directory ratelimit2-fcgi starts and serves" \
    "Status: 200 OK" "$(ask)"
like "and says at start that changes will be refused" \
    "overrides: $T_DIR/missing/dir does not exist: .*changes will be refused" \
    "$(cat "$T_DIR/nodir.log")"
out=$("$SET" "$NZ" "$NS" set ban 192.0.2.1 2>&1)
is "a ban that cannot be kept is refused" 1 "$?"
like "with the state file's error" \
    "state file $NS\.tmp: No such file or directory" "$out"
is "and is not made" "Status: 200 OK" "$(ask)"
fcgi_stop nodir

# ======================= the audit of automatic bans ===============# Without Redis, an automatic ban made by ratelimit2-fcgi, or by an
# Apache child, is one line of the zone's audit file ("<zone>.audit"
# beside the state file), origin auto, which ratelimit2ctl audit reads;
# the refusals of the ban in force add none.
BP=$(free_port)
BZ=$(zone_name ab)
BS=$T_DIR/abuse.overrides
BA=$T_DIR/${BZ#/}.audit
cat >"$T_DIR/bpolicy.conf" <<POL
overrides = { state_file = "$BS"; };
abuse = { denials = "1/1min"; ban = "10min"; };
rules = ( { name = "login"; paths = "/login";
            limits = ( { rate = "1/hour"; } ); } );
POL
fcgi_start abuse -c "$T_DIR/bpolicy.conf" -s "127.0.0.1:$BP" -z "$BZ" -t 2
login() {
    "$FCGI_CLIENT" "127.0.0.1:$BP" REMOTE_ADDR=192.0.2.9 \
        REQUEST_METHOD=POST REQUEST_URI=/login | head -1 | tr -d '\r'
}
out=""
for _ in 1 2 3 4 5 6; do
    out="$out $(login)"
done
like "ratelimit2-fcgi: admitted once, then refused (banned on the way)" \
    "^ Status: 200 OK( Status: 429 Too Many Requests){5}$" "$out"
fcgi_stop abuse
AJ=$("$BUILD/ctl/ratelimit2ctl" -c /nonexistent -z "$BZ" --state "$BS" \
    --audit "$BA" audit --json)
is "the automatic ban is one audit entry, origin auto" \
    "1 auto abuse ban 192.0.2.9 600" \
    "$(printf '%s' "$AJ" | python3 -c '
import json, sys
a = json.load(sys.stdin)
e = a[-1]
print(len(a), e["origin"], e["author"], e["verb"], e["target"], e["ttl_s"])')"
like "its reason names the rule" '"reason":"more than 1 refusals in 60s \(rule login' \
    "$AJ"

# Apache: the child that bans (User nobody) makes and appends the file.
W=$T_DIR/abuse-apache
WP=$(free_port)
WZ=$(zone_name aw)
mkdir -p "$W/state"
chmod 1777 "$W/state"
sed "s|$BS|$W/state/x.overrides|" "$T_DIR/bpolicy.conf" >"$T_DIR/wpolicy.conf"
apache_conf "$W" "$WP" event
echo ok >"$W/htdocs/login"
cat >"$W/site.conf" <<CONF
RateLimit2Zone $WZ 1000
RateLimit2Policy "$T_DIR/wpolicy.conf"
CONF
if apache_start "$W"; then
    is "Apache: admitted once, then refused" "200 429 429 429 429 429" \
        "$(codes 6 "http://127.0.0.1:$WP/login")"
    apache_stop "$W"
    WJ=$("$BUILD/ctl/ratelimit2ctl" -c /nonexistent -z "$WZ" \
        --state "$W/state/x.overrides" --audit "$W/state/${WZ#/}.audit" \
        audit --json)
    is "Apache: its child's automatic ban is one audit entry, origin auto" \
        "1 auto ban 127.0.0.1" \
        "$(printf '%s' "$WJ" | python3 -c '
import json, sys
a = json.load(sys.stdin)
print(len(a), a[-1]["origin"], a[-1]["verb"], a[-1]["target"])')"
    is "made by the child's user" nobody \
        "$(stat -c %U "$W/state/${WZ#/}.audit")"
else
    not_ok "Apache starts with an abuse policy"
fi
=======
# ======================= every kind survives restarts ======================
# (Added after the checks above, which follow a ban alone.)  One of each
# kind at once -- a ban (127.0.0.3), an allow (127.0.0.4, over rule one's
# 1/hour), a tier (127.0.0.5, gold), a boost (rule b x3), a mode (rule dr
# in dry run, 127.0.0.7 over its 1/hour) and the emergency switch (every
# limit x0.5) -- on an Apache and a ratelimit2-fcgi of their own, each
# still in force, and still doing what it did, after a graceful restart
# and a stop and start of Apache, and a SIGHUP and a restart of
# ratelimit2-fcgi (the policy changed before each reload).  The counts
# shown (RateLimit-Policy q=) tell each factor apart: t gold 8 x0.5 = 4
# (2 x0.5 = 1 without the tier), b 4 x3 x0.5 = 6, e 4 x0.5 = 2.
SV_SF=$T_DIR/survive.overrides
SV_FS=$T_DIR/survive-fcgi.overrides
# sv_policy STATE_FILE [E] -- the policy of this block's servers; rule e
# allows E an hour (4): a reload that changes it shows the new
# generation serves.
sv_policy() {
    cat <<POL
overrides = { state_file = "$1"; };
tiers = [ "free", "gold" ];
rules = (
  { name = "b"; paths = "/b/**"; limits = ( { rate = "4/hour"; } ); },
  { name = "e"; paths = "/e/**"; limits = ( { rate = "${2:-4}/hour"; } ); },
  { name = "t"; paths = "/t/**"; limits = ( { rate = "2/hour"; } );
    tiers = { gold = ( { rate = "8/hour"; } ); }; },
  { name = "dr"; paths = "/dr/**"; limits = ( { rate = "1/hour"; } ); },
  { name = "one"; paths = "/one/**"; limits = ( { rate = "1/hour"; } ); }
);
POL
}
SV=$T_DIR/survive
SVP=$(free_port)
SVZ=$(zone_name sv)
apache_conf "$SV" "$SVP" event
site_pages "$SV/htdocs" b e t dr one
sv_policy "$SV_SF" >"$SV/policy.conf"
cat >>"$SV/site.conf" <<CONF
RateLimit2Zone $SVZ 1000
RateLimit2Policy "$SV/policy.conf"
CONF
SVFP=$(free_port)
SVFZ=$(zone_name svf)
sv_policy "$SV_FS" >"$T_DIR/sv-fcgi.conf"

# sv_ask FRONT ADDR PATH -- "CODE Q": the status of PATH for client ADDR
# from Apache (ap) or ratelimit2-fcgi (fc, as an authorizer), and the
# count its RateLimit-Policy shows (- when none).
sv_ask() {
    local out c q
    if [ "$1" = ap ]; then
        out=$(curl -s -D - -o /dev/null --interface "$2" \
            "http://127.0.0.1:$SVP$3" | tr -d '\r')
        c=$(printf '%s\n' "$out" | sed -n '1s/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p')
    else
        out=$("$FCGI_CLIENT" "127.0.0.1:$SVFP" REMOTE_ADDR="$2" \
            REQUEST_METHOD=GET REQUEST_URI="$3" | tr -d '\r')
        c=$(printf '%s\n' "$out" | sed -n 's/^Status: \([0-9]*\).*/\1/p' \
            | head -1)
    fi
    q=$(printf '%s\n' "$out" \
        | sed -n 's/^RateLimit-Policy: "[^"]*";q=\([0-9]*\).*/\1/p' | head -1)
    echo "$c ${q:--}"
}

# sv_state FRONT -- what each override makes of a request, one word each.
sv_state() {
    local a1 a2
    a1=$(sv_ask "$1" 127.0.0.4 /one/x)
    a2=$(sv_ask "$1" 127.0.0.4 /one/x)
    echo "ban=$(sv_ask "$1" 127.0.0.3 /index.html | cut -d' ' -f1)" \
        "allow=${a1%% *},${a2%% *}" \
        "tier=$(sv_ask "$1" 127.0.0.5 /t/x | cut -d' ' -f2)" \
        "boost=$(sv_ask "$1" 127.0.0.6 /b/x | cut -d' ' -f2)" \
        "emergency=$(sv_ask "$1" 127.0.0.6 /e/x | cut -d' ' -f2)" \
        "mode=$(sv_ask "$1" 127.0.0.7 /dr/x | cut -d' ' -f1)"
}
SV_NONE="ban=200 allow=200,429 tier=2 boost=4 emergency=4 mode=429"
SV_ALL="ban=429 allow=200,200 tier=4 boost=6 emergency=2 mode=200"
# ... once rule e allows 6 an hour: 6 x0.5 = 3.
SV_NEW="ban=429 allow=200,200 tier=4 boost=6 emergency=3 mode=200"

# sv_set ZONE STATE -- the six overrides.
sv_set() {
    "$SET" "$1" "$2" set ban 127.0.0.3 &&
        "$SET" "$1" "$2" set allow 127.0.0.4 &&
        "$SET" "$1" "$2" set tier 127.0.0.5 gold &&
        "$SET" "$1" "$2" set boost rule:b 3 &&
        "$SET" "$1" "$2" set mode rule:dr dry_run &&
        "$SET" "$1" "$2" set emergency '*' 0.5
}

# sv_wait FRONT -- the state once it is $SV_NEW (5 s at most: a restarted
# or reloaded server may take a moment to answer).
sv_wait() {
    local s
    for _ in $(seq 1 50); do
        s=$(sv_state "$1")
        [ "$s" = "$SV_NEW" ] && break
        sleep 0.1
    done
    echo "$s"
}

if apache_start "$SV"; then
    ok "Apache starts (this block's zone and state file)"
else
    not_ok "Apache starts (this block's zone and state file)"
fi
sv_ask ap 127.0.0.7 /dr/x >/dev/null
is "Apache, no override: what each request gets" "$SV_NONE" "$(sv_state ap)"
sv_set "$SVZ" "$SV_SF"
is "Apache: all six overrides set" 0 "$?"
is "Apache: each override in force" "$SV_ALL" "$(sv_state ap)"
sv_policy "$SV_SF" 6 >"$SV/policy.conf"
apache_graceful "$SV"
is "Apache: each override in force after a graceful restart (e: 6/hour)" \
    "$SV_NEW" \
    "$(sv_wait ap)"
apache_stop "$SV"
apache_start "$SV"
is "Apache: each override in force after a stop and start" "$SV_NEW" \
    "$(sv_wait ap)"
apache_stop "$SV"

fcgi_start svf -c "$T_DIR/sv-fcgi.conf" -s "127.0.0.1:$SVFP" -z "$SVFZ" -t 2
sv_ask fc 127.0.0.7 /dr/x >/dev/null
is "ratelimit2-fcgi, no override: what each request gets" "$SV_NONE" \
    "$(sv_state fc)"
sv_set "$SVFZ" "$SV_FS"
is "ratelimit2-fcgi: all six overrides set" 0 "$?"
is "ratelimit2-fcgi: each override in force" "$SV_ALL" "$(sv_state fc)"
sv_policy "$SV_FS" 6 >"$T_DIR/sv-fcgi.conf"
kill -HUP "$(cat "$T_DIR/svf.pid")"
is "ratelimit2-fcgi: each override in force after a SIGHUP reload (e: 6/hour)" \
    "$SV_NEW" "$(sv_wait fc)"
fcgi_stop svf
is "ratelimit2-fcgi stops with exit status 0" 0 "$?"
fcgi_start svf -c "$T_DIR/sv-fcgi.conf" -s "127.0.0.1:$SVFP" -z "$SVFZ" -t 2
is "ratelimit2-fcgi: each override in force after a restart" "$SV_NEW" \
    "$(sv_wait fc)"
fcgi_stop svf
done_testing
