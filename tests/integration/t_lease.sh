#!/bin/bash
# t_lease.sh -- lease mode through real Apaches and a real redis-server:
# a busy client costs a Redis call per slice, not per request; two servers
# sharing a limit in lease mode admit exactly the limit; a limit that says
# lease=off stays one call per request; what cannot be leased is refused
# with the directive's place.  (The fleet of three with a server killed is
# t_lease_fleet.)
source "$(dirname "$0")/lib.sh"

redis_start_first

# calls -- the lease and apply calls Redis has answered so far (FCALL or
# EVALSHA: one each per call, whichever this Redis allows).
calls() {
    redis-cli -p "$RP" info commandstats |
        sed -n 's/^cmdstat_\(fcall\|evalsha\):calls=\([0-9]*\).*/\2/p' |
        awk '{ n += $1 } END { print n + 0 }'
}

# apache_lease NAME -- an Apache in lease mode; its port in $PORT.
apache_lease() {
    local d=$T_DIR/$1 p
    p=$(free_port)
    apache_conf "$d" "$p" event
    cat >"$d/site.conf" <<CONF
RateLimit2Zone $(zone_name "$1") 10000
RateLimit2Redis 127.0.0.1:$RP lease=on lease_max=50 lease_time=2000
RateLimit2Alerts Off
<Location /hot>
    RateLimit2Limit hot 100000/1h algorithm=token_bucket
</Location>
<Location /exact>
    RateLimit2Limit exact 100000/1h algorithm=token_bucket lease=off
</Location>
<Location /fw>
    RateLimit2Limit fw 100/1h algorithm=fixed_window
</Location>
<Location /sw>
    RateLimit2Limit sw 100/1h algorithm=sliding_window
</Location>
<Location /log>
    RateLimit2Limit log 100/1h algorithm=sliding_log
</Location>
CONF
    site_pages "$d/htdocs" hot exact fw sw log
    apache_start "$d" || return 1
    PORT=$p
}

apache_lease a || { not_ok "apache a starts"; done_testing; exit 1; }
PA=$PORT
apache_lease b || { not_ok "apache b starts"; done_testing; exit 1; }
PB=$PORT

# ---- a busy client: a call per slice ----
before=$(calls)
n=$(admitted 1000 8 "http://127.0.0.1:$PA/hot/x")
after=$(calls)
is "lease: a busy client's 1,000 requests are all admitted" 1000 "$n"
used=$((after - before))
echo "# 1,000 requests made $used Redis calls (slices grow 1, 2, 4 ... 50)"
[ "$used" -lt 100 ] && ok "lease: 1,000 requests made fewer than 100 Redis calls ($used)" ||
    not_ok "lease: 1,000 requests made fewer than 100 Redis calls ($used)"

before=$(calls)
n=$(admitted 200 8 "http://127.0.0.1:$PA/exact/x")
after=$(calls)
is "lease=off: every request is one Redis call" "200 200" "$n $((after - before))"

# ---- two servers, one limit: exactly the limit ----
# The fixed window counts an hour of Redis TIME, and the sliding one
# weighs the hour before: the runs below must not straddle its end.
window_room 3600 60
for alg in fw sw; do
    admitted 500 32 "http://127.0.0.1:$PA/$alg/x" >"$T_DIR/$alg.a" &
    ja=$!
    admitted 500 32 "http://127.0.0.1:$PB/$alg/x" >"$T_DIR/$alg.b" &
    wait $ja $!
    a=$(cat "$T_DIR/$alg.a")
    b=$(cat "$T_DIR/$alg.b")
    is "lease $alg: a limit of 100 split across two servers admits exactly 100" \
       100 $((a + b))
done

# The sliding log is not leased (a store-wide lease leaves it exact).
before=$(calls)
n=$(admitted 150 8 "http://127.0.0.1:$PA/log/x")
after=$(calls)
# One call per admitted request, and the refusals: the over-limit cache
# answers those after the first, save the few (at most one per
# connection, 8) already on their way to Redis when it was recorded.
used=$((after - before))
if [ "$n" = 100 ] && [ "$used" -ge 101 ] && [ "$used" -le 108 ]; then
    ok "sliding_log under lease=on stays exact: 100 admitted, $used calls"
else
    not_ok "sliding_log under lease=on stays exact: 100 admitted ($n), 101..108 calls ($used)"
fi

# ---- what cannot be leased, said where it is written ----
d=$T_DIR/bad
apache_conf "$d" "$(free_port)" event
cat >"$d/site.conf" <<CONF
RateLimit2Redis 127.0.0.1:$RP
<Location /c>
    RateLimit2Limit c 10/1h algorithm=sliding_log lease=on
</Location>
CONF
like "lease=on on a sliding_log is refused at start" \
     "lease is for token_bucket, leaky_bucket, fixed_window, sliding_window and quota" \
     "$(apache_configtest "$d")"
cat >"$T_DIR/bad.conf" <<'CONF'
rules = ( { name = "api"; paths = ( "/api" );
            limits = ( { rate = "10/hour"; algorithm = "fixed_window";
                         overflow = "5/hour"; lease = true; } ); } );
CONF
out=$("$BUILD/ctl/ratelimit2ctl" check "$T_DIR/bad.conf" 2>&1)
like "lease with an overflow is refused with file:line" "bad.conf:2: .*lease is for" "$out"
cat >"$T_DIR/bad2.conf" <<CONF
redis = { server = "127.0.0.1:$RP"; lease = "maybe"; };
CONF
out=$("$BUILD/ctl/ratelimit2ctl" check "$T_DIR/bad2.conf" 2>&1)
like "lease = \"maybe\" is refused with file:line" 'bad2.conf:1: .*lease=maybe: expected on or off' "$out"

done_testing
