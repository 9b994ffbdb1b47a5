#!/bin/bash
# t_admin.sh -- the HTTP admin interface of the Apache module
# (SetHandler ratelimit2-admin) against a real Apache, one start:
#   - behind Basic authentication (Require valid-user): 401 without
#     credentials, and nothing changes;
#   - a ban made through it is enforced by the same Apache (429), listed
#     by `ratelimit2ctl overrides`, and recorded in the audit file the
#     policy names (overrides.audit_file) with the authenticated user as
#     its author; the admin location itself stays open to the banned
#     address (RateLimit2Engine off in it); unban lifts it at once;
#   - a location without authentication names the connection's address
#     as the author, whatever user headers the client sends; a user name
#     with a control byte is a 400; one the limiter decides says so once in the error
#     log (RL20031), and refuses a banned address before the handler;
#   - the audit file ratelimit2ctl (root) made is appended to by Apache's
#     children (nobody, of the state directory's group): 0660;
#   - an unknown verb, a bad duration, a bad CIDR, an unknown rule or
#     tier, a body over 8 KiB (with a Content-Length, which is not read,
#     or chunked, read to one byte past the bound, or announced with
#     Expect: 100-continue, never asked for): each 400 with a JSON
#     error, the table and the audit file as they were; GET 405 with
#     Allow: POST; text/plain 415; a policy without the table 404.
source "$(dirname "$0")/lib.sh"

CTL="$BUILD/ctl/ratelimit2ctl"
D=$T_DIR/apache
P=$(free_port)
Z=$(zone_name adm)
A="http://127.0.0.1:$P"
ADM="$A/rl2-admin"
S=$T_DIR/state
STATE=$S/admin.overrides
AUDIT=$S/admin.audit
LOG=$T_DIR/syslog.sock

# The state directory as the package makes it: root's, the server's
# group, setgid, 2770 (the children run as nobody:nogroup here).
mkdir -p "$S"
chgrp nogroup "$S"
chmod 2770 "$S"

apache_conf "$D" "$P" event
htpasswd -bc "$D/htpasswd" alice alice-pw >/dev/null 2>&1
# A user whose name has a tab (mod_authn_file takes any byte but ':').
htpasswd -b "$D/htpasswd" "$(printf 'ev\til')" evil-pw >/dev/null 2>&1
cat >"$D/policy.conf" <<POL
overrides = { state_file = "$STATE"; audit_file = "$AUDIT"; };
alerts = { socket = "$LOG"; };
tiers = [ "free", "pro" ];
default_tier = "free";
rules = (
  { name = "api"; paths = "/api/**"; limits = ( { rate = "100/hour"; } ); },
  { name = "site"; paths = "/**"; limits = ( { rate = "100000/hour"; } ); }
);
POL
echo 'overrides = { enabled = false; };' >"$D/off.conf"
cat >>"$D/site.conf" <<CONF
RateLimit2Zone $Z 1000
RateLimit2Policy "$D/policy.conf"
<Location /rl2-admin>
    SetHandler ratelimit2-admin
    RateLimit2Engine off
    AuthType Basic
    AuthName admin
    AuthUserFile "$D/htpasswd"
    Require valid-user
</Location>
# Without authentication, and left to the limiter.
<Location /rl2-open>
    SetHandler ratelimit2-admin
</Location>
<VirtualHost 127.0.0.1:$P>
    ServerName 127.0.0.1
</VirtualHost>
<VirtualHost 127.0.0.1:$P>
    ServerName off.test
    RateLimit2Policy "$D/off.conf"
</VirtualHost>
CONF

# ---- a stand-in for /dev/log: one line per datagram in $T_DIR/syslog ----
python3 - "$LOG" "$T_DIR/syslog" <<'PY' &
import os, socket, sys
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path + ".new")
os.chmod(path + ".new", 0o666)  # Apache's children are nobody
os.rename(path + ".new", path)  # appears only once it is bound
with open(out, "a") as f:
    while True:
        f.write(s.recv(4096).decode("utf-8", "replace") + "\n")
        f.flush()
PY
LISTENER=$!
trap 'kill "$LISTENER" 2>/dev/null; rl2_cleanup' EXIT
for _ in $(seq 1 100); do
    [ -S "$LOG" ] && break
    sleep 0.05
done

if ! apache_start "$D"; then
    not_ok "Apache starts with the admin handler"
    done_testing
    exit 1
fi
ok "Apache starts with the admin handler"

# post BODY [curl args] -- POST BODY as alice, JSON: status in $C, the
# answer in $B, the header lines (CR dropped) in $H.
post() {
    local body=$1
    shift
    C=$(curl -s -D "$T_DIR/h" -o "$T_DIR/b" -w '%{http_code}' -u alice:alice-pw \
        -H 'Content-Type: application/json' --data-binary "$body" "$@" "$ADM")
    B=$(cat "$T_DIR/b")
    H=$(tr -d '\r' <"$T_DIR/h")
}

# listing -- what ratelimit2ctl overrides lists (without the seconds
# left, which the clock changes).
listing() {
    "$CTL" -z "$Z" --state "$STATE" overrides --json 2>&1 |
        sed 's/"seconds_left":[0-9]*,//'
}

# ---- the audit file is root's first, and Apache's children append ----
"$CTL" -c "$D/policy.conf" -z "$Z" --state "$STATE" \
    tier user:bob pro --reason "from the shell" >/dev/null
is "ratelimit2ctl writes the audit file the policy names" 1 \
    "$(wc -l <"$AUDIT" 2>/dev/null | tr -d ' ')"
is "the audit file is group-writable, in the directory's group" \
    "660 root nogroup" "$(stat -c '%a %U %G' "$AUDIT")"

# ---- authentication comes first ----
C=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    --data-binary '{"verb":"ban","target":"127.0.0.1"}' "$ADM")
is "without credentials: 401" 401 "$C"
like "... and nothing is banned" '"user:bob"' "$(listing)"
is "... nor recorded" 1 "$(wc -l <"$AUDIT" | tr -d ' ')"

# ---- without authentication: the address is the author ----
C=$(curl -s -o "$T_DIR/b" -w '%{http_code}' -H 'Content-Type: application/json' \
    --data-binary '{"verb":"allow","target":"user:carol"}' "$A/rl2-open")
is "an open location takes a change" 200 "$C"
like "... whose author is the connection's address" \
    '"kind":"allow","target":"user:carol".*"author":"address 127.0.0.1"' \
    "$(listing)"
like "... and the error log says the limiter decides it" \
    'RL20031: admin: the limiter decides the requests of /rl2-open' \
    "$(cat "$D/logs/error.log")"

# The client cannot name itself: an Authorization or Remote-User header
# sets no user where no auth module runs.
C=$(curl -s -o "$T_DIR/b" -w '%{http_code}' -H 'Content-Type: application/json' \
    -u mallory:x -H 'Remote-User: mallory' -H 'X-Remote-User: mallory' \
    --data-binary '{"verb":"allow","target":"user:dave"}' "$A/rl2-open")
is "an open location with forged user headers: 200" 200 "$C"
like "... and the author is still the address" \
    '"kind":"allow","target":"user:dave".*"author":"address 127.0.0.1"' \
    "$(listing)"
# A user name with a control byte would forge a line of ratelimit2ctl's
# listings, which print the author as it is.
lines=$(wc -l <"$AUDIT")
C=$(curl -s -o "$T_DIR/b" -w '%{http_code}' -u "$(printf 'ev\til'):evil-pw" \
    -H 'Content-Type: application/json' \
    --data-binary '{"verb":"ban","target":"192.0.2.77"}' "$ADM")
is "a user named with a tab: 400" 400 "$C"
like "... saying the author has control characters" \
    '"error":"the author .*control characters' "$(cat "$T_DIR/b")"
is "... and nothing recorded" "$lines" "$(wc -l <"$AUDIT")"

# ---- a ban through the admin interface, enforced by the same Apache ----
is "before the ban, 127.0.0.1 is served" 200 "$(code "$A/index.html")"
post '{"verb":"ban","target":"127.0.0.1","ttl":"10min","reason":"INC-7"}'
is "ban: 200" 200 "$C"
like "... answered in JSON, what it set" \
    '^\{"ok":true,"verb":"ban","target":"127.0.0.1","changed":true,"before":null,"after":\{"value":"banned","expires":"[0-9T:.-]+Z","reason":"INC-7","author":"alice"\}\}$' \
    "$B"
like "... as application/json, not to be cached" \
    'Content-Type: application/json; charset=utf-8' "$H"
like "... Cache-Control: no-store" 'Cache-Control: no-store' "$H"
is "the same Apache refuses the banned address at once" 429 \
    "$(code "$A/index.html")"
like "ratelimit2ctl overrides lists the ban, by alice" \
    '"kind":"ban","target":"127.0.0.1","value":"banned".*"author":"alice","reason":"INC-7"' \
    "$(listing)"
is "the audit file took Apache's lines (the file root made)" 4 \
    "$(wc -l <"$AUDIT" | tr -d ' ')"
like "ratelimit2ctl audit (the policy's file): alice, from the admin interface" \
    '"author":"alice","origin":"admin","verb":"ban","kind":"ban","target":"127.0.0.1"' \
    "$("$CTL" -c "$D/policy.conf" -z "$Z" audit --json 2>&1)"
like "syslog has the change, by alice" \
    'event=override target=127.0.0.1 kind=ban verb=ban origin=admin author=alice' \
    "$(cat "$T_DIR/syslog" 2>/dev/null)"
C=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    --data-binary '{"verb":"unban","target":"127.0.0.1"}' "$A/rl2-open")
is "a location left to the limiter refuses the banned address (documented)" \
    429 "$C"

# ---- bad inputs: 400, nothing changed, no line ----
before_list=$(listing)
before_audit=$(md5sum <"$AUDIT")
# bad NAME BODY [curl args] -- 400 with a JSON error.
bad() {
    local name=$1 body=$2
    shift 2
    post "$body" "$@"
    is "$name: 400" 400 "$C"
    like "... with a JSON error" '^\{"ok":false,"error":"[^"]' "$B"
}
bad "an unknown verb" '{"verb":"bann","target":"192.0.2.9"}'
bad "a bad duration" '{"verb":"ban","target":"192.0.2.9","ttl":"10 parsecs"}'
bad "a bad CIDR" '{"verb":"ban","target":"192.0.2.0/33"}'
bad "an unknown rule" '{"verb":"mode","rule":"nope","mode":"dry_run"}'
bad "an unknown tier" '{"verb":"tier","target":"user:carol","tier":"platinum"}'
big=$(python3 -c 'print("{\"verb\":\"ban\",\"target\":\"192.0.2.9\",\"reason\":\"" + "a" * 9000 + "\"}")')
bad "a body over 8 KiB" "$big"
like "... which says so" 'over 8192 bytes' "$B"
bad "a body over 8 KiB, chunked (no Content-Length)" "$big" \
    -H 'Transfer-Encoding: chunked'
like "... which says so" 'over 8192 bytes' "$B"
is "after the 400s, the table is as it was" "$before_list" "$(listing)"
is "... and the audit file too" "$before_audit" "$(md5sum <"$AUDIT")"

# Expect: 100-continue with a Content-Length over the bound: answered
# from the length, the body never asked for (no 100 Continue).
head -c 20000 /dev/zero | tr '\0' a >"$T_DIR/20k"
C=$(curl -s -D "$T_DIR/h" -o "$T_DIR/b" -w '%{http_code}' --max-time 5 \
    -u alice:alice-pw -H 'Content-Type: application/json' \
    -H 'Expect: 100-continue' --data-binary "@$T_DIR/20k" "$ADM")
is "Expect: 100-continue and 20000 bytes: 400" 400 "$C"
is "... without a 100 Continue" "" "$(grep -i '^HTTP/1.1 100' "$T_DIR/h")"
# A GET with a body: 405, the body never read as a change.
C=$(curl -s -o /dev/null -w '%{http_code}' -X GET -u alice:alice-pw \
    -H 'Content-Type: application/json' \
    --data-binary '{"verb":"ban","target":"192.0.2.9"}' "$ADM")
is "GET with a JSON body: 405" 405 "$C"
is "after them, the table is as it was" "$before_list" "$(listing)"

# ---- method and media type ----
C=$(curl -s -D "$T_DIR/h" -o "$T_DIR/b" -w '%{http_code}' -u alice:alice-pw "$ADM")
is "GET: 405" 405 "$C"
like "... with Allow: POST" '^Allow: POST' "$(tr -d '\r' <"$T_DIR/h")"
post '{"verb":"overrides"}' -H 'Content-Type: text/plain'
is "text/plain: 415" 415 "$C"
like "... with a JSON error" '^\{"ok":false,"error":' "$B"

# ---- the list, and a host whose policy has no table ----
post '{"verb":"overrides"}'
like "overrides lists what is in force" \
    '^\{"ok":true,"verb":"overrides","overrides":\[\{"kind":"ban","target":"127.0.0.1".*\{"kind":"tier","target":"user:bob","value":"pro"' \
    "$B"
post '{"verb":"overrides"}' -H 'Host: off.test'
is "a policy without the table: 404" 404 "$C"
is "... saying why" '{"ok":false,"error":"runtime overrides are off in the policy"}' "$B"

# ---- unban lifts it at once ----
post '{"verb":"unban","target":"127.0.0.1"}'
like "unban: 200, what it removed" \
    '^\{"ok":true,"verb":"unban","target":"127.0.0.1","changed":true,"before":\{"value":"banned".*"after":null\}$' \
    "$B"
is "the address is served again at once" 200 "$(code "$A/index.html")"
is "five changes, five lines" 5 "$(wc -l <"$AUDIT" | tr -d ' ')"
is "no admin error in Apache's log" "" \
    "$(grep -E 'RL2003[02]|AH00052' "$D/logs/error.log")"

done_testing
