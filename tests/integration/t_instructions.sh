#!/bin/bash
# t_instructions.sh -- the instruction budget of the local store, gated.
#
# bench/callgrind.sh counts the instructions Apache (apache2 -X under
# callgrind) spends per request, bare and with mod_ratelimit2 (one
# per-address token bucket that never trips, the IETF rate-limit fields
# on every response).  Instruction counts do not depend on the machine's
# load, so unlike a speed they can be asserted.  The prefork MPM is used:
# with one process and no worker threads the count repeats to within a
# few instructions, where the event MPM's thread wake-ups move it by a few
# hundred.  The budget: under 3,196 added instructions per
# request; the figure is printed for the record.
#
# Why 3,050 and not the 3,000 this gate started with: the same tree
# counts differently on another CPU, because glibc picks its string
# functions (memcpy, strlen, memchr) by CPU and callgrind counts the ones
# it picked.  The project's CI measured 3,002 for a tree (8eca731) that
# measures 2,980 here: a 1% margin was inside that spread, so the gate
# failed on a machine, not on a change.  At 3,050 it still stops any
# change that adds 2.5% to a request (the figure in docs/PERFORMANCE.md
# is the one to compare; the target there is 1,500).
#
# Why 3,100 and not 3,050: the adaptive factors and the experiments
# (variants, a challenger) are tests on every request even when a policy
# has none, ~60 instructions (2,990 -> 3,049 here, after cuts that took
# ~20 off them: X-RateLimit-Scope, -Algorithm, -Factors and -Variant
# behind one test, the factors outside the verdict's cleared head).  At
# 3,050 the machine-to-machine spread above would fail the gate on a
# machine, as before.
#
# Why 3,196 and not 3,100: the usage series (docs/operations.md, "Usage
# series") are written by every admitted request: its client into the
# minute's and the hour's distinct-client sketches (a register read
# each, rarely written), its share of the limit tested against the
# minute's peak (two multiplications, the division only when the peak
# may grow), one request in 64 sampled for the top clients (a
# thread-local counter).  Measured here, bench/callgrind.sh local three
# times each: 42,149 to 42,161 before, 42,245 to 42,259 after, +96 on
# average (t_instructions: 3,061 to 3,068 before, 3,144 to 3,169 after),
# so the gate moved by 96.  The counts per minute
# and hour cost a request nothing (the once-a-second upkeep snapshots
# the running totals), and neither does a minute's end (the sketches'
# estimates are kept as they fill; an ended sketch is cleared a part a
# second), so a run that spans a minute's end counts the same.
#
# The runtime override table's lookup: with 10,000 bans in the table
# (bench/callgrind.sh bans: a state file of bans of other loopback
# addresses, loaded when the table is made, before the first request), a
# request costs what it costs with one ban, to within PROBE_SLACK: the
# address is looked up once per prefix length in use (here /32), one hash
# probe whatever the number of bans (common/control/override_read.c).
# Both figures are printed and go to docs/PERFORMANCE.md ("History").
source "$(dirname "$0")/lib.sh"

BUDGET=3196
PROBE_SLACK=100

# Sanitizers and gcov counters multiply every count: the budget is for
# the release build.
if [ "${SAN:-0}" = 1 ] || [ "${COV:-0}" = 1 ]; then
    echo "# not measured under SAN=1 or COV=1"
    exit 0
fi

if ! command -v valgrind >/dev/null; then
    not_ok "valgrind is installed (scripts/deps.sh)"
    done_testing
    exit 1
fi

count() {
    MPM=prefork BUILD="$BUILD" bash "$RL2_ROOT/bench/callgrind.sh" "$1" \
        | awk -v m="$1" '$1 == m { print $2 }'
}

# with_bans N -- instructions per request with N bans in the table.
with_bans() {
    BENCH_BANS=$1 count bans
}

bare=$(count bare)
local=$(count local)
if [ -z "$bare" ] || [ -z "$local" ]; then
    not_ok "callgrind counted both runs (bare '$bare', local '$local')"
    done_testing
    exit 1
fi
added=$((local - bare))
echo "# bare $bare, local store $local: $added added per request"
if [ "$added" -lt "$BUDGET" ]; then
    ok "local store adds $added instructions per request (< $BUDGET)"
else
    not_ok "local store adds $added instructions per request (< $BUDGET)"
fi

one=$(with_bans 1)
many=$(with_bans 10000)
if [ -z "$one" ] || [ -z "$many" ]; then
    not_ok "callgrind counted the runs with bans (one '$one', 10,000 '$many')"
    done_testing
    exit 1
fi
echo "# with 1 ban $one ($((one - bare)) added), with 10,000 bans $many" \
     "($((many - bare)) added)"
what="10,000 bans add $((many - bare)) instructions per request, one ban"
what="$what $((one - bare)): the same within $PROBE_SLACK (one hash probe)"
if [ $((many - one)) -le "$PROBE_SLACK" ]; then
    ok "$what"
else
    not_ok "$what"
fi
done_testing
