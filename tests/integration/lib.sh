# lib.sh -- shared helpers for the integration suites.
#
# Each suite sources this file, starts the real servers it needs on free
# loopback ports inside its own temporary directory, and prints TAP-style
# lines ("ok N - what", "not ok N - what").  Every server is stopped and
# the directory removed on every exit path (trap).
set -u

RL2_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$RL2_ROOT/$BUILD" ;; esac
MODULE="$BUILD/mod_ratelimit2.so"
APACHE_MODDIR=/usr/lib/apache2/modules
T_DIR=$(mktemp -d "${TMPDIR:-/tmp}/rl2-it.XXXXXX")
chmod 755 "$T_DIR"
T_NUM=0
T_FAILED=0
RL2_PIDFILES=()
RL2_TEST_CLOCK=""   # the real clock, until fake_clock_on

# rl2_stop_all -- SIGTERM every server in RL2_PIDFILES, then wait for
# each to be gone.
rl2_stop_all() {
    local pf
    for pf in "${RL2_PIDFILES[@]}"; do
        [ -f "$pf" ] && kill -TERM "$(cat "$pf")" 2>/dev/null
    done
    for pf in "${RL2_PIDFILES[@]}"; do
        rl2_wait_gone "$pf"
    done
}

rl2_cleanup() {
    rl2_stop_all
    rl2_port_release_all
    for z in "$T_DIR"/zones/*; do
        # The zone and its companions (circuit breaker, alert state,
        # violation log, metrics, runtime override table, over-limit
        # cache, lease table).
        [ -e "$z" ] && rm -f "/dev/shm/$(basename "$z")" \
            "/dev/shm/$(basename "$z").circuit" \
            "/dev/shm/$(basename "$z").alert" \
            "/dev/shm/$(basename "$z").vlog" \
            "/dev/shm/$(basename "$z").metrics" \
            "/dev/shm/$(basename "$z").overrides" \
            "/dev/shm/$(basename "$z").overlimit" \
            "/dev/shm/$(basename "$z").lease"
    done
    rm -rf "$T_DIR"
}
trap rl2_cleanup EXIT
trap 'exit 1' INT TERM

# ---- TAP ----

ok() {
    T_NUM=$((T_NUM + 1))
    echo "ok $T_NUM - $1"
}

not_ok() {
    T_NUM=$((T_NUM + 1))
    T_FAILED=$((T_FAILED + 1))
    echo "not ok $T_NUM - $1"
}

# is NAME EXPECTED ACTUAL
is() {
    if [ "$2" = "$3" ]; then
        ok "$1"
    else
        not_ok "$1"
        echo "#   expected: '$2'"
        echo "#   got:      '$3'"
    fi
}

# like NAME REGEX TEXT
like() {
    if printf '%s' "$3" | grep -Eq -- "$2"; then
        ok "$1"
    else
        not_ok "$1"
        echo "#   expected to match: $2"
        echo "#   got: $(printf '%s' "$3" | head -c 600)"
    fi
}

done_testing() {
    local r
    # Sanitizer builds log to files that the exit trap would remove
    # unread: any report is a failure of the suite.
    if [ "${SAN:-0}" = 1 ]; then
        r=$(cat "$T_DIR"/san/* 2>/dev/null)
        if [ -n "$r" ]; then
            not_ok "no sanitizer reports"
            printf '%s\n' "$r" | head -60 | sed 's/^/#   /'
        else
            ok "no sanitizer reports"
        fi
    fi
    echo "1..$T_NUM"
    [ "$T_FAILED" -eq 0 ]
}

# ---- ports and processes ----

rl2_port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Ports are drawn below the kernel's ephemeral range: a port there may be
# the local end of some client's connection (ab and curl leave thousands
# in TIME_WAIT), which a connect() probe cannot see but bind() refuses.
rl2_port_low=10000
rl2_port_span=20000
if read -r rl2_eph_lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null \
        && [ "$rl2_eph_lo" -gt $((rl2_port_low + 1000)) ]; then
    rl2_port_span=$((rl2_eph_lo - rl2_port_low))
fi

# Every port free_port hands out is reserved machine-wide until the suite
# exits: a symbolic link $RL2_PORT_DIR/PORT -> the suite's pid.  Suites
# run side by side (tests/run-all.sh's lanes, another checkout's tests),
# and a port seen free is not bound until the server starts: without the
# reservation two suites could draw the same one in that gap.  ln -s
# makes the link or fails if it exists, so one suite alone gets a port.
# A suite killed by SIGKILL keeps its ports out of the draw until the
# directory is cleared (it is under /tmp).
RL2_PORT_DIR=${RL2_PORT_DIR:-/tmp/rl2-ports}
mkdir -p -m 1777 "$RL2_PORT_DIR" 2>/dev/null
if [ ! -w "$RL2_PORT_DIR" ]; then
    # Reservations this suite alone sees; free_port would wait forever on
    # a directory it cannot write.
    echo "# $RL2_PORT_DIR is not writable: ports reserved in this suite" \
        "only" >&2
    RL2_PORT_DIR=$T_DIR/ports
    mkdir -p "$RL2_PORT_DIR"
fi

# rl2_port_reserve PORT -- 0 if this suite now holds PORT, 1 if another
# suite (or this one) held it already.
rl2_port_reserve() {
    ln -s "$$" "$RL2_PORT_DIR/$1" 2>/dev/null || return 1
    echo "$1" >>"$T_DIR/.ports"
}

# rl2_port_release_all -- give back the ports this suite holds (its
# servers are stopped); a link that is not this suite's stays.
rl2_port_release_all() {
    local p
    [ -f "$T_DIR/.ports" ] || return 0
    while read -r p; do
        [ "$(readlink "$RL2_PORT_DIR/$p" 2>/dev/null)" = "$$" ] \
            && rm -f "$RL2_PORT_DIR/$p"
    done <"$T_DIR/.ports"
}

# A free loopback port, reserved for this suite until it exits.
free_port() {
    local p
    while :; do
        p=$((rl2_port_low + RANDOM % rl2_port_span))
        rl2_port_busy "$p" && continue
        rl2_port_reserve "$p" || continue
        # Bound by a program that does not reserve, since the probe.
        rl2_port_busy "$p" && continue
        echo "$p"
        return
    done
}

wait_port() {
    local i
    for i in $(seq 1 200); do
        rl2_port_busy "$1" && return 0
        sleep 0.05
    done
    return 1
}

rl2_wait_gone() {
    local pid i
    [ -f "$1" ] || return 0
    pid=$(cat "$1" 2>/dev/null) || return 0
    for i in $(seq 1 200); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
    # A daemon that would not stop: its whole process group (a detached
    # Apache leads its own), or children it never reaped would live on
    # and keep its listening socket.
    kill -KILL -- "-$pid" 2>/dev/null
    kill -KILL "$pid" 2>/dev/null
}

# wait_port_free PORT -- until nothing accepts on PORT (10 s at most).
wait_port_free() {
    local i
    for i in $(seq 1 200); do
        rl2_port_busy "$1" || return 0
        sleep 0.05
    done
    return 1
}

# ---- Apache ----

# The environment of a server (and of a tool that reads its zone): the
# suite's clock when fake_clock_on was called, and for sanitizer builds
# the runtime, which the module carries but the server does not (it must
# come first in LD_PRELOAD).
rl2_apache_env() {
    local preload=""
    if [ "${SAN:-0}" = 1 ]; then
        preload="$(gcc -print-file-name=libasan.so)"
        preload="$preload:$(gcc -print-file-name=libubsan.so)"
    fi
    if [ -n "${RL2_TEST_CLOCK:-}" ]; then
        preload="${preload:+$preload:}$RL2_TEST_CLOCK.so"
        echo "RL2_TEST_CLOCK=$RL2_TEST_CLOCK"
    fi
    [ -z "$preload" ] || echo "LD_PRELOAD=$preload"
    if [ "${SAN:-0}" = 1 ]; then
        # Children run as nobody: the log directory must be theirs too.
        mkdir -p "$T_DIR/san"
        chmod 1777 "$T_DIR/san"
        echo "ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:\
log_path=$T_DIR/san/asan"
        echo "UBSAN_OPTIONS=print_stacktrace=1:log_path=$T_DIR/san/ubsan"
    fi
}

# ---- a clock the suite sets ----

# fake_clock_on -- from here on, the servers the suite starts (with
# rl2_apache_env) read CLOCK_MONOTONIC, the clock of every limit but the
# calendar quotas, from the file $RL2_TEST_CLOCK: a time in µs that only
# clock_advance moves (tests/integration/fake_clock.c, preloaded; in
# Apache only mod_ratelimit2 reads that clock).  A bucket then refills
# when the suite says so, never because a loaded machine ran the suite
# slowly.  0 once the preload is built.
fake_clock_on() {
    RL2_TEST_CLOCK=$T_DIR/clock
    ${CC:-cc} -std=c11 -O2 -Wall -Wextra -Werror -shared -fPIC \
        -o "$RL2_TEST_CLOCK.so" "$RL2_ROOT/tests/integration/fake_clock.c" \
        -ldl >"$T_DIR/fake_clock.log" 2>&1 \
        || { cat "$T_DIR/fake_clock.log"; RL2_TEST_CLOCK=""; return 1; }
    # Any start will do: 10^12 µs is some 11.6 days of uptime.
    clock_set 1000000000000
}

# clock_set US -- the suite's clock reads US µs from now on.
clock_set() {
    echo "$1" >"$RL2_TEST_CLOCK.new"
    chmod 644 "$RL2_TEST_CLOCK.new"
    mv -f "$RL2_TEST_CLOCK.new" "$RL2_TEST_CLOCK"
}

# clock_advance US -- move the suite's clock US µs forward.
clock_advance() {
    clock_set $(($(cat "$RL2_TEST_CLOCK") + $1))
}

# apache_conf DIR PORT MPM -- write DIR/httpd.conf with the common part;
# the caller appends its own directives to DIR/site.conf.
apache_conf() {
    local dir=$1 port=$2 mpm=$3 cgi=mod_cgid
    [ "$mpm" = prefork ] && cgi=mod_cgi
    mkdir -p "$dir/htdocs" "$dir/logs" "$T_DIR/zones"
    chmod 755 "$dir" "$dir/htdocs"
    echo ok >"$dir/htdocs/index.html"
    touch "$dir/site.conf"
    cat >"$dir/httpd.conf" <<CONF
ServerRoot "$dir"
ServerName 127.0.0.1
Listen 127.0.0.1:$port
PidFile "$dir/httpd.pid"
ErrorLog "$dir/logs/error.log"
LogLevel info
LogFormat "%h %u \"%r\" %>s" common
CustomLog "$dir/logs/access.log" common
User nobody
Group nogroup
DefaultRuntimeDir "$dir"
Mutex file:$dir default
LoadModule mpm_${mpm}_module $APACHE_MODDIR/mod_mpm_${mpm}.so
LoadModule authz_core_module $APACHE_MODDIR/mod_authz_core.so
LoadModule authz_host_module $APACHE_MODDIR/mod_authz_host.so
LoadModule authz_user_module $APACHE_MODDIR/mod_authz_user.so
LoadModule authn_core_module $APACHE_MODDIR/mod_authn_core.so
LoadModule authn_file_module $APACHE_MODDIR/mod_authn_file.so
LoadModule auth_basic_module $APACHE_MODDIR/mod_auth_basic.so
LoadModule access_compat_module $APACHE_MODDIR/mod_access_compat.so
LoadModule alias_module $APACHE_MODDIR/mod_alias.so
LoadModule mime_module $APACHE_MODDIR/mod_mime.so
LoadModule dir_module $APACHE_MODDIR/mod_dir.so
LoadModule env_module $APACHE_MODDIR/mod_env.so
LoadModule setenvif_module $APACHE_MODDIR/mod_setenvif.so
LoadModule ${cgi#mod_}_module $APACHE_MODDIR/$cgi.so
LoadModule ratelimit2_module $MODULE
TypesConfig /etc/mime.types
DocumentRoot "$dir/htdocs"
<Directory "$dir/htdocs">
    Require all granted
</Directory>
StartServers 2
MaxRequestWorkers 64
$( [ "$mpm" = prefork ] && echo "MinSpareServers 8
MaxSpareServers 32
ServerLimit 64" )
$( [ "$mpm" = event ] && echo "ThreadsPerChild 32
ServerLimit 4" )
KeepAlive On
Include "$dir/site.conf"
CONF
}

# apache_start DIR -- start and wait until it listens; 0 on success.
apache_start() {
    local dir=$1 port
    port=$(sed -n 's/^Listen 127.0.0.1:\([0-9]*\)$/\1/p' "$dir/httpd.conf")
    RL2_PIDFILES+=("$dir/httpd.pid")
    env $(rl2_apache_env) /usr/sbin/apache2 -f "$dir/httpd.conf" -k start \
        >"$dir/logs/start.log" 2>&1 || { cat "$dir/logs/start.log"; return 1; }
    wait_port "$port" || { cat "$dir/logs/error.log"; return 1; }
}

# The port is free when this returns: a restart on the same port must
# not find the old server's children still answering on it (the new
# server's bind would fail after it detached, with the port "up").
apache_stop() {
    local dir=$1 port
    port=$(sed -n 's/^Listen 127.0.0.1:\([0-9]*\)$/\1/p' "$dir/httpd.conf")
    [ -f "$dir/httpd.pid" ] && kill -TERM "$(cat "$dir/httpd.pid")"
    rl2_wait_gone "$dir/httpd.pid"
    [ -z "$port" ] || wait_port_free "$port"
}

apache_graceful() {
    local dir=$1
    env $(rl2_apache_env) /usr/sbin/apache2 -f "$dir/httpd.conf" \
        -k graceful >>"$dir/logs/start.log" 2>&1
}

apache_configtest() {
    env $(rl2_apache_env) /usr/sbin/apache2 -f "$1/httpd.conf" -t 2>&1
}

# ---- windows a check must not straddle ----

# clocks_us -- "WALL MONO": CLOCK_REALTIME and CLOCK_MONOTONIC in µs.
# A zone counts its fixed and sliding windows on the monotonic clock,
# aligned on its multiples; Redis counts them on its TIME (this host's
# wall clock, as the suites run it), and the calendar quotas count on the
# wall clock in both.
clocks_us() {
    python3 -c 'import time
print(time.time_ns() // 1000, time.monotonic_ns() // 1000)'
}

# window_room WINDOW_S ROOM_S -- return once the current span of WINDOW_S
# has ROOM_S left on both clocks, waiting for the span to end when it
# has less (ROOM_S at most, on each clock).  A check that counts in one
# span ("3 admitted, then refused") rightly sees a fresh count if a
# boundary falls inside it, so it must start with more room than it
# takes.  An hour's room covers every window whose spans end on the
# hour on either clock: hours, days, 24 h, and the calendar's months,
# which begin at a midnight.  A local window and a Redis one end at
# different instants (the clocks differ by the host's boot time): one
# call covers both.
window_room() {
    local win_us=$(($1 * 1000000)) room_us=$(($2 * 1000000))
    local wall mono left mono_left
    while :; do
        read -r wall mono < <(clocks_us)
        left=$((win_us - wall % win_us))
        mono_left=$((win_us - mono % win_us))
        [ "$mono_left" -lt "$left" ] && left=$mono_left
        [ "$left" -ge "$room_us" ] && return 0
        echo "# waiting $((left / 1000)) ms for the ${1} s window to turn over"
        sleep "$(awk -v u="$left" 'BEGIN { printf "%.3f", u / 1e6 + 0.01 }')"
    done
}

# ---- HTTP ----

# code URL [curl args...] -- the status code of one request.
code() {
    curl -s -o /dev/null -w '%{http_code}' "$@"
}

# admitted N C URL [ab args...] -- how many of N requests at concurrency
# C got a 2xx answer (ab counts the rest as "Non-2xx").
admitted() {
    local n=$1 c=$2 url=$3 out non2xx complete
    shift 3
    out=$(ab -q -n "$n" -c "$c" "$@" "$url" 2>&1)
    complete=$(printf '%s\n' "$out" | sed -n 's/^Complete requests: *//p')
    non2xx=$(printf '%s\n' "$out" | sed -n 's/^Non-2xx responses: *//p')
    if [ -z "$complete" ]; then
        echo "ab-failed"
        printf '%s\n' "$out" | sed 's/^/# /' >&2
        return
    fi
    echo $((complete - ${non2xx:-0}))
}

# site_pages DOCROOT NAME... -- DOCROOT/NAME/x ("ok") for each NAME, the
# page a test requests under a limited path.
site_pages() {
    local root=$1 x
    shift
    for x in "$@"; do
        mkdir -p "$root/$x"
        echo ok >"$root/$x/x"
    done
}

# algo_locations -- Apache <Location> blocks /fw, /sl, /tb and /lb, each
# limited to 100 an hour by the algorithm its name abbreviates.
algo_locations() {
    cat <<CONF
<Location /fw>
    RateLimit2Limit fw 100/1h algorithm=fixed_window
</Location>
<Location /sl>
    RateLimit2Limit sl 100/1h algorithm=sliding_log
</Location>
<Location /tb>
    RateLimit2Limit tb 100/1h algorithm=token_bucket
</Location>
<Location /lb>
    RateLimit2Limit lb 100/1h algorithm=leaky_bucket
</Location>
CONF
}

# zone_name TAG -- a shm zone name private to this suite, removed at exit.
zone_name() {
    local z="rl2t-$$-$1"
    mkdir -p "$T_DIR/zones"
    touch "$T_DIR/zones/$z"
    echo "/$z"
}

# ---- the core library (libratelimit2-dev) ----

# library_example WHAT PKG-CONFIG... -- tests: the example program of
# docs/library.md (the ```c block under <!-- library-example -->), built
# with `PKG-CONFIG... --static --cflags --libs ratelimit2` and nothing
# else, runs on a zone of this suite's and prints the decisions the page
# shows (allowed three times, then refused).  WHAT names the install.
# EXAMPLE_CFLAGS adds flags the archive itself needs (the sanitizers of
# a `make check SAN=1` build, whose archive `make install` copied).
library_example() {
    local what=$1 d=$T_DIR/example flags out
    shift
    mkdir -p "$d"
    awk '/^<!-- library-example -->$/ { f = 1; next }
         f && /^```c$/ { p = 1; next }
         p && /^```$/ { exit }
         p' "$RL2_ROOT/docs/library.md" >"$d/rl2_example.c"
    like "docs/library.md has its example program" 'rl2_decide\(' \
        "$(cat "$d/rl2_example.c")"
    flags=$("$@" --static --cflags --libs ratelimit2 2>&1)
    is "pkg-config --static --cflags --libs ratelimit2 ($what)" 0 "$?"
    echo "# pkg-config: $flags"
    rm -f "$d/rl2_example"
    # shellcheck disable=SC2086
    if ${CC:-cc} -std=c11 -Wall -Wextra -Werror ${EXAMPLE_CFLAGS:-} \
            -o "$d/rl2_example" "$d/rl2_example.c" $flags \
            >"$d/cc.log" 2>&1; then
        ok "the example compiles and links with pkg-config alone ($what)"
    else
        not_ok "the example compiles and links with pkg-config alone ($what)"
        sed 's/^/#   /' "$d/cc.log"
    fi
    out=$("$d/rl2_example" "$(zone_name example)" 2>&1)
    is "the example decides as docs/library.md says ($what)" \
        "request 1: allowed
request 2: allowed
request 3: allowed
request 4: refused" "$out"
}

# ---- Prometheus exposition ----

# promtool_ok FILE -- a test: promtool finds no problem in FILE.
promtool_ok() {
    if promtool check metrics <"$1" >"$T_DIR/promtool.log" 2>&1; then
        ok "promtool check metrics: no problem"
    else
        not_ok "promtool check metrics: no problem"
        sed 's/^/# /' "$T_DIR/promtool.log"
    fi
}

# counters_are FILE -- a test: the request, near-limit and overflow
# counters in FILE are, sorted, exactly the lines on stdin.
counters_are() {
    cat >"$T_DIR/expected.txt"
    grep -E '^ratelimit2_(requests|near_limit|overflow)_total' "$1" \
        | sort >"$T_DIR/got.txt"
    if diff "$T_DIR/expected.txt" "$T_DIR/got.txt" >"$T_DIR/diff.txt"; then
        ok "every request counter equals the known traffic ($(wc -l \
<"$T_DIR/expected.txt") series)"
    else
        not_ok "every request counter equals the known traffic"
        sed 's/^/# /' "$T_DIR/diff.txt"
    fi
}

# ---- Redis and a syslog stand-in ----

# redis_start -- a redis-server on $RP (set by the caller, e.g. from
# free_port) with its files in $T_DIR/redis, stopped at exit.  Called
# again after a kill, it restarts on the same port.
redis_start() {
    RDIR=$T_DIR/redis
    redis_start_at "$RP" "$RDIR"
}

# redis_start_first -- redis_start on a free port ($RP) as a suite's first
# test; the suite ends there when it does not start.
redis_start_first() {
    RP=$(free_port)
    redis_start || { not_ok "redis-server starts"; done_testing; exit 1; }
    ok "redis-server starts"
}

# redis_start_at PORT DIR -- a redis-server on PORT with its files in DIR,
# stopped at exit; 0 once it answers PING.
redis_start_at() {
    local port=$1 dir=$2
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --save '' \
        --appendonly no --dir "$dir" --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
    RL2_PIDFILES+=("$dir/redis.pid")
    for _ in $(seq 1 100); do
        redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.05
    done
    return 1
}

# redis_cluster_first -- a Redis Cluster of three masters on free ports
# (PORTS[0..2]), files in $CDIR ($T_DIR/cluster), stopped at exit, as a
# suite's first test: "three masters form a cluster", and the suite ends
# there when they do not.  Each node's bus has a port of its own (port +
# 10000 may be taken or beyond 65535).
redis_cluster_first() {
    local n port formed p
    CDIR=$T_DIR/cluster
    PORTS=()
    for n in 0 1 2; do
        PORTS[$n]=$(free_port)
        port=${PORTS[$n]}
        mkdir -p "$CDIR/$n"
        redis-server --port "$port" --cluster-port "$(free_port)" \
            --bind 127.0.0.1 --cluster-enabled yes \
            --cluster-config-file nodes.conf --save '' --appendonly no \
            --dir "$CDIR/$n" --daemonize yes --pidfile "$CDIR/$n/redis.pid" \
            --logfile "$CDIR/$n/redis.log" >/dev/null
        RL2_PIDFILES+=("$CDIR/$n/redis.pid")
        for _ in $(seq 1 100); do
            redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break
            sleep 0.05
        done
        redis-cli -p "$port" ping 2>/dev/null | grep -q PONG \
            || { not_ok "cluster node $n starts"; done_testing; exit 1; }
    done
    redis-cli --cluster create "127.0.0.1:${PORTS[0]}" \
        "127.0.0.1:${PORTS[1]}" "127.0.0.1:${PORTS[2]}" \
        --cluster-replicas 0 --cluster-yes >"$CDIR/create.log" 2>&1
    formed=0
    for _ in $(seq 1 300); do
        formed=1
        for p in "${PORTS[@]}"; do
            redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' \
                || formed=0
        done
        [ "$formed" = 1 ] && break
        sleep 0.1
    done
    is "three masters form a cluster" 1 "$formed"
    [ "$formed" = 1 ] || { cat "$CDIR/create.log"; done_testing; exit 1; }
}

# owner SLOT -- the port of the master that serves SLOT (CLUSTER NODES of
# the first master: slot ranges from the ninth field on; entries such as
# "[slot->-id]" mark a migration and are skipped).
owner() {
    redis-cli -p "${PORTS[0]}" cluster nodes | awk -v s="$1" '
        $3 ~ /master/ {
            for (i = 9; i <= NF; i++) {
                n = split($i, r, "-")
                if (r[1] !~ /^[0-9]+$/) continue
                hi = (n == 2) ? r[2] : r[1]
                if (s + 0 >= r[1] + 0 && s + 0 <= hi + 0) {
                    split($2, a, "[:@]")
                    print a[2]
                }
            }
        }'
}

# sink_start -- a unix datagram socket at $SINK standing in for syslog;
# every datagram becomes a line of $LOG.  Stopped at exit.
sink_start() {
    SINK=$T_DIR/log.sock
    LOG=$T_DIR/alerts.log
    : >"$LOG"
    "$BUILD/tools/rl2_dgram_sink" "$SINK" "$LOG" >/dev/null 2>&1 </dev/null &
    echo $! >"$T_DIR/sink.pid"
    RL2_PIDFILES+=("$T_DIR/sink.pid")
    for _ in $(seq 1 100); do [ -S "$SINK" ] && break; sleep 0.05; done
}
