#!/bin/bash
# t_public.sh -- the public headers (libratelimit2-dev) declare only what a
# front end or the docs/library.md example calls (scripts/check-public.sh),
# and the check itself catches a declaration nobody outside the core uses.
source "$(dirname "$0")/lib.sh"
cd "$RL2_ROOT"

out=$(scripts/check-public.sh 2>&1)
rc=$?
is "every function of common/include/ratelimit2/ is used outside the core" \
    0 "$rc"
[ "$rc" -ne 0 ] && printf '%s\n' "$out" | sed 's/^/# /'

# The check on a copy of the tree with one internal function declared in
# a public header again.
mkdir -p "$T_DIR/tree"
cp -r common mod_ratelimit2 fcgi ctl docs "$T_DIR/tree/"
sed -i 's|^#endif /\* RL2_POLICY_H \*/|int rl2_glob_match(const char *glob, const char *text);\n&|' \
    "$T_DIR/tree/common/include/ratelimit2/policy.h"
out=$(scripts/check-public.sh "$T_DIR/tree" 2>&1)
rc=$?
is "a public declaration no front end uses fails the check" 1 "$rc"
like "the failure names the header and the function" \
    'common/include/ratelimit2/policy.h:[0-9]+: rl2_glob_match is used by no front end' \
    "$out"

# The example of docs/library.md counts as a user: the declaration added
# above passes once the example calls it, and fails again when the call
# is gone.  (Every function the real example calls has a front end
# calling it too, so the check is shown on one of its own.)
sed -i '/^<!-- library-example -->$/,/^```$/s|^#include <stdio.h>$|&\nstatic int probe(void) { return rl2_glob_match("x", "x"); }|' \
    "$T_DIR/tree/docs/library.md"
grep -q 'rl2_glob_match("x"' "$T_DIR/tree/docs/library.md"
is "the copy's example calls rl2_glob_match" 0 "$?"
out=$(scripts/check-public.sh "$T_DIR/tree" 2>&1)
rc=$?
is "... and then the check passes" 0 "$rc"
[ "$rc" -ne 0 ] && printf '%s\n' "$out" | sed 's/^/# /'
sed -i 's/rl2_glob_match("x"/rl2_glob_matchX("x"/' "$T_DIR/tree/docs/library.md"
out=$(scripts/check-public.sh "$T_DIR/tree" 2>&1)
like "a function only the example used fails once the example stops" \
    'rl2_glob_match is used by no front end' "$out"
done_testing
