#!/bin/bash
# t_fcgi_fast.sh -- ratelimit2-fcgi answers the common request itself
# (fcgi/fast.c) and leaves the rest to libfcgi, with the same answers and
# counts either way: several requests on one FCGI_KEEP_CONN connection,
# one after the other and pipelined; padded records; a request with a
# body, one with more params than fast.c takes, and the health path on
# a kept connection (libfcgi's); a request still arriving does not hold
# up the others (the listener is passed on), nor do idle kept
# connections (the listener watches them); many clients at once count
# exactly; SIGTERM stops every worker, the followers waiting for the
# listener too.
. "$(dirname "$0")/fcgi_lib.sh"

FP=$(free_port)
Z=$(zone_name ff)
cat >"$T_DIR/policy.conf" <<'POL'
rules = ( { name = "lim"; paths = "/limited/**";
            limits = ( { name = "three"; rate = "3/hour"; key = "ip"; } ); },
          { name = "many"; paths = "/many/**";
            limits = ( { name = "many"; rate = "150/hour"; key = "ip"; } ); } );
POL
fcgi_start daemon -c "$T_DIR/policy.conf" -s "127.0.0.1:$FP" -z "$Z" -t 8
S="127.0.0.1:$FP"

# statuses ADDR ARGS... -- the Status codes of the answers, one line.
statuses() {
    local addr=$1
    shift
    "$FCGI_CLIENT" "$@" "$S" REMOTE_ADDR="$addr" REQUEST_METHOD=GET \
        REQUEST_URI=/limited/a \
        | sed -n 's/^Status: \([0-9]*\).*/\1/p' | tr '\n' ' ' | sed 's/ $//'
}

# ---- several requests on one kept connection ----
out=$("$FCGI_CLIENT" -k 5 "$S" REMOTE_ADDR=192.0.2.1 REQUEST_METHOD=GET \
    REQUEST_URI=/limited/a)
is "five requests on one kept connection are all answered" 5 \
    "$(grep -c '^== ' <<<"$out")"
is "... and each counted once: 3 admitted, then 429" \
    "200 200 200 429 429" \
    "$(sed -n 's/^Status: \([0-9]*\).*/\1/p' <<<"$out" | tr '\n' ' ' \
        | sed 's/ $//')"
is "three pipelined requests on one connection, answered in order" \
    "200 200 200" "$(statuses 192.0.2.2 -k 3 -P)"
is "the next request on a new connection sees their counts" 429 \
    "$(statuses 192.0.2.2)"
is "padded records: two on a kept connection" "200 200" \
    "$(statuses 192.0.2.3 -k 2 -p)"

# ---- what libfcgi reads: the same answers and counts ----
is "requests with a body (libfcgi's) count as the others do" \
    "200 200 200" \
    "$(for _ in 1 2 3; do statuses 192.0.2.4 -i hello; echo; done \
        | tr '\n' ' ' | sed 's/ $//')"
is "... and the fourth, without a body, is refused" 429 \
    "$(statuses 192.0.2.4)"
fast=$("$FCGI_CLIENT" "$S" REMOTE_ADDR=192.0.2.4 REQUEST_METHOD=GET \
    REQUEST_URI=/limited/a | sed 's/:.*//' | tr -d '\r' | tr '\n' ' ')
slow=$("$FCGI_CLIENT" -i hello "$S" REMOTE_ADDR=192.0.2.4 REQUEST_METHOD=GET \
    REQUEST_URI=/limited/a | sed 's/:.*//' | tr -d '\r' | tr '\n' ' ')
like "a refusal has its headers and body" '^Status Retry-After .*\{' "$fast"
is "a refusal answered by libfcgi has the same fields" "$fast" "$slow"
is "600 params (more than fast.c takes) are answered" "200 200 200 429" \
    "$(statuses 192.0.2.5 -n 600 -k 4)"
h=$("$FCGI_CLIENT" -r responder -k 2 "$S" REMOTE_ADDR=127.0.0.1 \
    REQUEST_METHOD=GET REQUEST_URI=/ratelimit2/health)
is "the health path twice on one kept connection" 2 \
    "$(grep -c '"generation":1' <<<"$h")"
is "a request after them is answered on the fast path" 200 \
    "$(statuses 192.0.2.6 -k 1)"

# ---- a request still arriving holds up nobody ----
"$FCGI_CLIENT" -d 1500 "$S" REMOTE_ADDR=192.0.2.7 REQUEST_METHOD=GET \
    REQUEST_URI=/limited/a >"$T_DIR/slow.out" &
SLOW=$!
sleep 0.2
t0=$(date +%s%N)
a=$(statuses 192.0.2.8)
t1=$(date +%s%N)
is "a request while another is half sent is answered" 200 "$a"
ok_fast=$(((t1 - t0) / 1000000 < 1000))
is "... at once (under 1 s), not after the slow one" 1 "$ok_fast"
wait "$SLOW"
like "the half-sent request is answered too" '^Status: 200' \
    "$(cat "$T_DIR/slow.out")"

# ---- idle kept connections hold no worker ----
FP2=$(free_port)
fcgi_start two -c "$T_DIR/policy.conf" -s "127.0.0.1:$FP2" -z "$Z" -t 2
IDLE=()
for i in 1 2 3 4; do
    "$FCGI_CLIENT" -k 2 -w 1500 "127.0.0.1:$FP2" REMOTE_ADDR=192.0.2.1$i \
        REQUEST_METHOD=GET REQUEST_URI=/limited/a >"$T_DIR/idle.$i" &
    IDLE+=($!)
done
sleep 0.3
t0=$(date +%s%N)
a=$("$FCGI_CLIENT" "127.0.0.1:$FP2" REMOTE_ADDR=192.0.2.20 \
    REQUEST_METHOD=GET REQUEST_URI=/limited/a | head -1 | tr -d '\r')
t1=$(date +%s%N)
is "2 workers, 4 idle kept connections: a new request is answered" \
    "Status: 200 OK" "$a"
is "... at once (under 1 s)" 1 "$(((t1 - t0) / 1000000 < 1000))"
idle_rc=0
for pid in "${IDLE[@]}"; do
    wait "$pid" || idle_rc=1
done
is "... and each kept connection's second request is answered" "0 8" \
    "$idle_rc $(cat "$T_DIR"/idle.* | grep -c '^Status: 200')"
fcgi_stop two

# ---- many clients at once: every request counted exactly once ----
CLIENTS=()
for i in $(seq 1 20); do
    "$FCGI_CLIENT" -k 10 "$S" REMOTE_ADDR=192.0.2.9 REQUEST_METHOD=GET \
        REQUEST_URI=/many/x >"$T_DIR/many.$i" &
    CLIENTS+=($!)
done
wait_all=0
for pid in "${CLIENTS[@]}"; do
    wait "$pid" || wait_all=1
done
is "20 clients of 10 kept requests each: every request answered" 200 \
    "$(cat "$T_DIR"/many.* | grep -c '^== ')"
is "... exactly 150 admitted" 150 "$(cat "$T_DIR"/many.* \
    | grep -c '^Status: 200')"
is "... and 50 refused" 50 "$(cat "$T_DIR"/many.* | grep -c '^Status: 429')"
is "... every client ended its requests" 0 "$wait_all"

# ---- stopping ----
t0=$(date +%s%N)
fcgi_stop daemon
rc=$?
t1=$(date +%s%N)
is "SIGTERM: exit status 0" 0 "$rc"
is "... every worker stopped within 2 s" 1 \
    "$(((t1 - t0) / 1000000 < 2000))"
done_testing
