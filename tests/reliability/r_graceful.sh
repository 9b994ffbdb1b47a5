#!/bin/bash
# r_graceful.sh -- `apachectl graceful` during load, event and prefork:
# no request fails, no 5xx, and the counts go on (a quota in the middle
# of its window is not reset by the restart).
source "$(dirname "$0")/../integration/lib.sh"

ROUNDS=2
[ "${RL2_SOAK:-0}" = 1 ] && ROUNDS=10

for mpm in event prefork; do
    D=$T_DIR/$mpm
    P=$(free_port)
    apache_conf "$D" "$P" "$mpm"
    cat >>"$D/site.conf" <<CONF
RateLimit2Zone $(zone_name "$mpm") 10000
<Location /free>
    RateLimit2Limit free 1000000/1h algorithm=token_bucket
</Location>
<Location /q>
    RateLimit2Limit q 200/1h algorithm=sliding_log
</Location>
CONF
    site_pages "$D/htdocs" free q
    if ! apache_start "$D"; then
        not_ok "$mpm: apache starts"
        continue
    fi
    ok "$mpm: apache starts"

    # The quota is half spent before the restarts.
    is "$mpm: 120 of the quota of 200 before the restarts" 120 \
        "$(admitted 120 4 "http://127.0.0.1:$P/q/x")"

    # Constant load; each graceful restart is followed at once by more
    # requests against the quota, while the old generation still serves.
    ab -q -t $((2 * ROUNDS + 2)) -n 10000000 -c 16 -s 10 \
        "http://127.0.0.1:$P/free/x" >"$T_DIR/$mpm.ab" 2>&1 &
    jl=$!
    sleep 0.3
    gens=0
    q=0
    for _ in $(seq 1 "$ROUNDS"); do
        apache_graceful "$D" && gens=$((gens + 1))
        q=$((q + $(admitted 75 4 "http://127.0.0.1:$P/q/x")))
        sleep 0.3
    done
    if kill -0 "$jl" 2>/dev/null; then
        ok "$mpm: the load spanned every restart"
    else
        not_ok "$mpm: the load spanned every restart"
    fi
    wait "$jl"
    is "$mpm: $ROUNDS graceful restarts accepted" "$ROUNDS" "$gens"
    n=$(sed -n 's/^Complete requests: *//p' "$T_DIR/$mpm.ab")
    if [ "${n:-0}" -gt 1000 ]; then
        ok "$mpm: the load ran ($n requests)"
    else
        not_ok "$mpm: the load ran (${n:-no} requests)"
        sed 's/^/#   /' "$T_DIR/$mpm.ab" | tail -20
    fi
    is "$mpm: no failed request" 0 \
        "$(sed -n 's/^Failed requests: *//p' "$T_DIR/$mpm.ab")"
    is "$mpm: no non-2xx response in the load" "" \
        "$(sed -n 's/^Non-2xx responses: *//p' "$T_DIR/$mpm.ab")"
    is "$mpm: the quota went on counting: 80 more, not 200" 80 "$q"
    is "$mpm: still refused after the restarts" 429 \
        "$(code "http://127.0.0.1:$P/q/x")"
    is "$mpm: no 5xx in the access log" 0 \
        "$(grep -c '" 5[0-9][0-9]$' "$D/logs/access.log")"
    like "$mpm: the restarts happened" \
        "(SIGUSR1|Graceful restart requested)" "$(cat "$D/logs/error.log")"
    is "$mpm: no child crashed" "" \
        "$(grep -E 'Segmentation fault|exit signal' "$D/logs/error.log")"
    apache_stop "$D"
done

done_testing
