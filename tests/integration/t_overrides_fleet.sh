#!/bin/bash
# t_overrides_fleet.sh -- the runtime override table across a fleet
# (docs/operations.md, "Runtime overrides across the fleet"): one
# redis-server; two Apaches (event MPM) and one lighttpd with
# ratelimit2-fcgi, each with its own zone and state file, so that they
# share nothing but Redis, under one policy that counts there.
# ratelimit2ctl (-R, with a zone and state file of its own) changes the
# table in Redis, and every server follows from its requests:
#   - a ban of 127.0.0.1 with --ttl 4s: all three refuse it with 429
#     within about a second (polled every 100 ms; the time is printed;
#     more than 2 s fails);
#   - with no other command, once the ttl is up all three serve it again;
#   - a second ban, then unban: all three serve it within about a second;
#   - the audit file has one entry per change made;
#   - boost rule:bst 2 --ttl 4s: each server admits exactly twice the
#     limit to a key of its own, and the fleet exactly twice to one key
#     all three count (the counters are in Redis, and a boost scales the
#     limit, not the count: common/decide/runtime.c); once the boost is
#     over, the limit itself;
#   - mode dr dry_run: a key over rule dr's limit is served everywhere
#     within about a second; mode dr --clear: refused again;
#   - allow 127.0.0.1, emergency on --allow-list-only: everyone else gets
#     503 with Retry-After from all three (lighttpd passes the
#     authorizer's status on) within about a second, 127.0.0.1 is
#     served; emergency off: served again;
#   - automatic bans (the policy's abuse group): a client refused past
#     abuse.denials on one server is banned by all three within about a
#     second, for abuse.ban; its second offence, made on another server,
#     twice as long (Retry-After on each server, and the entry's end in
#     Redis); one event=banned alert per ban, from the server that made
#     it.
. "$(dirname "$0")/fcgi_lib.sh"
. "$(dirname "$0")/fleet_lib.sh"

CTL="$BUILD/ctl/ratelimit2ctl"

redis_start_first
# The alerts of every server (and ratelimit2ctl's) in $LOG.
sink_start

# policy NAME -- the policy of server NAME: the same limits and Redis for
# every server, only the state file is the server's own.  Rules bst and
# dr count a header's value, so that their refusals never ban (only
# limits keyed by client do); rule ab counts by address, and more than 3
# of its refusals within an (aligned) second ban the client for 2 s,
# then 4 s (escalate 2), remembered for max_ban, 24 h by default.
# The state file is in a directory of the server's user (Apache's
# children run as nobody), which an automatic ban made there writes.
policy() {
    mkdir -p "$T_DIR/state-$1"
    case "$1" in ap*) chown nobody:nogroup "$T_DIR/state-$1" ;; esac
    cat >"$T_DIR/$1.conf" <<POL
redis = { server = "127.0.0.1:$RP"; timeout = 300; };
overrides = { state_file = "$T_DIR/state-$1/$1.overrides"; };
alerts = { socket = "$SINK"; };
abuse = { denials = "3/1s"; ban = "2s"; escalate = 2; };
rules = (
  { name = "bst"; paths = "/bst/**"; key = "header:X-Who";
    limits = ( { rate = "3/24h"; algorithm = "fixed_window"; } ); },
  { name = "dr"; paths = "/dr/**"; key = "header:X-Who";
    limits = ( { rate = "1/hour"; algorithm = "token_bucket"; } ); },
  { name = "ab"; paths = "/ab/**";
    limits = ( { rate = "1/hour"; algorithm = "token_bucket"; } ); },
  { name = "site"; paths = "/**"; limits = ( { rate = "100000/hour"; } ); }
);
POL
}

# ---- two Apaches ----
URLS=()
BASES=()
NAMES=()
for a in ap1 ap2; do
    policy "$a"
    port=$(free_port)
    apache_conf "$T_DIR/$a" "$port" event
    site_pages "$T_DIR/$a/htdocs" bst dr ab
    cat >"$T_DIR/$a/site.conf" <<CONF
RateLimit2Zone $(zone_name "$a") 1000
RateLimit2Policy "$T_DIR/$a.conf"
CONF
    if ! apache_start "$T_DIR/$a"; then
        not_ok "Apache $a starts"
        done_testing
        exit 1
    fi
    ok "Apache $a starts (its own zone and state file)"
    BASES+=("http://127.0.0.1:$port")
    URLS+=("http://127.0.0.1:$port/index.html")
    NAMES+=("$a")
done

# ---- lighttpd with ratelimit2-fcgi ----
policy lt
L=$T_DIR/lt
PL=$(free_port)
mkdir -p "$L/htdocs"
echo ok >"$L/htdocs/index.html"
site_pages "$L/htdocs" bst dr ab
chmod -R 755 "$L"
lighttpd_authorizer_conf "$L" "$PL" 1 '"mod_fastcgi"' \
    "-c $T_DIR/lt.conf -z $(zone_name lt) -t 4"
if ! lighttpd_start "$L"; then
    not_ok "lighttpd starts with ratelimit2-fcgi"
    done_testing
    exit 1
fi
ok "lighttpd starts with ratelimit2-fcgi (its own zone and state file)"
BASES+=("http://127.0.0.1:$PL")
URLS+=("http://127.0.0.1:$PL/index.html")
NAMES+=("lighttpd")

# all_codes -- the status of one request to each server, space-separated.
all_codes() {
    local u out=""
    for u in "${URLS[@]}"; do
        out="$out $(code "$u")"
    done
    echo "${out# }"
}

# Wait for the fcgi backend to answer (lighttpd listens before it spawns).
for _ in $(seq 1 50); do
    [ "$(all_codes)" = "200 200 200" ] && break
    sleep 0.1
done
is "before any override, all three serve 127.0.0.1" "200 200 200" \
    "$(all_codes)"

# ratelimit2ctl: a zone and state file of its own, Redis named by -R.
policy ctl
AUDIT=$T_DIR/ctl.audit
C=("$CTL" -c "$T_DIR/ctl.conf" -R "127.0.0.1:$RP" -z "$(zone_name ctl)"
    --state "$T_DIR/state-ctl/ctl.overrides" --audit "$AUDIT")
N=0

# ---- a ban with --ttl 4s reaches every server ----
change "ratelimit2ctl -R bans 127.0.0.1 --ttl 4s" \
    ban 127.0.0.1 --ttl 4s --reason "fleet test"
propagates "the ban" 429
is "the ban is in Redis" 1 \
    "$(redis-cli -p "$RP" hexists '{rl2:overrides}' "$(printf 'ban\t127.0.0.1')")"

# ---- it ends by itself, everywhere ----
# Each server's own table expires it; nothing else is done.  Just before
# the end it still holds; from the end, T0, all three serve again.
T_BAN=$T0
sleep "$(awk -v t="$T_BAN" -v n="$(date +%s%N)" \
    'BEGIN { s = (t + 3.5e9 - n) / 1e9; print (s > 0 ? s : 0) }')"
is "half a second before its end, all three still refuse" "429 429 429" \
    "$(all_codes)"
T0=$((T_BAN + 4000000000))
sleep "$(awk -v t="$T0" -v n="$(date +%s%N)" \
    'BEGIN { s = (t - n) / 1e9; print (s > 0 ? s : 0) }')"
propagates "the ban's end (from its ttl)" 200

# ---- a second ban, then unban ----
change "a second ban (no end)" ban 127.0.0.1 --reason "fleet test 2"
propagates "the second ban" 429
change "unban 127.0.0.1" unban 127.0.0.1 --reason "fleet test done"
propagates "the unban" 200
is "... and all three still serve it" "200 200 200" "$(all_codes)"

# ---- helpers for the checks below ----

# codes N URL [curl args] -- N status codes, space-separated.
codes() {
    local n=$1 out=""
    shift
    for _ in $(seq 1 "$n"); do
        out="$out $(code "$@")"
    done
    echo "${out# }"
}

# fetch URL [curl args] -- one request: its status in $FC, its header
# lines (CR dropped) in $H, its body in $B.
fetch() {
    FC=$(curl -s -D "$T_DIR/f.h" -o "$T_DIR/f.b" -w '%{http_code}' "$@")
    H=$(tr -d '\r' <"$T_DIR/f.h")
    B=$(cat "$T_DIR/f.b")
}

# quota_q -- the count RateLimit-Policy shows in $H ("bst";q=6;w=3600).
quota_q() {
    printf '%s\n' "$H" | sed -n 's/^RateLimit-Policy: "bst";q=\([0-9]*\).*/\1/p'
}

# sleep_until NS -- until the clock reads NS (date +%s%N).
sleep_until() {
    sleep "$(awk -v t="$1" -v n="$(date +%s%N)" \
        'BEGIN { s = (t - n) / 1e9; print (s > 0 ? s : 0) }')"
}

# each WHAT EXPECTED FN -- a test per server: `FN BASE` prints EXPECTED.
each() {
    local what=$1 want=$2 fn=$3 i
    for i in "${!BASES[@]}"; do
        is "${NAMES[$i]}: $what" "$want" "$("$fn" "${BASES[$i]}")"
    done
}

# ---- a boost of x2: exactly twice the limit, everywhere, then the limit ----
# Rule bst admits 3 a day per X-Who, counted in Redis in a fixed window,
# whose state is a count that the boosted limit reads as it is (a token
# bucket's is a time, which a doubled rate reads as twice as much
# spent).  The window is aligned on midnight UTC: the counts must not be
# either side of it.  Before the boost, each server spends a key of its
# own (k-PORT) and the three together one key (fleet), one request each.
quota_guard
own_key() { codes 4 "$1/bst/x" -H "X-Who: k-${1##*:}"; }
each "before the boost, its own key is admitted 3 times (bst: 3/24h)" \
    "200 200 200 429" own_key
fleet_key() { code "$1/bst/x" -H "X-Who: fleet"; }
each "before the boost, one request of the fleet's key is admitted" \
    200 fleet_key
each "... after which it refuses the fleet's key (3 spent)" 429 fleet_key
# The boost scales the limit, not the count: on the same counters, every
# key now has 3 more.  Until a server has it, it refuses the fleet's key
# (a refused request counts nothing), then admits it once: three servers,
# three more, 6 in all.
change "ratelimit2ctl -R boost rule:bst 2 --ttl 4s" \
    boost rule:bst 2 --ttl 4s --reason "fleet boost"
T_BOOST=$T0
propagates "the boost (the fleet's key admitted once more)" 200 /bst/x \
    -H "X-Who: fleet"
each "boosted: then the fleet's key is refused: 6 (2 x 3) admitted by the \
three together" 429 fleet_key
each "boosted: its own key is admitted 3 more times: 6 (2 x 3), then \
refused" "200 200 200 429" own_key
boosted_q() { fetch "$1/bst/x" -H "X-Who: k-${1##*:}"; echo "$FC $(quota_q)"; }
each "boosted: the refusal shows the boosted limit, q=6" "429 6" boosted_q
T0=$((T_BOOST + 4000000000))
ms=$((($(date +%s%N) - T_BOOST) / 1000000))
if [ "$ms" -lt 4000 ]; then
    ok "the boosted checks ended ${ms} ms after the boost, within its 4 s"
else
    not_ok "the boosted checks ended within the boost's 4 s (${ms} ms)"
fi
# From its end (each host's own table expires it), the limit itself:
# the refusal of the fleet's key shows q=3 again, on every server.
sleep_until "$T0"
unboosted_q() { fetch "$1/bst/x" -H "X-Who: fleet"; echo "$FC $(quota_q)"; }
for _ in $(seq 1 20); do
    [ "$(for b in "${BASES[@]}"; do unboosted_q "$b"; done | sort -u)" \
        = "429 3" ] && break
    sleep 0.1
done
echo "# the boost's end seen by all three $((($(date +%s%N) - T0) / 1000000)) ms after it"
each "after the boost: the refusal shows the limit itself, q=3" "429 3" \
    unboosted_q
new_key() { codes 4 "$1/bst/x" -H "X-Who: n-${1##*:}"; }
each "after the boost: a new key is admitted 3 times, then refused" \
    "200 200 200 429" new_key
new_fleet() {
    local i out=""
    for i in 0 1 2 0 1 2; do
        out="$out $(code "${BASES[$i]}/bst/x" -H "X-Who: nf")"
    done
    echo "${out# }"
}
is "after the boost: a new key the three count together, 3 admitted" \
    "200 200 200 429 429 429" "$(new_fleet)"

# ---- a rule in dry run, everywhere, then enforced again ----
is "rule dr (1/hour) admits key d once on ap1, then all three refuse it" \
    "200 429 429 429" \
    "$(code "${BASES[0]}/dr/x" -H 'X-Who: d') $(for b in "${BASES[@]}"; do
        code "$b/dr/x" -H 'X-Who: d'; echo; done | tr '\n' ' ' | sed 's/ $//')"
change "ratelimit2ctl -R mode dr dry_run" mode dr dry_run --reason "fleet dry"
propagates "the dry run (key d, over the limit, served)" 200 /dr/x \
    -H "X-Who: d"
change "ratelimit2ctl -R mode dr --clear" mode dr --clear
propagates "the mode cleared (key d refused again)" 429 /dr/x -H "X-Who: d"

# ---- the emergency allow-list, everywhere ----
change "ratelimit2ctl -R allow 127.0.0.1" allow 127.0.0.1 --reason "operator"
change "ratelimit2ctl -R emergency on --allow-list-only" \
    emergency on --allow-list-only --reason "fleet emergency"
propagates "the emergency (127.0.0.2 refused)" 503 /index.html \
    --interface 127.0.0.2
# lighttpd passes an authorizer's refusal on as it is: its 503 and
# Retry-After.
emergency_503() {
    fetch "$1/index.html" --interface 127.0.0.2
    echo "$FC $(retry_after "$H") $(printf '%s' "$B" | grep -o '"error":"[a-z]*"')"
}
each "in the emergency, 127.0.0.2 gets 503, Retry-After 60, unavailable" \
    '503 60 "error":"unavailable"' emergency_503
each "in the emergency, the allowed 127.0.0.1 is served" 200 code_at
change "ratelimit2ctl -R emergency off" emergency off
propagates "the emergency's end (127.0.0.2 served)" 200 /index.html \
    --interface 127.0.0.2
change "ratelimit2ctl -R disallow 127.0.0.1" disallow 127.0.0.1

# ---- automatic bans, everywhere, escalating ----
# Bans are remembered over max_ban (24 h), in a window aligned on
# midnight UTC: the two offences must not be either side of it.
quota_guard
# offend BASE -- requests for BASE/ab/x from 127.0.0.5 until one is
# refused as banned (30 at most): rule ab admits one an hour, and the
# fourth refusal within an aligned second bans.  T0 is the start of the
# request before the banned one: the refusal that made the ban.
offend() {
    local prev t
    prev=$(date +%s%N)
    for _ in $(seq 1 30); do
        t=$(date +%s%N)
        fetch "$1/ab/x" --interface 127.0.0.5
        if [ "$FC" = 429 ] && [[ "$B" == *'"error":"banned"'* ]]; then
            T0=$prev
            return 0
        fi
        prev=$t
    done
    return 1
}
# bans_alerted -- the event=banned lines of $LOG, once their count is $1
# (waited for 1 s at most: a datagram, but sent after the answer).
bans_alerted() {
    for _ in $(seq 1 20); do
        [ "$(grep -c 'event=banned' "$LOG")" -ge "$1" ] && break
        sleep 0.05
    done
    grep -o 'event=banned .*' "$LOG"
}
ban_answer() {
    fetch "$1/index.html" --interface 127.0.0.5
    echo "$FC $(printf '%s' "$B" | grep -o '"error":"[a-z]*"')"
}
ban_retry() {
    fetch "$1/index.html" --interface 127.0.0.5
    retry_after "$H"
}
# in_range LO HI FN -- FN BASE prints a number from LO to HI: "yes".
in_range() {
    local v
    v=$("$3" "$4")
    if [ -n "$v" ] && [ "$v" -ge "$1" ] 2>/dev/null && [ "$v" -le "$2" ]; then
        echo yes
    else
        echo "no ($v)"
    fi
}
first_retry() { in_range 1 2 ban_retry "$1"; }
second_retry() { in_range 3 4 ban_retry "$1"; }

if offend "${BASES[0]}"; then
    ok "127.0.0.5, refused past abuse.denials on ap1, is banned there"
else
    not_ok "127.0.0.5, refused past abuse.denials on ap1, is banned there"
fi
T_AB=$T0
propagates "the automatic ban made on ap1" 429 /index.html \
    --interface 127.0.0.5
each "the automatic ban answers 429 banned" '429 "error":"banned"' ban_answer
each "the first ban's Retry-After is within its 2 s (abuse.ban)" yes \
    first_retry
is "one event=banned alert for it, from ap1 alone, 2 s" \
    "event=banned client=127.0.0.5 target=127.0.0.5 seconds=2 rule=ab" \
    "$(bans_alerted 1)"
# It ends by itself, everywhere, 2 s after it was made.
T0=$((T_AB + 2000000000))
sleep_until "$T0"
propagates "the automatic ban's end (127.0.0.5 served)" 200 /index.html \
    --interface 127.0.0.5
# The second offence, on lighttpd (ratelimit2-fcgi): rule ab's count is
# the fleet's, so 127.0.0.5 is refused there at once.
if offend "${BASES[2]}"; then
    ok "127.0.0.5, refused past abuse.denials again on lighttpd, is banned"
else
    not_ok "127.0.0.5, refused past abuse.denials again on lighttpd, is banned"
fi
propagates "the second automatic ban, made on lighttpd" 429 /index.html \
    --interface 127.0.0.5
each "the second ban's Retry-After is 3 or 4 s: twice the first" yes \
    second_retry
is "ratelimit2ctl -R overrides: the second ban lasts 4 s (2 x 2 s), by abuse" \
    "4.0 abuse" \
    "$("${C[@]}" overrides --json | python3 -c '
import datetime, json, sys
def t(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")
for e in json.load(sys.stdin):
    if e["kind"] == "ban" and e["target"] == "127.0.0.5":
        print((t(e["expires"]) - t(e["created"])).total_seconds(), e["author"])
')"
is "two event=banned alerts in all, the second for 4 s" \
    "event=banned client=127.0.0.5 target=127.0.0.5 seconds=2 rule=ab
event=banned client=127.0.0.5 target=127.0.0.5 seconds=4 rule=ab" \
    "$(bans_alerted 2)"
change "ratelimit2ctl -R unban 127.0.0.5" unban 127.0.0.5 \
    --reason "fleet abuse done"
propagates "the unban of the automatic ban" 200 /index.html \
    --interface 127.0.0.5

# ---- the audit ----
is "the audit file has one line per change ($N)" "$N" \
    "$(wc -l <"$AUDIT" 2>/dev/null || echo 0)"
# The fleet's trail (the Redis stream) has those and the two automatic
# bans, made by the servers.
is "ratelimit2ctl audit lists $N changes and the 2 automatic bans" \
    "$N 2" \
    "$("${C[@]}" audit --json | python3 -c '
import json, sys
a = json.load(sys.stdin)
auto = [e for e in a if e["origin"] == "auto"]
print(len(a) - len(auto), len(auto))')"

for a in ap1 ap2; do
    apache_stop "$T_DIR/$a"
done
lighttpd_stop "$L"
done_testing
