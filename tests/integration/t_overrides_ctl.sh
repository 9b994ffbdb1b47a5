#!/bin/bash
# t_overrides_ctl.sh -- ratelimit2ctl's runtime overrides against a real
# override table (/dev/shm/<zone>.overrides, made by the tool itself; no
# web server: t_overrides drives the servers):
#   - ban, then `overrides` lists it with its time left (text and JSON);
#     an entry with --ttl 1s is gone a second later with no other change;
#     unban removes it, and a second unban changes and records nothing;
#   - bad inputs (a bad network, an unknown rule or tier, a bad duration,
#     a factor of 0 or 5000, a bad mode, an option the verb does not take,
#     key: without a policy, ...) exit 2 and leave the table, the state
#     file and the audit file as they were; an unwritable state file or
#     audit file exits 3 and changes nothing either;
#   - N changes are exactly N audit lines, N `audit` entries, and N
#     syslog lines (event=override, facility authpriv), from processes
#     making changes at once too;
#   - the state file outlives the table: after rm /dev/shm/<zone>.overrides
#     the next open brings every entry back; a damaged state file is an
#     error naming file:line.
source "$(dirname "$0")/lib.sh"

CTL="$BUILD/ctl/ratelimit2ctl"
Z=$(zone_name ovr)
SHM="/dev/shm${Z}.overrides"
D="$T_DIR/state"
STATE="$D/ovr.overrides"
AUDIT="$D/ovr.audit"
LOG="$T_DIR/log"
mkdir -p "$D"

# lib.sh removes the zone's other companions; the table is removed here.
trap 'rm -f "$SHM"; [ -n "${LISTENER:-}" ] && kill "$LISTENER" 2>/dev/null; rl2_cleanup' EXIT

POLICY="$T_DIR/policy.conf"
cat >"$POLICY" <<CONF
hash_secret = "t-overrides";
api_key = { header = "X-API-Key"; };
tiers = [ "free", "pro" ];
default_tier = "free";
alerts = { socket = "$LOG"; };
rules = (
    { name = "login"; methods = "POST"; paths = [ "/login" ];
      limits = ( { rate = "5/min"; } ); }
);
default = { key = "ip"; limits = ( { rate = "600/min"; } ); };
CONF
C=("$CTL" -c "$POLICY" -z "$Z" --state "$STATE" --audit "$AUDIT")

# ---- a stand-in for /dev/log: one line per datagram in $T_DIR/syslog ----
python3 - "$LOG" "$T_DIR/syslog" <<'PY' &
import os, socket, sys
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path + ".new")
os.rename(path + ".new", path)  # appears only once it is bound
with open(out, "a") as f:
    while True:
        f.write(s.recv(4096).decode("utf-8", "replace") + "\n")
        f.flush()
PY
LISTENER=$!
for _ in $(seq 100); do [ -S "$LOG" ] && break; sleep 0.1; done
[ -S "$LOG" ] && ok "a syslog stand-in listens" \
    || not_ok "a syslog stand-in listens"

# changes -- how many changes were made so far (the audit must agree).
N=0
change() {
    local what=$1 out rc
    shift
    out=$("${C[@]}" "$@" 2>&1)
    rc=$?
    if [ "$rc" -eq 0 ]; then
        ok "$what"
        N=$((N + 1))
    else
        not_ok "$what"
        echo "#   $out"
    fi
}

# listed KIND TARGET -- the text line of that entry in `overrides`.
listed() {
    "${C[@]}" overrides | awk -v k="$1" -v t="$2" '$1 == k && $2 == t'
}

audit_lines() {
    if [ -f "$AUDIT" ]; then wc -l <"$AUDIT"; else echo 0; fi
}

syslog_lines() {
    grep -c 'ratelimit2: event=override ' "$T_DIR/syslog" 2>/dev/null \
        || true
}

# ---- a fresh table ----
out=$("${C[@]}" overrides)
is "overrides on a new table: nothing set" "no override is set" "$out"
[ -f "$SHM" ] && ok "ratelimit2ctl made the table $SHM" \
    || not_ok "ratelimit2ctl made the table $SHM"
is "the table is the user's alone (0600)" 600 "$(stat -c %a "$SHM")"
is "nothing changed, nothing recorded" 0 "$(audit_lines)"

# ---- ban, list with time left, unban ----
change "ban a network for an hour" \
    ban 203.0.113.77/24 --ttl 1h --reason "INC-1 scraping"
like "overrides lists the ban, host bits cleared, with its time left" \
    '^ban +203\.0\.113\.0/24 +banned +(1h00m|59m[0-5][0-9]s) +20[0-9-]+T[0-9:.]+Z +[^ ]+ +INC-1 scraping$' \
    "$(listed ban 203.0.113.0/24)"
left=$("${C[@]}" overrides --json | python3 -c '
import json, sys
e = [o for o in json.load(sys.stdin) if o["target"] == "203.0.113.0/24"]
print(e[0]["seconds_left"], e[0]["value"], e[0]["reason"])')
like "overrides --json: the ban, with 3,600 seconds left or just under" \
    '^(3600|35[0-9][0-9]) banned INC-1 scraping$' "$left"
grep -q "^ban	203.0.113.0/24	" "$STATE" \
    && ok "the ban is in the state file" \
    || not_ok "the ban is in the state file"
is "the state file is not for others (0640)" 640 "$(stat -c %a "$STATE")"

change "ban an address for one second" ban 198.51.100.1 --ttl 1s
like "overrides lists it" '^ban +198\.51\.100\.1 +banned +1s ' \
    "$(listed ban 198.51.100.1)"
sleep 1.2
is "a second later it is gone, with no other change" "" \
    "$(listed ban 198.51.100.1)"

change "unban the network" unban 203.0.113.0/24 --reason "INC-1 closed"
is "overrides no longer lists it" "" "$(listed ban 203.0.113.0/24)"
before=$(audit_lines)
out=$("${C[@]}" unban 203.0.113.0/24 2>&1)
is "unban of what is not banned: exit 0" 0 "$?"
like "... says nothing changed" 'nothing changed' "$out"
is "... and records nothing" "$before" "$(audit_lines)"

# ---- one of each kind ----
change "ban a user" ban user:mallory
change "ban an API key (kept as its hash)" ban key:sk_live_123 --ttl 2h
hash=$("${C[@]}" overrides | awk '$1 == "ban" && $2 ~ /^key#/ { print $2 }')
like "the key is listed as key#HASH, never as written" '^key#[0-9a-f]{16}$' \
    "$hash"
grep -q sk_live_123 "$STATE" "$AUDIT" \
    && not_ok "the key itself is in no file" \
    || ok "the key itself is in no file"
change "allow a partner for a week" allow 192.0.2.10 --ttl 7d
change "tier a customer" tier user:bigco pro --ttl 30min
change "boost the login rule x2.5" boost rule:login 2.5 --ttl 2h
change "boost every limit x0.5" boost '*' 0.5
change "run login in dry run for 10 minutes" mode login dry_run --ttl 10min
change "the emergency switch, allow-list only" \
    emergency on --allow-list-only --ttl 1h --reason "attack"
is "overrides lists the eight" 8 \
    "$("${C[@]}" overrides --json | python3 -c \
        'import json, sys; print(len(json.load(sys.stdin)))')"
like "the tier, boosts, mode and switch as set" \
    'boost +\* +x0\.5 .*boost +rule:login +x2\.5 .*mode +rule:login +dry_run .*emergency +\* +allow-list-only' \
    "$("${C[@]}" overrides | tr '\n' ' ')"
change "emergency on x0.5 replaces allow-list only" \
    emergency on --factor 0.5
change "unban the key by its listed hash" unban "$hash"
change "mode login --clear" mode login --clear
change "emergency off" emergency off

# ---- bad inputs: exit 2, nothing changed ----
snapshot() {
    printf '%s|%s|%s' "$(md5sum <"$STATE")" "$(md5sum <"$AUDIT")" \
        "$("${C[@]}" overrides | awk '{ $4 = ""; $5 = ""; print }')"
}
snap=$(snapshot)
bad() {
    local what=$1 out rc
    shift
    out=$("$@" 2>&1)
    rc=$?
    is "$what: exit 2" 2 "$rc"
    [ "$rc" -ne 0 ] && printf '%s\n' "$out" | head -1 | sed 's/^/#   /'
}
bad "a network with /33" "${C[@]}" ban 192.0.2.0/33
bad "no address at all" "${C[@]}" ban example.com
bad "an unknown rule" "${C[@]}" boost rule:nope 2
bad "an unknown rule for mode" "${C[@]}" mode nope enforce
bad "an unknown tier" "${C[@]}" tier 192.0.2.1 gold
bad "a target tier does not take" "${C[@]}" tier rule:login pro
bad "a bad duration" "${C[@]}" ban 192.0.2.1 --ttl 5y
bad "a duration without a unit" "${C[@]}" ban 192.0.2.1 --ttl 10
bad "a duration of 0s" "${C[@]}" ban 192.0.2.1 --ttl 0s
bad "a factor of 0" "${C[@]}" boost rule:login 0
bad "a factor of 5000" "${C[@]}" boost rule:login 5000
bad "emergency on --factor 0" "${C[@]}" emergency on --factor 0
bad "emergency on without a factor" "${C[@]}" emergency on
bad "a mode that is not one" "${C[@]}" mode login fast
bad "--ttl to unban" "${C[@]}" unban 192.0.2.1 --ttl 1h
bad "--factor to ban" "${C[@]}" ban 192.0.2.1 --factor 2
bad "a reason with a newline" "${C[@]}" ban 192.0.2.1 --reason "$(printf 'a\nb')"
bad "a reason too long" "${C[@]}" ban 192.0.2.1 \
    --reason "$(printf '%0200d' 0)"
bad "key: without a policy" "$CTL" -c "$T_DIR/none.conf" -z "$Z" \
    --state "$STATE" --audit "$AUDIT" ban key:sk_live_123
bad "a missing target" "${C[@]}" ban
is "after every bad input: the table, state file and audit file as they were" \
    "$snap" "$(snapshot)"

# ---- files that cannot be written: exit 3, nothing changed ----
out=$("$CTL" -c "$POLICY" -z "$Z" --state "$T_DIR/missing/st" \
    --audit "$AUDIT" ban 192.0.2.99 2>&1)
is "a state file in a missing folder: exit 3" 3 "$?"
like "... naming the file" 'missing/st' "$out"
out=$("$CTL" -c "$POLICY" -z "$Z" --state "$STATE" \
    --audit "$T_DIR/missing/au" ban 192.0.2.99 2>&1)
is "an audit file in a missing folder: exit 3" 3 "$?"
like "... naming the file" 'missing/au' "$out"
is "after both: nothing changed" "$snap" "$(snapshot)"

# ---- N changes, N lines ----
pids=()
for i in $(seq 1 10); do
    "${C[@]}" ban "198.51.100.$((100 + i))" --reason "parallel $i" \
        >/dev/null &
    pids+=($!)
done
wait "${pids[@]}" # not the syslog stand-in
N=$((N + 10))
is "ten bans at once are all in the table" 10 \
    "$("${C[@]}" overrides | grep -c ' parallel ')"
is "N changes: N lines in the audit file" "$N" "$(audit_lines)"
out=$("${C[@]}" audit --json)
is "audit reads every line" 0 "$?"
is "audit --json: N entries" "$N" \
    "$(printf '%s' "$out" | python3 -c \
        'import json, sys; print(len(json.load(sys.stdin)))')"
is "audit (text): N lines" "$N" "$("${C[@]}" audit | wc -l)"
like "audit: the ban, author and origin, before and after" \
    ' [^ ]+ \(ctl\) ban 203\.0\.113\.0/24: - -> banned until [0-9T:.Z-]+ "INC-1 scraping"' \
    "$("${C[@]}" audit)"
like "audit: the unban, with what it removed" \
    '\(ctl\) unban 203\.0\.113\.0/24: banned until [0-9T:.Z-]+ -> - "INC-1 closed"' \
    "$("${C[@]}" audit)"
like "audit: emergency on, from allow-list only to x0.5" \
    '\(ctl\) emergency-on \*: allow-list-only until [0-9T:.Z-]+ -> x0\.5$' \
    "$("${C[@]}" audit)"
sleep 1.1
"${C[@]}" ban 192.0.2.77 >/dev/null
N=$((N + 1))
is "audit --since 1s: the last change only" 1 \
    "$("${C[@]}" audit --since 1s | wc -l)"
for _ in $(seq 50); do
    [ "$(syslog_lines)" -ge "$N" ] && break
    sleep 0.1
done
is "N changes: N syslog lines" "$N" "$(syslog_lines)"
like "a syslog line: authpriv.notice, the target first" \
    '^<85>.* ratelimit2\[[0-9]+\]: ratelimit2: event=override target=203\.0\.113\.0/24 kind=ban verb=ban origin=ctl author=[^ ]+ before=- after=banned expires=[0-9T:.Z-]+ reason="INC-1 scraping"$' \
    "$(grep 'verb=ban .*INC-1' "$T_DIR/syslog")"

# A torn last line (a writer stopped half-way) is left out; damage in
# the middle is an error naming the line.
cp "$AUDIT" "$T_DIR/audit.bak"
printf '{"time":"2026-' >>"$AUDIT"
is "a torn last line: audit still reads N entries" "$N" \
    "$("${C[@]}" audit | wc -l)"
printf '\n' >>"$AUDIT"
out=$("${C[@]}" audit 2>&1)
is "a damaged line: exit 3" 3 "$?"
like "... naming file:line" "$AUDIT:$((N + 1)): " "$out"
cp "$T_DIR/audit.bak" "$AUDIT"

# ---- the state file outlives the table ----
list_now() {
    "${C[@]}" overrides --json | python3 -c '
import json, sys
for o in json.load(sys.stdin):
    print(o["kind"], o["target"], o["value"], o["expires"], o["reason"])'
}
kept=$(list_now)
rm -f "$SHM"
[ -e "$SHM" ] && not_ok "the table is removed" || ok "the table is removed"
is "the next open brings every entry back from the state file" "$kept" \
    "$(list_now)"
is "... $(printf '%s\n' "$kept" | wc -l) of them" \
    "$(printf '%s\n' "$kept" | wc -l)" "$(list_now | wc -l)"
[ "$(printf '%s\n' "$kept" | wc -l)" -ge 15 ] \
    && ok "(at least 15 entries)" || not_ok "(at least 15 entries)"

cp "$STATE" "$T_DIR/state.bak"
printf 'ban\t192.0.2.0/8\t-\t0\t0\troot\t\n' >>"$STATE"
rm -f "$SHM"
out=$("${C[@]}" overrides 2>&1)
is "a damaged state file: exit 3" 3 "$?"
like "... naming file:line" \
    "$STATE:$(wc -l <"$STATE"): not an override this version reads" "$out"
cp "$T_DIR/state.bak" "$STATE"
rm -f "$SHM"
is "with the file repaired, every entry is back" "$kept" "$(list_now)"

out=$("$CTL" --help)
like "--help describes the verbs" 'ban TARGET .*--ttl D.*--state FILE' \
    "$(printf '%s' "$out" | tr '\n' ' ')"
done_testing
