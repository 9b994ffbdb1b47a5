#!/bin/bash
# t_redis_cluster.sh -- one limit across two Apache servers through a Redis
# Cluster of three masters on loopback: exact quotas for four algorithms,
# keys spread over every master, layers in different slots counted all or
# none, a slot moved during a load run (-MOVED) and a slot half migrated
# (-ASK), and configtest errors for bad cluster: settings.
source "$(dirname "$0")/fcgi_lib.sh"

redis_cluster_first

# all_keys -- every limit key of the cluster ("rl2:{DIGEST}:..."), one
# per line, sorted.  Not "rl2:*": a request that ends a minute pushes that
# minute's usage ("rl2:usage:{h:HOUR}:..."), whose keys would then be
# counted among the new keys of the layers under test.
all_keys() {
    for p in "${PORTS[@]}"; do
        redis-cli -p "$p" --scan --pattern 'rl2:{*'
    done | sort
}

# holder KEY -- the port of the node that holds KEY.
holder() {
    local p slot
    slot=$(redis-cli -p "${PORTS[0]}" cluster keyslot "$1")
    for p in "${PORTS[@]}"; do
        redis-cli -p "$p" cluster getkeysinslot "$slot" 1000 \
            | grep -qx -- "$1" && { echo "$p"; return; }
    done
}

node_id() { redis-cli -p "$1" cluster myid; }

# move_start SLOT FROM TO -- IMPORTING on TO, MIGRATING on FROM, and the
# slot's keys carried over: from now on FROM answers -ASK.
move_start() {
    local slot=$1 from=$2 to=$3 k
    redis-cli -p "$to" cluster setslot "$slot" importing "$(node_id "$from")" \
        >/dev/null
    redis-cli -p "$from" cluster setslot "$slot" migrating "$(node_id "$to")" \
        >/dev/null
    for k in $(redis-cli -p "$from" cluster getkeysinslot "$slot" 1000); do
        redis-cli -p "$from" migrate 127.0.0.1 "$to" "$k" 0 5000 >/dev/null
    done
}

# move_finish SLOT FROM TO -- the slot is TO's on every master (importing
# node first, then the migrating one): from now on FROM answers -MOVED.
move_finish() {
    local slot=$1 from=$2 to=$3 p id
    id=$(node_id "$to")
    for p in "$to" "$from" "${PORTS[@]}"; do
        redis-cli -p "$p" cluster setslot "$slot" node "$id" >/dev/null
    done
}

# other_port PORT -- another master.
other_port() {
    local p
    for p in "${PORTS[@]}"; do
        [ "$p" != "$1" ] && { echo "$p"; return; }
    done
}

SEEDS="127.0.0.1:${PORTS[0]},127.0.0.1:${PORTS[1]}"

# apache_cluster NAME -- an Apache counting in the cluster; its port is
# left in $PORT.
apache_cluster() {
    local d=$T_DIR/$1 p
    p=$(free_port)
    apache_conf "$d" "$p" event
    cp "$T_DIR/htpasswd" "$d/htpasswd"
    cat >"$d/site.conf" <<CONF
RateLimit2Zone $(zone_name "$1") 10000
RateLimit2Redis cluster:$SEEDS timeout=1000
RateLimit2TrustedProxy 127.0.0.1
$(algo_locations)
<Location /spread>
    RateLimit2Limit spread 100/1h key=header:X-Client
</Location>
<Location /both>
    AuthType Basic
    AuthName "rl2 test"
    AuthBasicProvider file
    AuthUserFile "$d/htpasswd"
    Require valid-user
    RateLimit2Limit perip 5/1h key=ip algorithm=sliding_log
    RateLimit2Limit peruser 2/1h key=user algorithm=sliding_log
</Location>
<Location /pair>
    # pb first: when pa refuses, pb's slot has already counted and is
    # refunded
    RateLimit2Limit pb 10/1h algorithm=sliding_log
    RateLimit2Limit pa 3/1h algorithm=sliding_log
</Location>
<Location /pbonly>
    RateLimit2Limit pb 10/1h algorithm=sliding_log
</Location>
<Location /mv>
    RateLimit2Limit mv 100/1h algorithm=fixed_window
</Location>
<Location /ask>
    RateLimit2Limit ask 5/1h algorithm=sliding_log
</Location>
CONF
    site_pages "$d/htdocs" fw sl tb lb spread both pair pbonly mv ask
    apache_start "$d" || return 1
    PORT=$p
}

htpasswd -bc "$T_DIR/htpasswd" alice alicepw >/dev/null 2>&1
htpasswd -b "$T_DIR/htpasswd" bob bobpw >/dev/null 2>&1
htpasswd -b "$T_DIR/htpasswd" carol carolpw >/dev/null 2>&1
chmod 644 "$T_DIR/htpasswd"
apache_cluster a || { not_ok "apache a starts"; done_testing; exit 1; }
PA=$PORT
apache_cluster b || { not_ok "apache b starts"; done_testing; exit 1; }
PB=$PORT
ok "two Apache servers start with RateLimit2Redis cluster:$SEEDS"

# ---- one quota across two servers ----
# The fixed window counts an hour of Redis TIME: the runs below must
# not straddle its end (t_redis admitted 200 there).
window_room 3600 60
for alg in fw sl tb lb; do
    admitted 500 32 "http://127.0.0.1:$PA/$alg/x" >"$T_DIR/$alg.a" &
    ja=$!
    admitted 500 32 "http://127.0.0.1:$PB/$alg/x" >"$T_DIR/$alg.b" &
    wait $ja $!
    is "$alg: a quota of 100 split across two servers admits exactly 100" \
       100 $(( $(cat "$T_DIR/$alg.a") + $(cat "$T_DIR/$alg.b") ))
done

# ---- keys spread over every master ----
for i in $(seq 1 60); do
    code "http://127.0.0.1:$PA/spread/x" -H "X-Client: c$i" >/dev/null
done
for p in "${PORTS[@]}"; do
    n=$(redis-cli -p "$p" dbsize)
    if [ "$n" -gt 0 ]; then
        ok "master on $p holds keys ($n)"
    else
        not_ok "master on $p holds keys (0)"
    fi
done

# ---- per-user and per-IP layers, in different slots ----
U=http://127.0.0.1:$PA/both/x
before=$(all_keys)
c1=$(code "$U" -u alice:alicepw)
new=$(comm -13 <(printf '%s\n' "$before") <(all_keys))
is "alice's first request creates two keys (per-IP, per-user)" 2 \
   "$(printf '%s\n' "$new" | grep -c .)"
slots=$(for k in $new; do redis-cli -p "${PORTS[0]}" cluster keyslot "$k"; \
        done | sort -u | wc -l)
is "the per-IP and per-user keys are in different slots" 2 "$slots"
codes="$c1"
for _ in 1 2; do codes="$codes $(code "$U" -u alice:alicepw)"; done
is "alice: 2 then 429 by the per-user layer" "200 200 429" "$codes"
is "bob: his own 2" "200 200" \
   "$(code "$U" -u bob:bobpw) $(code "$U" -u bob:bobpw)"
# 2 + 2 admitted so far: had alice's refused request been counted by the
# per-IP layer (5), carol's first would be refused.
is "a request refused by the per-user layer is not counted per IP" 200 \
   "$(code "$U" -u carol:carolpw)"
is "then the per-IP layer refuses (5 admitted from this address)" \
   "429 429 429" "$(code "$U" -u carol:carolpw) \
$(code "$U" -u carol:carolpw) $(code "$U" -u carol:carolpw)"
# From another address (through the trusted proxy) carol still has one
# left: the three requests the per-IP layer refused were not counted for
# her.
is "a request refused by the per-IP layer is not counted per user" \
   "200 429" "$(code "$U" -u carol:carolpw -H 'X-Forwarded-For: 198.51.100.7') \
$(code "$U" -u carol:carolpw -H 'X-Forwarded-For: 198.51.100.7')"

# ---- two limits of one phase, in two slots ----
before=$(all_keys)
codes=$(code "http://127.0.0.1:$PB/pair/x")
new=$(comm -13 <(printf '%s\n' "$before") <(all_keys))
slots=$(for k in $new; do redis-cli -p "${PORTS[0]}" cluster keyslot "$k"; \
        done | sort -u | wc -l)
is "the two limits of /pair are in two slots" 2 "$slots"
for _ in 1 2 3 4 5; do
    codes="$codes $(code "http://127.0.0.1:$PB/pair/x")"
done
is "pair: 3 admitted, then refused by pa" "200 200 200 429 429 429" "$codes"
is "pb counted only the 3 admitted: 7 of 12 left for /pbonly" 7 \
   "$(admitted 12 1 "http://127.0.0.1:$PA/pbonly/x")"

# ---- a slot moved during a load run: -MOVED ----
# The first request and the load run count in one hour of Redis TIME.
window_room 3600 60
before=$(all_keys)
code "http://127.0.0.1:$PA/mv/x" >/dev/null
key=$(comm -13 <(printf '%s\n' "$before") <(all_keys))
from=$(holder "$key")
to=$(other_port "$from")
slot=$(redis-cli -p "$from" cluster keyslot "$key")
# Enough requests that the load outlasts the move on a fast machine (most
# are quick refusals: 3,000 each ended before the move once).
admitted 15000 8 "http://127.0.0.1:$PA/mv/x" >"$T_DIR/mv.a" &
ja=$!
admitted 15000 8 "http://127.0.0.1:$PB/mv/x" >"$T_DIR/mv.b" &
jb=$!
sleep 0.3
move_start "$slot" "$from" "$to"
move_finish "$slot" "$from" "$to"
running=0
kill -0 "$ja" 2>/dev/null && kill -0 "$jb" 2>/dev/null && running=1
wait $ja $jb
is "the slot moved while both servers were under load" 1 "$running"
is "moved slot: the quota of 100 still admits exactly 100" 100 \
   $(( 1 + $(cat "$T_DIR/mv.a") + $(cat "$T_DIR/mv.b") ))
is "moved slot: the slot and its counter are the new master's" "$to $to" \
   "$(owner "$slot") $(holder "$key")"

# ---- a slot half migrated: -ASK ----
before=$(all_keys)
c1=$(code "http://127.0.0.1:$PA/ask/x")
key=$(comm -13 <(printf '%s\n' "$before") <(all_keys))
from=$(holder "$key")
to=$(other_port "$from")
slot=$(redis-cli -p "$from" cluster keyslot "$key")
asking0=$(redis-cli -p "$to" info commandstats \
          | sed -n 's/^cmdstat_asking:calls=\([0-9]*\).*/\1/p')
move_start "$slot" "$from" "$to"
is "migrating: the key has moved, the slot is still the old master's" \
   "$to $from" "$(holder "$key") $(owner "$slot")"
n=$(( $(admitted 5 1 "http://127.0.0.1:$PA/ask/x") \
      + $(admitted 5 1 "http://127.0.0.1:$PB/ask/x") ))
is "migrating slot: 5 of 5 admitted in all, followed by -ASK" 5 $((n + 1))
asking1=$(redis-cli -p "$to" info commandstats \
          | sed -n 's/^cmdstat_asking:calls=\([0-9]*\).*/\1/p')
if [ "${asking1:-0}" -gt "${asking0:-0}" ]; then
    ok "the importing master was sent ASKING ($((asking1 - ${asking0:-0})))"
else
    not_ok "the importing master was sent ASKING"
fi
move_finish "$slot" "$from" "$to"
is "slot given: still exact after the move is finished" "429 429" \
   "$(code "http://127.0.0.1:$PA/ask/x") $(code "http://127.0.0.1:$PB/ask/x")"
is "ask: the first request went to the old master" 200 "$c1"

# ---- the CGI wrapper (ratelimit2-fcgi's -R syntax): both layers in one
# decision, so one store call spans two slots ----
cat >"$T_DIR/cgi.conf" <<'POLICY'
rules = (
  { name = "cip"; paths = "/both"; continue = true; key = "ip";
    limits = ( { rate = "3/hour"; algorithm = "sliding_log"; } ); },
  { name = "cuser"; paths = "/both"; key = "user";
    limits = ( { rate = "2/hour"; algorithm = "sliding_log"; } ); }
);
POLICY
printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\nallowed\\n"\n' \
    >"$T_DIR/ok.sh"
chmod 755 "$T_DIR/ok.sh"
CZ=$(zone_name cgi)

# cgi USER ADDR -- "allowed", or the status the wrapper answers.
cgi() {
    env -i PATH=/usr/bin:/bin $(rl2_san_env) \
        RATELIMIT2_POLICY="$T_DIR/cgi.conf" RATELIMIT2_ZONE="$CZ" \
        RATELIMIT2_REDIS="cluster:$SEEDS" RATELIMIT2_TARGET="$T_DIR/ok.sh" \
        GATEWAY_INTERFACE=CGI/1.1 SERVER_PROTOCOL=HTTP/1.1 \
        REQUEST_METHOD=GET REQUEST_URI=/both SCRIPT_NAME=/both \
        REMOTE_ADDR="$2" REMOTE_USER="$1" "$CGI_BIN" 2>>"$T_DIR/cgi.err" \
        | grep -Eo '^(allowed|Status: [0-9]+)' | head -1
}
before=$(all_keys)
c1=$(cgi alice 192.0.2.1)
new=$(comm -13 <(printf '%s\n' "$before") <(all_keys))
slots=$(for k in $new; do redis-cli -p "${PORTS[0]}" cluster keyslot "$k"; \
        done | sort -u | wc -l)
is "cgi: the wrapper counts in the cluster, its two layers in two slots" \
   2 "$slots"
is "cgi: alice gets 2, then her per-user layer refuses" \
   "allowed allowed Status: 429" \
   "$c1 $(cgi alice 192.0.2.1) $(cgi alice 192.0.2.1)"
is "cgi: bob gets the third of the address (alice's refusal not counted)" \
   "allowed Status: 429" "$(cgi bob 192.0.2.1) $(cgi bob 192.0.2.1)"
is "cgi: from another address bob has one left (the refusal by the \
per-IP layer not counted)" "allowed Status: 429" \
   "$(cgi bob 192.0.2.2) $(cgi bob 192.0.2.2)"
is "cgi: no error from the wrapper" "" "$(cat "$T_DIR/cgi.err")"

# ---- no request saw a store error ----
is "no 5xx answered by either server" 0 \
   "$(cat "$T_DIR"/a/logs/access.log "$T_DIR"/b/logs/access.log \
      | grep -c ' 5[0-9][0-9]$')"
is "no store error logged" 0 \
   "$(cat "$T_DIR"/a/logs/error.log "$T_DIR"/b/logs/error.log \
      | grep -c 'store error')"

# ---- bad cluster: settings stop configtest with a clear message ----
D=$T_DIR/bad
apache_conf "$D" "$(free_port)" event
echo "RateLimit2Redis cluster:127.0.0.1" >"$D/site.conf"
like "a seed without a port fails configtest, naming it" \
     'RateLimit2Redis: redis: cluster seed "127.0.0.1" is not HOST:PORT' \
     "$(apache_configtest "$D")"
echo "RateLimit2Redis cluster:127.0.0.1:7000 db=2" >"$D/site.conf"
like "a database other than 0 fails configtest" \
     'RateLimit2Redis: redis: Redis Cluster has only database 0' \
     "$(apache_configtest "$D")"
echo "RateLimit2Redis cluster:" >"$D/site.conf"
like "an empty seed list fails configtest" \
     'RateLimit2Redis: redis: expected cluster:HOST:PORT' \
     "$(apache_configtest "$D")"

like "ratelimit2-fcgi -R cluster: with a bad seed exits, naming it" \
     'cluster seed "127.0.0.1" is not HOST:PORT' \
     "$(env $(rl2_san_env) "$FCGI_BIN" -c "$T_DIR/cgi.conf" \
        -R cluster:127.0.0.1 -s 127.0.0.1:1 2>&1)"
like "ratelimit2-fcgi -R cluster: -O db=3 exits, naming database 0" \
     'Redis Cluster has only database 0' \
     "$(env $(rl2_san_env) "$FCGI_BIN" -c "$T_DIR/cgi.conf" \
        -R "cluster:$SEEDS" -O db=3 -s 127.0.0.1:1 2>&1)"

# ---- the shipped Apache examples pass configtest ----
for ex in redis-cluster redis-sentinel redis-standalone; do
    echo "Include \"$RL2_ROOT/conf/examples/$ex.conf\"" >"$D/site.conf"
    like "conf/examples/$ex.conf passes configtest" 'Syntax OK' \
         "$(apache_configtest "$D")"
done

done_testing
