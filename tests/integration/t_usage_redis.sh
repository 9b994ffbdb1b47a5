#!/bin/bash
# t_usage_redis.sh -- ratelimit2ctl usage -R: the fleet's usage series as
# the servers push them to Redis (docs/operations.md, "The fleet's series
# in Redis"), read back through the command.  Two hosts' minutes are
# written in the documented keys (their counts added up in one hash,
# their clients in one HyperLogLog, as the push leaves them; the push
# itself is test_usage_redis's), and `usage -R --json` gives their sum,
# the union of their clients and the larger peak; the text names the
# Redis it read; a Redis that does not answer is exit 3, naming it.
source "$(dirname "$0")/lib.sh"

CTL="$BUILD/ctl/ratelimit2ctl"
redis_start_first

# The minute before this one (whole), and its hour: Unix time / 60, / 3600.
now=$(date +%s)
M=$((now / 60 - 1))
H=$((M / 60))
TAB=$'\t'
cell="search${TAB}free"
for key in "rl2:usage:{h:$H}:m:$M" "rl2:usage:{h:$H}:h"; do
    # host A: 4 requests, 3 admitted, peak 40%; host B: 3, 2, 60%
    redis-cli -p "$RP" hincrby "$key" "$cell${TAB}requests" 4 >/dev/null
    redis-cli -p "$RP" hincrby "$key" "$cell${TAB}requests" 3 >/dev/null
    redis-cli -p "$RP" hincrby "$key" "$cell${TAB}admitted" 3 >/dev/null
    redis-cli -p "$RP" hincrby "$key" "$cell${TAB}admitted" 2 >/dev/null
    redis-cli -p "$RP" hincrby "$key" "$cell${TAB}refused" 2 >/dev/null
    redis-cli -p "$RP" hset "$key" "$cell${TAB}peak" 600000 >/dev/null
done
for key in "rl2:usage:{h:$H}:hll:m:$M:$cell" "rl2:usage:{h:$H}:hll:h:$cell"; do
    redis-cli -p "$RP" pfadd "$key" 10.0.0.1 10.0.0.2 >/dev/null # host A
    redis-cli -p "$RP" pfadd "$key" 10.0.0.2 10.0.0.3 >/dev/null # host B
done

cells() {
    "$CTL" -R "127.0.0.1:$RP" usage --json "$@" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for c in d["cells"]:
    print(c["rule"], c["tier"], c["requests"], c["admitted"], c["refused"],
          c["clients_max"], c["peak_ppm"])'
}
is "usage -R --json: the hosts' counts added, their clients' union, the larger peak" \
    "search free 7 5 2 3 600000" "$(cells --since 90m)"
is "usage -R --json --step hour: the same from the hour's keys" \
    "search free 7 5 2 3 600000" "$(cells --since 2d)"
out=$("$CTL" -R "127.0.0.1:$RP" usage --since 90m 2>&1)
like "usage -R: the text names the Redis it read" \
    "Redis 127.0.0.1:$RP" "$out"
like "... and the cell's figures" "search +free +7 +5 +2" "$out"

dead=$(free_port)
out=$("$CTL" -R "127.0.0.1:$dead" usage 2>&1)
is "usage -R to a Redis that does not answer: exit 3" 3 "$?"
like "... naming it" "usage from Redis 127.0.0.1:$dead" "$out"
done_testing
