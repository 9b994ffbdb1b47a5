#!/bin/bash
# t_init.sh -- ratelimit2ctl init: each starter policy (api, auth,
# upload, database) is written as the manual says, loads, and limits
# what its own comments say, in a real Apache (event MPM, fake clock so
# no bucket refills while the suite runs).  A request is admitted when
# the answer is anything but mod_ratelimit2's 429 (most paths have no
# file: 404 is the fastest answer Apache has past the limiter); the two
# paths a concurrency limit is tried on run a CGI program that waits.
# Clients are told apart by source address (127.0.0.N) or API key.
source "$(dirname "$0")/lib.sh"

CTL="$BUILD/ctl/ratelimit2ctl"

# ---- the command itself ----

for t in api auth upload database; do
    "$CTL" init --type "$t" -o "$T_DIR/$t.conf" 2>"$T_DIR/err"
    is "init --type $t writes the file" 0 "$?"
    cmp -s "$T_DIR/$t.conf" "$RL2_ROOT/conf/init/$t.conf" \
        && ok "... exactly conf/init/$t.conf" \
        || not_ok "... exactly conf/init/$t.conf"
    out=$("$CTL" check "$T_DIR/$t.conf" 2>&1)
    is "... and ratelimit2ctl check finds it valid" 0 "$?"
    [ "$?" -ne 0 ] && printf '%s\n' "$out" | sed 's/^/# /'
done
"$CTL" init --type api | cmp -s - "$RL2_ROOT/conf/init/api.conf" \
    && ok "without -o the policy goes to stdout" \
    || not_ok "without -o the policy goes to stdout"
echo "site's own" >"$T_DIR/mine.conf"
out=$("$CTL" init --type auth -o "$T_DIR/mine.conf" 2>&1)
is "an existing file is not overwritten (exit 3)" 3 "$?"
like "... saying so" "mine.conf: File exists \\(not overwritten\\)" "$out"
is "... and leaves no file of its own beside it" "" \
    "$(cd "$T_DIR" && ls -d mine.conf.* 2>/dev/null)"
is "a written policy is mode 0644" 644 "$(stat -c %a "$T_DIR/api.conf")"
is "... and keeps its text" "site's own" "$(cat "$T_DIR/mine.conf")"
out=$("$CTL" init --type web 2>&1)
is "an unknown type is a usage error (exit 2)" 2 "$?"
like "... naming the types" '"web" is not one of api|auth|database|upload' \
    "$out"
out=$("$CTL" status --type api 127.0.0.1 2>&1)
is "--type belongs to init alone" 2 "$?"

# ---- each policy in Apache ----

fake_clock_on || exit 1
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
DIR=$T_DIR/apache

# app.cgi: "ok"; with ?hold=NAME it marks NAME as
# started and waits (10 s at most) for the suite to release it, so a
# concurrency limit meets requests really in flight.
make_app() {
    mkdir -p "$DIR/cgi" "$DIR/holds"
    chmod 777 "$DIR/holds"
    cat >"$DIR/cgi/app.cgi" <<APP
#!/bin/bash
case "\$QUERY_STRING" in
hold=*)
    name=\${QUERY_STRING#hold=}
    touch "$DIR/holds/\$name"
    for _ in \$(seq 1 200); do
        [ -e "$DIR/holds/release" ] && break
        sleep 0.05
    done ;;
esac
printf 'Content-Type: text/plain\r\n\r\nok\n'
APP
    chmod 755 "$DIR/cgi" "$DIR/cgi/app.cgi"
}

# start_with TYPE -- Apache with the policy init wrote, on a new zone.
start_with() {
    [ -f "$DIR/httpd.pid" ] && apache_stop "$DIR"
    apache_conf "$DIR" "$PORT" event
    make_app
    cat >"$DIR/site.conf" <<CONF
RateLimit2Zone $(zone_name "$1") 10000
RateLimit2Policy $T_DIR/$1.conf
ScriptAliasMatch "^/(upload/c\\.jpg|export/all)\$" "$DIR/cgi/app.cgi"
<Directory "$DIR/cgi">
    Require all granted
</Directory>
CONF
    apache_start "$DIR" || { not_ok "apache starts with the $1 policy"; exit 1; }
}

# served N FROM METHOD PATH[?QUERY] [curl args] -- how many of N requests
# (one connection: curl's URL range [1-N] in a query parameter n, unless
# PATH has a range of its own of N values) from source address FROM were
# admitted: answered 2xx, 3xx or 4xx but 429.
served() {
    local n=$1 from=$2 method=$3 url=$URL$4
    shift 4
    case "$url" in
    *\[*) ;;
    *\?*) url="$url&n=[1-$n]" ;;
    *) url="$url?n=[1-$n]" ;;
    esac
    curl -s --interface "$from" -X "$method" -o /dev/null \
        -w '%{http_code}\n' "$@" "$url" | grep -v '^429$' | grep -c '^[234]'
}

# two_held_then FROM METHOD PATH -- the status of a third request while
# two others from FROM are in flight, then of one after they end.
two_held_then() {
    local from=$1 method=$2 path=$3 third after
    rm -f "$DIR/holds/"*
    curl -s -o /dev/null --interface "$from" -X "$method" -d '' \
        "$URL$path?hold=a" &
    curl -s -o /dev/null --interface "$from" -X "$method" -d '' \
        "$URL$path?hold=b" &
    for _ in $(seq 1 200); do
        [ -e "$DIR/holds/a" ] && [ -e "$DIR/holds/b" ] && break
        sleep 0.05
    done
    third=$(code --interface "$from" -X "$method" -d '' "$URL$path")
    touch "$DIR/holds/release"
    wait
    after=$(code --interface "$from" -X "$method" -d '' "$URL$path")
    echo "$third $after"
}

# api: per key (burst 100 at a frozen clock), per address without a key,
# and 1,200 a minute per address whatever the keys.
start_with api
is "api: a client without a key gets its burst of 100 of 150" 100 \
    "$(served 150 127.0.0.1 GET /v1/items)"
is "api: a key gets its own burst of 100 of 150" 100 \
    "$(served 150 127.0.0.1 GET /v1/items -H 'X-API-Key: k1')"
is "api: a new key for every request is stopped by the address's 1,200 (1,000 of 1,100 after 200)" \
    1000 "$(served 1100 127.0.0.1 GET '/v1/items?api_key=r[1-1100]')"
is "api: another address is not touched by that" 100 \
    "$(served 150 127.0.0.2 GET /v1/items)"
is "api: /health is exempt" 300 "$(served 300 127.0.0.2 GET /health)"

# auth: 5 login tries a minute per address; 3 account posts an hour;
# 300 requests a minute per address; static files exempt.
start_with auth
is "auth: 5 of 8 POST /login" 5 "$(served 8 127.0.0.1 POST /login -d '')"
is "auth: GET /login is not a try (10 of 10)" 10 \
    "$(served 10 127.0.0.1 GET /login)"
clock_advance 61000000
is "auth: a minute later, 5 tries again" 5 \
    "$(served 8 127.0.0.1 POST /login -d '')"
is "auth: 3 of 5 POST /register" 3 "$(served 5 127.0.0.1 POST /register -d '')"
is "auth: ... and POST /password/reset shares them (0 of 2)" 0 \
    "$(served 2 127.0.0.1 POST /password/reset -d '')"
is "auth: every other request, 300 of 320 per address" 300 \
    "$(served 320 127.0.0.2 GET /account)"
is "auth: static files are exempt (400 of 400)" 400 \
    "$(served 400 127.0.0.2 GET /static/site.css)"

# upload: uploads take 10 of 200 write units, other writes 1; 2 uploads
# at once; reads apart.
start_with upload
is "upload: 20 of 25 uploads (10 units of 200 each)" 20 \
    "$(served 25 127.0.0.1 PUT /upload/a.jpg -d '')"
is "upload: ... leaving no unit for other writes (0 of 5)" 0 \
    "$(served 5 127.0.0.1 POST /comments -d '')"
is "upload: reads are apart (10 of 10)" 10 \
    "$(served 10 127.0.0.1 GET /files)"
is "upload: 5 small writes from another client" 5 \
    "$(served 5 127.0.0.3 POST /comments -d '')"
is "upload: ... leave it 19 uploads (195 units)" 19 \
    "$(served 25 127.0.0.3 POST /upload/b.jpg -d '')"
is "upload: a third upload at once is refused, and admitted once the two end" \
    "429 200" "$(two_held_then 127.0.0.4 PUT /upload/c.jpg)"

# database: expensive paths share 20 a minute per client, 2 at once,
# 200 a minute for everyone.
start_with database
is "database: 20 of 25 searches" 20 "$(served 25 127.0.0.5 GET /search)"
is "database: reports share the budget (0 of 5)" 0 \
    "$(served 5 127.0.0.5 GET /reports/daily)"
is "database: other pages are apart (30 of 30)" 30 \
    "$(served 30 127.0.0.5 GET /items)"
total=0
for i in $(seq 10 19); do
    total=$((total + $(served 25 "127.0.0.$i" GET /search)))
done
is "database: ten more clients together get the 180 left of 200 a minute" \
    180 "$total"
clock_advance 61000000
is "database: a third expensive request at once is refused, and admitted once the two end" \
    "429 200" "$(two_held_then 127.0.0.6 GET /export/all)"

done_testing
