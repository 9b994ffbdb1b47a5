#!/bin/bash
# t_exact.sh -- a limit of 100 admits exactly 100 of 1000 concurrent
# requests, for every window and bucket algorithm, under event and
# prefork (one shared zone, many processes and threads); and what a 429
# and an allowed response carry: the IETF fields by default (event), and
# X-RateLimit-* too with RateLimit2LegacyHeaders On (prefork).
. "$(dirname "$0")/lib.sh"

ALGOS="fw:fixed_window sl:sliding_log tb:token_bucket lb:leaky_bucket"

for mpm in event prefork; do
    D=$T_DIR/$mpm
    P=$(free_port)
    apache_conf "$D" "$P" "$mpm"
    {
        echo "RateLimit2Zone $(zone_name "exact-$mpm") 10000"
        [ "$mpm" = prefork ] && echo "RateLimit2LegacyHeaders On"
        for a in $ALGOS; do
            loc=${a%%:*}
            algo=${a#*:}
            mkdir -p "$D/htdocs/$loc"
            echo hello >"$D/htdocs/$loc/x"
            cat <<CONF
<Location /$loc>
    RateLimit2Limit $loc 100/1h algorithm=$algo
</Location>
CONF
        done
        mkdir -p "$D/htdocs/ok"
        echo hello >"$D/htdocs/ok/x"
        cat <<CONF
<Location /ok>
    RateLimit2Limit okl 100/1h
</Location>
CONF
    } >"$D/site.conf"
    if ! apache_start "$D"; then
        not_ok "$mpm: apache starts"
        continue
    fi
    ok "$mpm: apache starts"

    # An allowed response carries the headers too.
    H=$T_DIR/$mpm-200.h
    c=$(curl -s -D "$H" -o /dev/null -w '%{http_code}' \
        "http://127.0.0.1:$P/ok/x")
    is "$mpm: request under the limit gets 200" 200 "$c"
    hdrs=$(tr -d '\r' <"$H")
    like "$mpm: 200 has RateLimit with r=99" \
        '^RateLimit: "okl";r=99;t=[0-9]+' "$hdrs"
    like "$mpm: 200 has RateLimit-Policy" \
        '^RateLimit-Policy: "okl";q=100;w=3600' "$hdrs"
    if [ "$mpm" = prefork ]; then
        like "$mpm: legacy on: 200 has X-RateLimit-Remaining 99" \
            '^X-RateLimit-Remaining: 99' "$hdrs"
    elif printf '%s\n' "$hdrs" | grep -qi '^X-RateLimit-'; then
        not_ok "$mpm: legacy off (default): 200 has no X-RateLimit-*"
    else
        ok "$mpm: legacy off (default): 200 has no X-RateLimit-*"
    fi
    if printf '%s\n' "$hdrs" | grep -qi '^Retry-After:'; then
        not_ok "$mpm: 200 has no Retry-After"
    else
        ok "$mpm: 200 has no Retry-After"
    fi
    # fixed_window spans are aligned on the monotonic clock: /ok's t says
    # how far the next span boundary is; never start the count within a
    # few seconds of it.
    t=$(printf '%s\n' "$hdrs" \
        | sed -n 's/^RateLimit: .*;t=\([0-9]*\)$/\1/p')
    if [ -n "$t" ] && [ "$t" -le 10 ]; then
        echo "# waiting ${t}s for the next fixed window"
        sleep $((t + 1))
    fi

    for a in $ALGOS; do
        loc=${a%%:*}
        algo=${a#*:}
        n=$(admitted 1000 64 "http://127.0.0.1:$P/$loc/x")
        is "$mpm: $algo 100/1h admits exactly 100 of 1000 at c=64" 100 "$n"
    done

    # A refused request: status, headers and the JSON body.
    H=$T_DIR/$mpm-429.h
    B=$T_DIR/$mpm-429.b
    c=$(curl -s -D "$H" -o "$B" -w '%{http_code}' \
        "http://127.0.0.1:$P/fw/x")
    is "$mpm: request over the limit gets 429" 429 "$c"
    hdrs=$(tr -d '\r' <"$H")
    body=$(cat "$B")
    ra=$(printf '%s\n' "$hdrs" | sed -n 's/^[Rr]etry-[Aa]fter: *//p')
    if [ -n "$ra" ] && [ "$ra" -ge 1 ] 2>/dev/null; then
        ok "$mpm: 429 has Retry-After >= 1 ($ra)"
    else
        not_ok "$mpm: 429 has Retry-After >= 1 (got '$ra')"
    fi
    like "$mpm: 429 has RateLimit" \
        '^RateLimit: "fw";r=0;t=[0-9]+' "$hdrs"
    like "$mpm: 429 has RateLimit-Policy" \
        '^RateLimit-Policy: "fw";q=100;w=3600' "$hdrs"
    t=$(printf '%s\n' "$hdrs" \
        | sed -n 's/^RateLimit: .*;t=\([0-9]*\)$/\1/p')
    is "$mpm: 429 RateLimit t equals Retry-After" "$ra" "$t"
    if [ "$mpm" = prefork ]; then
        like "$mpm: 429 has X-RateLimit-Limit" \
            '^X-RateLimit-Limit: 100' "$hdrs"
        like "$mpm: 429 has X-RateLimit-Remaining 0" \
            '^X-RateLimit-Remaining: 0' "$hdrs"
        reset=$(printf '%s\n' "$hdrs" | sed -n 's/^X-RateLimit-Reset: *//p')
        now=$(date +%s)
        if [ -n "$reset" ] && [ "$reset" -ge "$now" ] \
            && [ "$reset" -le $((now + 3601)) ]; then
            ok "$mpm: X-RateLimit-Reset is epoch seconds within the hour"
        else
            not_ok "$mpm: X-RateLimit-Reset is epoch seconds within the hour"
            echo "#   reset '$reset', now $now"
        fi
    elif printf '%s\n' "$hdrs" | grep -qi '^X-RateLimit-'; then
        not_ok "$mpm: legacy off (default): 429 has no X-RateLimit-*"
    else
        ok "$mpm: legacy off (default): 429 has no X-RateLimit-*"
    fi
    like "$mpm: 429 has Content-Type application/json" \
        '^Content-Type: application/json' "$hdrs"
    like "$mpm: 429 body is one JSON object" '^\{.*\}$' "$body"
    for k in error message rule limit remaining reset retry_after; do
        like "$mpm: 429 body has key $k" "\"$k\":" "$body"
    done
    like "$mpm: 429 body names the rule" '"rule":"fw"' "$body"
    like "$mpm: 429 body retry_after equals Retry-After" \
        "\"retry_after\":${ra}[,}]" "$body"

    apache_stop "$D"
done

done_testing
