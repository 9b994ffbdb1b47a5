#!/bin/bash
# t_rules.sh -- which rule of a policy file a request falls under:
# method sets, path globs on the normalised path, host globs, first match
# with "continue", and the default rule.  Every limit has its own name and
# a rate nothing reaches; the name in the RateLimit header says which rule
# decided.
. "$(dirname "$0")/lib.sh"

D=$T_DIR/a
P=$(free_port)
apache_conf "$D" "$P" event
POLICY=$D/rules.conf
cat >"$POLICY" <<'CONF'
match = "first";
rules = (
    { name = "audit"; paths = [ "/audit/**" ]; continue = true;
      limits = ( { name = "l_audit"; rate = "1000/1h"; } ); },
    { name = "auditcore"; paths = [ "/audit/core" ];
      limits = ( { name = "l_auditcore"; rate = "500/1h"; } ); },
    { name = "export"; methods = [ "GET", "POST" ];
      paths = [ "/api/*/export" ];
      limits = ( { name = "l_export"; rate = "1000/1h"; } ); },
    { name = "files"; paths = [ "/files/**" ];
      limits = ( { name = "l_files"; rate = "1000/1h"; } ); },
    { name = "login"; methods = [ "POST" ];
      paths = [ "/auth/login", "/auth/register" ];
      limits = ( { name = "l_login"; rate = "1000/1h"; } ); },
    { name = "apihost"; hosts = [ "api.example.com" ];
      limits = ( { name = "l_apihost"; rate = "1000/1h"; } ); },
    { name = "orghost"; hosts = [ "*.example.org" ];
      limits = ( { name = "l_orghost"; rate = "1000/1h"; } ); },
    { name = "writes"; methods = [ "PUT", "DELETE", "PATCH" ];
      limits = ( { name = "l_writes"; rate = "1000/1h"; } ); }
);
default = {
    limits = ( { name = "l_default"; rate = "1000/1h"; } );
};
CONF
cat >"$D/site.conf" <<CONF
RateLimit2Zone $(zone_name rules) 10000
RateLimit2Policy "$POLICY"
CONF
# Inline limits add to the policy's: under /crowd/ a request meets the
# default rule's limit and fifteen inline ones (16, the most one request
# takes); under /crowd/more/ one more, which is refused, never let
# through with some unchecked.
{
    echo "<Location /crowd/>"
    for i in $(seq 1 15); do
        echo "    RateLimit2Limit crowd$i 1000/hour"
    done
    echo "</Location>"
    echo "<Location /crowd/more/>"
    echo "    RateLimit2Limit crowd16 1000/hour"
    echo "</Location>"
} >>"$D/site.conf"
# No documents: every case is a 404, which carries the headers too.

if ! apache_start "$D"; then
    not_ok "apache starts with the rules policy"
    done_testing
    exit 1
fi
ok "apache starts with the rules policy"

# headers METHOD PATH HOST -- the response header block, CRs removed.
headers() {
    curl -s --path-as-is -X "$1" -H "Host: $3" -D - -o /dev/null \
        "http://127.0.0.1:$P$2" | tr -d '\r'
}

# shown METHOD PATH HOST -- the policy name of the RateLimit header.
shown() {
    headers "$@" | sed -n 's/^RateLimit: "\([^"]*\)".*/\1/p'
}

L=localhost
# method path host expected-limit
while read -r m path host want; do
    [ -z "$m" ] && continue
    case "$m" in \#*) continue ;; esac
    is "$m $path Host: $host -> $want" "$want" "$(shown "$m" "$path" "$host")"
done <<CASES
GET    /api/v1/export            $L                 l_export
POST   /api/v2/export            $L                 l_export
DELETE /api/v1/export            $L                 l_writes
GET    /api/v1/v2/export         $L                 l_default
GET    /api//v1/./export         $L                 l_export
GET    /api/v1/../v3/export      $L                 l_export
GET    /files/a.txt              $L                 l_files
GET    /files/a/b/c.txt          $L                 l_files
GET    /files/a/../b             $L                 l_files
GET    /files/%61.txt            $L                 l_files
GET    /files                    $L                 l_default
GET    /static/../files/b        $L                 l_files
GET    /files/../api/v9/export   $L                 l_export
GET    /FILES/b                  $L                 l_files
POST   /auth/login               $L                 l_login
POST   /auth/register            $L                 l_login
GET    /auth/login               $L                 l_default
POST   /auth/login/extra         $L                 l_default
GET    /anything                 api.example.com    l_apihost
GET    /anything                 API.Example.COM    l_apihost
GET    /anything                 api.example.com:81 l_apihost
GET    /files/b                  api.example.com    l_files
PATCH  /anything                 api.example.com    l_apihost
GET    /x                        www.example.org    l_orghost
GET    /x                        a.b.example.org    l_orghost
GET    /x                        example.org        l_default
GET    /x                        api.example.com.evil.net l_default
PUT    /x                        $L                 l_writes
GET    /                         $L                 l_default
CASES

# continue = true: the audit rule applies and matching goes on.
h=$(headers GET /audit/core $L)
like "continue: /audit/core lists l_audit in RateLimit-Policy" \
    '^RateLimit-Policy: .*"l_audit";q=1000' "$h"
like "continue: /audit/core lists l_auditcore in RateLimit-Policy" \
    '^RateLimit-Policy: .*"l_auditcore";q=500' "$h"
like "continue: RateLimit shows the one with least room (l_auditcore)" \
    '^RateLimit: "l_auditcore";r=499;' "$h"
h=$(headers GET /audit/other $L)
like "continue: /audit/other lists l_audit" \
    '^RateLimit-Policy: .*"l_audit";' "$h"
like "continue: /audit/other falls through to the default rule" \
    '^RateLimit-Policy: .*"l_default";' "$h"
if printf '%s\n' "$h" | grep -q 'l_auditcore'; then
    not_ok "continue: /audit/other does not meet auditcore"
else
    ok "continue: /audit/other does not meet auditcore"
fi
h=$(headers GET /api/v1/export $L)
like "first match: /api/v1/export has only l_export" \
    '^RateLimit-Policy: "l_export";q=1000;w=3600$' "$h"

# Sixteen limits in all pass; seventeen are refused with 500 and logged.
is "policy and inline limits: 16 for one request are checked" 404 \
    "$(code "http://127.0.0.1:$P/crowd/x")"
is "policy and inline limits: 17 for one request are refused with 500" 500 \
    "$(code "http://127.0.0.1:$P/crowd/more/x")"
like "the refusal is logged as RL20022" \
    'RL20022: refused with 500: more than 16 limits apply to /crowd/more/x' \
    "$(cat "$D/logs/error.log")"

done_testing
