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
# The Redis lines each have a redis-server of their own: exact mode (one
# call of the store's Lua per request) over loopback TCP and over a unix
# socket, lease mode (slices of a key's allowance spent locally).  Each
# run records the calls its Redis answered (INFO commandstats) and the
# CPU time the Redis process used.  The many-clients lines put Apache
# behind a trusted proxy (mod_remoteip) and send each request in the name
# of one of BENCH_CLIENTS clients in X-Forwarded-For
# (bench/many_clients.lua), against a bare Apache set up the same way.
#
# Writes one "wrk" record per run to $RAW.  Settings (environment):
#   BENCH_ROUNDS    rounds (default 8)
#   BENCH_DURATION  seconds per run (default 6)
#   BENCH_CONNS     wrk connections, all kept alive (default 16)
#   BENCH_CLIENTS   clients of the many-clients lines (default 10,000)
#   BENCH_LINES     the configurations to measure, "name:reference ..."
#                   (default: all of CONFIGS below), e.g.
#                   "nginx_bare:nginx_bare nginx_rl2_fcgi:nginx_bare";
#                   nginx_rl2_http:nginx_bare is ratelimit2-fcgi -H
#                   behind nginx-auth-request-http.conf (HTTP/1.1, kept
#                   connections);
#                   nginx_rl2_fcgi_keep:nginx_bare (nginx_rl2_fcgi with
#                   fastcgi_keep_conn and an upstream keepalive, which
#                   auth_request cannot use) is measured only when named
#   BENCH_PIN       1 (default): with 2 or more CPUs, servers (and Redis,
#                   and the FastCGI daemon) on every CPU but the last, wrk
#                   alone on the last; 0: no pinning
set -u
source "$(dirname "$0")/lib.sh"

ROUNDS=${BENCH_ROUNDS:-8}
DUR=${BENCH_DURATION:-6}
CONNS=${BENCH_CONNS:-16}
CLIENTS=${BENCH_CLIENTS:-10000}
MANY_LUA=$RL2_ROOT/bench/many_clients.lua
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
raw wrk_lines clients="$CLIENTS" lease="$BENCH_LEASE"
export BENCH_NGINX_WORKERS

# name:reference -- the bare server each configuration is compared with.
CONFIGS="apache_bare:apache_bare apache_local:apache_bare
apache_redis:apache_bare apache_redis_unix:apache_bare
apache_redis_lease:apache_bare apache_qos:apache_bare
apache_evasive:apache_bare
apache_many_bare:apache_many_bare apache_many_redis:apache_many_bare
apache_many_lease:apache_many_bare
nginx_bare:nginx_bare nginx_limit_req:nginx_bare
nginx_rl2_fcgi:nginx_bare nginx_rl2_http:nginx_bare
lighttpd_bare:lighttpd_bare lighttpd_rl2_fcgi:lighttpd_bare"
CONFIGS=${BENCH_LINES:-$CONFIGS}
declare -A PORT RPORT SKIPPED

# start_one NAME -- start NAME's server (and its own Redis) on free
# ports; 0 once it answers 200.
start_one() {
    local name=$1 p=$(free_port)
    PORT[$name]=$p
    case "$name" in
    apache_*redis* | apache_*lease)
        bench_redis_own "$name" || return 1
        RPORT[$name]=$RP ;;
    esac
    case "$name" in
    apache_*)
        apache_bench "$T_DIR/$name" "$p" event "${name#apache_}" free
        apache_start "$T_DIR/$name" || return 1 ;;
    nginx_*)
        nginx_bench "$T_DIR/$name" "$p" "${name#nginx_}" free
        case "$name" in
        nginx_rl2_fcgi*) nginx_fcgi_start "$T_DIR/$name" || return 1 ;;
        nginx_rl2_http) nginx_fcgi_start "$T_DIR/$name" -H || return 1 ;;
        esac
        nginx_start "$T_DIR/$name" || return 1 ;;
    lighttpd_*)
        lighttpd_bench "$T_DIR/$name" "$p" "${name#lighttpd_}"
        lighttpd_start "$T_DIR/$name" || return 1 ;;
    esac
    if [ "$(code "http://127.0.0.1:$p/index.html")" != 200 ]; then
        echo "$name does not answer 200" >&2
        return 1
    fi
    [ "$name" != apache_many_redis ] || proxy_check "$name"
}

# proxy_check NAME -- the many-clients set-up works: three requests
# naming two clients in X-Forwarded-For reach NAME's Redis under two
# keys (MONITOR shows each call of the store's Lua with its key, the
# fourth word after the time and the peer).  Without it the line would
# measure one client (127.0.0.1) ten thousand times over.
proxy_check() {
    local name=$1 log=$T_DIR/$1.monitor mpid a n
    redis-cli -p "${RPORT[$name]}" monitor >"$log" 2>&1 &
    mpid=$!
    # Up to 20 s each: polls end at once on a quiet machine, and a busy
    # one must not fail the run.
    for _ in $(seq 1 400); do
        grep -q '^OK' "$log" && break
        sleep 0.05
    done
    if ! grep -q '^OK' "$log"; then
        kill "$mpid"
        wait "$mpid" 2>/dev/null
        echo "$name: redis-cli monitor did not start" >&2
        return 1
    fi
    for a in 198.18.0.1 198.18.0.2 198.18.0.1; do
        code -H "X-Forwarded-For: $a" \
            "http://127.0.0.1:${PORT[$name]}/index.html" >/dev/null
    done
    for _ in $(seq 1 400); do
        [ "$(grep -ciE '^[0-9.]+ \[[^]]*\] "(fcall|evalsha)"' "$log")" \
            -ge 3 ] && break
        sleep 0.05
    done
    kill "$mpid"
    wait "$mpid" 2>/dev/null
    n=$(grep -iE '^[0-9.]+ \[[^]]*\] "(fcall|evalsha)"' "$log" \
        | awk '{ print $7 }' | sort -u | wc -l)
    if [ "$n" != 2 ]; then
        echo "$name: two clients behind the proxy reached Redis under" \
            "$n keys, not 2 (mod_remoteip set-up, $log)" >&2
        return 1
    fi
}

# skip NAME -- BENCH_QUICK only: leave out a configuration whose server
# did not start (a feature not merged yet), and the lines compared with
# it; a full run stops instead, so that a published page never lacks a
# line silently.
skip() {
    local name=$1 d=$T_DIR/$1
    SKIPPED[$name]=1
    echo "throughput: $name left out of this BENCH_QUICK run: its server" \
        "did not start or answer (a full run fails here)" >&2
    raw wrk_skipped config="$name"
    [ -f "$d/httpd.pid" ] && apache_stop "$d"
    [ -f "$d/lighttpd.pid" ] && lighttpd_stop "$d"
    [ -f "$d/nginx.pid.job" ] && nginx_stop "$d"
    [ -n "${RPORT[$name]:-}" ] \
        && redis-cli -p "${RPORT[$name]}" shutdown nosave >/dev/null 2>&1
    return 0
}

start_all() {
    local c name ref
    for c in $CONFIGS; do
        name=${c%%:*}
        ref=${c#*:}
        if [ -n "${SKIPPED[$ref]:-}" ]; then
            skip "$name"
            continue
        fi
        start_one "$name" && continue
        [ "${BENCH_QUICK:-0}" = 1 ] || return 1
        skip "$name"
    done
}

# active -- the configurations measured (name:reference), in order.
active() {
    local c
    for c in $CONFIGS; do
        [ -n "${SKIPPED[${c%%:*}]:-}" ] || echo "$c"
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
    [ -z "${RPORT[$1]:-}" ] || cat "$T_DIR/redis_$1/redis.pid"
    fcgi_pids "$1"
}

# fcgi_pids NAME -- NAME's ratelimit2-fcgi process: lighttpd's child
# (spawned by bin-path), or the daemon started beside nginx (its
# parent is this shell, not nginx).
fcgi_pids() {
    local d=$T_DIR/$1
    case "$1" in
    lighttpd_rl2_fcgi) pgrep -P "$(cat "$d/lighttpd.pid")" -x ratelimit2-fcgi ;;
    nginx_rl2_fcgi* | nginx_rl2_http) cat "$d/rl2.pid" ;;
    esac
}

# fcgi_ticks NAME -- clock ticks of CPU (utime + stime, all its threads)
# NAME's ratelimit2-fcgi has used so far: what the authorizer itself
# costs, apart from the server's side of each FastCGI connection.
fcgi_ticks() {
    local p t=0 f
    for p in $(fcgi_pids "$1"); do
        read -ra f <<<"$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null)" \
            || continue
        [ "${#f[@]}" -gt 15 ] || continue
        t=$((t + f[11] + f[12]))
    done
    echo "$t"
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

# proc_cpu_ns PID -- the CPU time, in ns, the process's threads have run
# so far (/proc/PID/task/*/schedstat; /proc/PID/stat counts in ticks of
# 10 ms, too coarse for a Redis that lease mode leaves nearly idle).
proc_cpu_ns() {
    cat /proc/"$1"/task/*/schedstat 2>/dev/null \
        | awk '{ ns += $1 } END { printf "%.0f\n", ns }'
}

# redis_stats NAME -- "CALLS USEC CPU_NS" of NAME's own Redis so far: the
# calls of the store's Lua it answered (FCALL, or EVALSHA where functions
# are refused; the _RO and EVAL forms too; INFO commandstats, which also
# counts the commands a script runs, under their own names: those are
# part of a call, not calls), the µs Redis spent running them (their
# usec, which includes the commands they ran), and the CPU time of its
# process (all of its work: reading, parsing, answering).
redis_stats() {
    local p=${RPORT[$1]}
    printf '%s %s\n' "$(redis-cli -p "$p" info commandstats | tr -d '\r' \
        | awk -F'[:=,]' '
            $1 ~ /^cmdstat_(fcall|fcall_ro|evalsha|evalsha_ro|eval|eval_ro)$/ {
                calls += $3; usec += $5 }
            END { printf "%.0f %.0f", calls, usec }')" \
        "$(proc_cpu_ns "$(cat "$T_DIR/redis_$1/redis.pid")")"
}

# run NAME ROUND SECONDS -- one wrk run; ROUND 0 is a warm-up, not kept.
run() {
    local name=$1 round=$2 secs=$3 out rps p50 p99 bad errs n t0 t1
    local url=http://127.0.0.1:${PORT[$name]}/index.html target
    local r0=(0 0 0) r1=(0 0 0) redis=() fcgi=() f0 f1
    target=("$url")
    case "$name" in
    apache_many_*) target=(-s "$MANY_LUA" "$url" -- "$CLIENTS") ;;
    esac
    [ -z "${RPORT[$name]:-}" ] || read -ra r0 <<<"$(redis_stats "$name")"
    f0=$(fcgi_ticks "$name")
    t0=$(cpu_ticks "$name")
    out=$("${WRK[@]}" -t1 -c"$CONNS" -d"${secs}s" --latency "${target[@]}" \
        2>&1)
    t1=$(cpu_ticks "$name")
    f1=$(fcgi_ticks "$name")
    [ -z "${RPORT[$name]:-}" ] || read -ra r1 <<<"$(redis_stats "$name")"
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
    [ -z "${RPORT[$name]:-}" ] \
        || redis=(redis_calls=$((r1[0] - r0[0])) redis_usec=$((r1[1] - r0[1]))
                  redis_cpu_ns=$((r1[2] - r0[2])))
    [ -z "$(fcgi_pids "$name")" ] || fcgi=(fcgi_ticks=$((f1 - f0)))
    raw wrk config="$name" round="$round" rps="$rps" p50_us="$p50" \
        p99_us="$p99" non2xx="${bad:-0}" socket_errors="${errs:-none}" \
        requests="${n:-0}" cpu_ticks=$((t1 - t0)) clk_tck="$CLK_TCK" \
        "${redis[@]}" "${fcgi[@]}"
    echo "# round $round $name: $rps req/s, p50 ${p50}us, p99 ${p99}us" \
        "${redis[*]}" >&2
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
CONFIGS=$(active)
for c in $CONFIGS; do
    run "${c%%:*}" 0 2 || exit 1
done
for c in $CONFIGS; do
    raw wrk_config config="${c%%:*}" reference="${c#*:}"
done
# The settings of the ratelimit2-fcgi line, as the page quotes them.
if [ -n "${PORT[lighttpd_rl2_fcgi]:-}" ]; then
    raw wrk_fcgi conf="$(lighttpd_fcgi_conf "$T_DIR/lighttpd_rl2_fcgi" \
        | sed -e "s|$T_DIR/lighttpd_rl2_fcgi|DIR|g" \
              -e "s|$FCGI_BIN|ratelimit2-fcgi|g" -e 's|-z /[^ "]*|-z ZONE|' \
        | tr -s ' \n' ' ')"
fi
for c in $CONFIGS; do
    case "${c%%:*}" in
    nginx_rl2_fcgi* | nginx_rl2_http)
        raw wrk_fcgi_nginx config="${c%%:*}" conf="$(sed \
            -e "s|$T_DIR/${c%%:*}|DIR|g" "$T_DIR/${c%%:*}/fcgi.lines" \
            | tr -s ' \n' ' ')" ;;
    esac
done
for r in $(seq 1 "$ROUNDS"); do
    for c in $CONFIGS; do
        run "${c%%:*}" "$r" "$DUR" || exit 1
    done
done
for c in $CONFIGS; do
    [ "${c%%:*}" = "${c#*:}" ] || continue
    run "${c%%:*}" $((ROUNDS + 1)) "$DUR" || exit 1
done
for c in $CONFIGS; do
    case "$c" in
    lighttpd_*) lighttpd_stop "$T_DIR/${c%%:*}" ;;
    nginx_*) nginx_stop "$T_DIR/${c%%:*}" ;;
    esac
    case "$c" in
    nginx_rl2_fcgi* | nginx_rl2_http)
        kill -TERM "$(cat "$T_DIR/${c%%:*}/rl2.pid")" ;;
    esac
done
