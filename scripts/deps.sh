#!/bin/sh
# Install every build and test dependency of mod_ratelimit2 on Debian 12.
# Idempotent: packages already present are not touched, and the package
# lists are refreshed only when something is missing.
set -eu

PKGS="build-essential pkg-config
apache2 apache2-dev apache2-utils
libconfig-dev libcmocka-dev libhiredis-dev libfcgi-dev spawn-fcgi
libmaxminddb-dev libmaxmind-db-writer-perl zlib1g-dev
redis-server lighttpd nginx systemd iproute2
curl wrk valgrind procps
fail2ban prometheus file
clang libclang-rt-14-dev llvm clang-format gcovr
debhelper dpkg-dev lintian groff-base perl
chromium
libapache2-mod-qos libapache2-mod-evasive python3"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
            | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "deps: all present"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing:$missing (run as root to install)" >&2
    exit 1
fi

echo "deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing

# The benchmark loads mod_qos and mod_evasive in its own configurations
# only.  Their packages enable them in the system Apache, where mod_qos
# cannot even load (it needs libpcre.so.3, which Debian's current
# apache2-bin no longer links): switch them off again there.
for m in qos evasive; do
    case " $missing " in
    *" libapache2-mod-$m "*)
        if [ -e "/etc/apache2/mods-enabled/$m.load" ]; then
            a2dismod -q "$m" >/dev/null || true
        fi ;;
    esac
done
