#!/usr/bin/env python3
"""check_metric_names.py -- every PromQL query of a Grafana dashboard or a
Prometheus rules file names only metrics the limiter exports.

    check_metric_names.py SOURCE.c DOCS.md RULES.yml FILE...

The exported names are those the exposition code writes (string
literals "ratelimit2_..." in SOURCE.c) that the metrics table of DOCS.md
also lists: a name only in one of them is itself an error.  A histogram's
_bucket, _sum and _count series belong to its name; the recording rules
of RULES.yml are names too.  Each query of each FILE (a dashboard's
panel targets, a rules file's expressions) must name at least one
exported metric and nothing else that looks like a metric.  Grafana's
variables are replaced by values of their type so each query can be
parsed; the queries are written to QUERIES_OUT (env) as recording rules
for `promtool check rules`, which parses them.  Prints one line per
problem; exits 1 if there is any.
"""
import json
import os
import re
import sys

NAME = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*')
# Words of PromQL that look like names: functions, keywords, aggregations.
PROMQL = set("""sum min max avg group stddev stdvar count count_values bottomk
topk quantile by without on ignoring group_left group_right bool and or
unless offset rate irate increase delta idelta deriv predict_linear
histogram_quantile avg_over_time min_over_time max_over_time sum_over_time
count_over_time stddev_over_time stdvar_over_time quantile_over_time
last_over_time present_over_time changes resets abs ceil floor round
clamp clamp_min clamp_max exp ln log2 log10 sqrt time timestamp vector
scalar sort sort_desc label_replace label_join absent absent_over_time
inf nan le""".split())


def exported(source, docs):
    src = set(re.findall(r'"(ratelimit2_[a-z0-9_]+)', open(source).read()))
    src -= {n for n in src if n.endswith(("_bucket", "_sum", "_count"))}
    doc = set(re.findall(r'^\| `(ratelimit2_[a-z0-9_]+)`(?:, `(ratelimit2_[a-z0-9_]+)`)?',
                         open(docs).read(), re.M))
    doc = {n for pair in doc for n in pair if n}
    return src, doc


def recorded(rules):
    return set(re.findall(r'^\s*- record:\s*(\S+)', open(rules).read(), re.M))


def queries(path):
    text = open(path).read()
    if path.endswith(".json"):
        out = []

        def walk(panels):
            for p in panels:
                for t in p.get("targets", []):
                    out.append((p.get("title", "?"), t["expr"]))
                walk(p.get("panels", []))
        d = json.loads(text)
        walk(d.get("panels", []))
        for v in d.get("templating", {}).get("list", []):
            q = v.get("query")
            if isinstance(q, dict):
                q = q.get("query")
            m = re.match(r'label_values\((\w+)', q or "")
            if m:
                out.append(("variable " + v["name"], m.group(1)))
        return out
    # A rules file: "expr:" then a scalar or a folded block.
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        m = re.match(r'^(\s*)expr:\s*(.*)$', lines[i])
        if not m:
            i += 1
            continue
        ind, rest = len(m.group(1)), m.group(2).strip()
        if rest in (">", "|", ">-", "|-"):
            body = []
            i += 1
            while i < len(lines) and (not lines[i].strip()
                                      or len(lines[i]) - len(lines[i].lstrip()) > ind):
                body.append(lines[i].strip())
                i += 1
            rest = " ".join(body)
        else:
            i += 1
        out.append(("expr", rest))
    return out


def grafana_values(expr):
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
    return re.sub(r'\$\{?(\w+)\}?', ".*", expr)


def names_in(expr):
    # Drop strings, label matchers' values, durations and numbers.
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r'\{[^}]*\}', '', expr)
    expr = re.sub(r'\[[^\]]*\]', '', expr)
    expr = re.sub(r'\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)', r'\1', expr)
    return [n for n in NAME.findall(expr) if n not in PROMQL
            and not re.fullmatch(r'\d.*', n)]


def main():
    source, docs, rules, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    src, doc = exported(source, docs)
    bad = []
    for n in sorted(src - doc):
        bad.append(f"{docs}: {n} is exported by {source} but not in the metrics table")
    for n in sorted(doc - src):
        bad.append(f"{docs}: {n} is in the metrics table but {source} does not export it")
    known = (src & doc) | recorded(rules)
    parsed = []
    for f in files:
        qs = queries(f)
        if not qs:
            bad.append(f"{f}: no query found")
        for where, q in qs:
            q = grafana_values(q)
            parsed.append(q)
            names = names_in(q)
            base = [re.sub(r'_(bucket|sum|count)$', '', n)
                    if re.sub(r'_(bucket|sum|count)$', '', n) in known else n
                    for n in names]
            if not any(n in known for n in base):
                bad.append(f"{f}: {where}: names no exported metric: {q}")
            for n in base:
                if n not in known:
                    bad.append(f"{f}: {where}: {n} is not a metric the limiter exports")
    out = os.environ.get("QUERIES_OUT")
    if out:
        with open(out, "w") as fh:
            fh.write("groups:\n  - name: parsed\n    rules:\n")
            for k, q in enumerate(parsed):
                fh.write(f"      - record: q{k}\n        expr: {json.dumps(q)}\n")
    for b in bad:
        print(b)
    print(f"# {len(parsed)} queries in {len(files)} files, {len(known)} names known")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
