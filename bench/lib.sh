# bench/lib.sh -- the servers the benchmark compares, one function each,
# on top of the integration suites' helpers (tests/integration/lib.sh and
# fcgi_lib.sh: free ports, a temp dir, every server stopped on exit).
#
# Every server serves the same static file, /index.html ("ok\n", the file
# apache_conf writes), keeps connections alive with no request cap that a
# run could reach, and writes no access log: the benchmark measures the
# limiter, not logging.
#
# A limiter is configured for one of two purposes:
#   free   one per-client limit that never trips (throughput, instructions)
#   quota  100 requests per client per hour (exactness), set for each peer
#          so that 100 sequential requests from one client pass and the
#          101st does not: the peer's own off-by-one is calibrated away,
#          so what remains is what concurrency does to it.
. "$(dirname "${BASH_SOURCE[0]}")/../tests/integration/fcgi_lib.sh"

BENCH_OUT=${BENCH_OUT:-$RL2_ROOT/build/bench}
RAW=${RAW:-$BENCH_OUT/raw.jsonl}
PCRE3=/usr/lib/x86_64-linux-gnu/libpcre.so.3

source "$(dirname "${BASH_SOURCE[0]}")/raw.sh"

# The lease lines' Redis options (after `RateLimit2Redis 127.0.0.1:PORT`),
# e.g. BENCH_LEASE="lease=on lease_time=500".
BENCH_LEASE=${BENCH_LEASE:-lease=on}

# bench_redis -- a redis-server for the Redis configurations, on $RP.
bench_redis() {
    [ -n "${RP:-}" ] && return 0
    RP=$(free_port)
    redis_start
}

# bench_redis_own NAME -- a redis-server of the throughput configuration
# NAME's own, in $T_DIR/redis_NAME, listening on a free port ($RP) and
# on the unix socket $RSOCK, stopped at exit: each Redis line's calls,
# CPU time and keys are then its own.  redis_start_at cannot open a unix
# socket; the socket is 0777 because Apache's children (nobody) connect.
bench_redis_own() {
    local dir=$T_DIR/redis_$1
    RP=$(free_port)
    RSOCK=$dir/redis.sock
    mkdir -p "$dir"
    chmod 755 "$dir"
    redis-server --port "$RP" --bind 127.0.0.1 --unixsocket "$RSOCK" \
        --unixsocketperm 777 --save '' --appendonly no --dir "$dir" \
        --daemonize yes --pidfile "$dir/redis.pid" \
        --logfile "$dir/redis.log" >/dev/null
    RL2_PIDFILES+=("$dir/redis.pid")
    for _ in $(seq 1 100); do
        redis-cli -p "$RP" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.05
    done
    cat "$dir/redis.log" >&2
    return 1
}

# remoteip_conf -- Apache behind a trusted proxy on loopback: mod_remoteip
# takes the client from the last address of X-Forwarded-For when the
# peer is 127.0.0.1 (an internal proxy, so that any address it names is
# believed, the benchmark range 198.18.0.0/15 of bench/many_clients.lua
# included).  mod_ratelimit2 keys on the client mod_remoteip leaves.
remoteip_conf() {
    cat <<CONF
LoadModule remoteip_module $APACHE_MODDIR/mod_remoteip.so
RemoteIPHeader X-Forwarded-For
RemoteIPInternalProxy 127.0.0.1
CONF
}

# apache_bench DIR PORT MPM KIND PURPOSE -- an Apache with one limiter:
#   bare     no limiter (mod_ratelimit2 not loaded)
#   local    mod_ratelimit2, local zone, one per-address token bucket
#            (server-wide, as most sites write it), the default headers
#            (RateLimit and RateLimit-Policy)
#   redis    the same counted in the redis-server on $RP (exact mode:
#            one call of the store's Lua per request)
#   redis_unix   the same, Redis on the unix socket $RSOCK
#   redis_lease  redis, with $BENCH_LEASE (lease mode: slices of a key's
#            allowance taken from Redis and spent locally)
#   many_bare    no limiter, behind a trusted proxy (remoteip_conf)
#   many_redis   redis behind the proxy
#   many_lease   redis_lease behind the proxy
#   bans     local, with 10,000 bans (BENCH_BANS=N: N) in the runtime
#            override table, none of them the client's (bans_state)
#   qos      mod_qos, QS_ClientEventLimitCount: requests per client
#            address per period, refused with 429 once spent
#   evasive  mod_evasive, DOSPageCount and DOSSiteCount per client
apache_bench() {
    local dir=$1 port=$2 mpm=$3 kind=$4 purpose=$5
    apache_conf "$dir" "$port" "$mpm"
    sed -i -e 's/^LogLevel info/LogLevel warn/' -e '/^CustomLog/d' \
        "$dir/httpd.conf"
    echo "MaxKeepAliveRequests 0" >>"$dir/httpd.conf"
    case "$kind" in
    local | redis | redis_* | many_redis | many_lease | bans | factors) ;;
    *) sed -i '/ratelimit2_module/d' "$dir/httpd.conf" ;;
    esac
    if [ "$kind" = bans ]; then
        apache_site local "$purpose" "$(basename "$dir")" >"$dir/site.conf"
        bans_state "$T_DIR/bans.overrides" "${BENCH_BANS:-10000}"
        echo "overrides = { state_file = \"$T_DIR/bans.overrides\"; };" \
            >"$T_DIR/bans.conf"
        echo "RateLimit2Policy \"$T_DIR/bans.conf\"" >>"$dir/site.conf"
    elif [ "$kind" = factors ]; then
        apache_site local "$purpose" "$(basename "$dir")" >"$dir/site.conf"
        factors_policy "$T_DIR/factors.conf"
        echo "RateLimit2Policy \"$T_DIR/factors.conf\"" >>"$dir/site.conf"
    else
        apache_site "$kind" "$purpose" "$(basename "$dir")" >"$dir/site.conf"
    fi
}

# factors_policy FILE -- a policy with the adaptive factors named in
# BENCH_FACTORS (default: all four) on, each raising the limit (it must
# never trip): a load of 0.10 (x2 below 0.3) from a file written here, a
# schedule window that always holds (x1.5, UTC), the client's country
# looked up in a MaxMind DB file built here (x1.2; the client's own /32,
# the deepest lookup an IPv4 address makes), and its reputation (x1.2
# for a client never refused).
factors_policy() {
    local f
    echo "0.10 0.10 0.10 1/100 1234" >"$T_DIR/loadavg"
    chmod 644 "$T_DIR/loadavg"
    printf '127.0.0.1/32 DE\n10.0.0.0/8 FR\n2001:db8::/32 FR\n' \
        | perl "$RL2_ROOT/tests/tools/make_mmdb.pl" "$T_DIR/geo.mmdb"
    chmod 644 "$T_DIR/geo.mmdb"
    {
        echo "overrides = { state_file = \"$T_DIR/factors.overrides\"; };"
        echo "factors = {"
        for f in ${BENCH_FACTORS:-load schedule geo reputation}; do
            case $f in
            load) echo "  load = { source = \"$T_DIR/loadavg\"; per_cpu = false;
           steps = ( { below = 0.3; factor = 2; } ); };" ;;
            schedule) echo "  schedule = { zone = \"UTC\";
               windows = ( { when = \"*\"; factor = 1.5; } ); };" ;;
            geo) echo "  geo = { database = \"$T_DIR/geo.mmdb\";
          countries = { DE = 1.2; }; };" ;;
            reputation) echo "  reputation = { window = \"10m\"; };" ;;
            esac
        done
        echo "};"
    } >"$1"
    chmod 644 "$1"
}

# bans_state FILE N -- a state file of the runtime override table
# (common/control/override_file.c) holding N bans without an end, of
# 127.1.0.1, 127.1.0.2, ...: loopback addresses a test can send from,
# none of them 127.0.0.1.  Outside the server's directory, which the
# benchmark opens to everyone, and 0644: a server refuses a state file
# another user may write.
bans_state() {
    local file=$1 n=$2
    awk -v n="$n" -v now="$(date +%s%6N)" 'BEGIN {
        print "# ratelimit2 overrides 1"
        for (i = 1; i <= n; i++)
            printf "ban\t127.1.%d.%d\t-\t0\t%s\tbench\tone of many\n",
                int(i / 256), i % 256, now
    }' >"$file"
    chmod 644 "$file"
}

# apache_site KIND PURPOSE TAG -- the site.conf of apache_bench.
apache_site() {
    local kind=$1 purpose=$2 tag=$3 n
    case "$kind" in
    bare) ;;
    many_bare) remoteip_conf ;;
    local | redis | redis_unix | redis_lease | many_redis | many_lease)
        n=1000000000
        [ "$purpose" = quota ] && n=100
        case "$kind" in many_*) remoteip_conf ;; esac
        echo "RateLimit2Zone $(zone_name "$tag") 100000"
        case "$kind" in
        redis | many_redis) echo "RateLimit2Redis 127.0.0.1:$RP" ;;
        redis_unix) echo "RateLimit2Redis $RSOCK" ;;
        redis_lease | many_lease)
            echo "RateLimit2Redis 127.0.0.1:$RP $BENCH_LEASE" ;;
        esac
        echo "RateLimit2Limit perip $n/1h key=ip algorithm=token_bucket" ;;
    qos)
        # mod_qos refuses the request that brings the count to the limit:
        # "QS_ClientEventLimitCount 100" admits 99.  Its limits are 16-bit
        # (10^9 wraps negative) and its periods whole seconds: the "free"
        # limit is the most it can say, 32,767 a second, which a fast
        # server can still exceed from one client (bench/throughput.sh
        # records it).
        local period=3600
        n=101
        if [ "$purpose" = free ]; then
            n=32767
            period=1
        fi
        # Debian's mod_qos was built against a libpcre3 httpd; the current
        # apache2-bin links pcre2, so the old library is loaded by hand.
        cat <<CONF
LoadFile $PCRE3
LoadModule qos_module $APACHE_MODDIR/mod_qos.so
SetEnvIf Request_URI "^/" QS_Limit
QS_ClientEventLimitCount $n $period QS_Limit
QS_ErrorResponseCode 429
CONF
        ;;
    evasive)
        # mod_evasive blocks once a count passes the threshold: 99 admits
        # 100 in one process.  Its tables are per child process.
        local interval=1
        n=1000000000
        if [ "$purpose" = quota ]; then
            n=99
            interval=3600
        fi
        cat <<CONF
LoadModule evasive20_module $APACHE_MODDIR/mod_evasive20.so
DOSHashTableSize 3097
DOSPageCount $n
DOSSiteCount $n
DOSPageInterval $interval
DOSSiteInterval $interval
DOSBlockingPeriod 3600
CONF
        ;;
    *)
        echo "apache_site: unknown kind $kind" >&2
        return 1 ;;
    esac
}

# rl2_upstream SOCK -- the upstream block (in nginx's http block) that
# keeps up to 32 idle connections to the daemon on SOCK.
rl2_upstream() {
    cat <<CONF
upstream ratelimit2 {
    server unix:$1;
    keepalive 32;
    keepalive_requests 1000000;
}
CONF
}

# nginx_fcgi_conf DIR KEEP -- the one place the nginx ratelimit2-fcgi
# lines' settings are written: the shipped conf/fcgi/nginx-auth-request.conf
# as DIR/ratelimit2.conf (included in the server block), passing to the
# daemon's unix socket DIR/rl2.sock as the snippet's "Fastest" note says;
# with KEEP 1, through an upstream (DIR/upstream.conf, in the http block)
# that keeps up to 32 idle connections, and fastcgi_keep_conn on: what
# the note advises against (nginx closes the connection after each
# auth_request subrequest anyway), measured to show it.  Prints the
# lines that differ from the shipped snippet, which bench/throughput.sh
# records and the page quotes.
nginx_fcgi_conf() {
    local dir=$1 keep=$2 sock=$1/rl2.sock pass
    pass="unix:$sock"
    : >"$dir/upstream.conf"
    if [ "$keep" = 1 ]; then
        pass=ratelimit2
        rl2_upstream "$sock" >"$dir/upstream.conf"
    fi
    sed -e "s|^\( *\)fastcgi_pass 127\.0\.0\.1:9000;|\1fastcgi_pass $pass;|" \
        "$RL2_ROOT/conf/fcgi/nginx-auth-request.conf" >"$dir/ratelimit2.conf"
    [ "$keep" = 1 ] && sed -i "s|^\( *\)fastcgi_pass ratelimit2;|&\n\1fastcgi_keep_conn on;|" \
        "$dir/ratelimit2.conf"
    grep -hE '^ *(upstream|server unix|keepalive|fastcgi_pass |fastcgi_keep_conn)' \
        "$dir/upstream.conf" "$dir/ratelimit2.conf" | awk '!seen[$0]++'
}

# nginx_fcgi_http_conf DIR -- the nginx_rl2_http line's settings: the
# shipped conf/fcgi/nginx-auth-request-http.conf as DIR/ratelimit2.conf
# (included in the server block) and its upstream block as
# DIR/upstream.conf (in the http block), kept connections to
# ratelimit2-fcgi -H on DIR/rl2.sock.  Prints the lines that differ from
# the snippet, as nginx_fcgi_conf does.
nginx_fcgi_http_conf() {
    local dir=$1 sock=$1/rl2.sock
    rl2_upstream "$sock" >"$dir/upstream.conf"
    cp "$RL2_ROOT/conf/fcgi/nginx-auth-request-http.conf" \
        "$dir/ratelimit2.conf"
    grep -hE '^ *(upstream|server unix|keepalive)' "$dir/upstream.conf"
}

# fcgi_bench_policy FILE -- the policy of every ratelimit2-fcgi line:
# one per-address token bucket that never trips.
fcgi_bench_policy() {
    cat >"$1" <<'POLICY'
default = {
    key = "ip";
    limits = ( { name = "perip"; rate = "1000000000/1h";
                 algorithm = "token_bucket"; } );
};
POLICY
}

# nginx_fcgi_start DIR [ARGS...] -- ratelimit2-fcgi for nginx_bench's
# rl2_fcgi and rl2_http kinds (ARGS: -H for the latter), on DIR/rl2.sock
# (writable by nginx's workers, nobody), its pid in DIR/rl2.pid; 0 once
# the socket is there.
nginx_fcgi_start() {
    local dir=$1 old
    shift
    old=$(umask)
    umask 000
    "$FCGI_BIN" "$@" -c "$dir/policy.conf" -s "$dir/rl2.sock" \
        -z "$(zone_name "ngf-${dir##*/}")" 2>"$dir/rl2.log" &
    echo $! >"$dir/rl2.pid"
    umask "$old"
    RL2_PIDFILES+=("$dir/rl2.pid")
    for _ in $(seq 1 200); do
        [ -S "$dir/rl2.sock" ] && return 0
        sleep 0.05
    done
    cat "$dir/rl2.log" >&2
    return 1
}

# nginx_bench DIR PORT KIND PURPOSE -- nginx bare, with limit_req, or
# with ratelimit2-fcgi through auth_request (nginx_fcgi_conf; the daemon
# is started by nginx_fcgi_start): rl2_fcgi as the shipped snippet's
# "Fastest" note says, rl2_fcgi_keep with fastcgi_keep_conn and an
# upstream keepalive as well.  For the quota,
# 1 request a minute with burst 99 and nodelay: the first request and 99
# of burst pass at once, and the next token comes a minute later, long
# after the 1,000 requests are over.
nginx_bench() {
    local dir=$1 port=$2 kind=$3 purpose=$4 zone="" limit=""
    mkdir -p "$dir/htdocs" "$dir/logs" "$dir/tmp"
    chmod 755 "$dir" "$dir/htdocs"
    echo ok >"$dir/htdocs/index.html"
    if [ "$kind" = limit_req ]; then
        if [ "$purpose" = quota ]; then
            zone="limit_req_zone \$binary_remote_addr zone=rl:10m rate=1r/m;"
            limit="limit_req zone=rl burst=99 nodelay;"
        else
            zone="limit_req_zone \$binary_remote_addr zone=rl:10m \
rate=1000000r/s;"
            limit="limit_req zone=rl burst=1000 nodelay;"
        fi
        limit="$limit limit_req_status 429;"
    fi
    case "$kind" in
    rl2_fcgi | rl2_fcgi_keep)
        fcgi_bench_policy "$dir/policy.conf"
        nginx_fcgi_conf "$dir" "$([ "$kind" = rl2_fcgi_keep ] && echo 1 || echo 0)" \
            >"$dir/fcgi.lines"
        zone="include $dir/upstream.conf;"
        limit="include $dir/ratelimit2.conf;" ;;
    rl2_http)
        fcgi_bench_policy "$dir/policy.conf"
        nginx_fcgi_http_conf "$dir" >"$dir/fcgi.lines"
        zone="include $dir/upstream.conf;"
        limit="include $dir/ratelimit2.conf;" ;;
    esac
    cat >"$dir/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes ${BENCH_NGINX_WORKERS:-2};
user nobody nogroup;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    types { text/html html; }
    $zone
    server {
        listen 127.0.0.1:$port;
        root $dir/htdocs;
        $limit
    }
}
CONF
}

# lighttpd_fcgi_conf DIR -- the one place the ratelimit2-fcgi line's
# settings are written (lines of lighttpd.conf): the FastCGI entry that
# makes the daemon the authorizer of every URL, spawned by lighttpd on a
# unix socket in DIR (as tests/integration/t_fcgi_lighttpd.sh does;
# otherwise as conf/fcgi/lighttpd-ratelimit2.conf), with the daemon's
# command line; lighttpd settings that bear on the round trip belong
# here too.  bench/throughput.sh records these lines, the page quotes them.
lighttpd_fcgi_conf() {
    local dir=$1
    cat <<CONF
fastcgi.server = ( "/" => ((
    "socket" => "$dir/rl2.sock",
    "bin-path" => "$FCGI_BIN -c $dir/policy.conf -z $(zone_name lt)",
    "max-procs" => 1,
    "mode" => "authorizer",
    "check-local" => "disable"
)) )
CONF
}

# lighttpd_bench DIR PORT KIND -- lighttpd bare, or with ratelimit2-fcgi
# as its FastCGI authorizer (lighttpd_fcgi_conf) enforcing one
# per-address token bucket that never trips.
lighttpd_bench() {
    local dir=$1 port=$2 kind=$3 fcgi=""
    mkdir -p "$dir/htdocs"
    chmod -R 755 "$dir"
    echo ok >"$dir/htdocs/index.html"
    if [ "$kind" = rl2_fcgi ]; then
        fcgi_bench_policy "$dir/policy.conf"
        fcgi=$(lighttpd_fcgi_conf "$dir")
    fi
    cat >"$dir/lighttpd.conf" <<CONF
server.port = $port
server.bind = "127.0.0.1"
server.document-root = "$dir/htdocs"
server.errorlog = "$dir/error.log"
server.max-keep-alive-requests = 65535
server.max-keep-alive-idle = 30
server.modules = ( "mod_fastcgi" )
index-file.names = ( "index.html" )
mimetype.assign = ( ".html" => "text/html" )
$fcgi
CONF
}
