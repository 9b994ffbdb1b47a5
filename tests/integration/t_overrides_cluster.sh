#!/bin/bash
# t_overrides_cluster.sh -- the fleet's runtime override table in a Redis
# Cluster of three masters: two Apaches (event MPM) and lighttpd with
# ratelimit2-fcgi, each with its own zone and state file, sharing only
# the cluster, follow ratelimit2ctl -R cluster:...  The hash
# {rl2:overrides} and its counters live in one slot, on one master; the
# seed named first is another, so every client is sent on (-MOVED):
#   - a ban with --ttl 3s: all three refuse 127.0.0.1 within about a
#     second; once the ttl is up all three serve it again, with no other
#     command;
#   - the slot moved to another master (-MOVED from the old one): a ban
#     reaches all three within about a second and is in the hash on its
#     new master, and its unban too.
. "$(dirname "$0")/fcgi_lib.sh"

CTL="$BUILD/ctl/ratelimit2ctl"
CDIR=$T_DIR/cluster
PORTS=()

# cnode N -- cluster node N on ${PORTS[N]}, its bus on a port of its own,
# files in $CDIR/N.
cnode() {
    local n=$1 port=${PORTS[$1]}
    mkdir -p "$CDIR/$n"
    redis-server --port "$port" --cluster-port "$(free_port)" \
        --bind 127.0.0.1 --cluster-enabled yes \
        --cluster-config-file nodes.conf --save '' --appendonly no \
        --dir "$CDIR/$n" --daemonize yes --pidfile "$CDIR/$n/redis.pid" \
        --logfile "$CDIR/$n/redis.log" >/dev/null
    RL2_PIDFILES+=("$CDIR/$n/redis.pid")
    for _ in $(seq 1 100); do
        redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.05
    done
    return 1
}

for n in 0 1 2; do
    PORTS[$n]=$(free_port)
    cnode "$n" || { not_ok "cluster node $n starts"; done_testing; exit 1; }
done
redis-cli --cluster create "127.0.0.1:${PORTS[0]}" "127.0.0.1:${PORTS[1]}" \
    "127.0.0.1:${PORTS[2]}" --cluster-replicas 0 --cluster-yes \
    >"$CDIR/create.log" 2>&1
formed=0
for _ in $(seq 1 300); do
    formed=1
    for p in "${PORTS[@]}"; do
        redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' \
            || formed=0
    done
    [ "$formed" = 1 ] && break
    sleep 0.1
done
is "three masters form a cluster" 1 "$formed"
[ "$formed" = 1 ] || { cat "$CDIR/create.log"; done_testing; exit 1; }

HASH='{rl2:overrides}'
SLOT=$(redis-cli -p "${PORTS[0]}" cluster keyslot "$HASH")

# owner -- the port of the master that serves $SLOT.
owner() {
    redis-cli -p "${PORTS[0]}" cluster nodes | awk -v s="$SLOT" '
        $3 ~ /master/ {
            for (i = 9; i <= NF; i++) {
                n = split($i, r, "-")
                if (r[1] !~ /^[0-9]+$/) continue
                hi = (n == 2) ? r[2] : r[1]
                if (s + 0 >= r[1] + 0 && s + 0 <= hi + 0) {
                    split($2, a, "[:@]")
                    print a[2]
                }
            }
        }'
}

# not_port PORT -- a master other than PORT.
not_port() {
    local p
    for p in "${PORTS[@]}"; do
        [ "$p" != "$1" ] && { echo "$p"; return; }
    done
}

OWNER=$(owner)
# The first seed does not hold the hash: the first command for it is
# answered -MOVED (or the slot map read from the seed sends it on).
FIRST=$(not_port "$OWNER")
SEEDS="127.0.0.1:$FIRST"
for p in "${PORTS[@]}"; do
    [ "$p" != "$FIRST" ] && SEEDS="$SEEDS,127.0.0.1:$p"
done
echo "# $HASH in slot $SLOT on $OWNER; seeds $SEEDS"

# policy NAME -- server NAME's policy: the same Redis Cluster, its own
# state file.
policy() {
    cat >"$T_DIR/$1.conf" <<POL
redis = { server = "cluster:$SEEDS"; timeout = 500; };
overrides = { state_file = "$T_DIR/$1.overrides"; };
rules = (
  { name = "site"; paths = "/**"; limits = ( { rate = "100000/hour"; } ); }
);
POL
}

BASES=()
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
        not_ok "Apache $a starts with the cluster"
        done_testing
        exit 1
    fi
    BASES+=("http://127.0.0.1:$port")
    NAMES+=("$a")
done
ok "two Apaches start, counting in the cluster"

policy lt
L=$T_DIR/lt
PL=$(free_port)
mkdir -p "$L/htdocs"
echo ok >"$L/htdocs/index.html"
chmod -R 755 "$L"
lighttpd_authorizer_conf "$L" "$PL" 1 '"mod_fastcgi"' \
    "-c $T_DIR/lt.conf -z $(zone_name lt) -t 4"
if ! lighttpd_start "$L"; then
    not_ok "lighttpd starts with ratelimit2-fcgi on the cluster"
    done_testing
    exit 1
fi
ok "lighttpd starts with ratelimit2-fcgi on the cluster"
BASES+=("http://127.0.0.1:$PL")
NAMES+=("lighttpd")

all_codes() {
    local b out=""
    for b in "${BASES[@]}"; do
        out="$out $(code "$b/index.html")"
    done
    echo "${out# }"
}
for _ in $(seq 1 50); do
    [ "$(all_codes)" = "200 200 200" ] && break
    sleep 0.1
done
is "before any override, all three serve 127.0.0.1" "200 200 200" \
    "$(all_codes)"

policy ctl
C=("$CTL" -c "$T_DIR/ctl.conf" -R "cluster:$SEEDS" -z "$(zone_name ctl)"
    --state "$T_DIR/ctl.overrides" --audit "$T_DIR/ctl.audit")

# change WHAT ARGS... -- one change through ratelimit2ctl; T0 its start.
change() {
    local what=$1 out
    shift
    T0=$(date +%s%N)
    if out=$("${C[@]}" "$@" 2>&1); then
        ok "$what"
    else
        not_ok "$what"
        printf '%s\n' "$out" | sed 's/^/#   /'
    fi
}

# propagates WHAT CODE -- a test: from T0, each server answers CODE;
# each server not there yet is asked again every 100 ms, for 3 s at
# most.  A host mirrors the hash at most once a second, on a request:
# more than 2 s (a second, and as much again for a loaded machine) fails.
propagates() {
    local what=$1 want=$2 i ms worst=0 all="" slow="" left
    local -a at=()
    for i in "${!BASES[@]}"; do at[i]=-1; done
    for _ in $(seq 1 30); do
        left=0
        for i in "${!BASES[@]}"; do
            [ "${at[$i]}" -ge 0 ] && continue
            if [ "$(code "${BASES[$i]}/index.html")" = "$want" ]; then
                at[i]=$((($(date +%s%N) - T0) / 1000000))
            else
                left=1
            fi
        done
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    for i in "${!BASES[@]}"; do
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

# in_hash PORT -- 1 when the master on PORT holds the ban of 127.0.0.1.
in_hash() {
    redis-cli -p "$1" hexists "$HASH" "$(printf 'ban\t127.0.0.1')"
}

# ---- a ban with --ttl 3s, and its end ----
change "ratelimit2ctl -R cluster:... bans 127.0.0.1 --ttl 3s" \
    ban 127.0.0.1 --ttl 3s --reason "cluster test"
T_BAN=$T0
propagates "the ban" 429
is "the ban is in the hash, on the slot's master" 1 "$(in_hash "$OWNER")"
T0=$((T_BAN + 3000000000))
sleep "$(awk -v t="$T0" -v n="$(date +%s%N)" \
    'BEGIN { s = (t - n) / 1e9; print (s > 0 ? s : 0) }')"
propagates "the ban's end (from its ttl)" 200

# ---- the slot moved: -MOVED from its old master ----
NEW=$(not_port "$OWNER")
id_new=$(redis-cli -p "$NEW" cluster myid)
id_old=$(redis-cli -p "$OWNER" cluster myid)
redis-cli -p "$NEW" cluster setslot "$SLOT" importing "$id_old" >/dev/null
redis-cli -p "$OWNER" cluster setslot "$SLOT" migrating "$id_new" >/dev/null
for k in $(redis-cli -p "$OWNER" cluster getkeysinslot "$SLOT" 100); do
    redis-cli -p "$OWNER" migrate 127.0.0.1 "$NEW" "$k" 0 5000 >/dev/null
done
for p in "$NEW" "$OWNER" "${PORTS[@]}"; do
    redis-cli -p "$p" cluster setslot "$SLOT" node "$id_new" >/dev/null
done
is "the slot of $HASH is now served by another master" "$NEW" "$(owner)"
change "a second ban, the slot moved" ban 127.0.0.1 --reason "cluster test 2"
propagates "the second ban" 429
is "the second ban is in the hash on the slot's new master" 1 \
    "$(in_hash "$NEW")"
change "unban 127.0.0.1" unban 127.0.0.1 --reason "cluster test done"
propagates "the unban" 200
is "the hash no longer holds it" 0 "$(in_hash "$NEW")"

for a in ap1 ap2; do
    apache_stop "$T_DIR/$a"
done
lighttpd_stop "$L"
done_testing
