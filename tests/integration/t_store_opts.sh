#!/bin/bash
# t_store_opts.sh -- one parser for the store options: the same option
# text goes through the five front ends (Apache's RateLimit2Redis and
# RateLimit2Zone under `apache2 -t`, ratelimit2-fcgi -C, ratelimit2-cgi's
# environment, the policy file's redis group under `ratelimit2ctl check`,
# and ratelimit2ctl -R/-O/-z), and each accepts it, or refuses it with
# the same words after its own prefix.  No server is started.
. "$(dirname "$0")/lib.sh"

FCGI="$BUILD/fcgi/ratelimit2-fcgi"
CGI="$BUILD/fcgi/ratelimit2-cgi"
CTL="$BUILD/ctl/ratelimit2ctl"
D="$T_DIR/so"
mkdir -p "$D"
apache_conf "$D" "$(free_port)" event
cat >"$D/policy.conf" <<'POLICY'
mode = "enforce";
match = "first";
POLICY
ZONE=$(zone_name so)

# Each front end prints "" when it accepts, else the core's error text
# (its own prefix taken off).  $1 server, $2 options (comma-separated).
via_apache() {
    local opts=${2//,/ }
    printf 'RateLimit2Zone %s 10000\nRateLimit2Redis "%s" %s\n' \
        "$ZONE" "$1" "$opts" >"$D/site.conf"
    apache_configtest "$D" | sed -n 's/^RateLimit2Redis: //p'
}
via_fcgi() {
    "$FCGI" -c "$D/policy.conf" -z "$ZONE" -R "$1" ${2:+-O "$2"} -C \
        2>&1 >/dev/null | head -1 \
        | sed -e 's/^ratelimit2-fcgi: //' -e 's/^-[RO]: //'
}
via_cgi() {
    RATELIMIT2_POLICY="$D/policy.conf" RATELIMIT2_TARGET=/bin/true \
        RATELIMIT2_ZONE="$ZONE" RATELIMIT2_REDIS="$1" \
        RATELIMIT2_REDIS_OPTIONS="$2" REQUEST_METHOD=GET REQUEST_URI=/ \
        REMOTE_ADDR=192.0.2.1 "$CGI" 2>&1 >/dev/null \
        | sed -n 's/^ratelimit2-cgi: RATELIMIT2_REDIS[A-Z_]*: //p; s/^ratelimit2-cgi: \(redis: .*\)/\1/p' \
        | head -1
}
via_policy() {
    local f="$D/p-redis.conf" kv opts=""
    IFS=, read -ra kv <<<"$2"
    for o in "${kv[@]}"; do
        case "${o#*=}" in
        *[!0-9]*) opts+=" ${o%%=*} = \"${o#*=}\";" ;;
        *) opts+=" ${o%%=*} = ${o#*=};" ;;
        esac
    done
    printf 'mode = "enforce";\nmatch = "first";\nredis = { server = "%s";%s };\n' \
        "$1" "$opts" >"$f"
    "$CTL" check "$f" 2>&1 >/dev/null | head -1 \
        | sed -e 's/^ratelimit2ctl: //' -e 's/^[^ ]*\.conf:[0-9]*: //'
}
via_ctl() {
    "$CTL" -c "$D/policy.conf" -R "$1" ${2:+-O "$2"} check "$D/policy.conf" \
        2>&1 >/dev/null | head -1 \
        | sed -e 's/^ratelimit2ctl: //' -e 's/^-[RO]: //'
}

S9=$(for i in 1 2 3 4 5 6 7 8 9; do printf '127.0.0.1:2637%d,' "$i"; done)
CASES=(
    "127.0.0.1:6379||"
    "[::1]:6379||"
    "/run/redis/redis.sock||"
    "sentinel:mymaster@127.0.0.1:26379,[::1]:26380||"
    "cluster:127.0.0.1:7000,127.0.0.1:7001||"
    "127.0.0.1:6379|db=2,timeout=50,connect_timeout=100|"
    "::1:6379||redis: \"::1:6379\": an IPv6 address takes brackets, as [::1]:6379"
    "127.0.0.1:6379x||redis: \"127.0.0.1:6379x\": the port must be a number from 1 to 65535"
    ":6379||redis: \":6379\" has no host"
    "h:0||redis: \"h:0\": the port must be a number from 1 to 65535"
    "h:65536||redis: \"h:65536\": the port must be a number from 1 to 65535"
    "sentinel:m@${S9%,}||redis: more than 8 sentinels"
    "cluster:127.0.0.1:7000|db=2|redis: Redis Cluster has only database 0 (db=2 given)"
    "127.0.0.1:6379|db=16|redis: db=16: expected a number from 0 to 15"
)

for c in "${CASES[@]}"; do
    IFS='|' read -r addr opts want <<<"$c"
    for fe in apache fcgi cgi policy ctl; do
        got=$("via_$fe" "$addr" "$opts")
        is "$fe: $addr${opts:+ $opts}: ${want:-accepted}" "$want" "$got"
    done
done

# The zone name: one leading slash, no other (no policy key names it).
for z in "noslash" "/two/slashes"; do
    want="zone $z: a name is '/' then 1..198 characters without '/'"
    printf 'RateLimit2Zone %s 10000\n' "$z" >"$D/site.conf"
    is "apache: zone $z" "$want" \
        "$(apache_configtest "$D" | sed -n 's/^RateLimit2Zone: //p')"
    is "fcgi: zone $z" "$want" "$("$FCGI" -c "$D/policy.conf" -z "$z" -C \
        2>&1 >/dev/null | head -1 | sed 's/^ratelimit2-fcgi: -z: //')"
    is "cgi: zone $z" "$want" "$(RATELIMIT2_POLICY="$D/policy.conf" \
        RATELIMIT2_TARGET=/bin/true RATELIMIT2_ZONE="$z" \
        REQUEST_METHOD=GET REQUEST_URI=/ REMOTE_ADDR=192.0.2.1 "$CGI" \
        2>&1 >/dev/null | sed -n 's/^ratelimit2-cgi: RATELIMIT2_ZONE: //p')"
    is "ctl: zone $z" "$want" "$("$CTL" -z "$z" check "$D/policy.conf" \
        2>&1 >/dev/null | head -1 | sed 's/^ratelimit2ctl: -z: //')"
done

# -C prints what it parsed: brackets taken off, db and timeouts kept.
like "fcgi -C: the parsed server" "host=::1 port=6379 db=2 " \
    "$("$FCGI" -c "$D/policy.conf" -z "$ZONE" -R "[::1]:6379" -O db=2 -C)"

done_testing
