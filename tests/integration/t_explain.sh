#!/bin/bash
# t_explain.sh -- ratelimit2ctl explain against a zone ratelimit2-fcgi
# made and counts in:
#   - the worked examples of docs/configuration.md ("Why was I refused?",
#     the blocks under <!-- explain-example: NAME -->) are run as written,
#     on their policy (the load file this suite writes in place of
#     /proc/loadavg), and print exactly what the page shows: the rule and
#     what matched it, the tier and its source, the load factor, a boost
#     doubling the limit, a path no rule matches, a country (--country)
#     halving the boosted limit;
#   - an experiment's variant and challenger are named on their limits;
#   - --json says the same (it parses; the effective limit is the text's)
#     and escapes what the operator typed;
#   - nothing is counted: explain after explain, the daemon still admits
#     its whole limit; a refusal is explained with the daemon's own
#     Retry-After (within a second), a ban with the ban's;
#   - once the daemon has read the load, explain shows that reading;
#   - bad input exits 2, and the request options are refused elsewhere;
#   - with Redis (-R), Redis's counters are peeked and no key is written.
. "$(dirname "$0")/fcgi_lib.sh"

CTL="$BUILD/ctl/ratelimit2ctl"
DOC="$RL2_ROOT/docs/configuration.md"
Z=$(zone_name explain)
POLICY=$T_DIR/policy.conf
LOADF=$T_DIR/loadavg
mkdir -p "$T_DIR/state"

# example NAME -- the fenced block under <!-- explain-example: NAME -->.
example() {
    awk -v m="<!-- explain-example: $1 -->" '
        $0 == m { found = 1; next }
        found && /^```/ { if (inside) exit; inside = 1; next }
        inside { print }' "$DOC"
}

# ratelimit2ctl ARGS -- as the examples write it, on this suite's files.
ratelimit2ctl() {
    "$CTL" -c "$POLICY" -z "$Z" --state "$T_DIR/state/t.overrides" \
        --audit "$T_DIR/state/t.audit" "$@"
}

# squeeze -- one space between fields, no trailing space.
squeeze() {
    sed 's/[[:space:]][[:space:]]*/ /g; s/ $//'
}

echo "2.50 1.00 0.50 1/100 1234" >"$LOADF"
example policy | sed "s|\"/proc/loadavg\"|\"$LOADF\"|" >"$POLICY"
grep -q "$LOADF" "$POLICY"
is "the page's policy names the load file, replaced by the suite's" 0 "$?"

FP=$(free_port)
fcgi_start fcgi -c "$POLICY" -s "127.0.0.1:$FP" -z "$Z" -n 1000 -A off
fcgi_health "127.0.0.1:$FP" | grep -q '"status"'
is "ratelimit2-fcgi made the zone" 0 "$?"

# ---- the page's examples, in its order ----
names=$(sed -n 's/^<!-- explain-example: \([a-z]*\) -->$/\1/p' "$DOC" \
    | grep -v '^policy$' | tr '\n' ' ')
is "the page has its five examples" "tier load boost none country " "$names"
for name in $names; do
    block=$(example "$name")
    want=$(printf '%s\n' "$block" | grep -v '^\$ ' | squeeze)
    got=$(printf '%s\n' "$block" | sed -n 's/^\$ //p' | while read -r cmd; do
        eval "$cmd" 2>/dev/null
    done | squeeze)
    is "example $name: explain prints what the page shows" "$want" "$got"
done

# ---- JSON: the same answer, every string escaped ----
json=$(ratelimit2ctl explain --json --method POST /export)
is "--json: the boosted limit's effective count is the text's 20" \
    "20 10 boost x2, geo x1; out of scope: load allow" \
    "$(printf '%s' "$json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
l = d["limits"][0]
print(l["effective_count"], l["static_count"], l["scaled_by"],
      d["verdict"]["answer"])')"
odd='bo"b\x'
json=$(ratelimit2ctl explain --json --user "$odd" \
    --header $'X-Odd: a"b\\\tc' --country fr /api/x)
is "--json escapes the operator's strings" \
    "$(printf '%s|X-Odd: a"b\\\tc|fr|free' "$odd")" \
    "$(printf '%s' "$json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
r = d["request"]
print(r["user"], r["headers"][0], r["country"], d["tier"]["name"], sep="|")')"

is "--json: a byte that is not UTF-8 is U+FFFD, UTF-8 kept" "fffd e9 fffd" \
    "$(ratelimit2ctl explain --json --user $'\xff\xc3\xa9\xed\xa0\x80' /api/x \
        | python3 -c '
import json, sys
u = json.load(sys.stdin)["request"]["user"]
print(" ".join("%x" % ord(c) for c in u[:3]))')"

# ---- nothing counted; the daemon's own answers explained ----
# auth URI -- the daemon's Status (and Retry-After) for a POST from
# 127.0.0.1.
auth() {
    "$FCGI_CLIENT" "127.0.0.1:$FP" REMOTE_ADDR=127.0.0.1 REQUEST_METHOD=POST \
        REQUEST_URI="$1" | tr -d '\r' | sed -n 's/^Status: \([0-9]*\).*/\1/p;
        s/^Retry-After: //p' | tr '\n' ' '
}
for _ in 1 2 3 4 5; do
    ratelimit2ctl explain --method POST /export >/dev/null
done
ratelimit2ctl boost rule:export 0.1 >/dev/null 2>&1
like "a boost of x0.1 leaves the exports 1 an hour" \
    'static 10/h effective 1/h \(boost x0.1, geo x1; out of scope: load\) used 0 left 1 allowed' \
    "$(ratelimit2ctl explain --method POST /export | squeeze)"
is "after five explains the daemon admits its one export" "200 " \
    "$(auth /export)"
refused=$(auth /export)
retry=${refused#429 }
retry=${retry% }
out=$(ratelimit2ctl explain --method POST /export | squeeze)
like "explain names the refusing limit" \
    'used 1 left 0 refused' "$out"
said=$(printf '%s\n' "$out" | sed -n 's/^verdict deny 429, Retry-After \([0-9]*\): refused by export\/exports$/\1/p')
is "explain's Retry-After is the daemon's, within a second" 1 \
    "$([ -n "$said" ] && [ "${retry:-0}" -gt 0 ] \
        && [ $((said - retry)) -ge -1 ] && [ $((said - retry)) -le 1 ] \
        && echo 1)"

# The daemon read the load with its requests: explain shows that reading,
# not the file, which has changed since.
echo "0.10 0.10 0.10 1/100 1234" >"$LOADF"
like "explain shows the servers' reading of the load" \
    "factor load=0.7: load 2.5 \\(the servers' last reading\\), step above 2" \
    "$(ratelimit2ctl explain /search | squeeze)"

ratelimit2ctl ban 127.0.0.1 >/dev/null 2>&1
out=$(ratelimit2ctl explain /search | squeeze)
like "a ban: the client is banned" 'override the client is banned' "$out"
like "a ban: 429 and a day to wait" \
    'verdict deny 429, Retry-After 86400: banned at run time' "$out"
ratelimit2ctl unban 127.0.0.1 >/dev/null 2>&1

# ---- an experiment: the client's variant and the challenger ----
cat >"$T_DIR/experiment.conf" <<'POL'
rules = (
  { name = "api"; paths = "/api/**"; variant_by = "ip";
    variants = (
      { name = "A"; weight = 90; limits = ( { rate = "100/m"; } ); },
      { name = "B"; weight = 10; limits = ( { rate = "150/m"; } ); } );
    challenger = { limits = ( { name = "api_tight"; rate = "60/m"; } ); }; }
);
POL
xp=$("$CTL" -c "$T_DIR/experiment.conf" -z "$Z" --state "$T_DIR/state/t.overrides" \
    --audit "$T_DIR/state/t.audit" explain --client 192.0.2.9 /api/x | squeeze)
like "a variant's limit is named with its variant" \
    'limit api\[variant [AB]\]/api fixed_window key ip 192.0.2.9 static (100|150)/min' "$xp"
like "the challenger's shadow limit is named as such" \
    'limit api\[challenger\]/api_tight fixed_window key ip 192.0.2.9 static 60/min' "$xp"

# ---- bad input ----
bad() {
    ratelimit2ctl "$@" >/dev/null 2>&1
    echo $?
}
is "--client that is no address: exit 2" 2 \
    "$(bad explain --client 10.0.0.300 /x)"
is "--header without a colon: exit 2" 2 "$(bad explain --header 'X-A' /x)"
is "--header with a control byte: exit 2" 2 \
    "$(bad explain --header $'X-A: a\rb' /x)"
is "--country of three letters: exit 2" 2 "$(bad explain --country FRA /x)"
is "--api-key when the policy reads none: exit 2" 2 \
    "$(bad explain --api-key k /x)"
is "a relative PATH: exit 2" 2 "$(bad explain x)"
is "no PATH: exit 2" 2 "$(bad explain)"
is "status takes no --host: exit 2" 2 "$(bad --host h status 127.0.0.1)"

# ---- Redis: its counters, peeked; nothing written there ----
ratelimit2ctl unboost rule:export >/dev/null 2>&1
RP=$(free_port)
if redis_start; then
    redis-cli -p "$RP" set t:other 1 >/dev/null
    is "with -R: Redis's counters, the limit scaled by the load" \
        "redis 42 0 42" \
        "$(ratelimit2ctl -R "127.0.0.1:$RP" explain --json /search \
            | python3 -c '
import json, sys
d = json.load(sys.stdin)
l = d["limits"][0]
print(d["store"], l["effective_count"], l["used"], l["left"])')"
    is "explain wrote no key to Redis" "t:other" \
        "$(redis-cli -p "$RP" --scan | sort | tr '\n' ' ' | sed 's/ $//')"
else
    not_ok "redis-server starts"
fi

fcgi_stop fcgi
done_testing
