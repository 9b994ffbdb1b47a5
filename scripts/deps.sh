#!/bin/sh
# Install every build and test dependency of mod_ratelimit2 on Debian 12.
# Idempotent: packages already present are not touched, and the package
# lists are refreshed only when something is missing.
set -eu

PKGS="build-essential pkg-config
apache2 apache2-dev apache2-utils
libconfig-dev libcmocka-dev libhiredis-dev libfcgi-dev spawn-fcgi
redis-server lighttpd nginx systemd iproute2
curl wrk valgrind procps
fail2ban prometheus file
clang libclang-rt-14-dev llvm
debhelper dpkg-dev lintian groff-base perl
chromium"

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
