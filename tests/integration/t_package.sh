#!/bin/bash
# t_package.sh -- the Debian packages, as a sysadmin meets them.
#
# Builds them (make deb, from a clean copy of the tree), checks them with
# lintian, installs them with dpkg -i, enables the module with a2enmod,
# runs apachectl configtest on the system configuration, then starts an
# Apache of its own on a free loopback port that includes the packaged
# mods-available files with the packaged example limit uncommented, and
# sees a 429 from it.  The installed ratelimit2ctl accepts the shipped
# policy (check), and with the packaged policy's commented example
# uncommented into that Apache's policy it reads the client's counters
# from the running Apache's zone (status: what is left equals the
# RateLimit field the client was sent) and forgets them (reset).  The
# installed systemd units pass systemd-analyze
# verify, and the installed daemon, started under systemd-socket-activate
# with the socket unit's address and the service unit's command line,
# answers an authorizer request.  libratelimit2-dev installs the static
# archive, the headers and ratelimit2.pc in the multiarch directories,
# and the example program of docs/library.md builds against it with
# plain pkg-config and decides.  The packages are purged on every exit
# path, every file they installed is gone, and the file lists of
# /etc/apache2, /etc/ratelimit2,
# /usr/lib/apache2, /var/lib/apache2, the systemd unit directories,
# /usr/include/ratelimit2, the archive, the multiarch pkgconfig directory
# and /var/lib/dpkg/info are the same afterwards as before.
#
# Skipped without dpkg-buildpackage or root, and when the packages are
# already installed on this machine (that installation is not ours to
# purge).  Other suites run Apache with their own configuration and the
# build tree's module: neither the packages nor their purge touch that.
. "$(dirname "$0")/fcgi_lib.sh"

PKGS="libapache2-mod-ratelimit2 ratelimit2-fcgi ratelimit2-tools
ratelimit2-common libratelimit2-dev"
CTL=/usr/sbin/ratelimit2ctl
MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null)
LIBDIR=/usr/lib/$MA
WATCH="/etc/apache2 /etc/ratelimit2 /usr/lib/apache2 /var/lib/apache2
/etc/systemd/system /lib/systemd/system /var/lib/dpkg/info
/usr/include/ratelimit2 $LIBDIR/libratelimit2.a $LIBDIR/pkgconfig"

skip_all() {
    echo "1..0 # SKIP $1"
    exit 0
}
command -v dpkg-buildpackage >/dev/null || skip_all "no dpkg-buildpackage"
[ "$(id -u)" -eq 0 ] || skip_all "dpkg -i needs root"
for p in $PKGS; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q installed; then
        skip_all "$p is installed here already; not ours to purge"
    fi
done

# What is there: path, type and link target, one a line.
snapshot() {
    # shellcheck disable=SC2086
    find $WATCH -printf '%p %y %l\n' 2>/dev/null | sort
}

# dpkg ARGS... -- dpkg, waiting up to 5 minutes for the lock when another
# apt-get or dpkg on this machine holds it.
dpkg_wait() {
    local i out rc
    for i in $(seq 1 300); do
        out=$(DEBIAN_FRONTEND=noninteractive dpkg "$@" 2>&1)
        rc=$?
        printf '%s\n' "$out" \
            | grep -qE 'frontend lock|database is locked' || break
        sleep 1
    done
    printf '%s\n' "$out"
    return $rc
}

PURGED=0
MADE_SHM=()
pkg_purge() {
    [ "$PURGED" = 1 ] && return 0
    PURGED=1
    # shellcheck disable=SC2086
    dpkg_wait --purge $PKGS >"$T_DIR/purge.log" 2>&1
}
pkg_cleanup() {
    local pf
    rl2_stop_all
    pkg_purge
    # A zone comes with its alert, metrics and violation-log objects,
    # and the runtime override table.
    for pf in "${MADE_SHM[@]}"; do
        rm -f "$pf" "$pf.alert" "$pf.metrics" "$pf.vlog" "$pf.overrides"
    done
    rl2_cleanup
}
trap pkg_cleanup EXIT

snapshot >"$T_DIR/before.list"

# ---- build and check ----
DEB=$T_DIR/deb
if ! make -s -C "$RL2_ROOT" deb DEBDIR="$DEB" DEBSRC="$T_DIR/debsrc" \
        >"$T_DIR/build.log" 2>&1; then
    not_ok "make deb builds the packages"
    tail -40 "$T_DIR/build.log" | sed 's/^/#   /'
    done_testing
    exit 1
fi
for p in $PKGS; do
    if ls "$DEB/${p}_"*.deb >/dev/null 2>&1; then
        ok "make deb builds $p"
    else
        not_ok "make deb builds $p"
    fi
done
if command -v lintian >/dev/null; then
    out=$(lintian --allow-root --fail-on error "$DEB"/*.changes 2>&1)
    is "lintian reports no errors" "0" "$?"
    printf '%s\n' "$out" | grep -v '^$' | sed 's/^/# lintian: /'
fi

# ---- install ----
debs=()
for p in $PKGS; do
    debs+=("$(ls "$DEB/${p}_"*.deb)")
done
out=$(dpkg_wait -i "${debs[@]}")
is "dpkg -i installs the five packages" "0" "$?"
[ -n "$out" ] && printf '%s\n' "$out" | tail -5 | sed 's/^/#   /'
out=$(a2enmod ratelimit2 2>&1)
is "a2enmod ratelimit2" "0" "$?"
like "the module is enabled" 'ratelimit2' \
    "$(ls /etc/apache2/mods-enabled/)"
out=$(apachectl configtest 2>&1)
like "apachectl configtest: Syntax OK" 'Syntax OK' "$out"
like "man pages are installed" 'ratelimit2-fcgi\.8\.gz' \
    "$(dpkg -L ratelimit2-fcgi)"
is "the default policy is a conffile" "/etc/ratelimit2/ratelimit2.conf" \
    "$(dpkg-query -W -f='${Conffiles}' ratelimit2-common | awk '{print $1}')"
# What the packages put on disk, to prove after the purge that it is gone.
# shellcheck disable=SC2086
dpkg -L $PKGS 2>/dev/null | while read -r f; do
    [ -d "$f" ] || printf '%s\n' "$f"
done | sort -u >"$T_DIR/installed.list"

# ---- ratelimit2-tools ----
like "ratelimit2-tools installs $CTL" "^$CTL\$" \
    "$(dpkg -L ratelimit2-tools)"
like "ratelimit2-tools installs ratelimit2ctl(8)" \
    '^/usr/share/man/man8/ratelimit2ctl\.8\.gz$' "$(dpkg -L ratelimit2-tools)"
like "ratelimit2-tools depends on ratelimit2-common" 'ratelimit2-common' \
    "$(dpkg-query -W -f='${Depends}' ratelimit2-tools)"
out=$("$CTL" check /etc/ratelimit2/ratelimit2.conf 2>&1)
is "ratelimit2ctl check accepts the shipped policy (exit 0)" 0 "$?"
like "ratelimit2ctl check says it is valid" '^valid$' "$out"
out=$("$CTL" --help 2>&1)
is "ratelimit2ctl --help exits 0" 0 "$?"

# ctl_status DIR PORT ZONE -- one POST /login to the running Apache, then
# the installed ratelimit2ctl on its zone: what it reads is what the
# client was told, and reset forgets it.
ctl_status() {
    local h=$T_DIR/login.h rl st left
    curl -s -D "$h" -o /dev/null -X POST "http://127.0.0.1:$2/login"
    rl=$(tr -d '\r' <"$h" | sed -n 's/^RateLimit: "login";r=\([0-9]*\);.*/\1/p')
    is "POST /login is shown its login limit, one used" "$((login - 1))" "$rl"
    st=$("$CTL" status 127.0.0.1 -z "$3" -c "$1/policy.conf" -m POST \
        -p /login 2>&1)
    is "ratelimit2ctl status on the packaged Apache's zone (exit 0)" 0 "$?"
    left=$(printf '%s\n' "$st" | awk '$1 == "login" { print $6 }')
    is "ratelimit2ctl status: remaining is the client's RateLimit r=" \
        "$rl" "$left"
    like "ratelimit2ctl status reads the local zone" 'store local' "$st"
    st=$("$CTL" status 127.0.0.1 -z "$3" 2>&1)
    is "ratelimit2ctl status with the shipped policy (exit 0)" 0 "$?"
    like "the shipped policy limits nothing" 'verdict no limit applies' "$st"
    "$CTL" reset 127.0.0.1 -z "$3" -c "$1/policy.conf" -m POST -p /login \
        >"$T_DIR/reset.out" 2>&1
    is "ratelimit2ctl reset (exit 0)" 0 "$?"
    st=$("$CTL" status 127.0.0.1 -z "$3" -c "$1/policy.conf" -m POST \
        -p /login 2>&1)
    is "after reset, nothing of the login limit is used" "0 $login" \
        "$(printf '%s\n' "$st" | awk '$1 == "login" { print $5, $6 }')"
}

# ---- libratelimit2-dev ----
dev=$(dpkg -L libratelimit2-dev 2>/dev/null)
for f in "$LIBDIR/libratelimit2.a" "$LIBDIR/pkgconfig/ratelimit2.pc" \
         /usr/include/ratelimit2/decide.h /usr/include/ratelimit2/config.h; do
    like "libratelimit2-dev installs $f" "^$f\$" "$dev"
done
is "libratelimit2-dev installs every public header" \
    "$(cd "$RL2_ROOT/common/include/ratelimit2" && ls -- *.h)" \
    "$(printf '%s\n' "$dev" | sed -n 's|^/usr/include/ratelimit2/||p' \
        | grep '\.h$' | sort)"
like "libratelimit2-dev depends on libconfig-dev and libhiredis-dev" \
    'libconfig-dev.*libhiredis-dev' \
    "$(dpkg-query -W -f='${Depends}' libratelimit2-dev)"
like "libratelimit2-dev says it is a static archive without ABI promise" \
    'static archive only.*no ABI' \
    "$(dpkg-query -W -f='${Description}' libratelimit2-dev | tr '\n' ' ')"
is "pkg-config --modversion ratelimit2 is the package's version" \
    "$(dpkg-query -W -f='${Version}' libratelimit2-dev)" \
    "$(env -u PKG_CONFIG_PATH pkg-config --modversion ratelimit2 2>&1)"
library_example "libratelimit2-dev" env -u PKG_CONFIG_PATH pkg-config

# ---- Apache with the packaged files and the example limit ----
D=$T_DIR/apache
P=$(free_port)
Z=$(zone_name pkg)
apache_conf "$D" "$P" event
sed -i '/^LoadModule ratelimit2_module/d' "$D/httpd.conf"
n=$(grep -cE '^[[:space:]]*#[[:space:]]*RateLimit2Limit ' \
    /etc/apache2/mods-available/ratelimit2.conf)
is "the packaged configuration has one example limit to uncomment" 1 "$n"
# The shipped policy's example (commented, from "# rules = (" to the next
# bare "#"), uncommented into a policy of this Apache's own, so that
# ratelimit2ctl has limits to read: the inline RateLimit2Limit is not in
# any policy file.
awk '/^# rules = \(/ { on = 1 } on && /^#$/ { on = 0 }
     on { sub(/^# ?/, ""); print; next } { print }' \
    /etc/ratelimit2/ratelimit2.conf >"$D/policy.conf"
out=$("$CTL" check "$D/policy.conf" 2>&1)
is "ratelimit2ctl check accepts the shipped example policy" 0 "$?"
login=$(printf '%s\n' "$out" \
    | sed -n 's/^ *every tier *login  *\([0-9]*\)\/min .*/\1/p')
like "the shipped example policy limits POST /login a minute" '^[0-9]+$' \
    "$login"
sed -E -e 's/^([[:space:]]*)#[[:space:]]*(RateLimit2Limit )/\1\2/' \
    -e "s|^([[:space:]]*RateLimit2Policy ).*|\1$D/policy.conf|" \
    /etc/apache2/mods-available/ratelimit2.conf >"$D/ratelimit2.conf"
limit=$(sed -n 's/^[[:space:]]*RateLimit2Limit [^ ]* \([0-9]*\)\/min.*/\1/p' \
    "$D/ratelimit2.conf")
cat >"$D/site.conf" <<CONF
Include /etc/apache2/mods-available/ratelimit2.load
Include $D/ratelimit2.conf
RateLimit2Zone $Z 1000
CONF
if apache_start "$D"; then
    ok "Apache starts with the packaged module files"
    H=$T_DIR/first.h
    c=$(curl -s -D "$H" -o /dev/null -w '%{http_code}' \
        "http://127.0.0.1:$P/index.html")
    is "the first request is let through" 200 "$c"
    like "the example limit is in force" \
        "^RateLimit-Policy: .*\"per_client\";q=$limit;w=60" \
        "$(tr -d '\r' <"$H")"
    ctl_status "$D" "$P" "$Z"
    sent=2                              # the first request and the login
    n=$(admitted $((limit + 50)) 4 "http://127.0.0.1:$P/index.html")
    if [ "$n" -ge $((limit - sent - limit / 10)) ] 2>/dev/null \
            && [ "$n" -le $((limit - sent)) ]; then
        ok "at most the example's $limit a minute are admitted ($((n + sent)))"
    else
        not_ok "at most the example's $limit a minute are admitted ($n + $sent)"
    fi
    c=$(code "http://127.0.0.1:$P/index.html")
    is "a request over the example limit gets 429" 429 "$c"
    apache_stop "$D"
else
    not_ok "Apache starts with the packaged module files"
fi

# ---- systemd units and the daemon ----
U=/lib/systemd/system
out=$(timeout 60 systemd-analyze verify "$U/ratelimit2-fcgi.socket" \
    "$U/ratelimit2-fcgi.service" 2>&1)
is "systemd-analyze verify accepts the installed units" "0:" "$?:$out"
addr=$(sed -n 's/^ListenStream=//p' "$U/ratelimit2-fcgi.socket")
cmd=$(sed -n 's/^ExecStart=//p' "$U/ratelimit2-fcgi.service")
user=$(sed -n 's/^User=//p' "$U/ratelimit2-fcgi.service")
is "the socket unit listens on loopback" "127.0.0.1:9000" "$addr"
if rl2_port_busy "${addr##*:}"; then
    # Someone else's server has the unit's port: take a free one.
    addr=127.0.0.1:$(free_port)
    echo "# ${addr%%:*}:9000 is busy; the daemon listens on $addr"
fi
# Apache with the module leaves its default zone /ratelimit2, root's,
# mode 0600: the daemon, as www-data, must not need it.  Made here (by
# the installed CGI wrapper, as root) when there is none, removed after.
if [ ! -e /dev/shm/ratelimit2 ]; then
    env -i REQUEST_METHOD=GET REQUEST_URI=/ REMOTE_ADDR=192.0.2.1 \
        RATELIMIT2_TARGET=/bin/true /usr/sbin/ratelimit2-cgi >/dev/null 2>&1
    [ -e /dev/shm/ratelimit2 ] && MADE_SHM+=(/dev/shm/ratelimit2)
fi
uzone=$(printf '%s\n' "$cmd" | sed -n 's/.* -z \([^ ]*\).*/\1/p')
like "the service has a zone of its own" '^/.' "$uzone"
if [ "$uzone" != /ratelimit2 ]; then
    ok "the service's zone is not Apache's default"
else
    not_ok "the service's zone is not Apache's default"
fi
if [ -n "$uzone" ] && [ ! -e "/dev/shm$uzone" ]; then
    MADE_SHM+=("/dev/shm$uzone")
    zopt=()
else
    zopt=(-z "$(zone_name fcgi)")     # someone's: leave it alone
fi
# setpriv execs, so the daemon keeps the pid systemd-socket-activate gave
# LISTEN_PID, and runs as the unit's User=.
# shellcheck disable=SC2086
systemd-socket-activate -l "$addr" setpriv --reuid="$user" \
    --regid="$user" --clear-groups $cmd "${zopt[@]}" \
    2>"$T_DIR/daemon.log" &
echo $! >"$T_DIR/daemon.pid"
RL2_PIDFILES+=("$T_DIR/daemon.pid")
wait_port "${addr##*:}"
a=$("$FCGI_CLIENT" "$addr" REMOTE_ADDR=192.0.2.1 REQUEST_METHOD=GET \
    REQUEST_URI=/ HTTP_HOST=example.com | head -1 | tr -d '\r')
is "the daemon answers an authorizer request" "Status: 200 OK" "$a"
like "the daemon got its socket from systemd" 'the socket from systemd' \
    "$(cat "$T_DIR/daemon.log")"
kill -TERM "$(cat "$T_DIR/daemon.pid")"
rl2_wait_gone "$T_DIR/daemon.pid"

# ---- purge: nothing left behind ----
pkg_purge
is "dpkg --purge removes the packages" "0" "$?"
left=$(while read -r f; do [ -e "$f" ] && echo "$f"; done \
    <"$T_DIR/installed.list")
is "after purge no file the packages installed is left" "" "$left"
like "ratelimit2ctl was among them" "^$CTL\$" "$(cat "$T_DIR/installed.list")"
snapshot >"$T_DIR/after.list"
# Another engineer's apt-get may add packages meanwhile: in dpkg's info
# directory and the pkgconfig one only our packages' files are ours to
# compare.  apache2's
# maintainer-script helper keeps its state in /var/lib/apache2/module/
# *_by_maint/MODULE: the file goes with the purge, the (shared, empty)
# directory it first made stays, as for every module package.
left=$(diff "$T_DIR/before.list" "$T_DIR/after.list" \
    | grep '^[<>]' \
    | grep -Ev "^[<>] (/var/lib/dpkg/info|$LIBDIR/pkgconfig)/" \
    | grep -Ev '^> /var/lib/apache2/module/[a-z_]+_by_maint d $' ; \
    diff "$T_DIR/before.list" "$T_DIR/after.list" \
    | grep -E "^[<>] (/var/lib/dpkg/info|$LIBDIR/pkgconfig)/.*ratelimit2")
is "after purge the watched directories are as before" "" "$left"
done_testing
