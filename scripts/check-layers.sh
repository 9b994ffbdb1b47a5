#!/bin/bash
# check-layers.sh -- the core's folders include each other one way only.
#
# The folders of common/ are layers, lowest first (docs/architecture.md):
# a file may include a header of its own folder or of a folder below it,
# never one above.  A public header (common/include/ratelimit2/) belongs
# to the folder that implements it, as the table below says, and obeys
# the same rule.  The tree is $1 (default: this one).  Prints one line per include that points up and exits 1
# when there is any; also when a public header or a core file is not in
# the table (a new one must be placed before it is used).
set -u
cd "${1:-$(dirname "$0")/..}"

LAYERS="base algo policy store redis control decide obs backend load"

# Public header -> the folder that implements it.
declare -A PUBLIC=(
    [status.h]=base [clock.h]=base [hash.h]=base [alert.h]=base
    [algo.h]=algo
    [policy.h]=policy
    [store.h]=store [store_local.h]=store [failover.h]=store
    [redis.h]=redis [tier_source.h]=redis
    [overrides.h]=control [audit.h]=control [admin.h]=control
    [decide.h]=decide [headers.h]=decide [explain.h]=decide
    [metrics.h]=obs [violation_log.h]=obs
    [backend.h]=backend [store_opts.h]=backend
    [config.h]=load
)

declare -A RANK
i=0
for l in $LAYERS; do
    RANK[$l]=$i
    i=$((i + 1))
done

bad=0

# layer_of_include FROM_LAYER INCLUDED -> the layer the included header is
# in, or "" for a system header.
layer_of_include() {
    local from=$1 inc=$2
    case "$inc" in
    ratelimit2/*)
        echo "${PUBLIC[${inc#ratelimit2/}]:-?}" ;;
    */*)
        echo "${inc%%/*}" ;;
    *)
        echo "$from" ;;
    esac
}

check_file() {
    local file=$1 layer=$2 n inc to
    while IFS=: read -r n inc; do
        inc=${inc#*\"}
        inc=${inc%%\"*}
        to=$(layer_of_include "$layer" "$inc")
        if [ "$to" = "?" ] || [ -z "${RANK[$to]+x}" ]; then
            echo "$file:$n: includes \"$inc\", which is in no layer"
            bad=1
        elif [ "${RANK[$to]}" -gt "${RANK[$layer]}" ]; then
            echo "$file:$n: $layer includes \"$inc\" of $to, a layer above"
            bad=1
        fi
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file")
}

for f in common/include/ratelimit2/*.h; do
    h=$(basename "$f")
    if [ -z "${PUBLIC[$h]+x}" ]; then
        echo "$f: a public header in no layer (scripts/check-layers.sh)"
        bad=1
        continue
    fi
    check_file "$f" "${PUBLIC[$h]}"
done

for f in common/*.c common/*.h common/*/*.c common/*/*.h; do
    [ -e "$f" ] || continue
    case "$f" in
    common/include/*) continue ;;
    esac
    dir=${f#common/}
    dir=${dir%%/*}
    if [ "$dir" = "${f#common/}" ] || [ -z "${RANK[$dir]+x}" ]; then
        echo "$f: not in a layer folder ($LAYERS)"
        bad=1
        continue
    fi
    check_file "$f" "$dir"
done

exit $bad
