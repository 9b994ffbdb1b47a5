#!/bin/bash
# Run every test suite of mod_ratelimit2 and print one summary line.
#
# Unit suites are the cmocka programs in $BUILD/tests; integration suites
# are tests/integration/t_*.sh, which start their own servers on loopback
# and print TAP-style "ok N - what" / "not ok N - what" lines.  Each
# suite's time is printed; the last line is "N passed, N failed".
#
# Suites run in JOBS lanes (default 2): many spend their time waiting for
# servers, windows and polls, so two at once take about half the time.
# A suite's line is printed when it ends (a failing suite's excerpt right
# under it).  The unit programs run first, among themselves: their Redis
# fixtures bind a port the kernel picks from the ephemeral range, which
# the clients of a busy integration suite (ab, curl) draw from too.  Then
# the integration and reliability suites: those that run alone first,
# then the others longest first (the times of the last run, in
# $BUILD/check-times, else the weights below), so that the lanes end
# together.  JOBS=1 runs one suite at a time in the order of
# the file names, as before the lanes.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
export BUILD
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/rl2-check.XXXXXX")
trap 'rm -rf "$LOGDIR"' EXIT

passed=0
failed=0
ONLY=${ONLY:-}
# make soak (RL2_SOAK=1) runs its long suites one at a time, as each
# loads the machine on its own.
if [ "${RL2_SOAK:-0}" = 1 ]; then
    JOBS=${JOBS:-1}
else
    JOBS=${JOBS:-2}
fi
case "$JOBS" in
'' | *[!0-9]* | 0)
    echo "JOBS=$JOBS: expected a number of lanes, 1 or more" >&2
    exit 2
    ;;
esac
TIMES=$BUILD/check-times

# Suites that run alone: nothing else runs while one of them does.
#   t_package  installs the Debian packages system-wide (dpkg -i, a2enmod,
#              /etc/ratelimit2, /usr/sbin/ratelimit2ctl, the default zone
#              /ratelimit2) and purges them: a suite beside it would meet
#              the packaged files, and its before/after listing of /etc
#              and /usr would see the other suite's.
#   t_fuzz     runs one fuzzer per CPU and asserts that each executes
#              more than 1000 inputs in its 5 s: beside another suite it
#              loses the CPUs it counts on (a lane run saw 613), and the
#              other suite's timed checks lose theirs.  Alone it costs
#              no more: it keeps every CPU busy.
#   TIMED      the suites that time the servers: a ban or a reset seen
#              by a fleet within 2 s, no request waiting past a timeout
#              + 1 s, workers stopped within 2 s, one log line per 2 s
#              interval, fewer Redis calls than requests while leased
#              slices last.  In a lane run on a loaded machine they
#              failed beside other suites, CPU-bound (t_names:
#              t_overrides_fleet's bans late) or not (t_overrides_cluster's
#              unban and t_overlimit's reset late, t_metrics' 7 lines in
#              8.8 s, t_lease_fleet's 1551 calls for 4500 requests);
#              alone, they see the machine as before the lanes.
TIMED="integration/t_overrides integration/t_overrides_fleet
integration/t_overrides_cluster integration/t_overlimit
integration/t_fcgi_fast integration/t_redis_tiers integration/t_redis_refund
integration/t_metrics integration/t_lease_fleet reliability/r_redis_faults"
EXCLUSIVE="integration/t_package integration/t_fuzz ${TIMED//$'\n'/ }"

# Suites that share something and must not overlap each other (one group
# a line: its name, then its suites); each may run beside any other.
#   man  t_docs_ref (make man) and t_install (make install, which needs
#        man) both write build/man/*.tmp and move them into place.
APART="man integration/t_docs_ref integration/t_install"

# Seconds a suite took in a full run, for the order of a tree without
# $TIMES (a fresh checkout); a suite named nowhere weighs 5 s.
WEIGHTS="
unit/test_redis_lua 8
unit/test_lease 6
unit/test_redis_cluster 5
unit/test_store_local 3
integration/t_docs_examples 57
integration/t_package 53
integration/t_fuzz 40
integration/t_redis_concurrency 34
integration/t_fcgi_redis 33
integration/t_names 28
integration/t_overrides_fleet 28
integration/t_overrides 25
integration/t_redis_policy 24
reliability/r_redis_faults 19
integration/t_behaviour 18
integration/t_metrics 17
integration/t_overrides_cluster 17
integration/t_format 16
reliability/r_graceful 16
integration/t_lease_fleet 15
integration/t_redis_cluster 15
reliability/r_flood 14
integration/t_saas 14
integration/t_overlimit 13
integration/t_instructions 12
integration/t_internal 12
"

# count_cmocka LOG -> "P F"
count_cmocka() {
    local p f
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$1" | tail -1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$1" | tail -1)
    echo "${p:-0} ${f:-0}"
}

count_tap() {
    local p f
    p=$(grep -c '^ok ' "$1")
    f=$(grep -c '^not ok ' "$1")
    echo "$p $f"
}

# ---- the suites ----

# One entry per suite, by index: its kind (cmocka, tap), name and
# program (run as is, or with bash for a .sh).
S_KIND=()
S_NAME=()
S_PROG=()
S_ALONE=()      # 1 for a suite of $EXCLUSIVE
S_GROUP=()      # its group in $APART, or "-"

add_suite() {
    [ -n "$ONLY" ] && [[ "$2" != *$ONLY* ]] && return
    S_KIND+=("$1")
    S_NAME+=("$2")
    S_PROG+=("$3")
    if [[ " $EXCLUSIVE " == *" $2 "* ]]; then
        S_ALONE+=(1)
    else
        S_ALONE+=(0)
    fi
    S_GROUP+=("${GROUP_OF[$2]:--}")
}

# The group of each suite named in $APART, and each suite's weight in
# whole seconds: its time in the last run, else its weight above, else 5.
declare -A GROUP_OF=() WEIGHT=()
while read -r g members; do
    for n in $members; do
        GROUP_OF[$n]=$g
    done
done <<<"$APART"
while read -r n w; do
    [ -n "$n" ] && WEIGHT[$n]=${w%%.*}
done < <(printf '%s\n' "$WEIGHTS"; cat "$TIMES" 2>/dev/null)


# order FIRST LAST -- the indices FIRST..LAST, with JOBS > 1 the suites
# that run alone first (started at once, not kept waiting until both
# lanes happen to be free), then the others longest first (a stable sort:
# equal weights keep the file names' order).
order() {
    local i
    if [ "$JOBS" -eq 1 ]; then
        seq "$1" "$2"
        return
    fi
    for ((i = $1; i <= $2; i++)); do
        echo "${S_ALONE[$i]} ${WEIGHT[${S_NAME[$i]}]:-5} $i"
    done | sort -s -k1,1nr -k2,2nr | awk '{ print $3 }'
}

# ---- the lanes ----

# Running suites, by pid: index, start time.
declare -A RUN_IDX=() RUN_START=()

start_suite() {
    local i=$1 log="$LOGDIR/${S_NAME[$1]//\//_}.log"
    if [ "${S_KIND[$i]}" = cmocka ]; then
        "${S_PROG[$i]}" >"$log" 2>&1 </dev/null &
    else
        bash "${S_PROG[$i]}" >"$log" 2>&1 </dev/null &
    fi
    RUN_IDX[$!]=$i
    RUN_START[$!]=$EPOCHREALTIME
}

# finish_suite I RC START END -- count and print suite I, which ran from
# START to END and exited with RC.
finish_suite() {
    local i=$1 rc=$2 start=$3 end=$4 p f name log secs ds
    name=${S_NAME[$i]}
    log="$LOGDIR/${name//\//_}.log"
    if [ "${S_KIND[$i]}" = cmocka ]; then
        read -r p f < <(count_cmocka "$log")
    else
        read -r p f < <(count_tap "$log")
    fi
    # A suite that crashed or exited non-zero without reporting a
    # failure still fails.
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
        echo "  (exit status $rc)" >>"$log"
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    # EPOCHREALTIME is seconds and microseconds (after the locale's
    # decimal point): the time in tenths of a second, rounded.
    ds=$(((${end//[.,]/} - ${start//[.,]/} + 50000) / 100000))
    secs=$((ds / 10)).$((ds % 10))
    printf '%-28s %4d passed %3d failed %7ss\n' "$name" "$p" "$f" "$secs"
    echo "$name $secs" >>"$LOGDIR/times"
    if [ "$f" -ne 0 ] || [ -n "${VERBOSE:-}" ]; then
        grep -E '^(not ok|\[  FAILED|\[  ERROR|.*ERROR|#)' "$log" | head -40
        [ "$f" -ne 0 ] && tail -30 "$log"
    fi
}

# may_start I -- 0 if suite I may start beside the running ones: a lane
# is free, no suite that runs alone is running, I runs alone only when
# nothing else does, and no suite of I's group is running.
may_start() {
    local i=$1 pid r
    [ "${#RUN_IDX[@]}" -lt "$JOBS" ] || return 1
    [ "${S_ALONE[$i]}" = 0 ] || [ "${#RUN_IDX[@]}" -eq 0 ] || return 1
    for pid in "${!RUN_IDX[@]}"; do
        r=${RUN_IDX[$pid]}
        [ "${S_ALONE[$r]}" = 0 ] || return 1
        [ "${S_GROUP[$i]}" = - ] || [ "${S_GROUP[$r]}" != "${S_GROUP[$i]}" ] \
            || return 1
    done
    return 0
}

# run_lanes I... -- run the suites I... in JOBS lanes, each started in
# the order given as soon as may_start lets it, and return once all ended.
# The next suite starts before the one that ended is counted and printed.
run_lanes() {
    local pending=("$@") left i k started pid rc ended=""
    while [ "${#pending[@]}" -gt 0 ] || [ "${#RUN_IDX[@]}" -gt 0 ] \
            || [ -n "$ended" ]; do
        started=1
        while [ "$started" = 1 ]; do
            started=0
            left=()
            for k in "${!pending[@]}"; do
                i=${pending[$k]}
                if [ "$started" = 0 ] && may_start "$i"; then
                    start_suite "$i"
                    started=1
                else
                    left+=("$i")
                fi
            done
            pending=("${left[@]}")
        done
        if [ -n "$ended" ]; then
            # shellcheck disable=SC2086 # four words
            finish_suite $ended
            ended=""
        fi
        [ "${#RUN_IDX[@]}" -gt 0 ] || continue
        wait -n -p pid "${!RUN_IDX[@]}"
        rc=$?
        ended="${RUN_IDX[$pid]} $rc ${RUN_START[$pid]} $EPOCHREALTIME"
        unset "RUN_IDX[$pid]" "RUN_START[$pid]"
    done
}

# An interrupted run stops its suites (they ignore SIGINT, being
# background jobs of a script; their exit trap stops their servers on
# SIGTERM) before it exits.
stop_lanes() {
    local pid
    for pid in "${!RUN_IDX[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    wait
    exit 130
}
trap stop_lanes INT TERM

# record_times -- this run's times into $TIMES, over the older ones.
record_times() {
    [ -s "$LOGDIR/times" ] && [ -d "$BUILD" ] || return 0
    cat "$TIMES" "$LOGDIR/times" 2>/dev/null \
        | awk '{ t[$1] = $2 } END { for (n in t) print n, t[n] }' \
        | sort >"$TIMES.new" && mv -f "$TIMES.new" "$TIMES"
}

total_start=$(date +%s)
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    add_suite cmocka "unit/${t##*/}" "$t"
done
n_unit=${#S_NAME[@]}
for t in tests/integration/t_*.sh; do
    [ -f "$t" ] || continue
    t=${t##*/}
    add_suite tap "integration/${t%.sh}" "tests/integration/$t"
done
# Reliability suites (faults, floods, spoofing, bad input): bounded sizes
# here, long ones with RL2_SOAK=1 (make soak).
for t in tests/reliability/r_*.sh; do
    [ -f "$t" ] || continue
    t=${t##*/}
    add_suite tap "reliability/${t%.sh}" "tests/reliability/$t"
done
# shellcheck disable=SC2046 # one index a word
[ "$n_unit" -gt 0 ] && run_lanes $(order 0 $((n_unit - 1)))
# shellcheck disable=SC2046
[ "${#S_NAME[@]}" -gt "$n_unit" ] \
    && run_lanes $(order "$n_unit" $((${#S_NAME[@]} - 1)))
record_times
echo "total time $(( $(date +%s) - total_start ))s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
