#!/bin/bash
# redis_mem.sh -- bytes Redis spends per client key, for each algorithm:
# an Apache counting in a redis-server started here, one location per
# algorithm; for each, an empty Redis, one request, then MEMORY USAGE
# (SAMPLES 0: every element counted) summed over the keys it created.
# sliding_log keeps one entry per request in its window: measured again
# after 100 requests.  A concurrency key lives only while its request is
# in flight: measured during a CGI that sleeps, and again once it ended.
#
# Writes one "redis_mem" record per algorithm to $RAW.
set -u
source "$(dirname "$0")/lib.sh"

ALGOS="token_bucket leaky_bucket fixed_window sliding_window sliding_log
quota"

bench_redis || { echo "redis_mem: redis-server did not start" >&2; exit 1; }
D=$T_DIR/mem
P=$(free_port)
apache_bench "$D" "$P" event redis quota
# /slow/ is a concurrency-limited CGI that holds its slot for 2 s.
mkdir -p "$D/cgi" "$D/run"
chmod 755 "$D/cgi"
chmod 777 "$D/run"
cat >"$D/cgi/slow.sh" <<SH
#!/bin/sh
touch "$D/run/started"
sleep 2
printf 'Content-Type: text/plain\r\n\r\nok\n'
SH
chmod 755 "$D/cgi/slow.sh"
{
    echo "RateLimit2Zone $(zone_name mem) 10000"
    echo "RateLimit2Redis 127.0.0.1:$RP"
    for a in $ALGOS; do
        mkdir -p "$D/htdocs/$a"
        echo ok >"$D/htdocs/$a/index.html"
        lim=100/1h
        [ "$a" = quota ] && lim=100/day
        printf '<Location /%s>\n    RateLimit2Limit %s %s algorithm=%s\n' \
            "$a" "$a" "$lim" "$a"
        printf '</Location>\n'
    done
    cat <<CONF
ScriptAlias /slow/ "$D/cgi/"
<Directory "$D/cgi">
    Require all granted
</Directory>
<Location /slow/>
    RateLimit2Limit concurrency 100 algorithm=concurrency
</Location>
CONF
} >"$D/site.conf"
apache_start "$D" || { echo "redis_mem: apache did not start" >&2; exit 1; }

# usage -- "KEYS BYTES" of everything in Redis now.  A key deleted
# between SCAN and MEMORY USAGE (a concurrency slot being released) has
# no usage and is not counted.
usage() {
    local k n=0 b=0 m
    for k in $(redis-cli -p "$RP" --scan); do
        m=$(redis-cli -p "$RP" memory usage "$k" samples 0)
        [ -n "$m" ] || continue
        n=$((n + 1))
        b=$((b + m))
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

redis-cli -p "$RP" flushall >/dev/null
code "http://127.0.0.1:$P/slow/slow.sh" >"$T_DIR/slow.code" &
slow=$!
for _ in $(seq 1 200); do
    [ -e "$D/run/started" ] && break
    sleep 0.05
done
read -r keys bytes <<<"$(usage)"
wait "$slow"
raw redis_mem algorithm=concurrency requests=1 in_flight=1 \
    status="$(cat "$T_DIR/slow.code")" keys="$keys" bytes="$bytes"
echo "# concurrency: $keys keys, $bytes bytes in flight" >&2
# The slot is released by a cleanup when the request's pool goes, just
# after the answer: give it a moment.
for _ in $(seq 1 40); do
    read -r keys bytes <<<"$(usage)"
    [ "$keys" = 0 ] && break
    sleep 0.05
done
raw redis_mem algorithm=concurrency requests=1 in_flight=0 status=200 \
    keys="$keys" bytes="$bytes"
echo "# concurrency: $keys keys, $bytes bytes once it ended" >&2
apache_stop "$D"
