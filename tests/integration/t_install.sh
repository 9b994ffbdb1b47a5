#!/bin/bash
# t_install.sh -- make install for distributions other than Debian: every
# file lands under DESTDIR in its FHS place for the PREFIX given, the
# installed ratelimit2ctl accepts the installed policy, the systemd unit
# runs the installed daemon, the module loads from where it was
# installed, and a second install keeps the administrator's policy.
# The core for other programs (install-dev): the static archive, every
# public header (each compiles alone, from the installed tree), and
# ratelimit2.pc, with which the example of docs/library.md builds and
# decides; with PREFIX=/usr the archive goes to the multiarch directory.
. "$(dirname "$0")/lib.sh"
cd "$RL2_ROOT" || exit 1

R=$T_DIR/root
moddir=$(apxs -q LIBEXECDIR)
if make -s install DESTDIR="$R" PREFIX=/opt/rl2 >"$T_DIR/install.log" 2>&1
then
    ok "make install DESTDIR=... PREFIX=/opt/rl2"
else
    not_ok "make install DESTDIR=... PREFIX=/opt/rl2"
    sed 's/^/#   /' "$T_DIR/install.log"
fi
for f in "$moddir/mod_ratelimit2.so" /opt/rl2/sbin/ratelimit2-fcgi \
         /opt/rl2/sbin/ratelimit2-cgi /opt/rl2/sbin/ratelimit2ctl \
         /etc/ratelimit2/ratelimit2.conf \
         /opt/rl2/share/man/man5/ratelimit2.conf.5 \
         /opt/rl2/share/man/man5/mod_ratelimit2.5 \
         /opt/rl2/share/man/man8/ratelimit2-fcgi.8 \
         /opt/rl2/share/man/man8/ratelimit2-cgi.8 \
         /opt/rl2/share/man/man8/ratelimit2ctl.8 \
         /opt/rl2/share/doc/ratelimit2/examples/saas-api.conf \
         /opt/rl2/share/doc/ratelimit2/examples/apache-ratelimit2.load \
         /opt/rl2/share/doc/ratelimit2/examples/nginx-auth-request.conf \
         /opt/rl2/share/doc/ratelimit2/examples/nginx-auth-request-http.conf \
         /opt/rl2/lib/libratelimit2.a /opt/rl2/lib/pkgconfig/ratelimit2.pc \
         /opt/rl2/include/ratelimit2/config.h \
         /opt/rl2/include/ratelimit2/decide.h; do
    [ -f "$R$f" ] && ok "installed $f" || not_ok "installed $f"
done
[ -x "$R/opt/rl2/sbin/ratelimit2-fcgi" ] && ok "the daemon is executable" \
    || not_ok "the daemon is executable"
"$R/opt/rl2/sbin/ratelimit2ctl" check "$R/etc/ratelimit2/ratelimit2.conf" \
    >"$T_DIR/check.out" 2>&1
is "the installed ratelimit2ctl checks the installed policy" 0 "$?"
unit=$(ls "$R"/*/systemd/system/ratelimit2-fcgi.service \
    "$R"/usr/lib/systemd/system/ratelimit2-fcgi.service 2>/dev/null | head -1)
like "the service unit runs the installed daemon" \
    '^ExecStart=/opt/rl2/sbin/ratelimit2-fcgi -c /etc/ratelimit2/' \
    "$(cat "$unit" 2>/dev/null)"
like "the example LoadModule names the installed module" \
    "^LoadModule ratelimit2_module $moddir/mod_ratelimit2.so\$" \
    "$(cat "$R/opt/rl2/share/doc/ratelimit2/examples/apache-ratelimit2.load")"

# The installed module and policy load in Apache.
D=$T_DIR/apache
apache_conf "$D" "$(free_port)" event
so=$R$moddir/mod_ratelimit2.so
sed -i "s|^\(LoadModule ratelimit2_module\) .*|\1 $so|" "$D/httpd.conf"
echo "RateLimit2Policy $R/etc/ratelimit2/ratelimit2.conf" >"$D/site.conf"
like "apache2 -t loads the installed module and policy" 'Syntax OK' \
    "$(apache_configtest "$D")"

# ---- the core library ----
inc=$R/opt/rl2/include/ratelimit2
is "every public header is installed" \
    "$(cd common/include/ratelimit2 && ls -- *.h)" "$(cd "$inc" && ls -- *.h)"
bad=
for h in "$inc"/*.h; do
    # Only the installed tree on the include path: a header that needs
    # a private one (common/*.h) or another before it fails here.
    printf '#include <ratelimit2/%s>\n' "$(basename "$h")" \
        | ${CC:-cc} -std=c11 -Wall -Wextra -Werror -I"$R/opt/rl2/include" \
            -x c -fsyntax-only - >"$T_DIR/hdr.log" 2>&1 \
        || bad="$bad $(basename "$h")"
done
is "every installed header compiles on its own" "" "$bad"
cmp -s "$BUILD/libratelimit2.a" "$R/opt/rl2/lib/libratelimit2.a"
is "the installed archive is the built one" 0 "$?"
pc=$R/opt/rl2/lib/pkgconfig
like "ratelimit2.pc: prefix is PREFIX" '^prefix=/opt/rl2$' "$(cat "$pc/ratelimit2.pc")"
like "ratelimit2.pc: libdir and includedir follow prefix" \
    '^libdir=\$\{prefix\}/lib
includedir=\$\{prefix\}/include$' \
    "$(grep -E '^(lib|include)dir=' "$pc/ratelimit2.pc")"
version=$(sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' packaging/debian/changelog)
is "ratelimit2.pc: the version of packaging/debian/changelog" "$version" \
    "$(PKG_CONFIG_PATH=$pc pkg-config --modversion ratelimit2 2>&1)"
like "ratelimit2.pc: the archive alone without --static" \
    '^-L/opt/rl2/lib -lratelimit2 *$' \
    "$(PKG_CONFIG_PATH=$pc pkg-config --libs ratelimit2 2>&1)"
# The tree is not in place: a copy of the .pc with prefix= moved into
# DESTDIR (pkg-config's --define-variable=prefix would move libconfig's
# prefix too), whose libdir and includedir must follow.
mkdir -p "$T_DIR/pc"
sed "s|^prefix=.*|prefix=$R/opt/rl2|" "$pc/ratelimit2.pc" \
    >"$T_DIR/pc/ratelimit2.pc"
# Under `make check SAN=1` the installed archive is the sanitized build.
EXAMPLE_CFLAGS=
[ "${SAN:-0}" = 1 ] && EXAMPLE_CFLAGS="-fsanitize=address,undefined"
EXAMPLE_CFLAGS=$EXAMPLE_CFLAGS \
library_example "make install DESTDIR=... PREFIX=/opt/rl2" \
    env PKG_CONFIG_PATH="$T_DIR/pc" pkg-config

# PREFIX=/usr: the multiarch library directory, as Debian's own.
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null \
    || ${CC:-cc} -print-multiarch 2>/dev/null)
R2=$T_DIR/usr-root
make -s install-dev DESTDIR="$R2" PREFIX=/usr >"$T_DIR/install-dev.log" 2>&1
is "make install-dev DESTDIR=... PREFIX=/usr" 0 "$?"
for f in "/usr/lib${ma:+/$ma}/libratelimit2.a" \
         "/usr/lib${ma:+/$ma}/pkgconfig/ratelimit2.pc" \
         /usr/include/ratelimit2/decide.h; do
    [ -f "$R2$f" ] && ok "PREFIX=/usr: installed $f" \
        || not_ok "PREFIX=/usr: installed $f"
done

echo '# mine' >>"$R/etc/ratelimit2/ratelimit2.conf"
make -s install DESTDIR="$R" PREFIX=/opt/rl2 >"$T_DIR/install2.log" 2>&1
like "a second install keeps the administrator's policy" '# mine$' \
    "$(cat "$R/etc/ratelimit2/ratelimit2.conf")"
done_testing
