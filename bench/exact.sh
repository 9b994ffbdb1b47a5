#!/bin/bash
# exact.sh -- how many of 1,000 requests from one client a quota of 100
# admits, sent by ab at 16 and at 64 connections (no keep-alive), under
# Apache's event and prefork MPMs: each of mod_ratelimit2's algorithms
# (one Apache per MPM, one location per algorithm and concurrency, so
# every count starts fresh), mod_qos and mod_evasive (one Apache per run),
# and nginx limit_req (two workers sharing its zone; nginx has no MPM).
# Each peer is set so that 100 sequential requests pass (bench/lib.sh).
#
# Writes one "exact" record per run to $RAW.
set -u
source "$(dirname "$0")/lib.sh"

ALGOS="fixed_window sliding_log sliding_window token_bucket leaky_bucket
quota"
CONNS="16 64"
N=1000
# Seconds a server runs before it is counted against: the MPM grows its
# pool of children to the configured spares, as on a server in service
# (mod_evasive's tables are per child).
SETTLE=${BENCH_SETTLE:-3}

record() {
    raw exact server="$1" mpm="$2" limiter="$3" connections="$4" \
        requests=$N expected=100 admitted="$5"
    echo "# $1 $2 $3 c=$4: $5 of $N admitted" >&2
}

# Our algorithms: one Apache per MPM.
ours() {
    local mpm=$1 d=$T_DIR/rl2-$1 p a c rate t
    p=$(free_port)
    apache_bench "$d" "$p" "$mpm" local quota
    {
        echo "RateLimit2Zone $(zone_name "ex-$mpm") 100000"
        for c in $CONNS; do
            for a in $ALGOS; do
                rate=100/1h
                [ "$a" = quota ] && rate=100/day
                mkdir -p "$d/htdocs/c$c/$a"
                echo ok >"$d/htdocs/c$c/$a/index.html"
                printf '<Location /c%s/%s>\n    RateLimit2Limit %s%s %s ' \
                    "$c" "$a" "$a" "$c" "$rate"
                printf 'algorithm=%s\n</Location>\n' "$a"
            done
        done
        mkdir -p "$d/htdocs/probe"
        echo ok >"$d/htdocs/probe/index.html"
        printf '<Location /probe>\n    RateLimit2Limit probe 100/1h '
        printf 'algorithm=fixed_window\n</Location>\n'
    } >"$d/site.conf"
    apache_start "$d" || return 1
    sleep "$SETTLE"
    # Fixed windows of an hour are aligned on the clock: never count
    # across a boundary (the probe's RateLimit t says how far it is), nor
    # a daily quota across midnight UTC.
    t=$(curl -s -D - -o /dev/null "http://127.0.0.1:$p/probe/" | tr -d '\r' \
        | sed -n 's/^RateLimit: .*;t=\([0-9]*\)$/\1/p')
    if [ -n "$t" ] && [ "$t" -le 30 ]; then
        sleep $((t + 1))
    fi
    quota_guard
    for c in $CONNS; do
        for a in $ALGOS; do
            record apache "$mpm" "$a" "$c" \
                "$(admitted $N "$c" "http://127.0.0.1:$p/c$c/$a/")"
        done
    done
    apache_stop "$d"
}

# peer KIND MPM CONNS -- a fresh Apache with mod_qos or mod_evasive.
peer() {
    local kind=$1 mpm=$2 c=$3 d=$T_DIR/$1-$2-$3 p
    p=$(free_port)
    apache_bench "$d" "$p" "$mpm" "$kind" quota
    apache_start "$d" || return 1
    sleep "$SETTLE"
    record apache "$mpm" "mod_$kind" "$c" \
        "$(admitted $N "$c" "http://127.0.0.1:$p/index.html")"
    apache_stop "$d"
}

nginx_quota() {
    local c=$1 d=$T_DIR/nginx-$1 p
    p=$(free_port)
    BENCH_NGINX_WORKERS=2 nginx_bench "$d" "$p" limit_req quota
    nginx_start "$d" || return 1
    record nginx "2 workers" limit_req "$c" \
        "$(admitted $N "$c" "http://127.0.0.1:$p/index.html")"
    nginx_stop "$d"
}

for mpm in event prefork; do
    ours "$mpm" || { echo "exact: apache $mpm did not start" >&2; exit 1; }
    for kind in qos evasive; do
        for c in $CONNS; do
            peer "$kind" "$mpm" "$c" \
                || { echo "exact: $kind $mpm did not start" >&2; exit 1; }
        done
    done
done
for c in $CONNS; do
    nginx_quota "$c" || { echo "exact: nginx did not start" >&2; exit 1; }
done
