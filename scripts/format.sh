#!/bin/sh
# format.sh [--check|--fix] [ROOT] -- clang-format over the project's C
# sources (.clang-format at ROOT's top).
#
#   --check  (the default) change nothing; list every file clang-format
#            would change and exit 1 if there is one (make format-check,
#            tests/integration/t_format.sh)
#   --fix    format those files in place (make format)
#
# The files: every .c and .h git tracks under common/, mod_ratelimit2/,
# fcgi/, ctl/, tests/unit/, tests/fuzz/, tests/tools/ and bench/*.c; in a
# tree that is not a git checkout, the same files found on disk.
# CLANG_FORMAT names the program (default clang-format).  The tree is
# formatted with clang-format 14 (Debian 12); another major version may
# format some lines differently, so it is named on stderr.
set -eu

mode=check
case "${1:-}" in
--check) shift ;;
--fix) mode=fix; shift ;;
-*) echo "usage: $0 [--check|--fix] [ROOT]" >&2; exit 2 ;;
esac
ROOT=${1:-$(cd "$(dirname "$0")/.." && pwd)}
CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
cd "$ROOT"

if ! command -v "$CLANG_FORMAT" >/dev/null 2>&1; then
    echo "format: $CLANG_FORMAT not found (apt-get install clang-format)" >&2
    exit 2
fi
version=$("$CLANG_FORMAT" --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p')
if [ "$version" != 14 ]; then
    echo "format: $CLANG_FORMAT is version ${version:-unknown}, the tree" \
        "is formatted with 14: some differences may be the version's" >&2
fi
# An unknown or malformed option in .clang-format fails here, once,
# rather than once per file below.
if ! "$CLANG_FORMAT" --dump-config --assume-filename=x.c >/dev/null; then
    echo "format: $ROOT/.clang-format is not valid for $CLANG_FORMAT" >&2
    exit 2
fi

list_files() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        # A pathspec's * matches across folders: common/*.c is every .c
        # under common/.
        git ls-files -- 'common/*.[ch]' 'mod_ratelimit2/*.[ch]' \
            'fcgi/*.[ch]' 'ctl/*.[ch]' 'tests/unit/*.[ch]' \
            'tests/fuzz/*.[ch]' 'tests/tools/*.[ch]' 'bench/*.c' \
            | while read -r f; do [ -f "$f" ] && echo "$f"; done
    else
        find common mod_ratelimit2 fcgi ctl tests/unit tests/fuzz \
            tests/tools -name '*.[ch]' -type f 2>/dev/null
        find bench -maxdepth 1 -name '*.c' -type f 2>/dev/null
    fi | LC_ALL=C sort
}

files=$(list_files)
if [ -z "$files" ]; then
    echo "format: no C sources under $ROOT" >&2
    exit 2
fi
n=$(printf '%s\n' "$files" | wc -l)

if [ "$mode" = fix ]; then
    printf '%s\n' "$files" | xargs "$CLANG_FORMAT" -i
    echo "format: formatted $n files"
    exit 0
fi

# One clang-format per CPU; each file checked on its own, so that the
# ones that differ are named.
differ=$(printf '%s\n' "$files" | xargs -P "$(nproc)" -n 8 sh -c '
    for f; do "$0" --dry-run --Werror "$f" >/dev/null 2>&1 || echo "$f"; done
' "$CLANG_FORMAT" | LC_ALL=C sort)
bad=0
if [ -n "$differ" ]; then
    printf '%s\n' "$differ"
    bad=$(printf '%s\n' "$differ" | wc -l)
fi
if [ "$bad" -ne 0 ]; then
    echo "format: $bad of $n files differ from clang-format" \
        "(make format rewrites them; clang-format --dry-run FILE shows" \
        "where)" >&2
    exit 1
fi
echo "format: $n files as clang-format writes them"
