#!/bin/bash
# t_format.sh -- every C source is as clang-format writes it with the
# tree's .clang-format (make format-check, scripts/format.sh), and the
# check itself catches a misformatted file.
source "$(dirname "$0")/lib.sh"
cd "$RL2_ROOT"

if ! command -v clang-format >/dev/null 2>&1; then
    not_ok "clang-format is installed (scripts/deps.sh)"
    done_testing
    exit
fi

out=$(scripts/format.sh --check 2>&1)
rc=$?
is "every C source is clang-formatted (make format-check)" 0 "$rc"
[ "$rc" -ne 0 ] && printf '%s\n' "$out" | head -40 | sed 's/^/# /'

# The check on a copy of a few files, outside git: one formatted, one
# with its indentation broken.
mkdir -p "$T_DIR/tree/common/base"
cp .clang-format "$T_DIR/tree/"
cp common/base/clock.c "$T_DIR/tree/common/base/clock.c"
clang-format -i "$T_DIR/tree/common/base/clock.c"
out=$(scripts/format.sh --check "$T_DIR/tree" 2>&1)
is "a formatted copy passes the check" 0 "$?"
printf 'int\nf(void)\n{\n      return 0;\n}\n' >"$T_DIR/tree/common/base/bad.c"
out=$(scripts/format.sh --check "$T_DIR/tree" 2>&1)
is "a misformatted file fails the check" 1 "$?"
like "the failure names the file" '^common/base/bad\.c$' "$out"
scripts/format.sh --fix "$T_DIR/tree" >/dev/null 2>&1
out=$(scripts/format.sh --check "$T_DIR/tree" 2>&1)
is "--fix formats it" 0 "$?"
done_testing
