#!/bin/bash
# t_fcgi_http.sh -- ratelimit2-fcgi -H behind nginx auth_request over
# HTTP/1.1, with the shipped conf/fcgi/nginx-auth-request-http.conf and
# its upstream keepalive: the same answers as the FastCGI snippet (N
# admitted, then 429 with its JSON body and headers; a ban's 403, the
# emergency's 503; headers on allowed requests), a client's own
# X-RateLimit2-* headers (once or twice) change nothing the limiter
# sees, and nginx reuses its connections (the daemon's count of
# connections against requests).  Then the socket spoken to directly, as
# a hostile client would: pipelined requests answered in order, a head
# in pieces, a body, an oversized head, a missing or repeated identity
# header, an idle connection closed, and a slow head that does not keep
# the only worker from others.
. "$(dirname "$0")/fcgi_lib.sh"

D=$T_DIR/nginx
P=$(free_port)
Z=$(zone_name ht)
SOCK=$D/rl2.sock
U="http://127.0.0.1:$P"

cat >"$T_DIR/policy.conf" <<POLICY
headers = { legacy = true; };
overrides = { state_file = "$T_DIR/ht.overrides"; ban_status = 403; };
rules = (
  { name = "spoof"; paths = "/spoof/**";
    limits = ( { rate = "3/hour"; key = "ip"; } ); },
  { name = "once"; paths = "/once/**";
    limits = ( { rate = "1/hour"; key = "ip"; } ); },
  { name = "posts"; methods = "POST"; paths = "/post/**";
    limits = ( { rate = "1/hour"; key = "ip"; } ); },
  { name = "peru"; paths = "/user/**";
    limits = ( { rate = "1/hour"; key = "user"; } ); },
  { name = "free"; paths = "/free/**"; exempt = true; },
  { name = "site"; paths = "/a.txt";
    limits = ( { rate = "50/hour"; algorithm = "sliding_log"; } ); }
);
POLICY

# wait_sock PATH -- until the daemon listens there (5 s at most).
wait_sock() {
    for _ in $(seq 1 100); do
        [ -S "$1" ] && return 0
        sleep 0.05
    done
    return 1
}

# ---- options ----
# opt_refused NAME WANT ARGS... -- exit 2 with WANT on stderr.
opt_refused() {
    local name=$1 want=$2 err rc
    shift 2
    err=$("$FCGI_BIN" "$@" 2>&1 >/dev/null)
    rc=$?
    is "$name: exit 2" 2 "$rc"
    like "$name: says why" "$want" "$err"
}
opt_refused "-H with -m" "-H: the health, metrics and admin paths" \
    -H -m /metrics -c "$T_DIR/policy.conf" -s "$T_DIR/x.sock"
opt_refused "-H with -p" "answered over FastCGI only" \
    -H -p /h -c "$T_DIR/policy.conf" -s "$T_DIR/x.sock"
opt_refused "-k without -H" "give -H too" \
    -k 5 -c "$T_DIR/policy.conf" -s "$T_DIR/x.sock"
opt_refused "-k 0" "from 1 to 3600" \
    -H -k 0 -c "$T_DIR/policy.conf" -s "$T_DIR/x.sock"

quota_guard
nginx_http_conf "$D" "$P" "$SOCK" <<'CONF'
        location /forbidden { deny all; }
CONF
for d in spoof once post free user; do
    mkdir -p "$D/htdocs/$d"
    echo hello >"$D/htdocs/$d/a.txt"
done
echo hello >"$D/htdocs/a.txt"
old_umask=$(umask)
umask 000
fcgi_start daemon -H -c "$T_DIR/policy.conf" -s "$SOCK" -z "$Z" -t 4
umask "$old_umask"
wait_sock "$SOCK" || not_ok "the daemon listens on $SOCK"
if ! nginx_start "$D"; then
    not_ok "nginx starts with the HTTP snippet"
    done_testing
    exit 1
fi
ok "nginx starts with the HTTP snippet"

# ---- an allowed response, and exactness ----
site_allowed_checks "$U/a.txt"

# ---- a refusal ----
refused_429 "$U/a.txt"
like "429 has RateLimit" '^RateLimit: "site";r=0;t=[0-9]+' "$hdrs"
like "429 has X-RateLimit-Remaining 0" '^X-RateLimit-Remaining: 0' "$hdrs"
like "429 has Content-Type application/json" \
    '^Content-Type: application/json' "$hdrs"
like "429 body is the snippet's JSON with retry_after" \
    "^\\{\"error\":\"too_many_requests\",\"limit\":50,\"remaining\":0,.*\"retry_after\":${ra}\\}\$" \
    "$(cat "$B")"

# ---- a runtime ban and the emergency allow-list ----
SET="$BUILD/tools/rl2_override_set"
"$SET" "$Z" "$T_DIR/ht.overrides" set ban 127.0.0.1
c=$(curl -s -D "$H" -o "$B" -w '%{http_code}' "$U/a.txt")
is "a banned client gets the policy's ban_status, 403" 403 "$c"
like "the ban's 403 has Retry-After" '^Retry-After: [0-9]+' \
    "$(tr -d '\r' <"$H")"
like "the ban's 403 body says banned" \
    '^\{"error":"banned","retry_after":[0-9]+\}$' "$(cat "$B")"
"$SET" "$Z" "$T_DIR/ht.overrides" remove ban 127.0.0.1
"$SET" "$Z" "$T_DIR/ht.overrides" set emergency '*' 0
c=$(curl -s -D "$H" -o "$B" -w '%{http_code}' "$U/a.txt")
is "the emergency allow-list answers 503" 503 "$c"
like "the 503 body says unavailable" \
    '^\{"error":"unavailable","retry_after":60\}$' "$(cat "$B")"
"$SET" "$Z" "$T_DIR/ht.overrides" remove emergency '*'
is "with both lifted, the limit's 429 again" 429 "$(code "$U/a.txt")"
is "a 403 of the site stays 403" 403 "$(code "$U/forbidden")"
is "a request with a body is decided on its headers (405 of the file)" 405 \
    "$(code -X POST --data-binary 'x=1' "$U/free/a.txt")"
is "... and a chunked one too" 405 \
    "$(code -X POST -H 'Transfer-Encoding: chunked' --data-binary 'x=1' \
        "$U/free/a.txt")"

# ---- a client's own X-RateLimit2-* headers ----
# nginx sends the snippet's value of each and drops the client's, once
# or repeated: the limiter sees nginx's address, path, method and id.
spoof_addr() {
    code "$U/spoof/a.txt" -H "X-RateLimit2-Addr: 10.0.0.$1" \
        -H "X-RateLimit2-Addr: 10.0.1.$1"
}
is "spoofed X-RateLimit2-Addr (twice): admitted 1 of 3" 200 "$(spoof_addr 1)"
is "... 2 of 3, another spoofed address" 200 \
    "$(code "$U/spoof/a.txt" -H "X-RateLimit2-Addr: 10.0.0.2")"
is "... 3 of 3" 200 "$(spoof_addr 3)"
is "... the 4th, from a 4th spoofed address, is refused: one key, nginx's" \
    429 "$(spoof_addr 4)"
H=$T_DIR/free.h
c=$(curl -s -D "$H" -o /dev/null -w '%{http_code}' "$U/free/a.txt" \
    -H "X-RateLimit2-URI: /spoof/a.txt" -H "X-RateLimit2-URI: /spoof/b")
is "spoofed X-RateLimit2-URI (twice) toward the spent rule: still 200" 200 \
    "$c"
if grep -qi '^RateLimit:' "$H"; then
    not_ok "... and no rule's headers: the path is nginx's (exempt)"
else
    ok "... and no rule's headers: the path is nginx's (exempt)"
fi
is "spoofed X-RateLimit2-Method: POST on a GET: not the POST rule" 200 \
    "$(code "$U/post/a.txt" -H "X-RateLimit2-Method: POST")"
is "... twice, again a GET" 200 \
    "$(code "$U/post/a.txt" -H "X-RateLimit2-Method: POST" \
        -H "X-RateLimit2-Method: POST")"
is "spoofed X-RateLimit2-Request-Id: the first admitted" 200 \
    "$(code "$U/once/a.txt" -H "X-RateLimit2-Request-Id: same")"
is "... the second, with the same id, counted and refused" 429 \
    "$(code "$U/once/a.txt" -H "X-RateLimit2-Request-Id: same" \
        -H "X-RateLimit2-Request-Id: same")"
is "spoofed X-RateLimit2-User changes nothing" 429 \
    "$(code "$U/once/a.txt" -H "X-RateLimit2-User: admin")"
# $remote_user is the client's Authorization header decoded: any byte
# but ':'.  Written raw into the X-RateLimit2-User line, a CR LF in it
# would end nginx's head early and start a second one on the kept
# connection, whose answer nginx would read as the next request's.
basic() {
    printf 'Authorization: Basic %s' "$(printf "$1" | base64 -w0)"
}
is "a Basic user holding CR LF CR LF and a request line: 403" 403 \
    "$(code "$U/free/a.txt" -H "$(basic 'u\r\n\r\nGET /x HTTP/1.1:pw')")"
is "... one holding a lone LF: 403" 403 \
    "$(code "$U/free/a.txt" -H "$(basic 'u\nX:pw')")"
is "... one holding NUL: 403" 403 \
    "$(code "$U/free/a.txt" -H "$(basic 'u\0v:pw')")"
is "... a plain Basic user goes through" 200 \
    "$(code "$U/free/a.txt" -H "$(basic 'alice:pw')")"
# Keyed by user: the key is nginx's $remote_user, never the client's
# own X-RateLimit2-User.
is "key user: alice's first request admitted" 200 \
    "$(code "$U/user/a.txt" -H "$(basic 'alice:pw')")"
is "... alice's second, claiming X-RateLimit2-User: bob, refused" 429 \
    "$(code "$U/user/a.txt" -H "$(basic 'alice:pw')" \
        -H "X-RateLimit2-User: bob")"
is "... bob's own first admitted (his key was never spent)" 200 \
    "$(code "$U/user/a.txt" -H "$(basic 'bob:pw')")"
# nginx takes a client's head up to large_client_header_buffers (4 x 8k
# by default) and passes every line on; FastCGI takes 64 KiB of params.
# A client that nginx and FastCGI serve is served over HTTP too.
big=$(head -c 7000 /dev/zero | tr '\0' a)
is "a client head of 21 KB (three 7000-byte lines) is decided: 200" 200 \
    "$(code "$U/free/a.txt" -H "Cookie: c=$big" -H "X-A: $big" \
        -H "X-B: $big")"
many=()
for i in $(seq 1 150); do many+=(-H "X-F$i: v"); done
is "... and one of 150 header lines: 200" 200 \
    "$(code "$U/free/a.txt" "${many[@]}")"
is "no request was refused as malformed by the daemon" 0 \
    "$(grep -c 'HTTP: answered' "$T_DIR/daemon.log")"

nginx_stop "$D"
fcgi_stop daemon
is "SIGTERM: the daemon exits 0" 0 "$?"

# ---- connection reuse ----
# 200 requests one after another through a fresh nginx and daemon:
# nginx keeps its upstream connections, so the daemon accepts a handful
# (one per nginx worker at most), which it counts and logs at exit.
D3=$T_DIR/nginx-reuse
P3=$(free_port)
SOCK3=$D3/rl2.sock
nginx_http_conf "$D3" "$P3" "$SOCK3" </dev/null
mkdir -p "$D3/htdocs/free"
echo hello >"$D3/htdocs/free/a.txt"
umask 000
fcgi_start reuse -H -c "$T_DIR/policy.conf" -s "$SOCK3" -z "$(zone_name ht3)" \
    -t 2
umask "$old_umask"
wait_sock "$SOCK3" || not_ok "the reuse daemon listens on $SOCK3"
if nginx_start "$D3"; then
    for _ in $(seq 1 200); do
        code "http://127.0.0.1:$P3/free/a.txt"
        echo
    done | sort | uniq -c | sed 's/^ */# statuses: /'
    kept=$(ss -x -H state established 2>/dev/null | grep -c " $SOCK3 ")
    if [ "$kept" -ge 1 ]; then
        ok "nginx keeps its connections to the daemon open ($kept)"
    else
        not_ok "nginx keeps its connections to the daemon open ($kept)"
    fi
    nginx_stop "$D3"
else
    not_ok "nginx starts for the reuse test"
fi
fcgi_stop reuse
line=$(sed -n 's/.*HTTP: \([0-9]*\) requests answered on \([0-9]*\) connections.*/\1 \2/p' \
    "$T_DIR/reuse.log")
read -r reqs conns <<<"$line"
is "the daemon answered the 200 requests" 200 "${reqs:-?}"
if [ -n "$conns" ] && [ "$conns" -ge 1 ] && [ "$conns" -le 4 ]; then
    ok "200 sequential requests on $conns connections (at most 4)"
else
    not_ok "200 sequential requests on ${conns:-?} connections (at most 4)"
fi

# ---- the socket spoken to directly ----
# raw SOCK -- run the python below against SOCK: it prints one line per
# check, "ok NAME" or "not ok NAME", read back as TAP lines.
Z2=$(zone_name ht2)
SOCK2=$T_DIR/raw.sock
fcgi_start raw -H -k 2 -c "$T_DIR/policy.conf" -s "$SOCK2" -z "$Z2" -t 1
wait_sock "$SOCK2" || not_ok "the -t 1 -k 2 daemon listens"
python3 - "$SOCK2" >"$T_DIR/raw.out" 2>&1 <<'PY'
import socket, sys, time

path = sys.argv[1]

def req(uri, rid, extra=b"", method=b"GET"):
    return (b"GET /.ratelimit2 HTTP/1.1\r\nHost: x\r\n"
            b"X-RateLimit2-Method: " + method + b"\r\n"
            b"X-RateLimit2-URI: " + uri + b"\r\n"
            b"X-RateLimit2-Addr: 192.0.2.7\r\n"
            b"X-RateLimit2-Request-Id: " + rid + b"\r\n" + extra + b"\r\n")

def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    return s

def answers(s, n):
    """n answers (heads: none has a body), or fewer when it closed."""
    buf, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            try:
                d = s.recv(65536)
            except socket.timeout:
                return out
            if not d:
                return out
            buf += d
        head, buf = buf.split(b"\r\n\r\n", 1)
        out.append(head.decode("latin-1"))
    return out

def closed(s, within):
    s.settimeout(within)
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return True
    except ConnectionResetError:
        return True  # closed with the rest of a request unread
    except socket.timeout:
        return False

def check(name, cond):
    print(("ok " if cond else "not ok ") + name, flush=True)

# Pipelined: nginx never sends a request before it has read the answer
# to the last, so bytes behind a head are not nginx's (a value it wrote
# raw that held CR LF, or another client): the first request is
# answered with Connection: close, the rest never, lest nginx read
# their answers as its next requests'.
s = conn()
s.sendall(req(b"/spoof/p", b"p1") + req(b"/spoof/p", b"p2")
          + req(b"/spoof/p", b"p3"))
a = answers(s, 3)
check("pipelined: one answer only", len(a) == 1)
check("pipelined: the first admitted (204), Connection: close",
      len(a) > 0 and a[0].startswith("HTTP/1.1 204")
      and "Connection: close" in a[0])
check("pipelined: ... and closed before the idle limit", closed(s, 1))
s.close()
# 3/hour: the pipelined two were not counted, so two more are admitted.
s = conn()
s.sendall(req(b"/spoof/p", b"p4"))
a = answers(s, 1)
s.sendall(req(b"/spoof/p", b"p5"))
a += answers(s, 1)
s.sendall(req(b"/spoof/p", b"p6"))
a += answers(s, 1)
check("pipelined: the two behind the first were not counted "
      "(204, 204, then 403 of 3/hour)",
      [x[:12] for x in a] == ["HTTP/1.1 204", "HTTP/1.1 204", "HTTP/1.1 403"])
# A head in pieces, across reads.
r = req(b"/free/y", b"q1")
s.sendall(r[:10]); time.sleep(0.1); s.sendall(r[10:40]); time.sleep(0.1)
s.sendall(r[40:])
a = answers(s, 1)
check("a head sent in three pieces is answered",
      len(a) == 1 and a[0].startswith("HTTP/1.1 204"))
# Identity headers missing or twice: answered, connection kept.
s.sendall(b"GET / HTTP/1.1\r\nX-RateLimit2-Method: GET\r\n\r\n")
a = answers(s, 1)
check("no X-RateLimit2-URI/-Addr/-Request-Id: 500",
      len(a) == 1 and a[0].startswith("HTTP/1.1 500"))
s.sendall(req(b"/free/z", b"q2", b"X-RateLimit2-Addr: 192.0.2.8\r\n"))
a = answers(s, 1)
check("X-RateLimit2-Addr twice: 400", len(a) == 1
      and a[0].startswith("HTTP/1.1 400"))
s.sendall(req(b"/free/z", b"q3"))
a = answers(s, 1)
check("... and the connection still serves", len(a) == 1
      and a[0].startswith("HTTP/1.1 204"))
s.sendall(req(b"/free/z", b"q4", b"Connection: close\r\n"))
a = answers(s, 1)
check("Connection: close is answered with Connection: close",
      len(a) == 1 and "Connection: close" in a[0])
check("... and closed", closed(s, 3))
s.close()

# Hostile heads: answered and closed.
for name, data, status in [
    ("a body (Content-Length: 5)", req(b"/free/b", b"b1",
     b"Content-Length: 5\r\n") + b"hello", "400"),
    ("Transfer-Encoding: chunked", req(b"/free/b", b"b2",
     b"Transfer-Encoding: chunked\r\n") + b"0\r\n\r\n", "400"),
    ("obs-fold", req(b"/free/b", b"b3", b"X-A: a\r\n b\r\n"), "400"),
    ("NUL in a value", req(b"/free/b", b"b4", b"X-A: a\0b\r\n"), "400"),
    ("a lone LF in a value", req(b"/free/b", b"b5", b"X-A: a\nb: c\r\n"),
     "400"),
    ("a space before the colon", req(b"/free/b", b"b6", b"X-A : a\r\n"),
     "400"),
    ("a bad request line", b"GET /\r\n\r\n", "400"),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\n\r\n", "400"),
    ("501 header fields", req(b"/free/b", b"b7",
     b"".join(b"X-F%d: v\r\n" % i for i in range(501))), "431"),
    ("a head past 64 KiB", req(b"/free/b", b"b8",
     b"X-Big: " + b"a" * 66000 + b"\r\n"), "431"),
]:
    s = conn()
    try:
        s.sendall(data)
    except BrokenPipeError:
        pass
    a = answers(s, 1)
    check(name + ": " + status, len(a) == 1
          and a[0].startswith("HTTP/1.1 " + status))
    check(name + ": closed", closed(s, 3))
    s.close()

# HTTP/1.0 without keep-alive: closed after the answer; with it, kept.
s = conn()
s.sendall(req(b"/free/c", b"c1").replace(b"HTTP/1.1", b"HTTP/1.0"))
a = answers(s, 1)
check("HTTP/1.0: answered and closed",
      len(a) == 1 and "Connection: close" in a[0] and closed(s, 3))
s.close()
s = conn()
s.sendall(req(b"/free/c", b"c2", b"Connection: keep-alive\r\n")
          .replace(b"HTTP/1.1", b"HTTP/1.0"))
a = answers(s, 1)
s.sendall(req(b"/free/c", b"c3", b"Connection: keep-alive\r\n")
          .replace(b"HTTP/1.1", b"HTTP/1.0"))
a += answers(s, 1)
check("HTTP/1.0 keep-alive: kept (two answers, keep-alive)",
      len(a) == 2 and "Connection: keep-alive" in a[0])
s.close()

# A client that sends request after request and never reads its
# answers: once its socket is full, the worker does not wait for room
# (nginx always reads an answer before it asks again), it closes the
# connection, and the only worker (-t 1) answers another at once.
greedy = conn()
greedy.setblocking(False)
sent, queued = 0, 0
while sent < 20000:
    try:
        greedy.send(req(b"/free/g", b"g%d" % sent))
    except (BlockingIOError, BrokenPipeError, ConnectionResetError):
        break  # the daemon stopped reading it, or closed it
    sent += 1
    # Its answer queued (peeked, never read), or none within 0.5 s: the
    # worker is waiting for room, or gave up on it.
    t = time.monotonic()
    while True:
        try:
            n = len(greedy.recv(1 << 20, socket.MSG_PEEK))
        except BlockingIOError:
            n = queued
        if n > queued or time.monotonic() - t > 0.5:
            break
        time.sleep(0.001)
    if n <= queued:
        break
    queued = n
other = conn()
t0 = time.monotonic()
other.sendall(req(b"/free/g", b"g-other"))
a = answers(other, 1)
check("a client that never reads (%d requests) does not hold the only "
      "worker (%.1f s)" % (sent, time.monotonic() - t0),
      sent < 20000 and len(a) == 1 and a[0].startswith("HTTP/1.1 204")
      and time.monotonic() - t0 < 1.0)
other.close()
greedy.close()

# Slowloris against the only worker (-t 1): a head that stops half way
# does not keep another connection's request waiting, and is closed
# past the idle limit (-k 2) although it keeps sending a byte a second.
slow = conn()
slow.sendall(b"GET / HTTP/1.1\r\nX-RateLimit2-Me")
t0 = time.monotonic()
other = conn()
other.sendall(req(b"/free/s", b"s1"))
a = answers(other, 1)
answered = time.monotonic()
check("a slow head does not hold the only worker",
      len(a) == 1 and a[0].startswith("HTTP/1.1 204")
      and time.monotonic() - t0 < 1.0)
gone = False
for _ in range(8):
    try:
        slow.sendall(b"x")
    except (BrokenPipeError, ConnectionResetError):
        gone = True
        break
    if closed(slow, 1):
        gone = True
        break
check("the slow head is closed past the idle limit (%.1f s)"
      % (time.monotonic() - t0), gone and time.monotonic() - t0 < 6)
slow.close()
# An idle connection after its answer: closed too, not before the limit.
check("an idle kept connection is closed past the idle limit (%.1f s)"
      % (time.monotonic() - answered),
      closed(other, 6) and 1.5 < time.monotonic() - answered < 6)
other.close()
PY
while IFS= read -r l; do
    case "$l" in
    "ok "*) ok "direct: ${l#ok }" ;;
    "not ok "*) not_ok "direct: ${l#not ok }" ;;
    *) echo "# $l" ;;
    esac
done <"$T_DIR/raw.out"
fcgi_stop raw
is "SIGTERM: the -t 1 daemon exits 0" 0 "$?"
is "the hostile requests were logged" 1 \
    "$(grep -c 'HTTP: answered 431: too many header fields' "$T_DIR/raw.log")"
is "a repeated identity header is logged once" 1 \
    "$(grep -c 'HTTP: answered 400: X-RateLimit2-Addr given twice' \
        "$T_DIR/raw.log")"
is "a missing one too" 1 \
    "$(grep -c 'HTTP: answered 500: no X-RateLimit2-URI header' \
        "$T_DIR/raw.log")"
done_testing
