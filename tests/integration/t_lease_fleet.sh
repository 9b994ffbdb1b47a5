#!/bin/bash
# t_lease_fleet.sh -- how exactly a fleet keeps one limit under a flood:
# one redis-server; two Apaches (one event MPM, one prefork) and one
# lighttpd with ratelimit2-fcgi as its authorizer, under one policy file
# (so all three derive the same Redis key for a rule and an address),
# sharing nothing but Redis.  One client, 127.0.0.1, counted by address,
# has a limit of 1000 a minute; for each of token_bucket, fixed_window
# and sliding_window, on a rule of its own per run (a fresh key each):
#   - all: 64 connections against each of the three servers at once
#     (ab -c 64 -n 1500, each server alone could spend the limit); the
#     fleet admits exactly 1000 (token bucket: at least 1000, at most
#     1000 and what it refilled during the run);
#   - kill: the same, and ratelimit2-fcgi is SIGKILLed once the fleet has
#     answered half the limit with 200; the fleet admits at most as much,
#     and at least 1000 - LEASE_MAX: what the dead daemon had counted in
#     Redis and never answered (see run_kill below).
# Each run counts one key in Redis.  The admitted counts, durations and
# Redis calls (INFO commandstats) are printed as "#" lines.
#
# The 200s are counted from the status line of every answer ab reads.
# No keep-alive: under load the event MPM closes idle keep-alive
# connections, and ab with -k counts each such close as one more
# complete request that it never sent.
#
# LEASE_OPTS is the mode under test, the rest of the policy's redis
# group: empty, the exact mode (one Redis call per request); lease mode
# is
#   LEASE_OPTS="lease = true; lease_max = $LEASE_MAX; lease_time = 1000;"
# and every assertion below holds in both.
. "$(dirname "$0")/fcgi_lib.sh"

LEASE_MAX=50
LEASE_OPTS=""

LIMIT=1000         # per minute, for 127.0.0.1
N=1500             # requests per server per run
C=64               # connections per server
FCGI_THREADS=16    # ratelimit2-fcgi's: at most this many decisions at once

redis_start_first

# ---- one policy for all three servers ----
# A rule per run: the runs never share a key.  Generous timeouts and
# failover "closed": a command that timed out after Redis counted it, or
# a decision made locally, would make the fleet's count inexact, and
# must show as a failure, never be mistaken for one of the modes.
RUNS="tb_all tb_kill fw_all fw_kill sw_all sw_kill"
POL=$T_DIR/policy.conf
{
    cat <<POL
redis = { server = "127.0.0.1:$RP"; connect_timeout = 2000; timeout = 5000;
          $LEASE_OPTS };
failover = { mode = "closed"; };
alerts = { enabled = false; };
rules = (
POL
    for r in $RUNS; do
        case "$r" in
            tb_*) alg=token_bucket ;;
            fw_*) alg=fixed_window ;;
            sw_*) alg=sliding_window ;;
        esac
        echo "  { name = \"$r\"; paths = \"/$r/**\";"
        echo "    limits = ( { rate = \"$LIMIT/1min\"; algorithm = \"$alg\"; } ); },"
    done | sed '$ s/,$//'
    echo ");"
} >"$POL"

# ---- two Apaches: ap1 (event), ap2 (prefork) ----
BASES=()
NAMES=()
for a in ap1 ap2; do
    mpm=event
    [ "$a" = ap2 ] && mpm=prefork
    port=$(free_port)
    apache_conf "$T_DIR/$a" "$port" "$mpm"
    site_pages "$T_DIR/$a/htdocs" $RUNS
    cat >"$T_DIR/$a/site.conf" <<CONF
RateLimit2Zone $(zone_name "$a") 1000
RateLimit2Policy "$POL"
CONF
    # Prefork: a child per keep-alive connection, all there from the
    # start (at its own pace, prefork would add them over seconds).
    [ "$mpm" = prefork ] && cat >>"$T_DIR/$a/site.conf" <<CONF
StartServers $C
MinSpareServers $C
MaxSpareServers $C
CONF
    if ! apache_start "$T_DIR/$a"; then
        not_ok "Apache $a ($mpm) starts"
        done_testing
        exit 1
    fi
    ok "Apache $a ($mpm) starts with the policy (its own zone)"
    BASES+=("http://127.0.0.1:$port")
    NAMES+=("$a")
done

# ---- lighttpd with ratelimit2-fcgi ----
L=$T_DIR/lt
PL=$(free_port)
site_pages "$L/htdocs" $RUNS
echo ok >"$L/htdocs/index.html"
chmod -R 755 "$L"
lighttpd_authorizer_conf "$L" "$PL" 1 '"mod_fastcgi"' \
    "-c $POL -z $(zone_name lt) -t $FCGI_THREADS"
if ! lighttpd_start "$L"; then
    not_ok "lighttpd starts with ratelimit2-fcgi"
    done_testing
    exit 1
fi
ok "lighttpd starts with ratelimit2-fcgi (its own zone)"
BASES+=("http://127.0.0.1:$PL")
NAMES+=("lighttpd")

# all_ready -- until each server answers 200 for a path no rule limits
# (lighttpd listens before its authorizer is up, a respawned one too);
# 10 s at most.  The codes, space-separated.
all_ready() {
    local b out
    for _ in $(seq 1 100); do
        out=""
        for b in "${BASES[@]}"; do
            out="$out $(code "$b/index.html")"
        done
        out=${out# }
        [ "$out" = "200 200 200" ] && break
        sleep 0.1
    done
    echo "$out"
}
is "all three serve a path no rule limits" "200 200 200" "$(all_ready)"

# ---- measures ----

# oks LOG N C URL [ab args...] -- "200s unanswered": how many of N
# requests at concurrency C were answered 200, counted from the status
# line of each answer ab reads (-v 3, its stdout in LOG, which
# kill_halfway follows), and how many ab counted complete with no answer
# at all (a connection the server closed unanswered); "ab-failed" if ab
# did not finish its N (its stderr in LOG.err).
oks() {
    local log=$1 n=$2 c=$3 url=$4 out
    shift 4
    ab -q -v 3 -n "$n" -c "$c" "$@" "$url" >"$log" 2>"$log.err"
    out=$(awk -v n="$n" '
        /^LOG: Response code = 200$/ { ok++ }
        /^LOG: Response code = / || /^WARNING: Response code not 2xx/ { got++ }
        /^Complete requests: / { done = $3 }
        END {
            if (done != n) { print "ab-failed"; exit }
            print ok + 0, done - got
        }' "$log")
    echo "$out"
}

# redis_calls -- the script calls Redis has run so far: FCALL, and
# EVALSHA/EVAL where functions are not used.
redis_calls() {
    redis-cli -p "$RP" info commandstats | tr -d '\r' | awk -F'[:=,]' '
        $1 ~ /^cmdstat_(fcall|evalsha|eval)$/ { n += $3 }
        END { print n + 0 }'
}

# redis_keys -- how many limit keys Redis holds: the hash tags of
# "rl2:{digest}:..." (a key's every Redis key carries its tag).
redis_keys() {
    redis-cli -p "$RP" --scan --pattern 'rl2:{*' \
        | sed -n 's/^rl2:{\([^}]*\)}.*/\1/p' | sort -u | wc -l
}

# fcgi_pid -- the ratelimit2-fcgi lighttpd spawned (none while it is
# being respawned).
fcgi_pid() {
    pgrep -P "$(cat "$L/lighttpd.pid")" -x ratelimit2-fcgi
}

# minute_guard -- fixed and sliding windows of a minute are aligned on
# the minute (Redis TIME): a run across a boundary would rightly admit
# more.  With fewer than 20 s left in this minute (a run takes a few),
# wait for the next one: at most 20 s.
minute_guard() {
    local left_ms
    left_ms=$((60000 - $(date +%s%3N) % 60000))
    if [ "$left_ms" -lt 20000 ]; then
        echo "# waiting $((left_ms + 100)) ms for the next minute"
        sleep "$(awk -v m="$((left_ms + 100))" 'BEGIN { print m / 1000 }')"
    fi
}

# kill_halfway NAME PID -- once the clients have had half the limit for
# /NAME/x answered 200 (the status lines in the three ab outputs, which
# ab writes a few answers at a time), SIGKILL ratelimit2-fcgi.  Followed
# until then, or until PID (an ab) ends, 30 s at most.  Prints
# "200s-seen pid".
kill_halfway() {
    local seen pid
    seen=$(timeout 30 tail -q -F -n +1 --pid="$2" "$T_DIR/$1.0.ab" \
        "$T_DIR/$1.1.ab" "$T_DIR/$1.2.ab" 2>/dev/null \
        | awk -v t=$((LIMIT / 2)) '
            /^LOG: Response code = 200$/ && ++n >= t { print n; exit }
            END { if (n < t) print n + 0 }')
    pid=$(fcgi_pid)
    [ -n "$pid" ] && kill -KILL "$pid"
    echo "${seen:-0} ${pid:-none}"
}

# run NAME [kill] -- one run on /NAME/x: ab -l -c C -n N against each
# server at once (-l: a 429's body is no "length" failure);
# with kill, ratelimit2-fcgi is SIGKILLed halfway (kill_halfway).  Sets
# EACH (the 200s of each server, or ab-failed), ADM (the fleet's 200s,
# empty if an ab failed), DUR_US (the run's wall time, every ab
# included), CALLS (Redis script calls during it), KEYS (Redis keys it
# added), KILLED (kill_halfway's line), RUN_T0 and RUN_T1 (its start and
# end, date +%s%N).
run() {
    local name=$1 i t0 t1 c0 k0 x
    local -a pids=()
    c0=$(redis_calls)
    k0=$(redis_keys)
    KILLED=""
    t0=$(date +%s%N)
    for i in 0 1 2; do
        oks "$T_DIR/$name.$i.ab" "$N" "$C" "${BASES[$i]}/$name/x" -l \
            >"$T_DIR/$name.$i" &
        pids+=($!)
    done
    [ "${2:-}" = kill ] && KILLED=$(kill_halfway "$name" "${pids[0]}")
    wait "${pids[@]}"   # never a bare wait: the servers live on
    t1=$(date +%s%N)
    RUN_T0=$t0
    RUN_T1=$t1
    DUR_US=$(((t1 - t0) / 1000))
    CALLS=$(($(redis_calls) - c0))
    KEYS=$(($(redis_keys) - k0))
    EACH=""
    ADM=0
    UNANSWERED=0
    for i in 0 1 2; do
        read -r x ph <"$T_DIR/$name.$i"
        EACH="$EACH ${NAMES[$i]}=$x"
        case "$x" in
            '' | *[!0-9]*) ADM="" ;;
            *)
                [ -n "$ADM" ] && ADM=$((ADM + x))
                UNANSWERED=$((UNANSWERED + ph))
                ;;
        esac
    done
    EACH=${EACH# }
    [ -z "$ADM" ] || rm -f "$T_DIR/$name".[012].ab*
    echo "# $name: admitted ${ADM:-?} ($EACH) in $((DUR_US / 1000)) ms," \
        "$CALLS Redis calls, $UNANSWERED closed unanswered${KILLED:+,}" \
        "${KILLED:+ratelimit2-fcgi killed at ${KILLED% *} 200s}"
    if [ -z "$ADM" ]; then
        not_ok "$name: every ab run completes ($EACH)"
        for i in 0 1 2; do
            grep -hv '^LOG\|^WARNING\|^INFO' "$T_DIR/$name.$i.ab" \
                "$T_DIR/$name.$i.ab.err" | tail -20 | sed 's/^/#   /'
        done
    fi
    is "$name: the three servers counted one key in Redis" 1 "$KEYS"
}

# between LO HI WHAT -- a test: ADM is from LO to HI.
between() {
    if [ -n "$ADM" ] && [ "$ADM" -ge "$1" ] && [ "$ADM" -le "$2" ]; then
        ok "$3 ($ADM)"
    else
        not_ok "$3"
        echo "#   expected $1..$2, got '${ADM}' ($EACH)"
    fi
}

# same_minute NAME -- a test: the last run began and ended in one minute
# (else its window check proves nothing).
same_minute() {
    is "$1: the run stays inside one minute (one window)" \
        $((RUN_T0 / 60000000000)) $((RUN_T1 / 60000000000))
}

# run_kill NAME -- the kill run and its checks but the upper bound.
# The bound: what the fleet counted in Redis and never answered is what
# the dead daemon had counted and not answered, and no server admits
# anything Redis has not counted.  In exact mode that is the decisions
# it had in progress, one per thread (FCGI_THREADS, fewer than
# LEASE_MAX); in lease mode, the slice it held (used or not), at most
# lease_max.  lighttpd stays up: it answers 5xx until it has respawned
# the daemon, which is awaited before the next run.
run_kill() {
    local pid
    run "$1" kill
    pid=${KILLED#* }
    if [ "$pid" != none ] && [ -n "$pid" ]; then
        ok "$1: ratelimit2-fcgi (pid $pid) SIGKILLed mid-run, at ${KILLED% *} 200s"
    else
        not_ok "$1: ratelimit2-fcgi SIGKILLed mid-run ($KILLED)"
    fi
    is "$1: then lighttpd has its authorizer again (respawned)" \
        "200 200 200" "$(all_ready)"
}

# ---- token bucket ----
# A bucket refills during the run: one unit every 60,000 us (a minute /
# 1000) since the first request, so a run of DUR_US admits at most
# LIMIT + DUR_US / 60,000 (the run's wall time holds every request).
run tb_all
between "$LIMIT" $((LIMIT + DUR_US / 60000)) \
    "tb_all: all three flooding, the fleet admits from $LIMIT to $LIMIT + \
refill (token_bucket)"
run_kill tb_kill
between $((LIMIT - LEASE_MAX)) $((LIMIT + DUR_US / 60000)) \
    "tb_kill: one killed, the fleet admits from $LIMIT - $LEASE_MAX to \
$LIMIT + refill"

# ---- fixed and sliding windows of a minute ----
for alg in fw sw; do
    minute_guard
    run "${alg}_all"
    same_minute "${alg}_all"
    between "$LIMIT" "$LIMIT" \
        "${alg}_all: all three flooding, the fleet admits exactly $LIMIT"
    minute_guard
    run_kill "${alg}_kill"
    same_minute "${alg}_kill"
    between $((LIMIT - LEASE_MAX)) "$LIMIT" \
        "${alg}_kill: one killed, the fleet admits from $LIMIT - $LEASE_MAX \
to $LIMIT"
done

for a in ap1 ap2; do
    apache_stop "$T_DIR/$a"
done
lighttpd_stop "$L"
done_testing
