#!/bin/bash
# t_doctor.sh -- ratelimit2ctl doctor: a clean site (Apache with
# mod_ratelimit2, a policy without trusted proxies, a zone with room, a
# redis-server with maxmemory-policy noeviction) has no warning and no
# error, and each planted fault is reported with its fix: mod_remoteip
# missing behind a proxy, mod_remoteip reading another header, mod_evasive
# loaded, Redis unreachable (an error: exit 1), maxmemory-policy
# allkeys-lru, a zone smaller than the clients seen.  Two Apaches run
# (the second with a 64-entry zone that more clients than that went
# through); the other Apache configurations are only read (apache2 -M).
source "$(dirname "$0")/lib.sh"

CTL="$BUILD/ctl/ratelimit2ctl"

redis_start_first
redis-cli -p "$RP" config set maxmemory-policy noeviction >/dev/null

cat >"$T_DIR/clean.conf" <<'CONF'
rules = (
    { name = "site"; paths = [ "/**" ]; key = "ip";
      limits = ( { rate = "1000/min"; algorithm = "sliding_window"; } ); }
);
CONF
{ echo 'trusted_proxies = [ "127.0.0.1", "10.0.0.0/8" ];'
  cat "$T_DIR/clean.conf"; } >"$T_DIR/proxy.conf"

# site DIR ZONE_ENTRIES POLICY -- an Apache config with mod_ratelimit2.
site() {
    apache_conf "$1" "$(free_port)" event
    cat >"$1/site.conf" <<CONF
RateLimit2Zone $(zone_name "$(basename "$1")") $2
RateLimit2Policy $3
CONF
}

# doctor ARGS... -- its output in $out, its exit status in $rc.
doctor() {
    out=$(env $(rl2_apache_env) "$CTL" doctor "$@" 2>&1)
    rc=$?
}

# doctor_clean ARGS... -- doctor, again (3 times at most) while the one
# thing wrong is a round trip to Redis over 1 ms: a loopback PING takes
# that long only when the machine is busy with other suites.
doctor_clean() {
    local i
    for i in 1 2 3; do
        doctor "$@"
        printf '%s\n' "$out" | grep -q 'every request waits that long' \
            || return 0
    done
}

# finding LEVEL AREA TEXT -- did the last doctor print such a line?
finding() {
    printf '%s\n' "$out" | grep "^$1 *$2 " | grep -qF -- "$3"
}

# report WHAT LEVEL AREA TEXT
report() {
    if finding "$2" "$3" "$4"; then
        ok "$1"
    else
        not_ok "$1"
        printf '%s\n' "$out" | sed 's/^/# /'
    fi
}

site "$T_DIR/a" 10000 "$T_DIR/clean.conf"
ZONE_A=$(sed -n 's/^RateLimit2Zone \([^ ]*\) .*/\1/p' "$T_DIR/a/site.conf")
apache_start "$T_DIR/a" || { not_ok "apache starts"; done_testing; exit 1; }
PORT_A=$(sed -n 's/^Listen 127.0.0.1:\([0-9]*\)$/\1/p' "$T_DIR/a/httpd.conf")
is "a request goes through the clean site" 200 \
    "$(code "http://127.0.0.1:$PORT_A/")"

# ---- the command line ----

out=$("$CTL" doctor extra 2>&1)
is "doctor takes no argument: exit 2" 2 "$?"
out=$("$CTL" status 127.0.0.1 --apache-config "$T_DIR/a/httpd.conf" 2>&1)
is "--apache-config is doctor's alone: exit 2" 2 "$?"

# ---- a clean site ----

CLEAN=(-c "$T_DIR/clean.conf" -z "$ZONE_A" -R "127.0.0.1:$RP"
       --apache-config "$T_DIR/a/httpd.conf")
doctor_clean "${CLEAN[@]}"
is "clean: exit 0" 0 "$rc"
if printf '%s\n' "$out" | grep -qE '^(warning|error) '; then
    not_ok "clean: no warning, no error"
    printf '%s\n' "$out" | sed 's/^/# /'
else
    ok "clean: no warning, no error"
fi
report "clean: the MPM and mod_ratelimit2 are named" ok apache \
    "MPM event, mod_ratelimit2 loaded"
report "clean: the policy loads, with its summary" ok policy \
    "loads: 1 rules, 0 tiers, 0 trusted proxies"
report "clean: the zone has room" ok zone "of 10000 entries used"
report "clean: Redis' version" ok redis "is Redis "
report "clean: functions allowed" ok redis "allows functions"
report "clean: the round trip" ok redis "median of 5 PINGs"
report "clean: maxmemory-policy noeviction" ok redis \
    "maxmemory-policy noeviction"

n_ok=$(printf '%s\n' "$out" | grep -c '^ok ')
doctor_clean "${CLEAN[@]}" --json
is "--json: exit 0" 0 "$rc"
n=$(printf '%s' "$out" | python3 -c '
import json, sys
a = json.load(sys.stdin)
assert all(set(f) == {"area", "level", "message", "fix"} for f in a)
print(sum(1 for f in a if f["level"] == "ok"), len(a))' 2>&1)
is "--json: an array of {area, level, message, fix}, the same findings" \
    "$n_ok $n_ok" "$n"

printf 'rules = (\n  { name = "x"; paths = [ "/**" ]; key = "nowhere"; }\n);\n' \
    >"$T_DIR/broken.conf"
doctor -c "$T_DIR/broken.conf" -z "$ZONE_A" \
    --apache-config "$T_DIR/a/httpd.conf"
is "a policy that does not load: exit 1" 1 "$rc"
report "... the error is FILE:LINE: message" error policy \
    "$T_DIR/broken.conf:2"

# A finding quotes a file name that is not UTF-8 (a Latin-1 byte):
# --json stays UTF-8, the byte written as the text \xHH.
msg=$("$CTL" -c "$T_DIR/caf"$'\xe9'".conf" -z "$ZONE_A" doctor --json \
    --apache-config "$T_DIR/a/httpd.conf" 2>/dev/null | python3 -c '
import json, sys
a = json.loads(sys.stdin.buffer.read().decode("utf-8", "strict"))
print([f["message"] for f in a if f["area"] == "policy"][0])' 2>&1)
like "--json: a byte of no UTF-8 sequence as \\xHH" 'caf\\xe9\.conf: ' "$msg"

# ---- Apache: mod_remoteip, other limiters ----

doctor -c "$T_DIR/proxy.conf" -z "$ZONE_A" \
    --apache-config "$T_DIR/a/httpd.conf"
is "behind a proxy without mod_remoteip: exit 0 (a warning)" 0 "$rc"
report "... the warning names the missing mod_remoteip" warning apache \
    "trusts proxies (trusted_proxies) but Apache does not load mod_remoteip"
report "... with the fix and the policy's proxies" warning apache \
    "fix: a2enmod remoteip, with RemoteIPHeader X-Forwarded-For and RemoteIPTrustedProxy 127.0.0.1 10.0.0.0/8"

mkdir -p "$T_DIR/r"
sed "s|^Include .*|LoadModule remoteip_module $APACHE_MODDIR/mod_remoteip.so\\
RemoteIPHeader X-Real-IP\\
RemoteIPInternalProxy 127.0.0.1\\
&|" "$T_DIR/a/httpd.conf" >"$T_DIR/r/httpd.conf"
doctor -c "$T_DIR/proxy.conf" -z "$ZONE_A" \
    --apache-config "$T_DIR/r/httpd.conf"
report "mod_remoteip reading X-Real-IP: the header mismatch" warning apache \
    "mod_remoteip trusts X-Real-IP, the policy's trusted_proxies"

# A control byte in a value doctor prints (a directive's argument, a
# Redis reply, a file name) reaches the terminal escaped, never raw.
esc=$(printf '\033')
sed "s|^RemoteIPHeader .*|RemoteIPHeader X-Real-IP${esc}[2J|" \
    "$T_DIR/r/httpd.conf" >"$T_DIR/r/esc.conf"
doctor -c "$T_DIR/proxy.conf" -z "$ZONE_A" \
    --apache-config "$T_DIR/r/esc.conf"
report "a control byte in RemoteIPHeader: printed escaped" warning apache \
    'mod_remoteip trusts X-Real-IP\x1b[2J, the policy'"'"'s trusted_proxies'
is "... and no raw control byte in the output" 0 \
    "$(printf '%s' "$out" | tr -d '\n' | LC_ALL=C grep -c '[[:cntrl:]]')"

sed "s|^Include .*|LoadModule evasive20_module $APACHE_MODDIR/mod_evasive20.so\\
&|" "$T_DIR/a/httpd.conf" >"$T_DIR/r/evasive.conf"
doctor -c "$T_DIR/clean.conf" -z "$ZONE_A" \
    --apache-config "$T_DIR/r/evasive.conf"
report "mod_evasive loaded: the warning" warning apache \
    "mod_evasive (evasive20_module) is loaded"
report "... with its fix" warning apache "fix: a2dismod evasive"

# ---- Redis ----

DEAD=$(free_port)
doctor -c "$T_DIR/clean.conf" -z "$ZONE_A" -R "127.0.0.1:$DEAD" \
    --apache-config "$T_DIR/a/httpd.conf"
is "Redis unreachable: exit 1" 1 "$rc"
report "... the error names the address and why" error redis \
    "127.0.0.1:$DEAD unreachable: Connection refused"

# An ACL user without functions: the store's fallback, a warning; and
# without scripts as well: an error.
redis-cli -p "$RP" acl setuser nofn on '>pw' '~*' '&*' +@all -function \
    -fcall -fcall_ro >/dev/null
redis-cli -p "$RP" acl setuser noscript on '>pw' '~*' '&*' +@all -function \
    -fcall -fcall_ro -eval -evalsha -eval_ro -evalsha_ro -script >/dev/null
doctor "${CLEAN[@]}" -O user=nofn,password=pw
is "functions refused by an ACL: exit 0 (a warning)" 0 "$rc"
report "... the store falls back to scripts" warning redis \
    "refuses functions (NOPERM"
doctor "${CLEAN[@]}" -O user=noscript,password=pw
is "functions and scripts refused: exit 1" 1 "$rc"
report "... the store cannot count" error redis \
    "the store cannot count anything there"

redis-cli -p "$RP" config set maxmemory-policy allkeys-lru >/dev/null
doctor "${CLEAN[@]}"
is "allkeys-lru: exit 0 (a warning)" 0 "$rc"
report "... the warning says why" warning redis \
    "maxmemory-policy allkeys-lru (maxmemory 0: none yet"
report "... with the fix" warning redis \
    "fix: CONFIG SET maxmemory-policy volatile-ttl"
redis-cli -p "$RP" config set maxmemory-policy noeviction >/dev/null

# ---- a zone smaller than the clients seen ----

site "$T_DIR/b" 64 "$T_DIR/proxy.conf"
ZONE_B=$(sed -n 's/^RateLimit2Zone \([^ ]*\) .*/\1/p' "$T_DIR/b/site.conf")
apache_start "$T_DIR/b" || { not_ok "apache starts"; done_testing; exit 1; }
PORT_B=$(sed -n 's/^Listen 127.0.0.1:\([0-9]*\)$/\1/p' "$T_DIR/b/httpd.conf")
args=()
for i in $(seq 1 100); do
    [ "$i" -gt 1 ] && args+=(--next)
    args+=(-s -o /dev/null -w '%{http_code}\n'
           -H "X-Forwarded-For: 198.51.100.$i" "http://127.0.0.1:$PORT_B/")
done
codes=$(curl "${args[@]}" | sort | uniq -c | tr -s ' ')
is "100 clients through the trusted proxy, all admitted" " 100 200" "$codes"
doctor -c "$T_DIR/proxy.conf" -z "$ZONE_B" \
    --apache-config "$T_DIR/b/httpd.conf"
report "64 entries, 100 clients: a zone smaller than the clients seen" \
    warning zone "a zone smaller than the clients seen"
report "... with the fix: twice the keys seen" warning zone \
    "fix: RateLimit2Zone $ZONE_B "

done_testing
