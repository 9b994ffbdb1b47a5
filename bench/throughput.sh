#!/bin/bash
# throughput.sh -- requests per second and latency of every server kind,
# bare and with a limiter that never trips, measured with wrk in
# interleaved rounds: round 1 runs every configuration once (A B C ...),
# round 2 again in the same order, and so on; a last round runs the bare
# servers alone.  A configuration's run is compared with the mean of the
# bare server's runs just before and just after it (its own round's and
# the next one's), so a slow phase of the machine (other work, frequency
# changes) hits both sides of a ratio; the report takes the median over
# rounds.  Many short rounds pair runs more closely than a few long ones.
#
# Writes one "wrk" record per run to $RAW.  Settings (environment):
#   BENCH_ROUNDS    rounds (default 10)
#   BENCH_DURATION  seconds per run (default 6)
#   BENCH_CONNS     wrk connections, all kept alive (default 16)
#   BENCH_PIN       1 (default): with 2 or more CPUs, servers (and Redis,
#                   and the FastCGI daemon) on every CPU but the last, wrk
#                   alone on the last; 0: no pinning
set -u
source "$(dirname "$0")/lib.sh"

ROUNDS=${BENCH_ROUNDS:-10}
DUR=${BENCH_DURATION:-6}
CONNS=${BENCH_CONNS:-16}
NCPU=$(nproc)
CLK_TCK=$(getconf CLK_TCK)
WRK=(wrk)
if [ "${BENCH_PIN:-1}" = 1 ] && [ "$NCPU" -ge 2 ]; then
    # Pin this shell: every server started from here inherits it.
    taskset -pc "0-$((NCPU - 2))" $$ >/dev/null
    WRK=(taskset -c "$((NCPU - 1))" wrk)
    BENCH_NGINX_WORKERS=$((NCPU - 1))
    raw wrk_setup pinned=1 server_cpus="0-$((NCPU - 2))" \
        load_cpu=$((NCPU - 1)) rounds="$ROUNDS" duration_s="$DUR" \
        connections="$CONNS"
else
    BENCH_NGINX_WORKERS=$NCPU
    raw wrk_setup pinned=0 server_cpus="all" load_cpu="all" \
        rounds="$ROUNDS" duration_s="$DUR" connections="$CONNS"
fi
export BENCH_NGINX_WORKERS

# name:reference -- the bare server each configuration is compared with.
CONFIGS="apache_bare:apache_bare apache_local:apache_bare
apache_redis:apache_bare apache_qos:apache_bare apache_evasive:apache_bare
nginx_bare:nginx_bare nginx_limit_req:nginx_bare
lighttpd_bare:lighttpd_bare lighttpd_rl2_fcgi:lighttpd_bare"
declare -A PORT

start_all() {
    local c name p
    bench_redis || return 1
    for c in $CONFIGS; do
        name=${c%%:*}
        p=$(free_port)
        PORT[$name]=$p
        case "$name" in
        apache_*)
            apache_bench "$T_DIR/$name" "$p" event "${name#apache_}" free
            apache_start "$T_DIR/$name" || return 1 ;;
        nginx_*)
            nginx_bench "$T_DIR/$name" "$p" "${name#nginx_}" free
            nginx_start "$T_DIR/$name" || return 1 ;;
        lighttpd_*)
            lighttpd_bench "$T_DIR/$name" "$p" "${name#lighttpd_}"
            lighttpd_start "$T_DIR/$name" || return 1 ;;
        esac
        if [ "$(code "http://127.0.0.1:$p/index.html")" != 200 ]; then
            echo "$name does not answer 200" >&2
            return 1
        fi
    done
}

# us VALUE -- a wrk duration ("812.00us", "1.20ms", "2.01s") in µs.
us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
        else if (v ~ /s$/) print n * 1000000; else print -1 }'
}

# server_pids NAME -- the processes that serve NAME: the server's main
# process and its children (workers, the FastCGI daemon), and Redis for
# the Redis configuration.
server_pids() {
    local d=$T_DIR/$1 main
    case "$1" in
    apache_*) main=$(cat "$d/httpd.pid") ;;
    nginx_*) main=$(cat "$d/nginx.pid.job") ;;
    lighttpd_*) main=$(cat "$d/lighttpd.pid") ;;
    esac
    echo "$main" $(pgrep -P "$main")
    [ "$1" = apache_redis ] && cat "$T_DIR/redis/redis.pid"
}

# cpu_ticks NAME -- clock ticks of CPU (user + system, with reaped
# children's) those processes have used so far.  Unlike requests per
# second, CPU time per request hardly depends on what else the machine
# runs: it is the second, steadier view of each configuration's cost.
cpu_ticks() {
    local p t=0 f
    for p in $(server_pids "$1"); do
        # the fields after "pid (comm) ": utime is the 12th
        read -ra f <<<"$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null)" \
            || continue
        [ "${#f[@]}" -gt 15 ] || continue
        t=$((t + f[11] + f[12] + f[13] + f[14]))
    done
    echo "$t"
}

# run NAME ROUND SECONDS -- one wrk run; ROUND 0 is a warm-up, not kept.
run() {
    local name=$1 round=$2 secs=$3 out rps p50 p99 bad errs n t0 t1
    t0=$(cpu_ticks "$name")
    out=$("${WRK[@]}" -t1 -c"$CONNS" -d"${secs}s" --latency \
        "http://127.0.0.1:${PORT[$name]}/index.html" 2>&1)
    t1=$(cpu_ticks "$name")
    [ "$round" = 0 ] && return 0
    n=$(printf '%s\n' "$out" \
        | awk '$2 == "requests" && $3 == "in" { print $1 }')
    rps=$(printf '%s\n' "$out" | sed -n 's/^Requests\/sec: *//p')
    p50=$(us "$(printf '%s\n' "$out" | awk '$1 == "50%" { print $2 }')")
    p99=$(us "$(printf '%s\n' "$out" | awk '$1 == "99%" { print $2 }')")
    bad=$(printf '%s\n' "$out" \
        | sed -n 's/^ *Non-2xx or 3xx responses: *//p')
    errs=$(printf '%s\n' "$out" | sed -n 's/^ *Socket errors: //p')
    if [ -z "$rps" ]; then
        printf '%s\n' "$out" >&2
        return 1
    fi
    raw wrk config="$name" round="$round" rps="$rps" p50_us="$p50" \
        p99_us="$p99" non2xx="${bad:-0}" socket_errors="${errs:-none}" \
        requests="${n:-0}" cpu_ticks=$((t1 - t0)) clk_tck="$CLK_TCK"
    echo "# round $round $name: $rps req/s, p50 ${p50}us, p99 ${p99}us" >&2
    # A limiter that trips measures its refusals, not its cost; mod_qos
    # cannot be set high enough for a fast server (bench/lib.sh): its
    # refusals are recorded and shown beside its figures.
    if [ "${bad:-0}" != 0 ] && [ "$name" != apache_qos ]; then
        echo "$name answered $bad requests with an error status" >&2
        return 1
    fi
}

if ! start_all; then
    echo "throughput: a server did not start" >&2
    exit 1
fi
for c in $CONFIGS; do
    run "${c%%:*}" 0 2 || exit 1
done
for c in $CONFIGS; do
    raw wrk_config config="${c%%:*}" reference="${c#*:}"
done
redis-cli -p "$RP" config resetstat >/dev/null
for r in $(seq 1 "$ROUNDS"); do
    for c in $CONFIGS; do
        run "${c%%:*}" "$r" "$DUR" || exit 1
    done
done
for c in $CONFIGS; do
    [ "${c%%:*}" = "${c#*:}" ] || continue
    run "${c%%:*}" $((ROUNDS + 1)) "$DUR" || exit 1
done
# Failover would answer from the local zone: record what Redis answered
# (FCALL, or EVALSHA where functions are refused).
calls=$(redis-cli -p "$RP" info commandstats | tr -d '\r' \
    | sed -En 's/^cmdstat_(fcall|evalsha):calls=([0-9]*),.*/\2/p' \
    | awk '{ s += $1 } END { print s + 0 }')
raw wrk_redis script_calls="${calls:-0}"
for c in $CONFIGS; do
    case "$c" in
    lighttpd_*) lighttpd_stop "$T_DIR/${c%%:*}" ;;
    nginx_*) nginx_stop "$T_DIR/${c%%:*}" ;;
    esac
done
