#!/bin/bash
# check-names.sh -- every function of the program has one name of its own.
#
# Reads the function symbols (nm: 't' local, 'T' global) of the built
# objects and prints one line per problem, exiting 1 when there is any:
#
#   - a function defined in more than one object (a static in one file
#     and a static of the same name in another are two functions a
#     backtrace or a grep cannot tell apart, or one copied);
#   - a function of the core (an object under a folder named common/)
#     whose name does not start with rl2_.
#
# One static inline function of a header, emitted in every object that
# calls it out of line, is one function: when the objects carry debug
# information (nm -l), definitions at one source line count once.
# main is one per program and is left out; so are functions of system
# headers.  GCC's clones (name.constprop.0, name.isra.0, name.part.0,
# name.cold) are their function.
#
# Usage: check-names.sh [DIR...]; each DIR is searched for *.o.  The
# default is the build ($BUILD, default build): its common/, fcgi/, ctl/
# and the Apache module's objects (mod/.libs/).  At -O2 a static function
# inlined everywhere leaves no symbol; t_names.sh also runs the check on
# the sources compiled without inlining.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}

if [ $# -eq 0 ]; then
    set -- "$BUILD/common" "$BUILD/fcgi" "$BUILD/ctl" "$BUILD/mod/.libs"
fi

objs=()
for d in "$@"; do
    if [ ! -d "$d" ]; then
        echo "check-names: $d: no such directory" >&2
        exit 2
    fi
    while IFS= read -r o; do
        objs+=("$o")
    done < <(find "$d" -name '*.o' | sort)
done
if [ ${#objs[@]} -eq 0 ]; then
    echo "check-names: no objects in $*" >&2
    exit 2
fi

# One line per definition: NAME OBJECT WHERE (WHERE: file:line, or the
# object when there is no debug information).
out=$(for o in "${objs[@]}"; do
    nm -l --defined-only "$o" 2>/dev/null \
        | awk -v obj="$o" '
            $2 == "t" || $2 == "T" {
                name = $3
                sub(/\..*/, "", name)
                where = (NF >= 4) ? $4 : obj
                if (name == "main" || where ~ /^\/usr\//) next
                # Module constructors and destructors of the sanitizers
                # (SAN=1): the compiler names them, in every object.
                if (name ~ /^_sub_[ID]_[0-9]+_[0-9]+$/) next
                print name, obj, where
            }'
done | sort -u | awk '
    {
        key = $1 SUBSEP $3
        if (!(key in seen)) {
            seen[key] = 1
            n[$1]++
        }
        if (index(" " objs[$1] " ", " " $2 " ") == 0)
            objs[$1] = objs[$1] (objs[$1] == "" ? "" : " ") $2
        if ($2 ~ /(^|\/)common\// && $1 !~ /^rl2_/ && !($1 in bare)) {
            bare[$1] = $2
        }
    }
    END {
        bad = 0
        for (f in n) {
            if (n[f] > 1) {
                printf "%s: defined in more than one object: %s\n", f, objs[f]
                bad = 1
            }
        }
        for (f in bare) {
            printf "%s: a function of the core without the rl2_ prefix (%s)\n", f, bare[f]
            bad = 1
        }
        exit bad
    }')
rc=$?
[ -n "$out" ] && printf '%s\n' "$out" | sort
exit "$rc"
