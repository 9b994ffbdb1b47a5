#!/bin/bash
# t_install.sh -- make install for distributions other than Debian: every
# file lands under DESTDIR in its FHS place for the PREFIX given, the
# installed ratelimit2ctl accepts the installed policy, the systemd unit
# runs the installed daemon, the module loads from where it was
# installed, and a second install keeps the administrator's policy.
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
         /opt/rl2/share/doc/ratelimit2/examples/apache-ratelimit2.load; do
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

echo '# mine' >>"$R/etc/ratelimit2/ratelimit2.conf"
make -s install DESTDIR="$R" PREFIX=/opt/rl2 >"$T_DIR/install2.log" 2>&1
like "a second install keeps the administrator's policy" '# mine$' \
    "$(cat "$R/etc/ratelimit2/ratelimit2.conf")"
done_testing
