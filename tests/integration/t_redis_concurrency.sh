#!/bin/bash
# t_redis_concurrency.sh -- a concurrency limit that holds across two
# Apache servers sharing one redis-server: a slow CGI (it sleeps) behind
# a limit of 3 in flight; 10 requests at once, split across both servers,
# get exactly 3 admissions; when those end their slots are released and a
# second batch again gets exactly 3; Redis holds no slot afterwards.
# Then the refund: a request holding an address-keyed slot (decided before
# authentication) and refused after it by a per-user limit gives its slot
# back, on either server, so refused requests never use up the slots.
source "$(dirname "$0")/lib.sh"

redis_start_first

SLOW_S=3

# counter_keys_at_most N -> the number of counter keys in Redis, once it
# is N or less (10 s at most; then what is there).  Counter keys are
# rl2:{DIGEST}:s (the violation log's stream, rl2:violations, is not one).
counter_keys_at_most() {
    local keys
    for _ in $(seq 1 100); do
        keys=$(redis-cli -p "$RP" --scan --pattern 'rl2:{*' | wc -l)
        [ "$keys" -le "$1" ] && break
        sleep 0.1
    done
    echo "$keys"
}
# apache_conc NAME -- an event-MPM Apache (mod_cgid) counting in Redis;
# its port is left in $PORT.
apache_conc() {
    local d=$T_DIR/$1 p
    p=$(free_port)
    apache_conf "$d" "$p" event
    mkdir -p "$d/cgi-bin"
    cat >"$d/cgi-bin/slow" <<CGI
#!/bin/sh
sleep $SLOW_S
printf 'Content-Type: text/plain\r\n\r\ndone\n'
CGI
    chmod 755 "$d/cgi-bin" "$d/cgi-bin/slow"
    cat >"$d/site.conf" <<CONF
RateLimit2Zone $(zone_name "$1") 10000
RateLimit2Redis 127.0.0.1:$RP timeout=2000
ScriptSock "$d/cgid.sock"
ScriptAlias /slow/ "$d/cgi-bin/"
<Directory "$d/cgi-bin">
    Require all granted
</Directory>
<Location /slow/>
    RateLimit2Limit streams 3 algorithm=concurrency
</Location>
# The same slots (same name and count), plus a per-user limit decided
# after authentication.
Alias /auth/ "$d/cgi-bin/"
<Location /auth/>
    SetHandler cgi-script
    Options +ExecCGI
    AuthType Basic
    AuthName rl2
    AuthBasicProvider file
    AuthUserFile "$T_DIR/users"
    Require valid-user
    RateLimit2Limit streams 3 algorithm=concurrency
    RateLimit2Limit peruser 1/1h key=user
</Location>
CONF
    apache_start "$d" || return 1
    PORT=$p
}

htpasswd -bc "$T_DIR/users" alice pw >/dev/null 2>&1
for u in bob carol dave; do
    htpasswd -b "$T_DIR/users" "$u" pw >/dev/null 2>&1
done
chmod 644 "$T_DIR/users"
apache_conc a || { not_ok "apache a starts"; done_testing; exit 1; }
PA=$PORT
apache_conc b || { not_ok "apache b starts"; done_testing; exit 1; }
PB=$PORT
is "the slow CGI answers" 200 "$(code "http://127.0.0.1:$PA/slow/slow")"

# batch TAG -- 10 requests at once, alternately to a and b; each one's
# status in $T_DIR/TAG.N.  Waits for exactly those curls.
batch() {
    local tag=$1 pids=() i port
    for i in $(seq 1 10); do
        port=$PA
        [ $((i % 2)) -eq 0 ] && port=$PB
        curl -s -o /dev/null -w '%{http_code}' --max-time 30 \
            "http://127.0.0.1:$port/slow/slow" >"$T_DIR/$tag.$i" &
        pids+=($!)
    done
    wait "${pids[@]}"
}

count_codes() {
    cat "$T_DIR/$1".* | grep -o "$2" | wc -l
}

start=$(date +%s)
batch first
end=$(date +%s)
is "10 slow requests across two servers: exactly 3 admitted" 3 \
   "$(count_codes first 200)"
is "... and the other 7 refused with 429" 7 "$(count_codes first 429)"
if [ $((end - start)) -lt $((SLOW_S + 10)) ]; then
    ok "refusals do not wait for a slot ($((end - start)) s)"
else
    not_ok "refusals do not wait for a slot ($((end - start)) s)"
fi
a=$(grep -c '"GET /slow/slow HTTP/1.1" 200' "$T_DIR/a/logs/access.log")
b=$(grep -c '"GET /slow/slow HTTP/1.1" 200' "$T_DIR/b/logs/access.log")
# a's count includes the first single request.
is "the admissions both servers logged add up to 3" 3 \
   $((a + b - 1))

# The slots were released when the requests ended: a later batch again
# gets exactly 3.
batch second
is "after the first batch ended, a second batch again gets exactly 3" 3 \
   "$(count_codes second 200)"
is "... and 7 refusals" 7 "$(count_codes second 429)"

# Nothing left in flight: one request after another is admitted on each
# server.
codes=""
for port in $PA $PB $PA $PB; do
    codes="$codes $(code "http://127.0.0.1:$port/slow/slow")"
done
is "sequential requests after the batches are all admitted" \
   " 200 200 200 200" "$codes"
# A slot's key is deleted when its count returns to zero.
is "no slot is left in Redis once every request ended" 0 \
   "$(counter_keys_at_most 0)"

# ---- refund: refused after authentication, the slot comes back ----
# Alice's per-user limit is a fixed window of an hour of Redis TIME, and
# her first request takes SLOW_S: the hour must not end before her six
# more are refused, or one of them is rightly admitted.
window_room 3600 60
is "alice's first request passes both layers" 200 \
   "$(code -u alice:pw "http://127.0.0.1:$PA/auth/slow")"
codes=""
for port in $PA $PB $PA $PB $PA $PB; do
    codes="$codes $(code -u alice:pw "http://127.0.0.1:$port/auth/slow")"
done
is "alice's next six are refused by her per-user limit" \
   " 429 429 429 429 429 429" "$codes"
pids=()
i=0
for u in bob carol dave; do
    i=$((i + 1))
    port=$PA
    [ $((i % 2)) -eq 0 ] && port=$PB
    curl -s -o /dev/null -w '%{http_code}' --max-time 30 -u "$u:pw" \
        "http://127.0.0.1:$port/auth/slow" >"$T_DIR/refund.$i" &
    pids+=($!)
done
wait "${pids[@]}"
is "the refused requests gave their slots back: 3 users at once, 3 admitted" \
   3 "$(count_codes refund 200)"

# Exactly 3 admitted: no slot leaked, and none released twice.
# Only the four per-user counters are left: the slots' key is gone.
# A slot is released when the response's end passes the module (a
# request refused with 429 gives its slot back at once); the wait is only
# a generous cap (10 s at most).
is "only the 4 per-user counters remain in Redis, no slot" 4 \
   "$(counter_keys_at_most 4)"

apache_stop "$T_DIR/a"
apache_stop "$T_DIR/b"
done_testing
