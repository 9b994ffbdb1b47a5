#!/bin/bash
# t_docs_ref.sh -- the reference documentation agrees with the sources,
# both ways: every Apache directive (AP_INIT_* in mod_ratelimit2/*.c),
# every key the policy loader accepts (the rl2_*_keys[] lists in
# common/*/*.c), every ratelimit2-fcgi option (its getopt string) and
# every ratelimit2-cgi variable, and every ratelimit2ctl subcommand (its
# dispatch table in ctl/*.c) and option (getopt_long's string and long
# option table) is documented, in docs/*.md and in the man pages
# generated from them, and nothing is documented that the sources do not
# define.  The lists are read from the files on every run.  Every
# man page renders with groff -man -ww and no warning.
#
# To document: a new directive, a row in the Apache directives table of
# docs/configuration.md (the man page is made from that section); a new
# key, a row in the table marked <!-- keys: rl2_..._keys --> for its list;
# a new list of keys, a table of its own with that marker; a new
# ratelimit2ctl subcommand, option or exit status, a row in the
# Subcommands, Options or Exit status table of docs/operations.md's
# ratelimit2ctl section (ratelimit2ctl(8) includes it).
. "$(dirname "$0")/lib.sh"
cd "$RL2_ROOT" || exit 1
REF="perl tests/tools/docs_ref.pl"
CONF=docs/configuration.md
FCGI=docs/fastcgi.md

# same NAME SOURCE_LIST DOC_LIST -- one line per difference.
same() {
    local d
    d=$(diff <(printf '%s\n' "$2") <(printf '%s\n' "$3") | grep '^[<>]' \
        | sed 's/^</undocumented:/; s/^>/documented but not in the sources:/')
    is "$1" "" "$d"
}

# covered NAME WANTED_LIST HAVE_LIST -- every wanted item is had.
covered() {
    local missing
    missing=$(comm -23 <(printf '%s\n' "$2" | sort -u) \
        <(printf '%s\n' "$3" | sort -u))
    is "$1" "" "$missing"
}

if make -s man >"$T_DIR/man.log" 2>&1; then
    ok "make man"
else
    not_ok "make man"
    sed 's/^/#   /' "$T_DIR/man.log"
fi
pages=$(ls build/man/*.[0-9])
for p in $pages; do
    # A page that only points at another (.so man8/x.8) is checked there.
    link=$(sed -n '1s/^\.so man[0-9]\///p' "$p")
    if [ -n "$link" ]; then
        [ -f "build/man/$link" ] \
            && ok "$(basename "$p") points at $link, which exists" \
            || not_ok "$(basename "$p") points at $link, which exists"
        continue
    fi
    out=$(groff -man -ww -z "$p" 2>&1)
    is "groff -man -ww -z $(basename "$p"): no warning" "0:" "$?:$out"
done

# ---- Apache directives ----
src=$($REF directives mod_ratelimit2/*.c)
[ -n "$src" ] && ok "directives found in mod_ratelimit2/*.c" \
    || not_ok "directives found in mod_ratelimit2/*.c"
same "every directive is in $CONF and only those" "$src" \
    "$($REF doc-directives $CONF)"
same "every directive is in mod_ratelimit2(5) and only those" "$src" \
    "$($REF man-tags build/man/mod_ratelimit2.5 | grep '^RateLimit2')"

# ---- policy keys ----
src=$($REF key-arrays common/*/*.c)
[ -n "$src" ] && ok "key lists found in common/*/*.c" \
    || not_ok "key lists found in common/*/*.c"
same "every policy key is in $CONF (<!-- keys: --> tables), only those" \
    "$src" "$($REF doc-keys $CONF)"
covered "every policy key is in ratelimit2.conf(5)" \
    "$(printf '%s\n' "$src" | awk '{print $2}')" \
    "$($REF man-tags build/man/ratelimit2.conf.5)"

# ---- ratelimit2-fcgi and ratelimit2-cgi ----
src=$($REF getopt fcgi/main.c)
same "every ratelimit2-fcgi option is in $FCGI and only those" "$src" \
    "$($REF doc-options $FCGI ratelimit2-fcgi)"
covered "every ratelimit2-fcgi option is in ratelimit2-fcgi(8)" "$src" \
    "$($REF man-tags build/man/ratelimit2-fcgi.8)"
src=$($REF env-names fcgi/cgi.c)
same "every ratelimit2-cgi variable is in $FCGI and only those" "$src" \
    "$($REF doc-env $FCGI ratelimit2-cgi)"
covered "every ratelimit2-cgi variable is in ratelimit2-fcgi(8)" "$src" \
    "$($REF man-tags build/man/ratelimit2-fcgi.8)"

# ---- ratelimit2ctl: docs/operations.md and ratelimit2ctl(8) ----
OPS=docs/operations.md
CTL8=build/man/ratelimit2ctl.8
src=$($REF commands ctl/*.c)
[ -n "$src" ] && ok "subcommands found in ctl/*.c" \
    || not_ok "subcommands found in ctl/*.c"
same "every ratelimit2ctl subcommand is in $OPS and only those" "$src" \
    "$($REF doc-commands $OPS Subcommands)"
same "every ratelimit2ctl subcommand is in ratelimit2ctl(8) and only those" \
    "$src" "$($REF man-commands $CTL8 SUBCOMMANDS)"
src=$($REF long-options ctl/*.c)
[ -n "$src" ] && ok "options found in ctl/*.c" \
    || not_ok "options found in ctl/*.c"
same "every ratelimit2ctl option is in $OPS and only those" "$src" \
    "$($REF doc-all-options $OPS Options)"
same "every ratelimit2ctl option is in ratelimit2ctl(8) and only those" \
    "$src" "$($REF man-options $CTL8 OPTIONS)"
src=$(sed -n 's/^#define RL2_CTL_[A-Z_]* *\([0-9][0-9]*\).*/\1/p' ctl/ctl.h \
    | sort -u)
[ -n "$src" ] && ok "exit statuses found in ctl/ctl.h" \
    || not_ok "exit statuses found in ctl/ctl.h"
same "every ratelimit2ctl exit status is in ratelimit2ctl(8), only those" \
    "$src" "$($REF man-commands $CTL8 'EXIT STATUS')"
done_testing
