#!/bin/bash
# t_fcgi_reload.sh -- SIGHUP replaces ratelimit2-fcgi's policy without
# failing a request: wrk keeps lighttpd (with the shipped
# conf/fcgi/lighttpd-ratelimit2.conf) busy while the policy is reloaded
# again and again, one of the reloads growing the zone's entries; no
# request fails.  Then the health path shows the new generation, a new
# limit holds from the next request, and a broken policy (or one with a
# concurrency limit) is refused with file:line while the old one keeps
# running.  SIGTERM answers the request in flight, then exits 0; a policy
# that cannot be enforced stops the daemon from starting, with file:line.
. "$(dirname "$0")/fcgi_lib.sh"
# Its counted limits are fixed windows of an hour (the zone's monotonic
# hours, or Redis TIME's): the suite takes well under a minute, so it
# starts with a minute's room in the hour of both clocks.
window_room 3600 60

D=$T_DIR/lighttpd
P=$(free_port)
FP=$(free_port)
Z=$(zone_name rl)
POLICY=$T_DIR/policy.conf
mkdir -p "$D/htdocs"
chmod -R 755 "$D"
echo hello >"$D/htdocs/a.txt"

# Limits that never trip under the load below, of different entry sizes.
policy_loose() {
    cat >"$POLICY" <<POL
rules = ( { name = "site"; paths = "/**";
            limits = ( { rate = "100000000/hour"; algorithm = "$1"; } ); } );
POL
}
policy_loose fixed_window
# Two policies that cannot be enforced: line 2 and line 4 say why.
cat >"$T_DIR/broken.conf" <<'POL'
mode = "enforce";
rules = ( { name = "x"; limits = ( { rate = "5/fortnight"; } ); } );
POL
cat >"$T_DIR/conc.conf" <<'POL'


rules = ( { name = "s";
  limits = ( { algorithm = "concurrency"; limit = 2; } ); } );
POL

fcgi_start daemon -c "$POLICY" -s "127.0.0.1:$FP" -z "$Z" -t 8
sed "s|\"port\" *=> 9000|\"port\" => $FP|" \
    "$RL2_ROOT/conf/fcgi/lighttpd-ratelimit2.conf" >"$D/ratelimit2.conf"
cat >"$D/lighttpd.conf" <<CONF
server.port = $P
server.bind = "127.0.0.1"
server.document-root = "$D/htdocs"
server.errorlog = "$D/error.log"
server.max-connections = 256
mimetype.assign = ( ".txt" => "text/plain" )
include "$D/ratelimit2.conf"
CONF
if ! lighttpd_start "$D"; then
    not_ok "lighttpd starts with the shipped snippet"
    done_testing
    exit 1
fi
ok "lighttpd starts with the shipped snippet"
DPID=$(cat "$T_DIR/daemon.pid")

generation() {
    curl -s "http://127.0.0.1:$P/ratelimit2/health" \
        | sed -n 's/.*"generation":\([0-9]*\).*/\1/p'
}

# wait_generation N -- until the health path shows generation N.
wait_generation() {
    for _ in $(seq 1 100); do
        [ "$(generation)" = "$1" ] && return 0
        sleep 0.05
    done
    return 1
}

is "the health path shows generation 1" 1 "$(generation)"

# ---- reloads under load ----
wrk -t2 -c16 -d5s "http://127.0.0.1:$P/a.txt" >"$T_DIR/wrk.out" 2>&1 &
WRK=$!
sleep 0.5
gen=1
for algo in sliding_window fixed_window token_bucket sliding_window \
            leaky_bucket fixed_window; do
    policy_loose "$algo"
    kill -HUP "$DPID"
    gen=$((gen + 1))
    wait_generation "$gen" || break
    sleep 0.4
done
wait "$WRK"
out=$(cat "$T_DIR/wrk.out")
reqs=$(printf '%s\n' "$out" | sed -n 's/^ *\([0-9]*\) requests in.*/\1/p')
non2xx=$(printf '%s\n' "$out" | sed -n 's/^ *Non-2xx or 3xx responses: *//p')
sockerr=$(printf '%s\n' "$out" | sed -n 's/^ *Socket errors: *//p')
if [ -n "$reqs" ] && [ "$reqs" -gt 0 ]; then
    ok "wrk ran ($reqs requests during 6 reloads)"
else
    not_ok "wrk ran"
    printf '%s\n' "$out" | sed 's/^/#   /'
fi
is "no request failed with a status during the reloads" 0 "${non2xx:-0}"
is "no socket error during the reloads" "" "$sockerr"
is "every reload made a generation (the health path shows 7)" 7 \
    "$(generation)"
like "the daemon logged each reload" 'reloaded .*: generation 7' \
    "$(cat "$T_DIR/daemon.log")"

# ---- a new limit holds from the next request ----
cat >"$POLICY" <<'POL'
rules = ( { name = "tight"; paths = "/**";
            limits = ( { rate = "3/hour"; algorithm = "sliding_log"; } ); } );
POL
kill -HUP "$DPID"
wait_generation 8
is "the health path shows the new generation 8" 8 "$(generation)"
codes=""
for _ in 1 2 3 4; do
    codes="$codes $(code "http://127.0.0.1:$P/a.txt")"
done
is "the new limit 3/hour holds at once" " 200 200 200 429" "$codes"

# ---- a broken policy leaves the old one running ----
cp "$T_DIR/broken.conf" "$POLICY"
kill -HUP "$DPID"
for _ in $(seq 1 100); do
    grep -q 'reload refused' "$T_DIR/daemon.log" && break
    sleep 0.05
done
like "a broken policy is refused with file:line" \
    "reload refused, generation 8 stays: $POLICY:2: invalid rate" \
    "$(cat "$T_DIR/daemon.log")"
is "the generation stays 8" 8 "$(generation)"
is "the old limit still holds" 429 "$(code "http://127.0.0.1:$P/a.txt")"
cp "$T_DIR/conc.conf" "$POLICY"
kill -HUP "$DPID"
for _ in $(seq 1 100); do
    grep -q 'concurrency limit' "$T_DIR/daemon.log" && break
    sleep 0.05
done
like "a concurrency limit is refused with its file:line" \
    "$POLICY:4: limit 's' is a concurrency limit" "$(cat "$T_DIR/daemon.log")"
is "the generation still stays 8" 8 "$(generation)"
if kill -0 "$DPID" 2>/dev/null; then
    ok "the daemon is still running"
else
    not_ok "the daemon is still running"
fi

lighttpd_stop "$D"

# ---- SIGTERM lets a request in flight finish ----
# The client sends half its request, SIGTERM arrives, then the rest.
"$FCGI_CLIENT" -d 1500 "127.0.0.1:$FP" REMOTE_ADDR=192.0.2.1 \
    REQUEST_METHOD=GET REQUEST_URI=/a.txt >"$T_DIR/inflight.out" &
CLIENT=$!
# In flight means accepted: the connection is established and no longer
# in the listening socket's queue (its Recv-Q).
for _ in $(seq 1 100); do
    est=$(ss -Htn state established "( dport = :$FP )" | wc -l)
    queued=$(ss -Htln "( sport = :$FP )" | awk '{ print $2 }')
    [ "$est" -ge 1 ] && [ "${queued:-1}" = 0 ] && break
    sleep 0.02
done
fcgi_stop daemon
is "SIGTERM: the daemon exits 0" 0 "$?"
wait "$CLIENT"
is "SIGTERM: the request in flight was answered in full" 0 "$?"
is "SIGTERM: ... with its decision" "Status: 200 OK" \
    "$(head -1 "$T_DIR/inflight.out" | tr -d '\r')"

# ---- a policy that cannot be enforced stops the start ----
for bad in "broken:2: invalid rate" "conc:4: limit 's' is a concurrency"; do
    name=${bad%%:*}
    env $(rl2_san_env) "$FCGI_BIN" -c "$T_DIR/$name.conf" \
        -s "127.0.0.1:$(free_port)" -z "$Z" 2>"$T_DIR/$name.err"
    is "start with the $name policy: exit 1" 1 "$?"
    like "start with the $name policy: file:line in the log" \
        "$T_DIR/$name.conf:${bad#*:}" "$(cat "$T_DIR/$name.err")"
done
done_testing
