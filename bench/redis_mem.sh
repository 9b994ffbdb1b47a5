#!/bin/bash
# redis_mem.sh -- bytes Redis spends per client key, for each algorithm:
# an Apache counting in a redis-server started here, one location per
# algorithm; for each, an empty Redis, one request, then MEMORY USAGE
# (SAMPLES 0: every element counted) summed over the keys it created.
# sliding_log keeps one entry per request in its window: measured again
# after 100 requests.
#
# Writes one "redis_mem" record per algorithm to $RAW.
set -u
source "$(dirname "$0")/lib.sh"

ALGOS="token_bucket leaky_bucket fixed_window sliding_window sliding_log
quota concurrency"

bench_redis || { echo "redis_mem: redis-server did not start" >&2; exit 1; }
D=$T_DIR/mem
P=$(free_port)
apache_bench "$D" "$P" event redis quota
{
    echo "RateLimit2Zone $(zone_name mem) 10000"
    echo "RateLimit2Redis 127.0.0.1:$RP"
    for a in $ALGOS; do
        mkdir -p "$D/htdocs/$a"
        echo ok >"$D/htdocs/$a/index.html"
        case "$a" in
        quota) lim="100/day" ;;
        concurrency) lim="100" ;;
        *) lim="100/1h" ;;
        esac
        printf '<Location /%s>\n    RateLimit2Limit %s %s algorithm=%s\n' \
            "$a" "$a" "$lim" "$a"
        printf '</Location>\n'
    done
} >"$D/site.conf"
apache_start "$D" || { echo "redis_mem: apache did not start" >&2; exit 1; }

# usage -- "KEYS BYTES" of everything in Redis now.
usage() {
    local k n=0 b=0
    for k in $(redis-cli -p "$RP" --scan); do
        n=$((n + 1))
        b=$((b + $(redis-cli -p "$RP" memory usage "$k" samples 0)))
    done
    echo "$n $b"
}

for a in $ALGOS; do
    redis-cli -p "$RP" flushall >/dev/null
    c=$(code "http://127.0.0.1:$P/$a/")
    read -r keys bytes <<<"$(usage)"
    raw redis_mem algorithm="$a" requests=1 status="$c" keys="$keys" \
        bytes="$bytes"
    echo "# $a: $keys keys, $bytes bytes after one request ($c)" >&2
    if [ "$a" = sliding_log ]; then
        for _ in $(seq 2 100); do
            code "http://127.0.0.1:$P/$a/" >/dev/null
        done
        read -r keys bytes <<<"$(usage)"
        raw redis_mem algorithm="$a" requests=100 status=200 keys="$keys" \
            bytes="$bytes"
        echo "# $a: $keys keys, $bytes bytes after 100 requests" >&2
    fi
done
apache_stop "$D"
