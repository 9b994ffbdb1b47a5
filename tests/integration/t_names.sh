#!/bin/bash
# t_names.sh -- every function of the program has one name of its own
# and the core's start with rl2_ (scripts/check-names.sh), on the build
# and on the sources compiled without inlining (at -O2 a static function
# inlined everywhere leaves no symbol); and the check itself catches a
# name defined twice and a core function without the prefix.
source "$(dirname "$0")/lib.sh"
cd "$RL2_ROOT"

out=$(scripts/check-names.sh "$BUILD/common" "$BUILD/fcgi" "$BUILD/ctl" \
      "$BUILD/mod/.libs" 2>&1)
rc=$?
is "the build's functions have one name each, the core's with rl2_" 0 "$rc"
[ "$rc" -ne 0 ] && printf '%s\n' "$out" | sed 's/^/# /'

# The same sources at -O0 without inlining: every static function has a
# symbol.  -g lets one static inline of a header count once.
O0="$T_DIR/o0"
flags="-std=gnu11 -D_GNU_SOURCE -O0 -fno-inline -g -fPIC -Icommon/include"
# o0 FILE -- FILE compiled into $O0, its errors to o0.log.
o0() {
    local f=$1 o="$O0/${1%.c}.o" extra=
    mkdir -p "$(dirname "$o")"
    case "$f" in
    common/*) extra=-Icommon ;;
    mod_ratelimit2/*)
        extra="-I$(apxs -q INCLUDEDIR) $(apr-1-config --includes)" ;;
    ctl/init.c) extra="-I$BUILD/ctl" ;; # init_templates.h, made by make
    ctl/usage*.c) extra=-Icommon ;; # obs/usage.h, the core's reader
    esac
    # shellcheck disable=SC2086
    cc $flags $extra -c -o "$o" "$f" 2>>"$T_DIR/o0.log"
}
export -f o0
export O0 T_DIR flags BUILD
# One compiler per CPU: the files are independent.
built=0
printf '%s\n' common/*/*.c fcgi/*.c ctl/*.c mod_ratelimit2/*.c \
    | xargs -P "$(nproc)" -I{} bash -c 'o0 "$1"' _ {} || built=1
is "the sources compile without inlining" 0 "$built"
[ "$built" -ne 0 ] && sed 's/^/# /' "$T_DIR/o0.log" | head -20
out=$(scripts/check-names.sh "$O0" 2>&1)
rc=$?
is "without inlining too, one name each, the core's with rl2_" 0 "$rc"
[ "$rc" -ne 0 ] && printf '%s\n' "$out" | sed 's/^/# /'

# Two files with a static function of one name, and a core file with a
# function without the prefix.
mkdir -p "$T_DIR/twin/common/a" "$T_DIR/twin/fe"
printf 'static int rl2_twin(int x) { return x + 1; }\n'`
      `'int rl2_a(int x) { return rl2_twin(x); }\n' >"$T_DIR/twin/a.c"
printf 'static int rl2_twin(int x) { return x - 1; }\n'`
      `'int rl2_b(int x) { return rl2_twin(x); }\n' >"$T_DIR/twin/b.c"
printf 'int bare(int x) { return x; }\n' >"$T_DIR/twin/c.c"
cc -O0 -c -o "$T_DIR/twin/common/a/a.o" "$T_DIR/twin/a.c" \
    && cc -O0 -c -o "$T_DIR/twin/fe/b.o" "$T_DIR/twin/b.c" \
    && cc -O0 -c -o "$T_DIR/twin/common/a/c.o" "$T_DIR/twin/c.c"
out=$(scripts/check-names.sh "$T_DIR/twin" 2>&1)
rc=$?
is "a name defined twice fails the check" 1 "$rc"
like "the failure names the function and both objects" \
    '^rl2_twin: defined in more than one object: .*/common/a/a\.o .*/fe/b\.o' \
    "$out"
like "a core function without rl2_ is named" \
    '^bare: a function of the core without the rl2_ prefix' "$out"
done_testing
