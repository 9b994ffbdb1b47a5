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
. "$(dirname "$0")/fleet_lib.sh"

CTL="$BUILD/ctl/ratelimit2ctl"
redis_cluster_first

HASH='{rl2:overrides}'
SLOT=$(redis-cli -p "${PORTS[0]}" cluster keyslot "$HASH")

# not_port PORT -- a master other than PORT.
not_port() {
    local p
    for p in "${PORTS[@]}"; do
        [ "$p" != "$1" ] && { echo "$p"; return; }
    done
}

OWNER=$(owner "$SLOT")
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
is "the slot of $HASH is now served by another master" "$NEW" "$(owner "$SLOT")"
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
