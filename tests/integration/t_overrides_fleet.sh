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
#   - the audit file has one entry per change made (three).
. "$(dirname "$0")/fcgi_lib.sh"

CTL="$BUILD/ctl/ratelimit2ctl"

redis_start_first

# policy NAME -- the policy of server NAME: the same limits and Redis for
# every server, only the state file is the server's own.
policy() {
    cat >"$T_DIR/$1.conf" <<POL
redis = { server = "127.0.0.1:$RP"; timeout = 300; };
overrides = { state_file = "$T_DIR/$1.overrides"; };
rules = (
  { name = "site"; paths = "/**"; limits = ( { rate = "100000/hour"; } ); }
);
POL
}

# ---- two Apaches ----
URLS=()
NAMES=()
for a in ap1 ap2; do
    policy "$a"
    port=$(free_port)
    apache_conf "$T_DIR/$a" "$port" event
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
    URLS+=("http://127.0.0.1:$port/index.html")
    NAMES+=("$a")
done

# ---- lighttpd with ratelimit2-fcgi ----
policy lt
L=$T_DIR/lt
PL=$(free_port)
mkdir -p "$L/htdocs"
echo ok >"$L/htdocs/index.html"
chmod -R 755 "$L"
lighttpd_authorizer_conf "$L" "$PL" 1 '"mod_fastcgi"' \
    "-c $T_DIR/lt.conf -z $(zone_name lt) -t 4"
if ! lighttpd_start "$L"; then
    not_ok "lighttpd starts with ratelimit2-fcgi"
    done_testing
    exit 1
fi
ok "lighttpd starts with ratelimit2-fcgi (its own zone and state file)"
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
    --state "$T_DIR/ctl.overrides" --audit "$AUDIT")
N=0

# change WHAT ARGS... -- one change through ratelimit2ctl; T0 its start.
change() {
    local what=$1 out
    shift
    T0=$(date +%s%N)
    if out=$("${C[@]}" "$@" 2>&1); then
        ok "$what"
        N=$((N + 1))
    else
        not_ok "$what"
        printf '%s\n' "$out" | sed 's/^/#   /'
    fi
}

# propagates WHAT CODE -- a test: from T0, each server answers CODE;
# every 100 ms each server not there yet is asked again, for 3 s at
# most.  The time each took is printed; more than 2 s is a failure.
propagates() {
    local what=$1 want=$2 i ms worst=0 all="" slow="" left
    local -a at=()
    for i in "${!URLS[@]}"; do at[i]=-1; done
    for _ in $(seq 1 30); do
        left=0
        for i in "${!URLS[@]}"; do
            [ "${at[$i]}" -ge 0 ] && continue
            if [ "$(code "${URLS[$i]}")" = "$want" ]; then
                at[i]=$((($(date +%s%N) - T0) / 1000000))
            else
                left=1
            fi
        done
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    for i in "${!URLS[@]}"; do
        ms=${at[$i]}
        all="$all ${NAMES[$i]}=${ms}ms"
        if [ "$ms" -lt 0 ] || [ "$ms" -gt 2000 ]; then
            slow="$slow ${NAMES[$i]}"
        fi
        [ "$ms" -gt "$worst" ] && worst=$ms
    done
    echo "# $what:$all"
    if [ -z "$slow" ]; then
        ok "$what: all three answer $want within 2 s (slowest ${worst} ms)"
    else
        not_ok "$what: all three answer $want within 2 s (late:$slow)"
    fi
}

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

# ---- the audit ----
is "the audit file has one line per change ($N)" "$N" \
    "$(wc -l <"$AUDIT" 2>/dev/null || echo 0)"
is "ratelimit2ctl audit lists $N entries" "$N" \
    "$("${C[@]}" audit --json | python3 -c \
        'import json, sys; print(len(json.load(sys.stdin)))')"

for a in ap1 ap2; do
    apache_stop "$T_DIR/$a"
done
lighttpd_stop "$L"
done_testing
