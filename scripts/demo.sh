#!/bin/bash
# demo.sh -- run Apache in the foreground with mod_ratelimit2 and
# conf/demo.conf on a free loopback port, local counters only.  Ctrl-C
# (or SIGTERM) stops it and removes everything it created.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
MODDIR=/usr/lib/apache2/modules

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=${PORT:-8080}
while port_busy "$PORT"; do PORT=$((PORT + 1)); done

DIR=$(mktemp -d "${TMPDIR:-/tmp}/rl2-demo.XXXXXX")
chmod 755 "$DIR"
mkdir -p "$DIR/htdocs" "$DIR/logs"
echo "hello from mod_ratelimit2" >"$DIR/htdocs/index.html"
echo "ok" >"$DIR/htdocs/health"
ZONE="/rl2-demo-$$"
cat >"$DIR/httpd.conf" <<CONF
ServerRoot "$DIR"
ServerName 127.0.0.1
Listen 127.0.0.1:$PORT
PidFile "$DIR/httpd.pid"
ErrorLog "$DIR/logs/error.log"
DefaultRuntimeDir "$DIR"
User nobody
Group nogroup
LoadModule mpm_event_module $MODDIR/mod_mpm_event.so
LoadModule authz_core_module $MODDIR/mod_authz_core.so
LoadModule mime_module $MODDIR/mod_mime.so
LoadModule dir_module $MODDIR/mod_dir.so
LoadModule ratelimit2_module $BUILD/mod_ratelimit2.so
TypesConfig /etc/mime.types
DocumentRoot "$DIR/htdocs"
<Directory "$DIR/htdocs">
    Require all granted
</Directory>
RateLimit2Zone $ZONE 10000
RateLimit2Policy "$ROOT/conf/demo.conf"
CONF

# The zone and its companions (violation log, alert state, metrics,
# circuit, runtime override table).
remove_objects() {
    rm -f "/dev/shm${ZONE}" "/dev/shm${ZONE}.vlog" "/dev/shm${ZONE}.alert" \
        "/dev/shm${ZONE}.metrics" "/dev/shm${ZONE}.circuit" \
        "/dev/shm${ZONE}.overrides"
}

pid=""
cleanup() {
    # Not under set -e: Apache's exit status after SIGTERM is non-zero.
    # A second signal (make forwards one, a group kill sends one) must
    # not cut the cleanup short.
    set +e
    trap '' INT TERM
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null
        # Names go at once (the mappings stay valid until Apache exits,
        # which a loaded or sanitized build may take a while to do), and
        # again after it exits, in case it was still starting.
        remove_objects
        wait "$pid" 2>/dev/null
    fi
    # Children that got the signal straight from a group kill may outlive
    # the parent for a moment, and a child still starting may reopen the
    # objects: let them go (10 s at most) before the last removal.
    for _ in $(seq 1 100); do
        pgrep -f "$DIR/httpd.conf" >/dev/null 2>&1 || break
        sleep 0.1
    done
    remove_objects
    rm -rf "$DIR"
}
trap cleanup EXIT
# The first signal ignores the rest at once: make forwards its own TERM
# right after a group kill, and a second signal arriving before cleanup
# ignored it would end the script with the cleanup cut short.
trap 'trap "" INT TERM; exit 0' INT TERM

# A sanitizer build of the module needs the runtime preloaded into Apache.
if [ "${SAN:-0}" = 1 ]; then
    export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
    export ASAN_OPTIONS=detect_leaks=0
fi
/usr/sbin/apache2 -f "$DIR/httpd.conf" -t >/dev/null
/usr/sbin/apache2 -f "$DIR/httpd.conf" -DFOREGROUND </dev/null &
pid=$!
for _ in $(seq 1 100); do port_busy "$PORT" && break; sleep 0.05; done

URL="http://127.0.0.1:$PORT/"
cat <<MSG
mod_ratelimit2 demo: Apache is serving $URL
(policy conf/demo.conf: 5 requests per minute per address; Ctrl-C stops)

Try:
  curl -i $URL
  for i in 1 2 3 4 5 6 7; do curl -s -o /dev/null -w '%{http_code}\n' $URL; done
MSG
wait "$pid"
