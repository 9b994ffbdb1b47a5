#!/bin/bash
# t_docs_examples.sh -- every configuration example in the documentation
# loads, and does what the text around it says.
#
# tests/tools/docs_examples.pl cuts the ```apache and ```libconfig blocks
# out of README.md, docs/*.md and docs/man/*.md, with the one-line
# comments above each (<!-- example: fragment -->, <!-- example-before:
# -->, <!-- example-after: -->, <!-- expect: -->).  A block without a
# language that looks like configuration fails: it would escape the test.
#
#   libconfig  loaded by the core's loader (tests/tools/rl2_policy_check);
#              its expectations are run through ratelimit2-cgi, one
#              process per request, with a target that answers 200.
#   apache     put into an httpd.conf with the built module and
#              `apache2 -t`; with expectations, Apache is started and
#              every URL is served by a CGI that answers 200.
#
# Expectations: "METHOD PATH [ip=A] [user=U] [tier=T] => N*CODE ...",
# run in order against one set of counters per example; tier= sets the
# request variable RL2_TIER.  Apache examples take no ip= or user=
# (requests come from 127.0.0.1 without credentials).
#
# In Apache snippets, /usr/lib/apache2/modules/mod_ratelimit2.so is the
# built module, /etc/ratelimit2/NAME a copy of conf/NAME or
# conf/examples/NAME, and every RateLimit2Zone a zone private to the test.
#
# Time: the limiter runs on the suite's clock (fake_clock_on), which
# stands still, so a bucket never refills and a window never rolls over
# because a loaded machine ran the requests slowly.  Calendar quotas run
# on the wall clock: a run that does not match and that a day's end may
# have cut (the first answer says how far the shown limit's reset is) is
# void, and is made once more with fresh counters.
. "$(dirname "$0")/fcgi_lib.sh"
cd "$RL2_ROOT" || exit 1
fake_clock_on || { not_ok "the suite's clock builds"; done_testing; exit 1; }
# ratelimit2-cgi on that clock; a sanitizer build's runtime comes first.
PRELOAD=$RL2_TEST_CLOCK.so
if [ "${SAN:-0}" = 1 ]; then
    PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so):$PRELOAD"
fi

CHECK="$BUILD/tools/rl2_policy_check"
EX=$T_DIR/examples
mkdir -p "$EX" "$T_DIR/etc/ratelimit2"
n=$(perl tests/tools/docs_examples.pl "$EX" README.md docs/*.md \
    docs/man/*.md)
like "examples found in the documentation" '^[1-9][0-9]*$' "$n"
cp conf/ratelimit2.conf conf/demo.conf conf/examples/*.conf \
    "$T_DIR/etc/ratelimit2/"

TARGET=$T_DIR/ok.cgi
cat >"$TARGET" <<'CGI'
#!/bin/sh
printf 'Status: 200 OK\r\nX-Reset: %s\r\n\r\nok\n' "${RATELIMIT_RESET:-}"
CGI
chmod 755 "$TARGET"

# codes N*CODE ... -> one code a line.
codes() {
    local c
    for c in "$@"; do
        case "$c" in
            *'*'*) for _ in $(seq 1 "${c%%\**}"); do echo "${c#*\*}"; done ;;
            *) echo "$c" ;;
        esac
    done
}

# secs_left RESET -> seconds until a reset given as epoch or delta.
secs_left() {
    local r=$1 now
    now=$(date +%s)
    [ -z "$r" ] && return
    [ "$r" -gt 1000000000 ] && r=$((r - now))
    echo "$r"
}

# One request through ratelimit2-cgi: sets GOT (the status) and RESET.
# No subshell beyond the command substitution: this runs hundreds of times.
cgi_request() {
    local policy=$1 zone=$2 method=$3 path=$4 ip=$5 user=$6 tier=$7 out
    out=$(env -i PATH=/usr/bin:/bin REQUEST_METHOD="$method" \
        REQUEST_URI="$path" SCRIPT_NAME="$path" REMOTE_ADDR="$ip" \
        ${user:+REMOTE_USER="$user"} ${tier:+RL2_TIER="$tier"} \
        HTTP_HOST=example.com GATEWAY_INTERFACE=CGI/1.1 \
        RATELIMIT2_POLICY="$policy" RATELIMIT2_ZONE="$zone" \
        RATELIMIT2_ZONE_ENTRIES=1000 RATELIMIT2_TARGET="$TARGET" \
        LD_PRELOAD="$PRELOAD" RL2_TEST_CLOCK="$RL2_TEST_CLOCK" \
        "$CGI_BIN" </dev/null 2>>"$T_DIR/cgi.err")
    GOT="" RESET=""
    [[ $out =~ ^Status:\ ([0-9]+) ]] && GOT=${BASH_REMATCH[1]}
    [[ $out =~ X-Reset:\ ([0-9]+) ]] && RESET=${BASH_REMATCH[1]}
    return 0
}

# One request to Apache: prints "CODE SECONDS_TO_RESET".
apache_request() {
    local port=$1 method=$2 path=$3 h=$T_DIR/req.h c t
    c=$(curl -s -X "$method" -D "$h" -o /dev/null -w '%{http_code}' \
        "http://127.0.0.1:$port$path")
    t=$(tr -d '\r' <"$h" | sed -n 's/^RateLimit: .*;t=\([0-9]*\).*/\1/p' \
        | head -1)
    echo "$c $t"
}

# run_expect KIND ARGS... < expect -- run every expectation; prints the
# codes got, one "want got" line per request, then "elapsed first_t".
run_expect() {
    local kind=$1 a b method path rest ip user tier w got t first="" start
    shift
    start=$(date +%s)
    while IFS= read -r line; do
        a=${line%%=>*}
        b=${line#*=>}
        read -r method path rest <<<"$a"
        ip=192.0.2.1 user="" tier=""
        for kv in $rest; do
            case "$kv" in
                ip=*) ip=${kv#ip=} ;;
                user=*) user=${kv#user=} ;;
                tier=*) tier=${kv#tier=} ;;
            esac
        done
        # shellcheck disable=SC2086
        for w in $(codes $b); do
            if [ "$kind" = cgi ]; then
                cgi_request "$@" "$method" "$path" "$ip" "$user" "$tier"
                got=$GOT t=""
                [ -z "$first" ] && t=$(secs_left "$RESET")
            else
                read -r got t < <(apache_request "$1" "$method" "$path")
            fi
            [ -z "$first" ] && [ -n "$t" ] && first=$t
            echo "$w $got $line"
        done
    done
    echo "elapsed $(( $(date +%s) - start )) ${first:-999999}"
}

# judge WHERE RESULTS ATTEMPT -- 0 judged (ok or not ok printed), 1 void.
judge() {
    local where=$1 res=$2 elapsed first bad
    read -r _ elapsed first <<<"$(printf '%s\n' "$res" | tail -1)"
    bad=$(printf '%s\n' "$res" | sed '$d' | awk '$1 != $2' | head -3)
    # A mismatch in a run a window boundary may have cut is void, once.
    if [ -n "$bad" ] && [ "$3" = 1 ] && [ "$first" -le $((elapsed + 1)) ]; then
        return 1
    fi
    is "$where: behaves as the text says" "" "$bad"
    return 0
}

apache_base() {
    local dir=$1 port=$2
    apache_conf "$dir" "$port" event
    sed -i "/^LoadModule ratelimit2_module/a\\
LoadModule actions_module $APACHE_MODDIR/mod_actions.so" "$dir/httpd.conf"
    mkdir -p "$dir/cgi"
    printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\nok\\n"\n' \
        >"$dir/cgi/ok.cgi"
    chmod 755 "$dir/cgi" "$dir/cgi/ok.cgi"
    # A snippet without RateLimit2Zone would use the default /ratelimit2.
    sed -i "s|^Include \"$dir/site.conf\"|RateLimit2Zone $3 1000\n&|" \
        "$dir/httpd.conf"
}

# The snippet with its paths made the test's own.
apache_snippet() {
    local body=$1 zone=$2
    sed -e "s|/usr/lib/apache2/modules/mod_ratelimit2\.so|$MODULE|" \
        -e "s|/etc/ratelimit2/|$T_DIR/etc/ratelimit2/|g" \
        -e "s|^\\( *RateLimit2Zone  *\\)/[^ ]*|\\1$zone|" \
        "$body"
}

k=0
for ex in "$EX"/*; do
    k=$((k + 1))
    where=$(cat "$ex/where")
    lang=$(cat "$ex/lang")
    kind=$(cat "$ex/kind")
    # EXAMPLES=PATTERN runs only the examples whose file:line matches.
    [ -n "${EXAMPLES:-}" ] && [[ "$where" != *$EXAMPLES* ]] && continue
    if [ "$lang" = untagged ]; then
        not_ok "$where: a config block names its language (apache, libconfig)"
        continue
    fi
    if [ "$kind" = fragment ]; then
        echo "# $where: a fragment, not loaded"
        continue
    fi
    if [ "$lang" = libconfig ]; then
        cp "$ex/body" "$T_DIR/etc/ratelimit2/example-$k.conf"
        policy=$T_DIR/etc/ratelimit2/example-$k.conf
        out=$("$CHECK" "$policy" 2>&1)
        rc=$?
        is "$where: the policy loads" "0" "$rc"
        [ "$rc" -ne 0 ] && printf '%s\n' "$out" | sed 's/^/#   /'
        [ -s "$ex/expect" ] || continue
        for attempt in 1 2; do
            zone=$(zone_name "ex$k-$attempt")
            res=$(run_expect cgi "$policy" "$zone" <"$ex/expect")
            judge "$where" "$res" "$attempt" && break
            echo "# $where: a day may have ended during the run; again"
            sleep "$(printf '%s\n' "$res" | tail -1 | awk '{print $3 + 1}')"
        done
        continue
    fi
    # apache
    D=$T_DIR/apache-$k
    P=$(free_port)
    zone=$(zone_name "ap$k")
    apache_base "$D" "$P" "$zone"
    apache_snippet "$ex/body" "$zone" >"$D/site.conf"
    out=$(apache_configtest "$D")
    like "$where: apache2 -t accepts it" 'Syntax OK' "$out"
    [ -s "$ex/expect" ] || continue
    echo "ScriptAliasMatch \"^/(.*)\$\" \"$D/cgi/ok.cgi\"" >>"$D/site.conf"
    for attempt in 1 2; do
        zone=$(zone_name "ap$k-$attempt")
        sed -i "s|^RateLimit2Zone .*|RateLimit2Zone $zone 1000|" \
            "$D/httpd.conf"
        apache_snippet "$ex/body" "$zone" >"$D/site.conf"
        echo "ScriptAliasMatch \"^/(.*)\$\" \"$D/cgi/ok.cgi\"" >>"$D/site.conf"
        if ! apache_start "$D"; then
            not_ok "$where: Apache starts with it"
            break
        fi
        res=$(run_expect apache "$P" <"$ex/expect")
        apache_stop "$D"
        judge "$where" "$res" "$attempt" && break
        echo "# $where: a day may have ended during the run; again"
        sleep "$(printf '%s\n' "$res" | tail -1 | awk '{print $3 + 1}')"
    done
    while IFS= read -r re; do
        like "$where: the error log has /$re/" "$re" \
            "$(cat "$D/logs/error.log")"
    done <"$ex/log"
done
done_testing
