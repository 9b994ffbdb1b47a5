#!/bin/bash
# t_overlimit.sh -- the over-limit cache (docs/operations.md, "The
# over-limit cache"): one redis-server, two Apaches (event MPM) and a
# lighttpd with ratelimit2-fcgi that share nothing but it, each with its
# own zone, under one policy of 5 requests an hour per address in a
# fixed window, counted in Redis.
#   - client A (127.0.0.1) is admitted 5 times and refused once on ap1:
#     6 Redis calls (FCALL and EVALSHA, from INFO commandstats);
#   - A then floods ap1 for 10 s: every request is refused (429 with
#     Retry-After) and Redis is called not once more; the metrics count
#     the cache's answers;
#   - client B (127.0.0.2) is admitted by ap1, one Redis call;
#   - A refused by ap2 and by lighttpd once (one call each) is answered by
#     their caches next (no call);
#   - ratelimit2ctl reset of A on ap1's zone: ap1 admits A at once, and
#     ap2 and lighttpd, whose caches ratelimit2ctl cannot reach, within
#     2 s (polled every 100 ms: the override counter in Redis, synced once
#     a second);
#   - A refused and cached again on all three, then ratelimit2ctl boost
#     '*' 2: all three admit A within 2 s.
. "$(dirname "$0")/fcgi_lib.sh"
. "$(dirname "$0")/fleet_lib.sh"

CTL="$BUILD/ctl/ratelimit2ctl"

redis_start_first

# calls -- the scripts Redis ran so far: FCALL (Redis 7 functions) and
# EVALSHA (scripts), the decisions of every server.  The override
# table's own commands (MGET, EVAL) are not counted.
calls() {
    redis-cli -p "$RP" info commandstats | tr -d '\r' |
        awk -F'[:=,]' '/^cmdstat_(fcall|evalsha):/ { n += $3 }
                       END { print n + 0 }'
}

# ---- two Apaches, one Redis ----
BASES=()
NAMES=()
# policy NAME -- server NAME's: the same limit and Redis, its own state.
policy() {
    mkdir -p "$T_DIR/state-$1"
    chown nobody:nogroup "$T_DIR/state-$1"
    cat >"$T_DIR/$1.conf" <<POL
redis = { server = "127.0.0.1:$RP"; timeout = 300; };
overrides = { state_file = "$T_DIR/state-$1/$1.overrides"; };
alerts = { enabled = false; };
rules = (
  { name = "ol"; paths = "/p/**";
    limits = ( { rate = "5/hour"; algorithm = "fixed_window"; } ); }
);
POL
}

for a in ap1 ap2; do
    policy "$a"
    port=$(free_port)
    apache_conf "$T_DIR/$a" "$port" event
    site_pages "$T_DIR/$a/htdocs" p
    cat >"$T_DIR/$a/site.conf" <<CONF
RateLimit2Zone $(zone_name "$a") 1000
RateLimit2Policy "$T_DIR/$a.conf"
<Location /metrics>
    SetHandler ratelimit2-metrics
</Location>
CONF
    if ! apache_start "$T_DIR/$a"; then
        not_ok "Apache $a starts"
        done_testing
        exit 1
    fi
    ok "Apache $a starts (its own zone, Redis shared)"
    BASES+=("http://127.0.0.1:$port")
    NAMES+=("$a")
done
policy lt
L=$T_DIR/lt
PL=$(free_port)
mkdir -p "$L/htdocs"
site_pages "$L/htdocs" p
chmod -R 755 "$L"
lighttpd_authorizer_conf "$L" "$PL" 1 '"mod_fastcgi"' \
    "-c $T_DIR/lt.conf -z $(zone_name lt) -t 4"
if ! lighttpd_start "$L"; then
    not_ok "lighttpd starts with ratelimit2-fcgi"
    done_testing
    exit 1
fi
ok "lighttpd starts with ratelimit2-fcgi (its own zone, Redis shared)"
BASES+=("http://127.0.0.1:$PL")
NAMES+=("lighttpd")
A1=${BASES[0]}/p/x
A2=${BASES[1]}/p/x
AL=${BASES[2]}/p/x
C=("$CTL" -c "$T_DIR/ap1.conf" -z "$(zone_name ap1)" -p /p/x)

# ---- one client over its limit ----
# The first decision Redis ever takes loads the function library (its
# first FCALL fails and is sent again): a third client's, out of the
# counts below.
is "a third client is admitted" 200 "$(code "$A1" --interface 127.0.0.3)"
c0=$(calls)
codes=""
for _ in 1 2 3 4 5 6; do
    codes="$codes $(code "$A1")"
done
is "A: 5 admitted, then refused" " 200 200 200 200 200 429" "$codes"
is "A: 6 Redis calls, one per request" 6 $(($(calls) - c0))

# ---- the flood: no Redis call ----
c1=$(calls)
out=$(ab -q -c 2 -t 10 "$A1" 2>&1)
complete=$(printf '%s\n' "$out" | sed -n 's/^Complete requests: *//p')
non2xx=$(printf '%s\n' "$out" | sed -n 's/^Non-2xx responses: *//p')
echo "# flood: ${complete:-?} requests in 10 s"
# ab counts the request cut off at the time limit as non-2xx too.
if [ -n "$complete" ] && [ "$complete" -gt 100 ] \
    && [ "${non2xx:-0}" -ge "$complete" ]; then
    ok "A's flood of 10 s: all $complete refused"
else
    not_ok "A's flood of 10 s: all refused (complete ${complete:-?}, \
non-2xx ${non2xx:-?})"
fi
is "A's flood: not one Redis call" 0 $(($(calls) - c1))
hdr=$(curl -s -D - -o /dev/null "$A1" | tr -d '\r')
like "a cached refusal: 429 with Retry-After" \
    '^HTTP/1.1 429.*Retry-After: [0-9]+' "$(echo $hdr)"
hits=$(curl -s "${BASES[0]}/metrics" |
    sed -n 's/^ratelimit2_overlimit_hits_total \([0-9]*\)$/\1/p')
if [ -n "$hits" ] && [ -n "$complete" ] && [ "$hits" -gt "$complete" ]; then
    ok "ratelimit2_overlimit_hits_total counts the flood ($hits)"
else
    not_ok "ratelimit2_overlimit_hits_total counts the flood \
(${hits:-none}, flood ${complete:-?})"
fi
is "still no Redis call" 0 $(($(calls) - c1))

# ---- another client is its own ----
c2=$(calls)
is "B is admitted while A is refused" 200 \
    "$(code "$A1" --interface 127.0.0.2)"
is "B: one Redis call" 1 $(($(calls) - c2))

# ---- the second server: its own cache ----
c3=$(calls)
is "A on ap2: refused" 429 "$(code "$A2")"
is "A on ap2: asked Redis once" 1 $(($(calls) - c3))
is "A on ap2 again: refused" 429 "$(code "$A2")"
is "A on ap2 again: answered from ap2's cache" 1 $(($(calls) - c3))
is "A on lighttpd: refused" 429 "$(code "$AL")"
is "A on lighttpd: asked Redis once" 2 $(($(calls) - c3))
is "A on lighttpd again: refused" 429 "$(code "$AL")"
is "A on lighttpd again: answered from its cache" 2 $(($(calls) - c3))

# ---- reset: this host at once, the other within the sync ----
change "ratelimit2ctl reset 127.0.0.1" reset 127.0.0.1
c4=$(calls)
is "after reset ap1 admits A at once" 200 "$(code "$A1")"
is "after reset: one Redis call" 1 $(($(calls) - c4))
propagates "after reset ap2 and lighttpd admit A (the override counter)" \
    200 /p/x

# ---- a boost drops every cached refusal of the fleet ----
for _ in 1 2 3 4 5 6; do
    code "$A1" >/dev/null
    code "$A2" >/dev/null
    code "$AL" >/dev/null
done
is "A refused on ap1 again" 429 "$(code "$A1")"
c5=$(calls)
is "A refused on ap2 again" 429 "$(code "$A2")"
is "A refused on lighttpd again" 429 "$(code "$AL")"
is "... from their caches" 0 $(($(calls) - c5))
# The override change: a zone, state file and audit of ratelimit2ctl's
# own, as an operator's host would have.
C=("$CTL" -c "$T_DIR/ap1.conf" -z "$(zone_name ctl)"
    --state "$T_DIR/ctl.overrides" --audit "$T_DIR/ctl.audit")
change "ratelimit2ctl boost '*' 2" boost '*' 2 --ttl 60s
propagates "after the boost all three admit A" 200 /p/x

lighttpd_stop "$L"
done_testing
