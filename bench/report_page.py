"""report_page.py -- the sections of docs/PERFORMANCE.md, as lists of
Markdown lines, from the figures report_numbers.py computes."""
import re

from report_numbers import (EXACT_ALGOS, EXACT_TCP, EXACT_UNIX, FCGI_BEFORE,
                            FCGI_LINES, LEASE, REDIS_LINES, TARGET_CORE_NS,
                            TARGET_FCGI_CPU_US, TARGET_INSTR,
                            TARGET_LOCAL_RATIO, fmt_int, fmt_signed, met)


def table(header, rows):
    """A Markdown table; columns whose every cell is a number (or a
    "reference" or "—" placeholder) are right-aligned.  No cell may be
    empty."""
    rows = [[str(c) for c in r] for r in rows]
    for r in rows:
        assert all(c.strip() for c in r), "empty cell in %r" % (r,)

    def numeric(c):
        return re.match(r"^[-+]?[0-9][0-9,.]*(x|%| µs)?( \(.*\))?$", c) \
            or c in ("reference", "—")
    aligns = ["---:" if all(numeric(r[i]) for r in rows) else "---"
              for i in range(len(header))]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(aligns) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def header(m, timing, quick, load_end):
    total = sum(t["seconds"] for t in timing)
    lines = [
        "# Performance",
        "",
        "What a request costs with mod_ratelimit2 beside what a sysadmin "
        "would pick instead (mod_qos, mod_evasive, nginx `limit_req`), and "
        "how exact each is under concurrency.  Every number on this page, "
        "and the same numbers in [bench/results.json]"
        "(../bench/results.json), come from one run of",
        "",
        "    make bench",
        "",
        "on %s, commit %s, which took %d min %02d s." % (
            m["date_utc"].replace("T", " ").replace("Z", " UTC"),
            m["commit"], total // 60, total % 60),
        "",
        "Machine: %d CPUs (`nproc`), %s, %s MiB, Linux %s; load average "
        "%s at the start and %s at the end (other engineers build and test "
        "on this machine: see below for why the ratios still hold).  "
        "Software: %s, nginx "
        "%s, %s, Redis %s, mod_qos %s, mod_evasive %s, wrk %s, %s "
        "(Debian 12 packages)." % (
            m["nproc"], m["cpu"], fmt_int(m["memory_mb"]), m["kernel"],
            m["loadavg_start"], load_end, m["apache"],
            m["nginx"].split("/")[-1],
            m["lighttpd"], m["redis"].replace("v=", ""), m["mod_qos"],
            m["mod_evasive"], m["wrk"], m["valgrind"]),
    ]
    if quick:
        lines += ["", "**BENCH_QUICK=1: short runs for trying the benchmark "
                  "out; these figures are not the published ones.**"]
    return lines


def how_to_read(setup):
    return [
        "## How to read these numbers",
        "",
        "- **Instructions per request** (callgrind) do not depend on the "
        "machine's load: a rerun gives the same figure within a few hundred "
        "instructions.  They are the figures to compare across changes.",
        "- **Throughput** is given as a ratio to the bare server of the "
        "same kind (Apache, nginx, lighttpd), never as a lone absolute "
        "figure: the absolute requests per second stand beside the ratio "
        "only to show the scale, and depend on this machine and what else "
        "ran on it.  The runs are interleaved: each of %d rounds%s runs "
        "every configuration once, in the same order, for %d s each, and a "
        "last round runs the bare servers again; each run is compared with "
        "the mean of its bare server's runs just before and just after it "
        "(this round's and the next); the table gives the median of these "
        "ratios over rounds, and their range.  "
        "Interleaving is what makes the ratios meaningful on a shared, "
        "noisy machine: a slow minute slows both sides of a ratio." % (
            setup["rounds"],
            " (10 until the lease, unix-socket and many-clients lines were "
            "added; 8 keep the whole run near 14 minutes)"
            if setup["rounds"] == 8 else "", setup["duration_s"]),
        "- **Capacity by CPU time** is the steadier view of the same runs: "
        "the CPU time (user and system) the server's processes used per "
        "request (with its own Redis for each Redis line, the FastCGI "
        "daemon for the ratelimit2-fcgi lines), from `/proc/PID/stat` "
        "around each run; "
        "the bare "
        "server's CPU time per request divided by the configuration's is "
        "the throughput it would reach, relative to bare, on a CPU of its "
        "own.  It hardly depends on how much CPU other work left the "
        "server, which wall-clock throughput does.",
        "- **Added latency** is the configuration's p50 (p99) minus the "
        "mean of the bare server's runs around it, median over rounds.  "
        "wrk keeps "
        "%d connections busy (a closed loop), so added latency mirrors "
        "lost throughput; a negative figure is noise." % setup["connections"],
        "- **Exactness** counts how many of 1,000 requests one client gets "
        "through a quota of 100; the error is (admitted - 100) / 100.",
        "- **Core cost** is the decision alone, without a web server: what "
        "the limiter's code costs as a policy and a key set grow.  It is "
        "CPU time, but on a shared machine other work still evicts the "
        "caches: read the growth along a table (10 -> 10,000 rules, "
        "1k -> 1M keys) more than one figure.",
    ]


def target_status(t):
    if t["met"] is None:
        return t["note"]
    return met(t["met"]) + t.get("note", "")


def sect_targets(tg):
    rows = [(t["target"], t["result"], target_status(t)) for t in tg]
    return ["## Targets", "",
            table(["target", "result", "status"], rows)]


def instr_target(r):
    c = r["config"]
    if c == "bare":
        return "reference"
    if c == "local":
        return "<= +%s: %s" % (fmt_int(TARGET_INSTR),
                               met(r["added_vs_bare"] <= TARGET_INSTR))
    if c == "redis":
        return "none here: Redis mode is held to throughput and p99"
    return "none: a peer, for comparison"


def wrk_target(r, tg):
    c = r["config"]
    if c == r["reference"]:
        return "reference"
    if c == "apache_local":
        return ">= %.2fx: %s" % (TARGET_LOCAL_RATIO,
                                 met(r["ratio_median"] >= TARGET_LOCAL_RATIO))
    who = {"apache_redis_lease": LEASE, "apache_redis": EXACT_TCP,
           "apache_redis_unix": EXACT_UNIX}.get(c)
    if who:
        # the targets' own words, without the line's name (the row says
        # it) and the notes (the targets table has them)
        t = [x for x in tg if x["target"].startswith(who + ":")]
        return "; ".join("%s: %s" % (
            x["target"].split(": ", 1)[1].replace(" bare Apache", ""),
            "not measurable" if x["met"] is None else met(x["met"]))
            for x in t)
    if c.startswith("apache_many_"):
        return "none: how the cost grows with the clients"
    if c in ("lighttpd_rl2_fcgi", "nginx_rl2_fcgi", "nginx_rl2_http"):
        return "CPU <= %.1f µs: %s" % (
            TARGET_FCGI_CPU_US,
            met(r["cpu_us_per_request_median"] <= TARGET_FCGI_CPU_US))
    if c.startswith("nginx_rl2_fcgi"):
        return "none: the same daemon behind nginx"
    return "none: a peer, for comparison"


def redis_cells(r):
    """The Redis columns of a row: calls of the store's Lua per request,
    and the Redis process's CPU µs per request (in the calls)."""
    rc = r.get("redis")
    if rc is None:
        return ["—", "—"]
    return ["%.3f" % rc["calls_per_request"],
            "%.1f (%.1f in calls)" % (rc["cpu_us_per_request_median"],
                                      rc["in_calls_us_per_request_median"])]


def redis_sentence(r):
    """What a Redis line's own Redis answered, in words."""
    rc = r["redis"]
    s = "- %s: %s calls for %s requests served" % (
        REDIS_LINES[r["config"]], fmt_int(rc["calls"]),
        fmt_int(rc["requests"]))
    if rc["counted_locally"] is None and rc["calls"] == 0:
        return s + " (no call in the measured rounds)."
    if rc["counted_locally"] is None:
        return s + " (%.1f requests per call)." % (
            rc["requests"] / float(rc["calls"]))
    if rc["counted_locally"] == 0:
        return s + ": calls cover every request (no sign of the local " \
            "failover)."
    return s + ": **at least %s requests were counted by the local " \
        "failover**, not by Redis (a timeout or a lost connection)." % \
        fmt_int(rc["counted_locally"])


def sect_instr(instr):
    mpm = instr[0]["mpm"]
    rows = []
    for r in instr:
        added = "reference" if r["config"] == "bare" else \
            fmt_signed(r["added_vs_bare"])
        rows.append((r["description"], fmt_int(r["instructions_per_request"]),
                     added, instr_target(r)))
    return [
        "## Instructions per request (callgrind)", "",
        "`apache2 -X` (%s) under `valgrind "
        "--tool=callgrind` serves 5 and then 1,005 requests for the static "
        "file with `ab -c1`; the figure is (total₁₀₀₅ − total₅) / 1000, so "
        "start-up and configuration cancel out (both runs create the "
        "shared-memory zone afresh).  Every configuration loads the same "
        "modules, logs errors at `warn` and writes no access log.  "
        "Reproduce one line: `MPM=%s bench/callgrind.sh bare|local|redis|"
        "qos|evasive`.  `make check` gates the local store's figure under "
        "3,196 (tests/integration/t_instructions.sh, which says why not "
        "3,000, 3,050 or 3,100), and checks that 10,000 bans in the runtime "
        "override table cost a request what one ban costs "
        "(`bench/callgrind.sh bans`); the adaptive factors' figures are "
        "`bench/callgrind.sh factors` (both under History)." % (
            "prefork MPM: one process, no worker threads, so a count repeats "
            "to within a few instructions" if mpm == "prefork" else
            "%s MPM, one process" % mpm, mpm), "",
        table(["configuration", "instructions / request", "added vs bare",
               "target"], rows),
    ]


def wrk_row(r, tg):
    ref = r["config"] == r["reference"]
    before = r["config"] == "lighttpd_rl2_fcgi"
    if ref:
        ratio = "reference (its runs vary %.3f–%.3f against their " \
            "neighbours)" % (r["ratio_min"], r["ratio_max"])
        cap = "reference (runs vary %.3f–%.3f)" % (
            r["cpu_capacity_min"], r["cpu_capacity_max"])
    else:
        ratio = "%.3fx (%.3f–%.3f)" % (r["ratio_median"], r["ratio_min"],
                                       r["ratio_max"])
        cap = "%.3fx (%.3f–%.3f)" % (r["cpu_capacity_median"],
                                     r["cpu_capacity_min"],
                                     r["cpu_capacity_max"])
    cpu = "%.1f" % r["cpu_us_per_request_median"]
    if before:
        ratio += "; before: %.3fx" % FCGI_BEFORE["ratio"]
        cap += "; before: %.3fx" % FCGI_BEFORE["cpu_capacity"]
        cpu += " (before: %.1f)" % FCGI_BEFORE["cpu_us_per_request"]
    d50 = "reference" if ref else fmt_signed(r["added_p50_us_median"])
    d99 = "reference" if ref else fmt_signed(r["added_p99_us_median"])
    limiter = r["limiter"]
    if r["non2xx"]:
        limiter += " — tripped: %s of %s answers were refusals (its " \
            "highest limit, 32,767 a second, is within reach of one " \
            "client of this server); the figures include them" % (
                fmt_int(r["non2xx"]),
                fmt_int(sum(x["requests"] for x in r["rounds"])))
    return [r["server"], limiter, ratio, fmt_int(r["rps_median"]), cap,
            cpu] + redis_cells(r) + [d50, d99, wrk_target(r, tg)]


def many_lease_note(thr):
    """What leases did for many clients, from this run's calls."""
    by = {r["config"]: r.get("redis") for r in thr}
    note = "In lease mode each key is seen so rarely that a slice is not " \
        "expected to grow past one unit: leases should save few calls there"
    lease, exact = by.get("apache_many_lease"), by.get("apache_many_redis")
    if lease is None or exact is None:
        return note + "."
    return note + "; lease mode made %.3f calls per request here, exact " \
        "mode %.3f." % (lease["calls_per_request"],
                        exact["calls_per_request"])


def sect_wrk(thr, setup, lines, tg):
    rows = [wrk_row(r, tg) for r in thr]
    if setup["pinned"]:
        pin = ("The servers (with Redis and the FastCGI daemon) run on CPU "
               "%s and wrk alone on CPU %s (`taskset`), so the load "
               "generator never takes CPU from the server it measures; "
               "Redis shares the server's CPU, as it would on a web server "
               "that hosts it, so its cost is counted.  nginx runs one "
               "worker per server CPU." % (
                   re.sub(r"^(\d+)-\1$", r"\1", str(setup["server_cpus"])),
                   setup["load_cpu"]))
    else:
        pin = ("Nothing is pinned (one CPU, or BENCH_PIN=0): servers, Redis "
               "and wrk share the machine's CPUs.")
    out = [
        "## Throughput and latency (wrk)", "",
        "`wrk -t1 -c%d -d%ds --latency` against the same static file "
        "(`/index.html`, 3 bytes) on every server, connections kept alive "
        "with no request cap, no access log; %d rounds of every "
        "configuration in a fixed order after a 2 s warm-up of each.  "
        "Every limiter has one per-client limit set high enough never to "
        "trip (a run that sees a non-2xx answer fails the benchmark), "
        "except mod_qos, whose limits stop at 32,767 a second: its "
        "refusals, if any, are shown in its row.  %s"
        % (setup["connections"], setup["duration_s"], setup["rounds"], pin),
        "",
        "The Redis lines (mod_ratelimit2 with `RateLimit2Redis`) each count "
        "in a redis-server of their own, so that its calls, CPU time and "
        "keys are the line's: *exact mode* (every request one call of the "
        "store's Lua, `FCALL`; the threads of an Apache process share one "
        "connection and their concurrent calls are written together, "
        "`pipeline=on`, the default) over loopback TCP, and over a unix "
        "socket "
        "(`RateLimit2Redis /path/redis.sock`, the documented fast path); "
        "*lease mode* (`RateLimit2Redis 127.0.0.1:PORT %s`: the server "
        "takes slices of a key's allowance from Redis and admits from them "
        "locally), from one hot client, wrk on 127.0.0.1."
        % lines["lease"],
        "",
        "The *many-clients* lines put Apache behind a trusted proxy on "
        "loopback (mod_remoteip: `RemoteIPHeader X-Forwarded-For`, "
        "`RemoteIPInternalProxy 127.0.0.1`), and wrk (`bench/"
        "many_clients.lua`) sends each request in the name of one of %s "
        "clients (198.18.0.1, 198.18.0.2, ...: the benchmark range) in "
        "`X-Forwarded-For`, taking them in turn: each client is seen once "
        "every %s requests and never nears its limit.  They are compared "
        "with a bare Apache set up the same way (mod_remoteip, the same "
        "script), so the ratio is the limiter's alone.  Before the rounds "
        "the benchmark checks that two clients named by the proxy reach "
        "Redis under two keys.  %s" % (
            fmt_int(lines["clients"]), fmt_int(lines["clients"]),
            many_lease_note(thr)),
        "",
        "**Redis calls / request** is the calls of the store's Lua "
        "(`FCALL`, `EVALSHA`, their `_RO` forms and `EVAL`) that the line's "
        "Redis answered during the measured rounds (the `INFO "
        "commandstats` delta around each run, which counts the commands a "
        "script runs under their own names: those are part of a call), "
        "over the requests served.  Not in it: the runtime override "
        "table's version check, one `MGET` a second per server.  "
        "**Redis CPU µs / request** is the CPU time of the Redis "
        "process's threads (`/proc/PID/task/*/schedstat`, in ns: all of "
        "its work, reading, parsing, running, answering), median over "
        "rounds; in brackets "
        "the part spent running the calls (commandstats `usec`).  Redis' "
        "CPU time is also inside the server CPU column.",
        "",
        table(["server", "limiter", "throughput vs bare (median, range)",
               "req/s (median)", "capacity vs bare by CPU time (median, "
               "range)", "server CPU µs / request (median)",
               "Redis calls / request", "Redis CPU µs / request (median)",
               "added p50 (µs)", "added p99 (µs)", "target"], rows),
        "",
        "\"before\" (the ratelimit2-fcgi line) is that line's figure in "
        "an earlier run, not this one: the published run of commit %s on "
        "%s (%.1f µs of server CPU time per request, %.3fx bare lighttpd), "
        "from which the line's target (half that CPU time) is set."
        % (FCGI_BEFORE["commit"], FCGI_BEFORE["date"],
           FCGI_BEFORE["cpu_us_per_request"], FCGI_BEFORE["ratio"]),
        "",
        "What each line's Redis answered in the measured rounds (wrk "
        "counts the requests answered; the up to %d in flight when a run "
        "stops were counted by Redis too, hence a few more calls than "
        "requests in exact mode):" % setup["connections"],
        "",
    ]
    out += [redis_sentence(r) for r in thr if "redis" in r]
    out += fcgi_part(thr)
    if lines.get("skipped"):
        out += ["", "**Left out of this BENCH_QUICK run** (the server did "
                "not start; a full run fails instead): %s." % ", ".join(
                    "`%s`" % c for c in lines["skipped"])]
    return out


def fcgi_part(thr):
    """What the ratelimit2-fcgi lines' server CPU time is made of: the
    daemon's own, the web server's, and what the FastCGI round trip adds
    to the bare server's."""
    by = {r["config"]: r for r in thr}
    rows, added = [], {}
    for c in FCGI_LINES:
        r = by.get(c)
        if r is None or "fcgi" not in r:
            continue
        bare = by[r["reference"]]["cpu_us_per_request_median"]
        f = r["fcgi"]
        added[c] = (f["server_part_cpu_us_per_request_median"] - bare,
                    f["daemon_cpu_us_per_request_median"])
        rows.append([r["server"], r["limiter"],
                     "%.1f" % r["cpu_us_per_request_median"],
                     "%.1f" % f["daemon_cpu_us_per_request_median"],
                     "%.1f" % f["server_part_cpu_us_per_request_median"],
                     "%.1f" % bare,
                     "%+.1f" % (f["server_part_cpu_us_per_request_median"]
                                - bare)])
    if not rows:
        return []
    lt = ""
    if "lighttpd_rl2_fcgi" in added:
        lt = " (here %.1f µs of lighttpd's CPU time a request beyond bare " \
            "lighttpd's, against %.1f µs of the daemon's)" % \
            added["lighttpd_rl2_fcgi"]
    return [
        "", "### What a ratelimit2-fcgi line's CPU time is made of", "",
        "**daemon** is the ratelimit2-fcgi process's own CPU time "
        "(utime + stime of all its threads, `/proc/PID/stat` around each "
        "run) over the requests served, median over rounds: what the "
        "authorizer itself costs, its decision, its reads and writes and "
        "its side of each FastCGI connection.  **server** is the rest of "
        "the line's server CPU time, the web server's own; the last column "
        "is what the FastCGI round trip adds to the web server beside the "
        "bare server's CPU time per request.",
        "",
        table(["server", "limiter", "server CPU µs / request (median)",
               "of which the daemon", "of which the web server",
               "bare server", "web server's added part"], rows),
        "",
        "Neither server keeps its FastCGI connection between requests.  "
        "lighttpd 1.4 never asks for it (its `mod_fastcgi` sends every "
        "BEGIN_REQUEST with flags 0, no `FCGI_KEEP_CONN`): each authorized "
        "request costs lighttpd a socket, a `connect`, its event "
        "registrations, reading the answer and a `close`, which dominate "
        "the line%s, and the daemon an `accept` and a `close`.  nginx "
        "can keep FastCGI "
        "connections for ordinary requests (`fastcgi_keep_conn on` and an "
        "upstream `keepalive`), but it marks a connection reusable only "
        "once it has read the response's body, and an `auth_request` "
        "subrequest asks for the headers alone: with those settings nginx "
        "still closes the connection after every request (`strace -c` "
        "on the daemon counted one `accept` per request with them), so "
        "the nginx FastCGI line uses a unix socket and a connection per "
        "request, as `conf/fcgi/nginx-auth-request.conf` advises.  Over "
        "HTTP/1.1 nginx does keep them: its proxy module marks an upstream "
        "connection reusable once the response has no body, and the "
        "daemon's `-H` answers are bodiless (204, or `Content-Length: 0`), "
        "so the nginx HTTP line (`conf/fcgi/nginx-auth-request-http.conf`, "
        "an upstream `keepalive 32`) costs neither side a connection per "
        "request%s." % (lt, http_part(added)),
    ]


def http_part(added):
    """The HTTP line's parts beside the FastCGI line's, when both ran."""
    if "nginx_rl2_http" not in added or "nginx_rl2_fcgi" not in added:
        return ""
    return " (here nginx's added part %.1f µs against %.1f µs over " \
        "FastCGI, the daemon's %.1f µs against %.1f µs)" % (
            added["nginx_rl2_http"][0], added["nginx_rl2_fcgi"][0],
            added["nginx_rl2_http"][1], added["nginx_rl2_fcgi"][1])


def sect_exact(exact):
    keyed = {}
    for r in exact:
        k = (r["server"], r["mpm"], r["limiter"])
        keyed.setdefault(k, {})[r["connections"]] = r
    rows = []
    for (server, mpm, lim), by_c in keyed.items():
        name = lim if lim.startswith(("mod_", "limit_req")) else \
            "mod_ratelimit2 `%s`" % lim
        if server == "nginx":
            name = "nginx `limit_req` (burst 99)"
        cells = [name, "%s %s" % (server, mpm)]
        for c in (16, 64):
            r = by_c[c]
            cells += [fmt_int(r["admitted"]), "%+.1f%%" % r["error_pct"]]
        if lim in EXACT_ALGOS:
            cells.append("exactly 100: %s" % met(all(
                x["admitted"] == x["expected"] for x in by_c.values())))
        else:
            cells.append("none: a peer, for comparison")
        rows.append(cells)
    return [
        "## Exactness: a quota of 100 per client", "",
        "1,000 requests from one client with `ab -n 1000` at 16 and at 64 "
        "connections (no keep-alive), after the server has run 3 s (the MPM "
        "has grown its pool).  mod_ratelimit2: `RateLimit2Limit NAME 100/1h "
        "algorithm=ALGO` (`100/day` for `quota`), one location per "
        "algorithm and concurrency so every count starts at zero.  Each "
        "peer is set so that 100 sequential requests pass and the 101st "
        "does not: mod_qos `QS_ClientEventLimitCount 101 3600` (it refuses "
        "the request that reaches the limit: 100 admits 99); mod_evasive "
        "`DOSPageCount 99`, `DOSSiteCount 99`, intervals of 3600 s (it "
        "blocks once a count passes the threshold; its tables are per "
        "child process); nginx `limit_req` at `rate=1r/m burst=99 nodelay` "
        "with two workers sharing the zone (nginx has no MPM).  Why these "
        "settings: see the peers' settings below.", "",
        table(["limiter", "server", "admitted at 16", "error at 16",
               "admitted at 64", "error at 64", "target"], rows),
    ]


def sect_core(rules, keys, clock, quick):
    rrows = []
    for r in rules:
        if r["rules"] == 1000:
            tgt = "< %d ns: first rule %s, last rule %s" % (
                TARGET_CORE_NS, met(r["first_ns"] < TARGET_CORE_NS),
                met(r["last_ns"] < TARGET_CORE_NS))
        else:
            tgt = "set at 1,000 rules only"
        rrows.append((fmt_int(r["rules"]), fmt_int(r["first_ns"]),
                      fmt_int(r["last_ns"]), fmt_int(r["decisions"]), tgt))
    krows = []
    for k in keys:
        krows.append((fmt_int(k["keys"]), fmt_int(k["entries"]),
                      fmt_int(k["ns"]), fmt_int(k["zone_bytes"]),
                      fmt_int(k["zone_resident_kb"]), fmt_int(k["live"]),
                      fmt_int(k["evictions"])))
    return [
        "## Cost growth in the core", "",
        "`bench/rl2_core_bench.c`, linked with `build/libratelimit2.a`, "
        "calls what the front ends call for each request (`rl2_clock_now`, "
        "`rl2_verdict_init`, `rl2_decide` with every phase, as "
        "ratelimit2-fcgi does) against a local zone: the whole decision "
        "without a web server or headers.  Reading the clock is the front "
        "end's part: `rl2_clock_now` (two `clock_gettime` calls) cost %s ns "
        "here, timed apart and taken out of every figure.  Times are the "
        "CPU time of the benchmark's thread (`CLOCK_THREAD_CPUTIME_ID`), "
        "so time spent waiting while other work runs does not count; each "
        "figure is the median of five timed runs%s." % (
            fmt_int(clock), " (BENCH_QUICK: a tenth of the decisions)"
            if quick else ""), "",
        "### As rules grow", "",
        "First-match rules, rule *i* matching `/svc<i>/*` with one "
        "per-address token bucket; one client.  The core indexes a policy "
        "of 16 rules or more by the first path segment, so a request tries "
        "only the rules its path can match: the last rule costs what the "
        "first does (a plain scan would try all of them).", "",
        table(["rules", "ns / decision, first rule matches",
               "ns / decision, last rule matches", "decisions per run",
               "target"], rrows),
        "",
        "### As live keys grow", "",
        "One per-address limit; K client addresses are made live first, "
        "then requests come from addresses drawn at random among them "
        "(the time to draw and write an address is measured apart and "
        "taken out).  The zone's memory is fixed when it is created and "
        "every page is touched then: its resident size does not move with "
        "the number of keys.  The last line sends a million addresses "
        "through a zone of the default size, which evicts the least recent "
        "of those seen once.", "",
        table(["live keys", "zone entries", "ns / decision", "zone bytes",
               "zone resident (KiB)", "live entries after", "evictions"],
              krows),
    ]


def sect_redis(mem):
    rows = []
    for r in mem:
        a = "`%s`" % r["algorithm"]
        if r["requests"] > 1:
            a += ", %d entries in its window" % r["requests"]
        if "in_flight" in r:
            a += ", request in flight" if r["in_flight"] else \
                ", request ended"
        if r["keys"] == 0:
            rows.append((a, "0", "none: the slot was released and its key "
                         "deleted"))
        else:
            rows.append((a, fmt_int(r["keys"]),
                         fmt_int(r["bytes"] / r["keys"])))
    return [
        "## Redis memory per key", "",
        "Apache counting in Redis, one location per algorithm: Redis "
        "emptied, one request (100 for the second `sliding_log` line), then "
        "`MEMORY USAGE key SAMPLES 0` of every key it holds; for "
        "`concurrency`, while a CGI holding the slot runs and after it "
        "ended.  Each key has a TTL no longer than its state needs.", "",
        table(["algorithm", "keys per client", "bytes per key"], rows),
    ]


def sect_peers(fcgi, lease, fcgi_nginx):
    return [
        "## The peers' settings", "",
        "Every configuration is written by `bench/lib.sh`; the limit is per "
        "client address throughout.", "",
        "- **mod_qos**: `QS_ClientEventLimitCount N SECONDS QS_Limit`, with "
        "`SetEnvIf Request_URI \"^/\" QS_Limit` marking every request.  It "
        "counts each client address's requests over a period and refuses "
        "the rest with a status (`QS_ErrorResponseCode 429`): the closest "
        "mod_qos has to a per-client rate limit.  `QS_LocRequestPerSecLimit` "
        "was not used: it limits all clients of a location together and "
        "slows requests down instead of refusing them.  Throughput and "
        "instructions: 32,767 per second, the most it can say (its limits "
        "are 16-bit: 10^9 wraps negative; its periods whole seconds), "
        "which one client of a fast server can exceed.  Exactness: 101 per "
        "hour, since it refuses the request that reaches the limit "
        "(`QS_ClientEventLimitCount 100` admits 99).  Debian's mod_qos "
        "needs `LoadFile libpcre.so.3` with the current apache2-bin.",
        "- **mod_evasive**: `DOSPageCount` and `DOSSiteCount`, both 10^9 "
        "per second for throughput and instructions; both 99 per 3,600 s "
        "for exactness (it blocks once a count passes the threshold: 99 "
        "admits 100 in one process).  Its tables live in each child "
        "process, so a client is counted separately by every child that "
        "serves it.",
        "- **nginx `limit_req`**: `limit_req_zone $binary_remote_addr` "
        "with `nodelay`, `limit_req_status 429`; throughput at 10^6 "
        "requests per second with burst 1,000; exactness at 1 request a "
        "minute with burst 99 (the first request and 99 of burst pass at "
        "once; the next is due a minute later, after the run).",
        "- **ratelimit2-fcgi behind lighttpd**: lighttpd's authorizer on "
        "every URL, as in `conf/fcgi/lighttpd-ratelimit2.conf` but spawned "
        "by lighttpd on a unix socket; one per-address token bucket that "
        "never trips, local zone.  Every request costs lighttpd a FastCGI "
        "round trip to the daemon before the file is served.  Its lines "
        "of lighttpd.conf in this run (`lighttpd_fcgi_conf` in "
        "`bench/lib.sh`, the one place to change them): `%s`." % fcgi,
        "- **ratelimit2-fcgi behind nginx**: the shipped "
        "`conf/fcgi/nginx-auth-request.conf` included in the server block, "
        "the daemon on a unix socket (`-s`), the same policy as lighttpd's; "
        "one nginx worker per server CPU; over HTTP/1.1, the shipped "
        "`conf/fcgi/nginx-auth-request-http.conf` and its upstream block, "
        "the daemon run with `-H`.  The lines that differ from the "
        "snippets (`nginx_fcgi_conf` and `nginx_fcgi_http_conf` in "
        "`bench/lib.sh`): %s." % fcgi_nginx,
        "- **mod_ratelimit2**: `RateLimit2Limit perip 1000000000/1h key=ip "
        "algorithm=token_bucket` server-wide, a zone of 100,000 entries, "
        "the default headers on (`RateLimit` and `RateLimit-Policy`; the "
        "legacy `X-RateLimit-*` are opt-in); with `RateLimit2Redis "
        "127.0.0.1:PORT` (`/path/redis.sock` over the unix socket) for "
        "the Redis lines, `RateLimit2Redis 127.0.0.1:PORT %s` for lease "
        "mode; behind the proxy the same lines and mod_remoteip." % lease,
    ]


def sect_repro():
    return [
        "## Reproducing a part", "",
        "- `make bench` runs everything (about 14 minutes here) and rewrites "
        "this page and `bench/results.json`; `BENCH_QUICK=1 make bench` "
        "runs 3 short rounds and fewer decisions and writes "
        "`build/bench/PERFORMANCE.md` instead, for trying it out.  A line "
        "whose server does not start is left out of a BENCH_QUICK run "
        "(said on its page); a full run fails instead.",
        "- `BENCH_ONLY=\"callgrind exact\" make bench` runs some sections "
        "(`callgrind exact redis_mem core throughput`) and leaves their raw "
        "records in `build/bench/raw.jsonl` without a report.",
        "- `bench/callgrind.sh MODE` prints one instruction count; "
        "`BENCH_ROUNDS`, `BENCH_DURATION`, `BENCH_CONNS` and `BENCH_PIN=0` "
        "change the wrk runs, `BENCH_CLIENTS` the many-clients lines' "
        "clients and `BENCH_LEASE` the lease lines' Redis options.",
    ]
