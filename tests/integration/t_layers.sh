#!/bin/bash
# t_layers.sh -- the core's folders include each other one way only
# (scripts/check-layers.sh, docs/architecture.md), and the check itself
# catches an include that points up.
source "$(dirname "$0")/lib.sh"
cd "$RL2_ROOT"

out=$(scripts/check-layers.sh 2>&1)
rc=$?
is "no include in common/ points up a layer" 0 "$rc"
[ "$rc" -ne 0 ] && printf '%s\n' "$out" | sed 's/^/# /'

# The check on a copy of the tree with one upward include added: the
# store including the decision's internal header.
mkdir -p "$T_DIR/tree"
cp -r common "$T_DIR/tree/common"
sed -i '0,/^#include "/s||#include "decide/decide_internal.h"\n#include "|' \
    "$T_DIR/tree/common/store/zone.c"
out=$(scripts/check-layers.sh "$T_DIR/tree" 2>&1)
rc=$?
is "an upward include fails the check" 1 "$rc"
like "the failure names the file and the layers" \
    'common/store/zone.c:[0-9]*: store includes "decide/decide_internal.h" of decide, a layer above' \
    "$out"

# A file directly in common/ is in no layer.
cp common/base/status.c "$T_DIR/tree/common/stray.c"
out=$(scripts/check-layers.sh "$T_DIR/tree" 2>&1)
like "a .c file directly in common/ fails the check" \
    'common/stray.c: not in a layer folder' "$out"
done_testing
