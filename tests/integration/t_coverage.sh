#!/bin/bash
# t_coverage.sh -- ratelimit2ctl coverage over access logs this suite
# writes against conf/examples/saas-api.conf (no server: CPU only):
#   - ten routes of known classes, their requests spread over an Apache
#     combined log, an nginx log (gzip, \xHH escapes) and a lighttpd log
#     (the Host in the second field), with ids (numbers, UUIDs, long hex)
#     that must fold into one route, and paths spelt differently
#     ("//", "/./", "x/..") that the core's normalisation must join;
#   - the report gives exactly the shares of routes and requests the
#     suite wrote, and lists exactly the routes without an explicit rule,
#     the unprotected first;
#   - --min and --min-requests exit 4 below their threshold, 0 at it;
#   - --json parses and says what the text says; --html is one page;
#   - malformed, over-long and ambiguous lines are counted, with the
#     first skipped lines' numbers; standard input reads like a file.
. "$(dirname "$0")/lib.sh"

CTL="$BUILD/ctl/ratelimit2ctl"
POLICY="$RL2_ROOT/conf/examples/saas-api.conf"
APACHE=$T_DIR/apache.log
NGINX=$T_DIR/nginx.log
LIGHTTPD=$T_DIR/lighttpd.log

# The routes, as "CLASS METHOD ROUTE REQUESTS PATH": the class is what
# saas-api.conf says of the route (read from its rules: "rule" where one
# of its rules names the method and path, "default" where none does and
# the default rule takes it, "exempt" for its exempt paths).  PATH is the
# path written in the log, "{n}" standing for an id of the route's kind.
ROUTES=(
    "rule POST /auth/login 30 /auth/login"
    "rule POST /auth/register 12 /auth//register"
    "rule GET /generations/*/download 25 /generations/{n}/download"
    "rule POST /generations/*/export 8 /generations/{uuid}/export"
    "rule GET /api/v2/generation/generate/*/stream 15 /api/v2/generation/generate/{hex}/stream"
    "rule POST /projects/validate 20 /x/../projects/./validate"
    "default GET /users/* 40 /users/{n}"
    "default DELETE /generations/*/download 20 /generations/{n}/download"
    "exempt GET /health 22 /health"
    "exempt GET /docs/guide 8 /docs/guide?lang=en"
)
# The lines that must be skipped (apache 3, nginx 1, lighttpd 1) and the
# one request the limiter refuses as malformed.
SKIPPED=5

# id KIND N -- the N-th id of a kind, each different, into $ID (no
# subshell: a few hundred forks take seconds on a loaded machine).
id() {
    case "$1" in
    n) ID=$((1000 + $2)) ;;
    uuid) printf -v ID '%08x-1111-4222-8333-%012x' "$2" "$2" ;;
    hex) printf -v ID '%016x%04x' "$((0x1234567890ab + $2))" "$2" ;;
    esac
}

# line FORMAT METHOD PATH N -- one request as each server writes it.
line() {
    local t
    printf -v t '[06/Dec/2026:12:00:%02d +0100]' $(($4 % 60))
    case "$1" in
    apache) printf '192.0.2.%d - - %s "%s %s HTTP/1.1" 200 %d "-" "curl/8 \\"t\\""\n' \
        $(($4 % 200)) "$t" "$2" "$3" "$4" ;;
    nginx) printf '2001:db8::%x - user%d %s "%s %s HTTP/2.0" 200 0 "https://example.com/" "Mozilla/5.0 \\x22x\\x22"\n' \
        "$4" "$4" "$t" "$2" "$3" ;;
    lighttpd) printf '198.51.100.%d api.example.com - %s "%s %s HTTP/1.1" 204 - "-" "lwp"\n' \
        $(($4 % 200)) "$t" "$2" "$3" ;;
    esac
}

: >"$APACHE"
: >"$NGINX"
: >"$LIGHTTPD"
formats=(apache nginx lighttpd)
files=("$APACHE" "$NGINX" "$LIGHTTPD")
total=0
protected=0
for r in "${ROUTES[@]}"; do
    read -r class method route count path <<<"$r"
    for ((k = 0; k < count; k++)); do
        f=$(( (total + k) % 3 ))
        p=$path
        for kind in n uuid hex; do
            if [[ $p == *"{$kind}"* ]]; then
                id "$kind" "$k"
                p=${p/"{$kind}"/$ID}
            fi
        done
        line "${formats[$f]}" "$method" "$p" "$((total + k))" >>"${files[$f]}"
    done
    total=$((total + count))
    [ "$class" != exempt ] && protected=$((protected + count))
done
# Hostile lines: garbage, a connection closed before its request, a line
# past 64 KiB (Apache), a request line with a space (nginx), an escape no
# server writes (lighttpd); and a dot segment with a ;parameter, which
# the servers refuse (400) and coverage counts apart.
{
    echo "garbage"
    echo '192.0.2.1 - - [06/Dec/2026:12:00:00 +0100] "-" 408 0 "-" "-"'
    printf '192.0.2.1 - - [06/Dec/2026:12:00:00 +0100] "GET /%s HTTP/1.1" 200 1 "-" "-"\n' \
        "$(head -c 70000 /dev/zero | tr '\0' a)"
    echo '192.0.2.1 - - [06/Dec/2026:12:00:00 +0100] "GET /x/..;/auth/login HTTP/1.1" 400 1 "-" "-"'
} >>"$APACHE"
echo '192.0.2.1 - - [06/Dec/2026:12:00:00 +0100] "GET /a\x20b HTTP/1.1" 400 0 "-" "-"' >>"$NGINX"
echo '192.0.2.1 h - [06/Dec/2026:12:00:00 +0100] "GET /\q HTTP/1.1" 400 0 "-" "-"' >>"$LIGHTTPD"
a_lines=$(wc -l <"$APACHE")
gzip "$NGINX"
NGINX=$NGINX.gz

routes=${#ROUTES[@]}
p_routes=$(printf '%s\n' "${ROUTES[@]}" | grep -cv '^exempt')
# Shares as the report prints them (two decimals), from the counts.
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", 100 * a / b }'; }
# The routes without an explicit rule, "CLASS METHOD ROUTE REQUESTS".
norule=$(printf '%s\n' "${ROUTES[@]}" | awk '$1 != "rule" { print $1, $2, $3, $4 }' | sort)

out=$("$CTL" -c "$POLICY" coverage "$APACHE" "$NGINX" "$LIGHTTPD" 2>"$T_DIR/err")
is "coverage exits 0" 0 "$?"
like "routes: $routes, $p_routes protected" \
    "routes +$routes +protected $p_routes \\($(pct "$p_routes" "$routes")%\\)" "$out"
like "requests: $total, $protected protected" \
    "requests +$total +protected $protected \\($(pct "$protected" "$total")%\\)  refused as malformed 1  unlisted 0" \
    "$out"
table=$(printf '%s\n' "$out" | sed -n '/^CLASS /,$p' | tail -n +2)
is "every route once" "$routes" "$(printf '%s\n' "$table" | grep -c .)"
is "exactly the routes without an explicit rule" "$norule" \
    "$(printf '%s\n' "$table" | awk '$1 != "rule" { print $1, $2, $4, $3 }' | sort)"
is "the unprotected (exempt) routes first" "exempt exempt" \
    "$(printf '%s\n' "$table" | head -2 | awk '{ print $1 }' | xargs)"
is "then by requests, most first" \
    "$(printf '%s\n' "${ROUTES[@]}" | awk '$1 != "exempt" { print $4 }' | sort -rn | xargs)" \
    "$(printf '%s\n' "$table" | tail -n +3 | awk '{ print $3 }' | xargs)"
like "the login route's rules, in the order they apply" \
    "rule +POST +30  /auth/login +login_ip,auth_operations" "$table"
like "the three formats are told apart" \
    "apache.log  format combined .*nginx.log.gz  format combined .*lighttpd.log  format lighttpd" \
    "$(printf '%s' "$out" | tr '\n' ' ')"
like "apache: 3 skipped (1 too long), each numbered" \
    "apache.log  format combined  lines $a_lines  read $((a_lines - 3))  skipped 3 \\(too long 1\\): line $((a_lines - 3)) \\(one field only\\), $((a_lines - 2)) \\(no request line \\(\"-\"\\)\\), $((a_lines - 1)) \\(longer than 64 KiB\\)" \
    "$out"

# ---- --json: it parses, and says what the text says ----
json=$("$CTL" -c "$POLICY" --json coverage "$APACHE" "$NGINX" "$LIGHTTPD")
# One python for every question (a process costs on a loaded machine).
jsum=$(printf '%s' "$json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
r, q = d["routes"], d["requests"]
print(r["total"], r["protected"], "%.2f" % r["protected_pct"])
print(q["total"], q["protected"], q["refused_malformed"], q["unlisted"])
print(sum(l["skipped"] for l in d["logs"]))
print(json.dumps([t["rules"] for t in d["table"] if t["route"] == "/auth/login"][0]))
for t in d["table"]:
    print("%s %s %d %s" % (t["class"], t["method"], t["requests"], t["route"]))
')
is "--json parses" 0 "$?"
is "--json: routes" "$routes $p_routes $(pct "$p_routes" "$routes")" \
    "$(printf '%s\n' "$jsum" | sed -n 1p)"
is "--json: requests" "$total $protected 1 0" "$(printf '%s\n' "$jsum" | sed -n 2p)"
is "--json: skipped lines, every log" "$SKIPPED" \
    "$(printf '%s\n' "$jsum" | sed -n 3p)"
is "--json: rules as a list" '["login_ip", "auth_operations"]' \
    "$(printf '%s\n' "$jsum" | sed -n 4p)"
is "--json: the same table as the text" \
    "$(printf '%s\n' "$table" | awk '{ print $1, $2, $3, $4 }')" \
    "$(printf '%s\n' "$jsum" | tail -n +5)"

# ---- --min, --min-requests ----
share=$(pct "$p_routes" "$routes")
"$CTL" -c "$POLICY" coverage --min "$share" "$APACHE" "$NGINX" "$LIGHTTPD" >/dev/null 2>&1
is "--min $share (the share itself) passes" 0 "$?"
"$CTL" -c "$POLICY" coverage --min "$(awk -v s="$share" 'BEGIN { print s + 0.01 }')" \
    "$APACHE" "$NGINX" "$LIGHTTPD" >/dev/null 2>"$T_DIR/err"
is "--min above the share exits 4" 4 "$?"
like "and says why" "$p_routes of $routes routes protected" "$(cat "$T_DIR/err")"
rshare=$(pct "$protected" "$total")
"$CTL" -c "$POLICY" coverage --min-requests "$(awk -v s="$rshare" 'BEGIN { print s - 0.01 }')" \
    "$APACHE" "$NGINX" "$LIGHTTPD" >/dev/null 2>&1
is "--min-requests below the share passes" 0 "$?"
"$CTL" -c "$POLICY" coverage --min-requests "$(awk -v s="$rshare" 'BEGIN { print s + 0.01 }')" \
    "$APACHE" "$NGINX" "$LIGHTTPD" >/dev/null 2>&1
is "--min-requests above the share exits 4" 4 "$?"

# ---- standard input, --format, --html, bad command lines ----
a=$("$CTL" -c "$POLICY" --json coverage "$APACHE" | sed 's|"file":"[^"]*"||')
b=$("$CTL" -c "$POLICY" --json coverage - <"$APACHE" | sed 's|"file":"[^"]*"||')
is "standard input reads like the file" "$a" "$b"
zcat "$NGINX" | "$CTL" -c "$POLICY" coverage --format common - >/dev/null 2>"$T_DIR/err"
is "--format common on a combined log: nothing read, exit 3" 3 "$?"
"$CTL" -c "$POLICY" coverage --html -o "$T_DIR/c.html" "$APACHE" "$LIGHTTPD"
is "--html -o" 0 "$?"
like "--html: one page, the unprotected rows marked" \
    "<tr class=\"u\"><td>exempt</td><td>GET</td>" "$(cat "$T_DIR/c.html")"
"$CTL" -c "$POLICY" coverage --min 101 "$APACHE" >/dev/null 2>&1
is "--min 101: exit 2" 2 "$?"
"$CTL" -c "$POLICY" status --min 50 192.0.2.1 >/dev/null 2>&1
is "--min elsewhere: exit 2" 2 "$?"
"$CTL" -c "$POLICY" coverage "$T_DIR/missing.log" >/dev/null 2>&1
is "a log that does not open: exit 3" 3 "$?"
# ---- a log written against the route table's hash ----
# 90,000 routes that agree in the low bits of the hash the table had with
# a fixed basis (rl2_fnv_collide), each requested 4 times: with that hash
# each lookup walked the routes before it (18 s here); with a basis
# drawn at random the slots are spread and it takes well under a second.
"$BUILD/tools/rl2_fnv_collide" 300 >"$T_DIR/collide1.log"
cat "$T_DIR/collide1.log" "$T_DIR/collide1.log" "$T_DIR/collide1.log" \
    "$T_DIR/collide1.log" >"$T_DIR/collide.log"
out=$(timeout 5 "$CTL" -c "$POLICY" coverage "$T_DIR/collide.log" 2>&1)
is "routes made to collide: counted within 5 s" 0 "$?"
like "... all 90,000 routes, each 4 times" "requests  360000  protected 360000" \
    "$out"
done_testing
