"""report_numbers.py -- the figures of one `make bench` run, computed from
its raw records (bench/run.sh writes them, one JSON object a line): medians,
ratios to the bare server, errors, and the targets they are held to.
Used by report.py and report_page.py."""
import json
import statistics

TARGET_INSTR = 1500
TARGET_LOCAL_RATIO = 0.99
TARGET_LEASE_RATIO = 0.90
TARGET_LEASE_P99_US = 500
TARGET_EXACT_RATIO = 0.60
TARGET_REDIS_P99_US = 1000
TARGET_CORE_NS = 100
# The ratelimit2-fcgi line of the published run of commit f80719f (10
# rounds; docs/PERFORMANCE.md and bench/results.json as that run wrote
# them, to the precision the page gave): shown beside this run's figures
# as "before", and the line's target is half its CPU time per request.
FCGI_BEFORE = {"commit": "f80719f", "date": "2026-11-23",
               "cpu_us_per_request": 51.0, "ratio": 0.158,
               "cpu_capacity": 0.158}
TARGET_FCGI_CPU_US = FCGI_BEFORE["cpu_us_per_request"] / 2
# The Redis lines, as the sentences under the throughput table name them.
REDIS_LINES = {
    "apache_redis": "exact mode, TCP",
    "apache_redis_unix": "exact mode, unix socket",
    "apache_redis_lease": "lease mode, one client",
    "apache_many_redis": "many clients, exact mode",
    "apache_many_lease": "many clients, lease mode",
}
# The Redis lines whose every request is one call of the store's Lua;
# a shortfall of calls is requests the local failover counted.
REDIS_EXACT = ("apache_redis", "apache_redis_unix", "apache_many_redis")
EXACT_ALGOS = ("fixed_window", "sliding_log", "sliding_window",
               "token_bucket", "leaky_bucket", "quota")

CALLGRIND = [
    ("bare", "bare Apache"),
    ("local", "mod_ratelimit2, local zone, one per-address token bucket "
              "that never trips, headers on (RateLimit and "
              "RateLimit-Policy, the default)"),
    ("redis", "mod_ratelimit2, the same limit counted in Redis on "
              "loopback (Apache's instructions only, not Redis')"),
    ("qos", "mod_qos: `QS_ClientEventLimitCount` per client address "
            "(32,767/s, its highest), event variable set by `SetEnvIf`"),
    ("evasive", "mod_evasive: `DOSPageCount` and `DOSSiteCount` "
                "10^9 per second, never reached"),
]

WRK = {
    "apache_bare": ("Apache (event MPM)", "none (reference)"),
    "apache_local": ("Apache (event MPM)",
                     "mod_ratelimit2, local zone, headers on"),
    "apache_redis": ("Apache (event MPM)",
                     "mod_ratelimit2, Redis on loopback TCP, exact mode"),
    "apache_redis_unix": ("Apache (event MPM)",
                          "mod_ratelimit2, Redis on a unix socket, exact "
                          "mode"),
    "apache_redis_lease": ("Apache (event MPM)",
                           "mod_ratelimit2, Redis on loopback TCP, lease "
                           "mode, one client"),
    "apache_qos": ("Apache (event MPM)",
                   "mod_qos `QS_ClientEventLimitCount`"),
    "apache_evasive": ("Apache (event MPM)", "mod_evasive"),
    "apache_many_bare": ("Apache (event MPM) behind a proxy, many clients",
                         "none (reference: mod_remoteip only)"),
    "apache_many_redis": ("Apache (event MPM) behind a proxy, many clients",
                          "mod_ratelimit2, Redis on loopback TCP, exact "
                          "mode"),
    "apache_many_lease": ("Apache (event MPM) behind a proxy, many clients",
                          "mod_ratelimit2, Redis on loopback TCP, lease "
                          "mode"),
    "nginx_bare": ("nginx", "none (reference)"),
    "nginx_limit_req": ("nginx", "`limit_req` (per address)"),
    "lighttpd_bare": ("lighttpd", "none (reference)"),
    "lighttpd_rl2_fcgi": ("lighttpd",
                          "ratelimit2-fcgi as FastCGI authorizer, local "
                          "zone"),
    "nginx_rl2_fcgi": ("nginx",
                       "ratelimit2-fcgi through `auth_request`, unix "
                       "socket, local zone"),
    "nginx_rl2_http": ("nginx",
                       "ratelimit2-fcgi -H through `auth_request`, HTTP/1.1 "
                       "on kept connections (upstream `keepalive 32`), unix "
                       "socket, local zone"),
    "nginx_rl2_fcgi_keep": ("nginx",
                            "ratelimit2-fcgi through `auth_request`, unix "
                            "socket, `fastcgi_keep_conn` + upstream "
                            "`keepalive 32`, local zone"),
}
# The lines with a ratelimit2-fcgi daemon, whose own CPU time is shown
# apart from the server's.
FCGI_LINES = ("lighttpd_rl2_fcgi", "nginx_rl2_fcgi", "nginx_rl2_http",
              "nginx_rl2_fcgi_keep")
# The lines the ratelimit2-fcgi target is held to, as its row names them.
FCGI_TARGET_LINES = (("lighttpd_rl2_fcgi", "lighttpd (FastCGI authorizer)"),
                     ("nginx_rl2_fcgi", "nginx (FastCGI auth_request)"),
                     ("nginx_rl2_http", "nginx (HTTP auth_request, -H)"))


def load(path):
    recs = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                r = json.loads(line)
                recs.setdefault(r.pop("section"), []).append(r)
    return recs

def fmt_int(n):
    return "{:,}".format(int(round(n)))


def fmt_signed(n):
    return "{:+,}".format(int(round(n)))


def met(ok):
    return "met" if ok else "**not met**"

def instructions(recs):
    by = {r["config"]: r for r in recs["callgrind"]}
    bare = by["bare"]["instructions"]
    rows = []
    for key, what in CALLGRIND:
        n = by[key]["instructions"]
        rows.append({"config": key, "description": what,
                     "mpm": by[key].get("mpm", "event"),
                     "instructions_per_request": n,
                     "added_vs_bare": n - bare})
    return rows


def throughput(recs):
    """Each run against the mean of its reference's runs just before and
    just after it (this round's and the next, closing, one)."""
    refs = {r["config"]: r["reference"] for r in recs["wrk_config"]}
    runs = {}
    for r in recs["wrk"]:
        runs.setdefault(r["config"], {})[r["round"]] = r
    rows = []
    for cfg_runs in runs.values():
        for r in cfg_runs.values():
            r["cpu_us_per_request"] = 1e6 * r["cpu_ticks"] / r["clk_tck"] \
                / r["requests"]
    for cfg, ref in refs.items():
        ratios, caps, d50, d99 = [], [], [], []
        mine = [runs[cfg][k] for k in sorted(runs[cfg])]
        p99_all = [x["p99_us"] for x in mine]
        if cfg == ref:
            mine = mine[:-1]  # the closing run only brackets the last round
        for r in mine:
            b = [runs[ref][r["round"]], runs[ref][r["round"] + 1]]

            def mean(f):
                return (b[0][f] + b[1][f]) / 2.0
            ratios.append(r["rps"] / mean("rps"))
            caps.append(mean("cpu_us_per_request") / r["cpu_us_per_request"])
            d50.append(r["p50_us"] - mean("p50_us"))
            d99.append(r["p99_us"] - mean("p99_us"))
        rows.append({
            "config": cfg, "reference": ref,
            "server": WRK[cfg][0], "limiter": WRK[cfg][1],
            "rounds": mine,
            "rps_median": statistics.median(x["rps"] for x in mine),
            "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios),
            "added_p50_us_median": statistics.median(d50),
            "added_p99_us_median": statistics.median(d99),
            "cpu_us_per_request_median": statistics.median(
                x["cpu_us_per_request"] for x in mine),
            "cpu_capacity_median": statistics.median(caps),
            "cpu_capacity_min": min(caps), "cpu_capacity_max": max(caps),
            "p99_us_min": min(p99_all), "p99_us_max": max(p99_all),
            "non2xx": sum(x["non2xx"] for x in mine),
        })
        if "redis_calls" in mine[0]:
            rows[-1]["redis"] = redis_cost(cfg, mine)
        if "fcgi_ticks" in mine[0]:
            rows[-1]["fcgi"] = fcgi_cost(mine)
    return rows


def fcgi_cost(runs):
    """The ratelimit2-fcgi daemon's own CPU time (utime + stime of its
    process over each run) per request, median over rounds, and the rest
    of the line's server CPU time: the web server's part."""
    # A run whose daemon was gone (no fcgi_ticks) says nothing of it.
    runs = [x for x in runs if "fcgi_ticks" in x]
    own = [1e6 * x["fcgi_ticks"] / x["clk_tck"] / x["requests"]
           for x in runs]
    return {
        "daemon_cpu_us_per_request_median": statistics.median(own),
        "server_part_cpu_us_per_request_median": statistics.median(
            x["cpu_us_per_request"] - d for x, d in zip(runs, own)),
    }


def redis_cost(cfg, runs):
    """What a Redis line's own Redis did over the measured rounds: calls
    of the store's Lua per request served (all rounds together: a count,
    not a noisy rate), the CPU time of its process and the time it spent
    in those calls (commandstats usec) per request, medians over rounds."""
    served = sum(x["requests"] for x in runs)
    calls = sum(x["redis_calls"] for x in runs)
    return {
        "requests": served, "calls": calls,
        "calls_per_request": calls / float(served),
        "cpu_us_per_request_median": statistics.median(
            x["redis_cpu_ns"] / 1000.0 / x["requests"] for x in runs),
        "in_calls_us_per_request_median": statistics.median(
            float(x["redis_usec"]) / x["requests"] for x in runs),
        "counted_locally": max(0, served - calls)
        if cfg in REDIS_EXACT else None,
    }


def exactness(recs):
    rows = []
    for r in recs["exact"]:
        r = dict(r)
        r["error_pct"] = 100.0 * (r["admitted"] - r["expected"]) \
            / r["expected"]
        rows.append(r)
    return rows


def core(recs):
    return recs["core_rules"], recs["core_keys"], recs["core_clock"][0]["ns"]


def redis_mem(recs):
    return recs["redis_mem"]


def busy_note(ref):
    """What a reader must know when the bare server's own runs swung."""
    if ref["ratio_max"] / ref["ratio_min"] <= 1.25:
        return ""
    return " (a busy machine: the bare server's own runs varied " \
        "%.2f–%.2f against their neighbours)" % (ref["ratio_min"],
                                                 ref["ratio_max"])


def unmeasured(target):
    """A target whose line this (BENCH_QUICK) run left out."""
    return {"target": target, "result": "not measured", "met": None,
            "note": "not measured: the line was left out of this "
                    "BENCH_QUICK run (its server did not start)"}


def throughput_target(who, row, ref, goal):
    target = "%s: throughput >= %.2fx bare Apache" % (who, goal)
    if row is None:
        return unmeasured(target)
    return {
        "target": target,
        "result": "%.3fx by requests per second (range %.3f–%.3f); %.3fx "
                  "by server CPU time per request" % (
                      row["ratio_median"], row["ratio_min"],
                      row["ratio_max"], row["cpu_capacity_median"]),
        "met": row["ratio_median"] >= goal, "note": busy_note(ref)}


def p99_target(who, row, ref, limit_us):
    target = "%s: added p99 latency < %s ms" % (
        who, ("%.1f" % (limit_us / 1000.0)).rstrip("0").rstrip("."))
    if row is None:
        return unmeasured(target)
    spread = ref["p99_us_max"] - ref["p99_us_min"]
    t = {"target": target,
         "result": "%s µs" % fmt_signed(row["added_p99_us_median"]),
         "met": row["added_p99_us_median"] < limit_us,
         "note": ""}
    if spread > 10 * limit_us:
        t["met"] = None
        t["note"] = "not measurable on this run: the bare server's own p99 " \
            "ranged %s–%s µs between rounds" % (fmt_int(ref["p99_us_min"]),
                                                fmt_int(ref["p99_us_max"]))
    return t


def fcgi_target(by_t):
    """Each ratelimit2-fcgi line's server CPU time (the web server and the
    daemon together) against the target; met when one line meets it, and
    the result says which."""
    target = "ratelimit2-fcgi: server CPU time per request <= %.1f µs " \
        "(half of the %.1f µs of the run of %s)" % (
            TARGET_FCGI_CPU_US, FCGI_BEFORE["cpu_us_per_request"],
            FCGI_BEFORE["commit"])
    rows = [(name, by_t[c]) for c, name in FCGI_TARGET_LINES
            if by_t.get(c) is not None]
    if not rows:
        return unmeasured(target)
    meeting = [name for name, r in rows
               if r["cpu_us_per_request_median"] <= TARGET_FCGI_CPU_US]
    return {
        "target": target,
        "result": "; ".join(
            "%s %.1f µs, %.3fx bare by requests per second" % (
                name, r["cpu_us_per_request_median"], r["ratio_median"])
            for name, r in rows) + " (server and daemon together); "
            + ("met by " + " and ".join(meeting) if meeting
               else "met by no line"),
        "met": bool(meeting),
        "note": ""}


LEASE = "Redis lease mode, one hot client"
EXACT_TCP = "Redis exact mode, TCP"
EXACT_UNIX = "Redis exact mode, unix socket"


def targets(instr, thr, exact, rules, keys):
    by_i = {r["config"]: r for r in instr}
    by_t = {r["config"]: r for r in thr}
    local_i = by_i["local"]["added_vs_bare"]
    bare = by_t["apache_bare"]
    lease = by_t.get("apache_redis_lease")
    tcp = by_t.get("apache_redis")
    ours = [r for r in exact if r["limiter"] in EXACT_ALGOS]
    n_exact = sum(1 for r in ours if r["admitted"] == r["expected"])
    r1000 = [r for r in rules if r["rules"] == 1000][0]
    k1k = [k for k in keys if k["keys"] == 1000
           and k["entries"] == 1048576][0]
    k1m = [k for k in keys if k["keys"] == 1000000
           and k["entries"] == 1048576][0]
    flat = (k1k["zone_bytes"] == k1m["zone_bytes"]
            and k1k["zone_resident_kb"] == k1m["zone_resident_kb"])
    return [
        {"target": "local store: added instructions per request "
                   "<= %s" % fmt_int(TARGET_INSTR),
         "result": fmt_signed(local_i), "met": local_i <= TARGET_INSTR},
        throughput_target("local store", by_t["apache_local"], bare,
                          TARGET_LOCAL_RATIO),
        throughput_target(LEASE, lease, bare, TARGET_LEASE_RATIO),
        p99_target(LEASE, lease, bare, TARGET_LEASE_P99_US),
        throughput_target(EXACT_TCP, tcp, bare, TARGET_EXACT_RATIO),
        p99_target(EXACT_TCP, tcp, bare, TARGET_REDIS_P99_US),
        throughput_target(EXACT_UNIX, by_t.get("apache_redis_unix"), bare,
                          TARGET_EXACT_RATIO),
        fcgi_target(by_t),
        {"target": "exactly N: a quota of 100 admits 100 (every algorithm, "
                   "event and prefork, 16 and 64 connections)",
         "result": "%d of %d runs exact" % (n_exact, len(ours)),
         "met": n_exact == len(ours)},
        {"target": "core: < %d ns per decision at 1,000 rules"
                   % TARGET_CORE_NS,
         "result": "%s ns matching the first rule, %s ns matching the last"
                   % (fmt_int(r1000["first_ns"]), fmt_int(r1000["last_ns"])),
         "met": r1000["last_ns"] < TARGET_CORE_NS},
        {"target": "memory flat under 1M keys",
         "result": "zone %s bytes, %s KiB resident at 1k and at 1M keys"
                   % (fmt_int(k1m["zone_bytes"]),
                      fmt_int(k1m["zone_resident_kb"])) if flat else
                   "zone %s -> %s KiB resident from 1k to 1M keys"
                   % (fmt_int(k1k["zone_resident_kb"]),
                      fmt_int(k1m["zone_resident_kb"])),
         "met": flat},
    ]
