# fleet_lib.sh -- what the suites of one change seen by several servers
# share (t_overrides_fleet, t_overrides_cluster): a change through
# ratelimit2ctl, and a test that every server follows it in time.
# Sourced after fcgi_lib.sh; the suite sets C (the ratelimit2ctl command,
# an array), BASES (each server's http://HOST:PORT) and NAMES (each
# server's name, in the same order).

# change WHAT ARGS... -- one change through ratelimit2ctl, a test; T0 its
# start, N the changes made so far.
change() {
    local what=$1 out
    shift
    T0=$(date +%s%N)
    if out=$("${C[@]}" "$@" 2>&1); then
        ok "$what"
        N=$((${N:-0} + 1))
    else
        not_ok "$what"
        printf '%s\n' "$out" | sed 's/^/#   /'
    fi
}

# code_at BASE [PATH [curl args...]] -- the status of one request for
# PATH (default /index.html) on the server at BASE.
code_at() {
    local base=$1 path=${2:-/index.html}
    shift
    [ $# -gt 0 ] && shift
    code "$base$path" "$@"
}

# propagates WHAT CODE [PATH [curl args...]] -- a test: from T0, each
# server answers CODE for PATH (default /index.html); every 100 ms each
# server not there yet is asked again, for 3 s at most.  The time each
# took is printed.  A host mirrors Redis at most once a second, on a
# request; more than 2 s (a second of syncing, and as much again for a
# loaded machine and the requests' own time) is a failure.
propagates() {
    local what=$1 want=$2 i ms worst=0 all="" slow="" left
    local -a at=()
    shift 2
    for i in "${!BASES[@]}"; do at[i]=-1; done
    for _ in $(seq 1 30); do
        left=0
        for i in "${!BASES[@]}"; do
            [ "${at[$i]}" -ge 0 ] && continue
            if [ "$(code_at "${BASES[$i]}" "$@")" = "$want" ]; then
                at[i]=$((($(date +%s%N) - T0) / 1000000))
            else
                left=1
            fi
        done
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    for i in "${!BASES[@]}"; do
        ms=${at[$i]}
        all="$all ${NAMES[$i]}=${ms}ms"
        if [ "$ms" -lt 0 ] || [ "$ms" -gt 2000 ]; then
            slow="$slow ${NAMES[$i]}"
        fi
        [ "$ms" -gt "$worst" ] && worst=$ms
    done
    echo "# $what:$all"
    if [ -z "$slow" ]; then
        ok "$what: all three answer $want within 2 s (slowest ${worst} ms)"
    else
        not_ok "$what: all three answer $want within 2 s (late:$slow)"
    fi
}
