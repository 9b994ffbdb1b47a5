# fcgi_lib.sh -- helpers for the FastCGI and CGI suites, on top of lib.sh:
# starting ratelimit2-fcgi, lighttpd and nginx in the suite's temp dir,
# stopping them (and waiting for them) before done_testing, so that a
# sanitizer report written at exit is seen.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FCGI_BIN="$BUILD/fcgi/ratelimit2-fcgi"
CGI_BIN="$BUILD/fcgi/ratelimit2-cgi"
FCGI_CLIENT="$BUILD/tools/rl2_fcgi_client"

# Sanitizer builds: our own binaries carry ASan/UBSan (no preload needed);
# their reports go where done_testing looks.  Leaks are checked: the
# daemon frees everything on exit.
rl2_san_env() {
    if [ "${SAN:-0}" = 1 ]; then
        mkdir -p "$T_DIR/san"
        chmod 1777 "$T_DIR/san"
        echo "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:\
log_path=$T_DIR/san/asan"
        echo "UBSAN_OPTIONS=print_stacktrace=1:log_path=$T_DIR/san/ubsan"
    fi
}

# fcgi_start NAME ARGS... -- run ratelimit2-fcgi in the background with
# its stderr in $T_DIR/NAME.log; its pid in $T_DIR/NAME.pid.  Waits until
# it listens when ARGS hold -s HOST:PORT.
fcgi_start() {
    local name=$1 port
    shift
    port=$(printf '%s\n' "$@" | sed -n 's/^127\.0\.0\.1:\([0-9]*\)$/\1/p')
    env $(rl2_san_env) "$FCGI_BIN" "$@" 2>"$T_DIR/$name.log" &
    echo $! >"$T_DIR/$name.pid"
    RL2_PIDFILES+=("$T_DIR/$name.pid")
    [ -z "$port" ] || wait_port "$port"
}

# fcgi_stop NAME -- SIGTERM, then its exit status.
fcgi_stop() {
    local pid
    pid=$(cat "$T_DIR/$1.pid")
    kill -TERM "$pid" 2>/dev/null
    wait "$pid"
}

# fcgi_health ADDRESS -- the health JSON the daemon answers.
fcgi_health() {
    "$FCGI_CLIENT" -r responder "$1" REMOTE_ADDR=127.0.0.1 \
        REQUEST_METHOD=GET REQUEST_URI=/ratelimit2/health | sed -n '/^{/p'
}

# lighttpd_authorizer_conf DIR PORT PROCS MODULES ARGS [EXTRA] -- write
# DIR/lighttpd.conf: lighttpd on 127.0.0.1:PORT serving DIR/htdocs, with
# PROCS ratelimit2-fcgi ARGS (spawned on DIR/rl2.sock, sanitizer settings
# passed on) as the authorizer of every path.  MODULES is the inside of
# server.modules; EXTRA, lines of configuration of the suite's own.
lighttpd_authorizer_conf() {
    local dir=$1 port=$2 procs=$3 modules=$4 args=$5 extra=${6:-} san=""
    if [ "${SAN:-0}" = 1 ]; then
        san=$(rl2_san_env | sed 's/^\([^=]*\)=\(.*\)$/"\1" => "\2",/')
        san="\"bin-environment\" => ( ${san%,} ),"
    fi
    cat >"$dir/lighttpd.conf" <<CONF
server.port = $port
server.bind = "127.0.0.1"
server.document-root = "$dir/htdocs"
server.errorlog = "$dir/error.log"
server.modules = ( $modules )
$extra
fastcgi.server = ( "/" => ((
    "socket" => "$dir/rl2.sock",
    "bin-path" => "$FCGI_BIN $args",
    "max-procs" => $procs,
    $san
    "mode" => "authorizer",
    "check-local" => "disable"
)) )
CONF
}

# lighttpd_start DIR -- DIR/lighttpd.conf, in the foreground of a
# background job (so its bin-path children write to DIR/stderr.log).
lighttpd_start() {
    local dir=$1 port
    port=$(sed -n 's/^server.port *= *\([0-9]*\)$/\1/p' "$dir/lighttpd.conf")
    env $(rl2_san_env) /usr/sbin/lighttpd -D -f "$dir/lighttpd.conf" \
        >>"$dir/stderr.log" 2>&1 &
    echo $! >"$dir/lighttpd.pid"
    RL2_PIDFILES+=("$dir/lighttpd.pid")
    wait_port "$port" || { cat "$dir/stderr.log" "$dir/error.log"; return 1; }
}

# lighttpd_stop DIR -- stop it and wait for the backends it spawned.
lighttpd_stop() {
    local pid kids k
    pid=$(cat "$1/lighttpd.pid")
    kids=$(pgrep -P "$pid")
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    for k in $kids; do
        for _ in $(seq 1 200); do
            kill -0 "$k" 2>/dev/null || break
            sleep 0.05
        done
    done
}

# nginx_conf DIR PORT FCGI_PORT -- DIR/nginx.conf: one server on PORT
# with the shipped auth_request snippet (its daemon on FCGI_PORT) and a
# root DIR/htdocs; the server block's own lines are read from stdin.
nginx_conf() {
    local dir=$1 port=$2 fport=$3
    mkdir -p "$dir/htdocs" "$dir/logs" "$dir/tmp"
    chmod -R 755 "$dir"
    sed "s|127\.0\.0\.1:9000|127.0.0.1:$fport|" \
        "$RL2_ROOT/conf/fcgi/nginx-auth-request.conf" >"$dir/ratelimit2.conf"
    nginx_conf_write "$dir" "$port" ""
}

# nginx_http_conf DIR PORT SOCK -- the same with the shipped HTTP snippet
# (nginx-auth-request-http.conf) and its upstream block, kept
# connections to ratelimit2-fcgi -H on the unix socket SOCK.
nginx_http_conf() {
    local dir=$1 port=$2 sock=$3
    mkdir -p "$dir/htdocs" "$dir/logs" "$dir/tmp"
    chmod -R 755 "$dir"
    cp "$RL2_ROOT/conf/fcgi/nginx-auth-request-http.conf" \
        "$dir/ratelimit2.conf"
    nginx_conf_write "$dir" "$port" \
        "upstream ratelimit2 { server unix:$sock; keepalive 32; }"
}

# nginx_conf_write DIR PORT HTTP_LINES -- DIR/nginx.conf around
# DIR/ratelimit2.conf, HTTP_LINES in the http block, the server block's
# own lines from stdin.
nginx_conf_write() {
    local dir=$1 port=$2 http_lines=$3
    cat >"$dir/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 2;
user nobody nogroup;
pid $dir/nginx.pid;
error_log $dir/logs/error.log info;
events { worker_connections 512; }
http {
    access_log $dir/logs/access.log;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    types { text/plain txt php; }
    $http_lines
    server {
        listen 127.0.0.1:$port;
        root $dir/htdocs;
        include $dir/ratelimit2.conf;
$(cat)
    }
}
CONF
}

# nginx_start DIR -- DIR/nginx.conf (which says "daemon off;"), logs and
# temp paths inside DIR.
nginx_start() {
    local dir=$1 port
    port=$(sed -n 's/^ *listen 127\.0\.0\.1:\([0-9]*\);$/\1/p' \
        "$dir/nginx.conf" | head -1)
    mkdir -p "$dir/logs" "$dir/tmp"
    /usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" \
        >>"$dir/logs/stderr.log" 2>&1 &
    echo $! >"$dir/nginx.pid.job"
    RL2_PIDFILES+=("$dir/nginx.pid.job")
    wait_port "$port" || { cat "$dir/logs/stderr.log" "$dir/logs/error.log"
                           return 1; }
}

nginx_stop() {
    local pid
    pid=$(cat "$1/nginx.pid.job")
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

# Calendar quotas restart at midnight UTC, and the suites' fixed windows
# of an hour at every hour: never count across either.  (t_fcgi_redis
# once counted its 100/hour fixed window across 11:00:00 UTC and saw a
# fresh window.)  A zone's hour ends on the hour of the monotonic clock,
# not of UTC (t_fcgi_http's "3 of 3, then refused" saw a fresh window
# when it did, while the UTC hour had half its time left): window_room
# watches both.  Midnight is an hour too.
quota_guard() {
    window_room 3600 60
}

# retry_after HEADERS -- the Retry-After value of a header dump.
retry_after() {
    printf '%s\n' "$1" | tr -d '\r' | sed -n 's/^[Rr]etry-[Aa]fter: *//p'
}

# refused_429 URL [WHAT] -- one request the limit (WHAT: "limit") refuses:
# checks that it gets 429 with a Retry-After of at least 1, and leaves
# its headers in $H, its body in $B (files), the headers without CR in
# $hdrs, the body in $body and the Retry-After in $ra, for the caller's
# own checks of what its front end writes.
refused_429() {
    local url=$1 what=${2:-limit} c
    H=$T_DIR/429.h
    B=$T_DIR/429.b
    c=$(curl -s -D "$H" -o "$B" -w '%{http_code}' "$url")
    is "a request over the $what gets 429" 429 "$c"
    hdrs=$(tr -d '\r' <"$H")
    body=$(cat "$B")
    ra=$(retry_after "$hdrs")
    if [ -n "$ra" ] && [ "$ra" -ge 1 ] 2>/dev/null; then
        ok "429 has Retry-After >= 1 ($ra)"
    else
        not_ok "429 has Retry-After >= 1 (got '$ra')"
    fi
}

# site_allowed_checks URL -- what the nginx snippets' suites share (a rule
# "site" of 50 an hour): the first request gets 200 with the RateLimit
# headers, and 500 more at c=32 admit exactly the other 49.
site_allowed_checks() {
    local url=$1 c h=$T_DIR/200.h n
    c=$(curl -s -D "$h" -o /dev/null -w '%{http_code}' "$url")
    is "the first request gets 200" 200 "$c"
    hdrs=$(tr -d '\r' <"$h")
    like "200 has RateLimit with r=49" '^RateLimit: "site";r=49;t=[0-9]+' \
        "$hdrs"
    like "200 has RateLimit-Policy" '^RateLimit-Policy: "site";q=50;w=3600' \
        "$hdrs"
    like "200 has X-RateLimit-Remaining 49" '^X-RateLimit-Remaining: 49' \
        "$hdrs"
    n=$(admitted 500 32 "$url")
    is "50/hour admits exactly 50 in all (49 more of 500 at c=32)" 49 "$n"
}
