#!/bin/bash
# t_fields.sh -- every response of a counted request carries its
# rate-limit fields, once, whatever produced it: a static file, a 404, a
# 304, a HEAD, a trailing-slash redirect, a directory index, a CGI
# script, a response proxied from another server (whose fields replace
# Apache's own), and a 429.
source "$(dirname "$0")/lib.sh"
# Its counted limits are fixed windows of an hour (the zone's monotonic
# hours, or Redis TIME's): the suite takes well under a minute, so it
# starts with a minute's room in the hour of both clocks.
window_room 3600 60

# The backend a proxied request goes to: a plain Apache without limits.
B=$T_DIR/backend
BP=$(free_port)
apache_conf "$B" "$BP" event
sed -i '/ratelimit2_module/d' "$B/httpd.conf"
echo "backend" >"$B/htdocs/page.html"
apache_start "$B" || { not_ok "backend apache starts"; done_testing; exit 1; }

D=$T_DIR/front
P=$(free_port)
apache_conf "$D" "$P" event
mkdir -p "$D/htdocs/dir" "$D/cgi"
echo "index" >"$D/htdocs/dir/index.html"
echo "file" >"$D/htdocs/file.html"
cat >"$D/cgi/hello.cgi" <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\nX-From-Script: yes\r\n\r\nhello\n'
CGI
chmod 755 "$D/cgi/hello.cgi"
cat >"$D/site.conf" <<CONF
LoadModule proxy_module $APACHE_MODDIR/mod_proxy.so
LoadModule proxy_http_module $APACHE_MODDIR/mod_proxy_http.so
RateLimit2Zone $(zone_name fields) 1000
RateLimit2Limit site 1000/1h
ScriptAlias /cgi/ "$D/cgi/"
ProxyPass /proxied/ http://127.0.0.1:$BP/
<Location /handler-proxied/>
    SetHandler "proxy:http://127.0.0.1:$BP"
</Location>
<Location /tiny/>
    RateLimit2Limit tiny 1/1h
</Location>
CONF
mkdir -p "$D/htdocs/tiny"
echo "tiny" >"$D/htdocs/tiny/x"
apache_start "$D" || { not_ok "apache starts"; done_testing; exit 1; }
ok "apache starts"

# fields_of ARGS... -- the response's status line and rate-limit fields
fields_of() {
    curl -s -o /dev/null -D - "$@" | tr -d '\r' \
        | grep -E '^(HTTP/|RateLimit|Retry-After|X-From-Script)'
}

# once NAME PATTERN TEXT -- PATTERN occurs exactly once in TEXT
once() {
    is "$1" 1 "$(printf '%s\n' "$3" | grep -cE "$2")"
}

U=http://127.0.0.1:$P
for what in "static file:/file.html:200" "404:/missing.html:404" \
            "trailing-slash redirect:/dir:301" \
            "directory index:/dir/:200" "CGI script:/cgi/hello.cgi:200" \
            "ProxyPass:/proxied/page.html:200"; do
    name=${what%%:*}
    rest=${what#*:}
    path=${rest%:*}
    code=${rest##*:}
    h=$(fields_of "$U$path")
    like "$name: status $code" "^HTTP/1.1 $code" "$h"
    once "$name: RateLimit once" '^RateLimit: "site";r=[0-9]+;t=' "$h"
    once "$name: RateLimit-Policy once" \
         '^RateLimit-Policy: "site";q=1000;w=3600$' "$h"
done
# SetHandler "proxy:..." sends the file name the URL maps to: whatever the
# backend answers, the answer is the backend's, with our fields on it.
before=$(grep -c . "$B/logs/access.log")
h=$(fields_of "$U/handler-proxied/page.html")
is "SetHandler proxy: the backend answered" $((before + 1)) \
   "$(grep -c . "$B/logs/access.log")"
once "SetHandler proxy: RateLimit once" '^RateLimit: "site";r=' "$h"
once "SetHandler proxy: RateLimit-Policy once" '^RateLimit-Policy: "site"' \
     "$h"
like "CGI script: the script's own field is there too" \
     '^X-From-Script: yes' "$(fields_of "$U/cgi/hello.cgi")"

h=$(fields_of -I "$U/file.html")
once "HEAD: RateLimit once" '^RateLimit: "site"' "$h"

lm=$(curl -s -o /dev/null -D - "$U/file.html" | tr -d '\r' \
     | sed -n 's/^Last-Modified: //p')
h=$(fields_of -H "If-Modified-Since: $lm" "$U/file.html")
like "304: status" '^HTTP/1.1 304' "$h"
once "304: RateLimit once" '^RateLimit: "site"' "$h"

fields_of "$U/tiny/x" >/dev/null
h=$(fields_of "$U/tiny/x")
like "429: status" '^HTTP/1.1 429' "$h"
once "429: RateLimit once" '^RateLimit: "tiny";r=0;t=' "$h"
once "429: Retry-After once" '^Retry-After: [0-9]+$' "$h"

done_testing
