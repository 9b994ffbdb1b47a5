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
#   - kill: the same, and one server is SIGKILLed once the clients have
#     had half the limit answered 200 (token bucket and sliding window:
#     ratelimit2-fcgi, lighttpd staying up; fixed window: the whole event
#     Apache, parent and children), and started again after the run; the
#     fleet admits at most as much, and at least 1000 less what the dead
#     server had counted in Redis and never answered (lost_max below).
# Each run counts one key in Redis.  The admitted counts, durations and
# Redis calls (INFO commandstats) are printed as "#" lines.
#
# The 200s are counted from the status line of every answer ab reads (a
# killed Apache's from its access log too, see run).  No keep-alive: under
# load the event MPM closes idle keep-alive connections, and ab with -k
# counts each such close as one more complete request, never sent.
#
# LEASE_OPTS is the mode under test, the rest of the policy's redis
# group: lease mode (docs/configuration.md, "Lease mode"); empty, the
# exact mode (one Redis call per request), where every assertion below
# holds as well (RL2_FLEET_EXACT=1 runs it so).
. "$(dirname "$0")/fcgi_lib.sh"

LEASE_MAX=20 # small: a killed server may strand five slices (lost_max)
LEASE_OPTS="lease = true; lease_max = $LEASE_MAX; lease_time = 1000;"
[ "${RL2_FLEET_EXACT:-0}" = 1 ] && LEASE_OPTS=""

LIMIT=1000         # per minute, for 127.0.0.1
N=1500             # requests per server per run
C=64               # connections per server
FCGI_THREADS=16    # ratelimit2-fcgi's: at most this many decisions at once
AP1_WORKERS=32     # the event Apache's (2 x 16 threads), likewise

# lost_max VICTIM -- what a server SIGKILLed mid-run may have counted in
# Redis and never answered: the requests it had admitted and not
# answered yet, at most one per worker (VICTIM's), in both modes; and in
# lease mode the units of its table (a slice, one asked ahead, and the
# unused units of two slices that ended, waiting to go back) and the
# slice of a call it had out (Redis counted it, nobody received it):
# five slices, each at most lease_max (a slice is counted in Redis when
# granted; the followers of a call out ask for one request's cost, in
# the workers' count).  The two others flood on until Redis has counted
# LIMIT (and their own slices are spent), and nothing is admitted that
# Redis has not counted: so the fleet admits at least LIMIT - lost_max.
lost_max() {
    local slice=0
    [ -n "$LEASE_OPTS" ] && slice=$((5 * LEASE_MAX))
    case "$1" in
        fcgi) echo $((FCGI_THREADS + slice)) ;;
        ap1) echo $((AP1_WORKERS + slice)) ;;
    esac
}

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
        echo "    limits = ( { rate = \"$LIMIT/1min\";"
        echo "                 algorithm = \"$alg\"; } ); },"
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
    # The event Apache, killed in a run: fewer workers than connections,
    # so that what it may leave unanswered is small (lost_max).
    [ "$mpm" = event ] && cat >>"$T_DIR/$a/site.conf" <<CONF
ThreadsPerChild $((AP1_WORKERS / 2))
MaxRequestWorkers $AP1_WORKERS
CONF
    # Prefork: a child per connection, all there from the start (at its
    # own pace, prefork would add them over seconds).
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
# The daemon runs on its own (not spawned by lighttpd), on a port of its
# own: killed, it takes its listening socket with it, so that lighttpd
# answers 5xx at once for what it had queued there, and the suite starts
# it again itself.
FP=$(free_port)
FCGI_ARGS=(-c "$POL" -z "$(zone_name lt)" -t "$FCGI_THREADS"
    -s "127.0.0.1:$FP")
if fcgi_start fcgi "${FCGI_ARGS[@]}"; then
    ok "ratelimit2-fcgi starts with the policy (its own zone)"
else
    not_ok "ratelimit2-fcgi starts with the policy"
    done_testing
    exit 1
fi
L=$T_DIR/lt
PL=$(free_port)
site_pages "$L/htdocs" $RUNS
echo ok >"$L/htdocs/index.html"
chmod -R 755 "$L"
cat >"$L/lighttpd.conf" <<CONF
server.port = $PL
server.bind = "127.0.0.1"
server.document-root = "$L/htdocs"
server.errorlog = "$L/error.log"
server.modules = ( "mod_fastcgi" )
fastcgi.server = ( "/" => ((
    "host" => "127.0.0.1",
    "port" => $FP,
    "mode" => "authorizer",
    "check-local" => "disable"
)) )
CONF
if ! lighttpd_start "$L"; then
    not_ok "lighttpd starts with ratelimit2-fcgi as its authorizer"
    done_testing
    exit 1
fi
ok "lighttpd starts with ratelimit2-fcgi as its authorizer"
BASES+=("http://127.0.0.1:$PL")
NAMES+=("lighttpd")

# all_ready -- until each server answers 200 for a path no rule limits
# (lighttpd keeps an authorizer that failed out of use for a second);
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

# oks LOG N C URL [ab args...] -- "200s unanswered finished": how many
# of N requests at concurrency C were answered 200, counted from the
# status line of each answer ab reads (-v 3, its stdout in LOG, which
# kill_halfway follows; written out even when ab gives up on a server
# that died), how many ab counted complete with no answer at all (a
# connection the server closed unanswered), and 1 if ab finished its N,
# else 0 (its stderr in LOG.err).
oks() {
    local log=$1 n=$2 c=$3 url=$4 out
    shift 4
    ab -q -v 3 -n "$n" -c "$c" "$@" "$url" >"$log" 2>"$log.err"
    out=$(awk -v n="$n" '
        /^LOG: Response code = 200$/ { ok++ }
        /^LOG: Response code = / || /^WARNING: Response code not 2xx/ { got++ }
        /^Complete requests: / { done = $3 }
        END { print ok + 0, done - got, (done == n) }' "$log")
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

# Fixed and sliding windows of a minute are aligned on the minute (Redis
# TIME): a run across a boundary would rightly admit more.  Such a run
# starts only with at least 15 s of its minute left (a run takes a few).

# minute_room -- true if this minute has 15 s left.
minute_room() {
    [ $((60000 - $(date +%s%3N) % 60000)) -ge 15000 ]
}

# minute_guard -- unless minute_room, wait for the next minute (at most
# 15 s).
minute_guard() {
    local left_ms
    minute_room && return
    left_ms=$((60000 - $(date +%s%3N) % 60000))
    echo "# waiting $((left_ms + 100)) ms for the next minute"
    sleep "$(awk -v m="$((left_ms + 100))" 'BEGIN { print m / 1000 }')"
}

# kill_halfway NAME PID VICTIM -- once the clients have had half the
# limit for /NAME/x answered 200 (the status lines in the three ab
# outputs, which ab writes a few answers at a time), SIGKILL VICTIM:
# fcgi, ratelimit2-fcgi; ap1, the whole event Apache (it leads its
# process group: parent, children and cgid).  Followed until then, or
# until PID (an ab) ends, 30 s at most.  Prints "200s-seen pid".
kill_halfway() {
    local seen pid
    seen=$(timeout 30 tail -q -F -n +1 --pid="$2" "$T_DIR/$1.0.ab" \
        "$T_DIR/$1.1.ab" "$T_DIR/$1.2.ab" 2>/dev/null \
        | awk -v t=$((LIMIT / 2)) '
            /^LOG: Response code = 200$/ && ++n >= t { print n; exit }
            END { if (n < t) print n + 0 }')
    case "$3" in
        fcgi)
            pid=$(cat "$T_DIR/fcgi.pid" 2>/dev/null)
            [ -n "$pid" ] && kill -KILL "$pid"
            ;;
        ap1)
            pid=$(cat "$T_DIR/ap1/httpd.pid" 2>/dev/null)
            [ -n "$pid" ] && kill -KILL -- "-$pid"
            ;;
    esac
    echo "${seen:-0} ${pid:-none}"
}

# run NAME [VICTIM] -- one run on /NAME/x: ab -l -c C -n N against each
# server at once (-l: a 429's body is no "length" failure); with VICTIM,
# it is SIGKILLed halfway (kill_halfway).  The ab of a killed Apache
# gives up at its first refused connection, leaving answers already
# delivered on its other connections unread: that Apache's 200s are the
# ones it logged (it writes a line as each request ends, before it is
# killed or not at all) or, if more, the ones ab read.  Sets EACH (the 200s of each server), ADM (the
# fleet's 200s, empty if an ab failed otherwise), DUR_US (the run's wall
# time, every ab included), CALLS (Redis script calls during it), KEYS
# (Redis keys it added), KILLED (kill_halfway's line), RUN_T0 and RUN_T1
# (its start and end, date +%s%N).
run() {
    local name=$1 victim=${2:-} i t0 t1 c0 k0 x ph fin logged
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
    [ -n "$victim" ] && KILLED=$(kill_halfway "$name" "${pids[2]}" "$victim")
    # Never a bare wait: the servers live on.  (Quiet: a killed daemon,
    # a job of this shell, is reaped here too.)
    wait "${pids[@]}" 2>/dev/null
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
        read -r x ph fin <"$T_DIR/$name.$i"
        if [ "${NAMES[$i]}" = "$victim" ]; then
            # Each 200 ab read was admitted, and so was each one logged:
            # the larger count is the closer to what the victim admitted
            # (an answer sent and not yet logged at the kill is ab's
            # only, one logged and never read the log's only; the rest
            # were in its workers then, lost_max).
            EACH="$EACH ${NAMES[$i]}(ab saw $x)"
            logged=$(grep -c "\"GET /$name/x HTTP/1.0\" 200\$" \
                "$T_DIR/$victim/logs/access.log")
            [ "$logged" -gt "$x" ] && x=$logged
        fi
        EACH="$EACH ${NAMES[$i]}=$x"
        if [ "$fin" != 1 ] && [ "${NAMES[$i]}" != "$victim" ]; then
            EACH="$EACH(ab-failed)"
            ADM=""
        fi
        [ -n "$ADM" ] && ADM=$((ADM + x))
        [ "$fin" = 1 ] && UNANSWERED=$((UNANSWERED + ph))
    done
    EACH=${EACH# }
    [ -z "$ADM" ] || rm -f "$T_DIR/$name".[012].ab*
    echo "# $name: admitted ${ADM:-?} ($EACH) in $((DUR_US / 1000)) ms," \
        "$CALLS Redis calls, $UNANSWERED closed unanswered${KILLED:+,}" \
        "${KILLED:+$victim killed at ${KILLED% *} 200s}"
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

# run_kill NAME VICTIM -- the kill run and its checks but the bounds;
# then VICTIM is started again for the next run (lighttpd answers 5xx
# while its authorizer is down).
run_kill() {
    local pid
    run "$1" "$2"
    pid=${KILLED#* }
    if [ "$pid" != none ] && [ -n "$pid" ]; then
        ok "$1: $2 (pid $pid) SIGKILLed mid-run, at ${KILLED% *} 200s"
    else
        not_ok "$1: $2 SIGKILLed mid-run ($KILLED)"
    fi
    case "$2" in
        ap1)
            rl2_wait_gone "$T_DIR/ap1/httpd.pid"
            wait_port_free "${BASES[0]##*:}"
            apache_start "$T_DIR/ap1" || not_ok "$1: Apache ap1 starts again"
            ;;
        fcgi)
            wait "$pid" 2>/dev/null   # reaped, quietly
            fcgi_start fcgi "${FCGI_ARGS[@]}" \
                || not_ok "$1: ratelimit2-fcgi starts again"
            ;;
    esac
    is "$1: then all three serve again" "200 200 200" "$(all_ready)"
}

# one NAME -- run NAME (a rule of RUNS) and check what the fleet admitted.
# A token bucket refills during a run: one unit every 60,000 us (a
# minute / 1000) from its first request, so a run of DUR_US admits at
# most LIMIT + DUR_US / 60,000 (the run's wall time holds every request).
# Fixed and sliding windows admit exactly LIMIT in one window.  A kill
# run (token bucket and sliding window: ratelimit2-fcgi; fixed window:
# the event Apache) may lose lost_max of its victim.
one() {
    local name=$1 victim="" hi=$LIMIT lo=$LIMIT what="all three up"
    case "$name" in
        fw_kill) victim=ap1 ;;
        *_kill) victim=fcgi ;;
    esac
    [ -z "$victim" ] || what="$victim killed"
    if [ -n "$victim" ]; then
        run_kill "$name" "$victim"
        lo=$((LIMIT - $(lost_max "$victim")))
    else
        run "$name"
    fi
    # Lease mode took effect: far fewer calls than the 3 x N requests
    # (exact mode makes one each; with the over-limit cache, about one
    # per admitted request).
    if [ -n "$LEASE_OPTS" ] && [ "$name" = "${name%_kill}" ]; then
        [ "$CALLS" -lt "$LIMIT" ] \
            && ok "$name: lease mode, $CALLS Redis calls for $((3 * N)) requests" \
            || not_ok "$name: lease mode, $CALLS Redis calls for $((3 * N)) requests (< $LIMIT)"
    fi
    case "$name" in
        tb_*)
            hi=$((LIMIT + DUR_US / 60000))
            between "$lo" "$hi" "$name: $what, the fleet admits from $lo \
to $LIMIT + its refill, $hi"
            ;;
        *)
            same_minute "$name"
            between "$lo" "$hi" "$name: $what, the fleet admits from $lo \
to $hi (one window)"
            ;;
    esac
}

# The windowed runs, each in a minute with room; while one would wait,
# a token bucket run, which needs none, goes first.
TB="tb_all tb_kill"
for name in fw_all fw_kill sw_all sw_kill; do
    while [ -n "$TB" ] && ! minute_room; do
        one "${TB%% *}"
        TB=$(echo "$TB" | cut -s -d' ' -f2-)
    done
    minute_guard
    one "$name"
done
for name in $TB; do
    one "$name"
done

# All stopped before done_testing (a sanitizer report is written at
# exit); the two Apaches at once.
for a in ap1 ap2; do
    kill -TERM "$(cat "$T_DIR/$a/httpd.pid")"
done
lighttpd_stop "$L"
fcgi_stop fcgi
for a in ap1 ap2; do
    rl2_wait_gone "$T_DIR/$a/httpd.pid"
done
done_testing
