#!/bin/bash
# t_usage.sh -- ratelimit2ctl usage against a real Apache (event): a
# known mix of traffic (two rules, two tiers given by API keys, refusals,
# requests no rule applies to, distinct clients named by X-Forwarded-For
# from the trusted 127.0.0.1) is read back by `usage --json` exactly, per
# rule, tier and outcome, with the distinct clients of the interval and
# the peak share of a limit; the same figures in --csv (summed over its
# intervals) and in the text table; the same again after a graceful
# restart, which the next request adds to; a zone without a metrics
# object is an error naming it; --html renders in headless Chromium, and
# the screenshot is a PNG of the size asked, not blank, kept under
# $BUILD/artifacts/t_usage/.
source "$(dirname "$0")/lib.sh"

D=$T_DIR/a
P=$(free_port)
apache_conf "$D" "$P" event
ZONE=$(zone_name usage)
# sliding_log: exact, no window boundary to cross while the test runs.
cat >"$D/policy.conf" <<'POLICY'
tiers = [ "free", "pro" ];
default_tier = "free";
api_key = { header = "X-API-Key"; };
clients = ( { api_key = "key-free"; tier = "free"; },
            { api_key = "key-pro"; tier = "pro"; } );
algorithm = "sliding_log";
rules = (
  { name = "search"; paths = "/search/**"; key = "ip";
    tiers = { free = ( { rate = "3/1h"; } );
              pro = ( { rate = "5/1h"; } ); }; },
  { name = "upload"; paths = "/upload/**"; key = "api_key";
    limits = ( { rate = "4/1h"; } ); }
);
POLICY
# Eight worker threads (two children of four): the top-client table is
# fed by one request in RL2_USAGE_TOP_SAMPLE of each thread, and the
# bounds of its estimate below grow with the threads.
cat >"$D/site.conf" <<CONF
ServerLimit 2
StartServers 2
ThreadLimit 4
ThreadsPerChild 4
MinSpareThreads 4
MaxSpareThreads 8
MaxRequestWorkers 8
RateLimit2Zone $ZONE 1000
RateLimit2Policy "$D/policy.conf"
RateLimit2TrustedProxy 127.0.0.1
CONF
site_pages "$D/htdocs" search upload other
apache_start "$D" || { not_ok "apache starts"; done_testing; exit 1; }
U="http://127.0.0.1:$P"
CTL="$BUILD/ctl/ratelimit2ctl"
C=("$CTL" -c "$D/policy.conf" -z "$ZONE")

# ---- no metrics object ----
out=$("$CTL" -z "/rl2t-$$-none" usage 2>&1)
is "a zone without a metrics object: exit 3" 3 $?
like "the error names the object and says metrics must be on" \
    "/rl2t-$$-none\\.metrics: no such metrics object.*metrics on" "$out"

# ---- known traffic ----
# The distinct clients are counted per minute: the traffic (a few
# seconds) starts in the first 50 s of a minute, so that one interval
# (of the minutes and of the hours) holds it all.
while [ "$(date +%S | sed 's/^0//')" -gt 50 ]; do sleep 0.2; done

# hits N CLIENT KEY PATH -> the N status codes
hits() {
    local n=$1 client=$2 key=$3 path=$4 i args=(-H "X-Forwarded-For: $2")
    [ "$key" != - ] && args+=(-H "X-API-Key: $key")
    for i in $(seq 1 "$n"); do
        code "${args[@]}" "$U$path"
        [ "$i" -lt "$n" ] && echo -n " "
    done
}

got=""
# search, free: 4 clients, 4 requests each against 3/1h per address.
for c in 1 2 3 4; do got="$got $(hits 4 "10.0.0.$c" key-free /search/x)"; done
# search, pro: 5/1h; one client refused once, two under the limit.
got="$got $(hits 6 10.0.1.1 key-pro /search/x)"
got="$got $(hits 2 10.0.1.2 key-pro /search/x)"
got="$got $(hits 1 10.0.1.3 key-pro /search/x)"
is "search: the codes the limits give" \
    "$(echo 200 200 200 429 200 200 200 429 200 200 200 429 200 200 200 429 \
        200 200 200 200 200 429 200 200 200)" "$(echo $got)"
# upload, 4/1h per API key: key-free from two addresses, once refused;
# key-pro three requests, three quarters of its limit.
got="$(hits 3 10.0.2.1 key-free /upload/x) $(hits 2 10.0.2.2 key-free /upload/x)"
got="$got $(hits 3 10.0.2.3 key-pro /upload/x)"
is "upload: the codes the limit gives" "200 200 200 200 429 200 200 200" \
    "$got"
# No rule: 5 clients, one of them 4 times.
got="$(hits 4 10.0.3.1 - /other/x)"
for c in 2 3 4 5; do got="$got $(hits 1 "10.0.3.$c" - /other/x)"; done
is "unmatched paths: never refused" "$(echo 200 200 200 200 200 200 200 200)" \
    "$(echo $got)"
# A client hammering search: 3 admitted, 1997 refused.
is "2000 search requests of one client: 3 admitted" 3 \
    "$(admitted 2000 4 "$U/search/x" -H "X-Forwarded-For: 10.0.0.9" \
        -H "X-API-Key: key-free")"

# usage_cells [ARGS...] -> "rule tier requests admitted refused clients
# peak_ppm" per cell, sorted, from usage --json.
usage_cells() {
    "${C[@]}" usage --json "$@" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for c in sorted(d["cells"], key=lambda c: (c["rule"], c["tier"])):
    print(c["rule"], c["tier"], c["requests"], c["admitted"], c["refused"],
          c["clients_max"], c["peak_ppm"])'
}

# What was sent: rule, tier, requests, admitted, refused, distinct
# clients, the largest share of the limit one client used (of 10^6).
# The unmatched requests sent no API key: their clients are of the
# default tier, free.  upload counts per API key: one client each.
EXPECTED="(unmatched) free 8 8 0 5 0
search free 2016 15 2001 5 1000000
search pro 9 8 1 3 1000000
upload free 5 4 1 1 1000000
upload pro 3 3 0 1 750000"
is "usage --json: every cell as sent, per rule, tier and outcome" \
    "$EXPECTED" "$(usage_cells)"
is "usage --json --step hour: the same" "$EXPECTED" \
    "$(usage_cells --step hour)"
is "--since 90m: 90 intervals of a minute, the same figures" \
    "60 90 $(printf '%s\n' "$EXPECTED" | head -1)" \
    "$("${C[@]}" usage --json --since 90m | python3 -c '
import json, sys
d = json.load(sys.stdin)
c = [c for c in d["cells"] if c["rule"] == "(unmatched)"][0]
print(d["step_s"], d["intervals"], c["rule"], c["tier"], c["requests"],
      c["admitted"], c["refused"], c["clients_max"], c["peak_ppm"])')"
is "--since 7d: by hour, 168 intervals" "3600 168" \
    "$("${C[@]}" usage --json --since 7d | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(d["step_s"], d["intervals"])')"
"${C[@]}" usage --since 2d --step minute >/dev/null 2>&1
is "--since 2d --step minute: exit 2 (the minutes cover 24h)" 2 $?
"${C[@]}" report --csv >/dev/null 2>&1
is "report --csv: exit 2 (usage alone takes it)" 2 $?
is "usage --json --rule search: that rule alone" \
    "$(printf '%s\n' "$EXPECTED" | grep '^search ')" \
    "$(usage_cells --rule search)"
"${C[@]}" usage --json >"$T_DIR/usage.json"
python3 -m json.tool "$T_DIR/usage.json" >/dev/null
is "usage --json: python3 -m json.tool reads it" 0 $?
# The top-client table is fed by one request in S (top_sample) of each
# worker thread, counted S each: of k requests a thread served, between
# floor(k / S) and ceil(k / S) are sampled, so of the 2000 over the 8
# threads, at least ceil((2000 - 8 (S - 1)) / S) and at most
# floor((2000 + 8 (S - 1)) / S).
is "the top client by use: the one of 2000 requests, within the bounds" \
    "10.0.0.9 search in" \
    "$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
s, c = d["top_sample"], d["top_clients"][0]
lo, hi = -(-(2000 - 8 * (s - 1)) // s) * s, (2000 + 8 * (s - 1)) // s * s
print(c["client"], c["rule"],
      "in" if lo <= c["requests"] <= hi else "out: %d not in %d..%d" %
      (c["requests"], lo, hi))' "$T_DIR/usage.json" 2>&1)"

# ---- CSV and text: the same figures ----
"${C[@]}" usage --csv >"$T_DIR/usage.csv"
is "usage --csv: a header, then one row per cell per minute (5 x 1440)" \
    "interval_start,step_s,rule,tier,requests,admitted,refused,clients,peak_ppm 7201" \
    "$(head -1 "$T_DIR/usage.csv" | tr -d '\r') $(wc -l <"$T_DIR/usage.csv")"
is "usage --csv: every line ends with CRLF" 0 \
    "$(grep -cv $'\r$' "$T_DIR/usage.csv")"
is "usage --csv: the intervals add up to the same figures" \
    "$(printf '%s\n' "$EXPECTED" | cut -d' ' -f1-5)" \
    "$(python3 -c '
import csv, sys
t = {}
for r in csv.DictReader(open(sys.argv[1], newline="")):
    k = (r["rule"], r["tier"])
    s = t.setdefault(k, [0, 0, 0])
    for i, f in enumerate(("requests", "admitted", "refused")):
        s[i] += int(r[f])
for k in sorted(t):
    print(*k, *t[k])' "$T_DIR/usage.csv")"
"${C[@]}" usage >"$T_DIR/usage.txt"
is "usage (text): the same figures in the table" \
    "$(printf '%s\n' "$EXPECTED" | cut -d' ' -f1-5)" \
    "$(awk '$1 ~ /^(search|upload|\(unmatched\))$/ && NF > 8 {
            print $1, $2, $3, $4, $5 }' "$T_DIR/usage.txt" | sort)"
like "usage (text): search/free refused 99.3%, 5 clients, peak 100%" \
    'search +free +2016 +15 +2001 +99\.3% +5 [0-9-]+ [0-9:]+ +100\.0% +0\.0%' \
    "$(cat "$T_DIR/usage.txt")"

# ---- graceful restart ----
apache_graceful "$D"
for _ in $(seq 1 100); do
    [ "$(grep -c 'resuming normal operations' "$D/logs/error.log")" -ge 2 ] \
        && break
    sleep 0.1
done
is "apache: the graceful restart is done" 2 \
    "$(grep -c 'resuming normal operations' "$D/logs/error.log")"
is "after a graceful restart: the same figures" "$EXPECTED" "$(usage_cells)"
is "a request after the restart is refused as before" 429 \
    "$(code -H 'X-Forwarded-For: 10.0.0.1' -H 'X-API-Key: key-free' \
        "$U/search/x")"
is "and joins the series: search/free refused 2002" \
    "search free 2017 15 2002" \
    "$(usage_cells --rule search | grep '^search free' | cut -d' ' -f1-5)"

# ---- HTML in headless Chromium ----
"${C[@]}" usage --html -o "$T_DIR/usage.html"
is "usage --html -o FILE: exit 0" 0 $?
is "the page loads nothing: no script, no reference outside it" "" \
    "$(grep -oiE '<script|src=|href=|url\(|@import|https?://' \
        "$T_DIR/usage.html")"
is "one chart per cell" 5 "$(grep -o '<svg class="chart"' \
    "$T_DIR/usage.html" | wc -l)"
ART=$BUILD/artifacts/t_usage
SHOT=$ART/usage.png
mkdir -p "$ART"
rm -f "$SHOT"
if ! command -v chromium >/dev/null; then
    T_NUM=$((T_NUM + 1))
    echo "ok $T_NUM # SKIP chromium is not installed (scripts/deps.sh" \
        "installs it)"
else
    mkdir -p "$T_DIR/chromium"
    # As root Chromium needs --no-sandbox; HOME and the profile in the
    # suite's directory keep it off the user's own.
    HOME="$T_DIR/chromium" timeout 120 chromium --headless --no-sandbox \
        --disable-gpu --disable-background-networking --disable-extensions \
        --user-data-dir="$T_DIR/chromium" --hide-scrollbars \
        --window-size=1280,2000 --screenshot="$SHOT" \
        "file://$T_DIR/usage.html" >"$T_DIR/chromium.log" 2>&1
    is "chromium: exit 0" 0 $?
    # Width, height, distinct colours of the PNG (decoded here: zlib and
    # the five scanline filters; 8-bit RGB or RGBA, as Chromium writes).
    # The image data must be whole; rows are unfiltered until 200
    # colours are seen (Python takes seconds for the whole page).
    png=$(python3 - "$SHOT" <<'PY'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, ihdr = 8, b"", None
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        ihdr = struct.unpack(">IIBBBBB", body)
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
w, h, depth, ctype = ihdr[:4]
assert depth == 8 and ctype in (2, 6), "depth %d type %d" % (depth, ctype)
bpp = 3 if ctype == 2 else 4
raw, stride = zlib.decompress(idat), w * bpp
assert len(raw) == h * (1 + stride), "image data cut short"
prev, colours, i = bytearray(stride), set(), 0
for _ in range(h):
    if len(colours) >= 200:
        break
    f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
    i += 1 + stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0
        b, c = prev[x], prev[x - bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pr = a if pa <= pb and pa <= pc else b if pb <= pc else c
            line[x] = (line[x] + pr) & 255
    for x in range(0, stride, bpp):
        colours.add(bytes(line[x:x + 3]))
    prev = line
print(w, h, min(len(colours), 200))
PY
    )
    like "the screenshot is a PNG of 1280x2000" '^1280 2000 ' "$png"
    # Antialiased text and three coloured lines: far more than a blank
    # page's one colour.
    n=${png##* }
    [ "${n:-0}" -gt 50 ] && ok "the screenshot is not blank ($n colours)" \
        || not_ok "the screenshot is not blank (${n:-?} colours)"
    echo "# screenshot: $SHOT"
fi

done_testing
