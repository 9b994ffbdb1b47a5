#!/usr/bin/env python3
"""report.py RAW DOC JSON -- docs/PERFORMANCE.md and bench/results.json
from the raw records of one `make bench` run (bench/run.sh).

Every figure in both files comes from RAW; nothing is typed in here but
the targets, the method and the peers' settings, which the scripts fix.
Sections of an existing DOC that the benchmark does not own (see KEPT)
are carried over verbatim, after the generated part, so that hand-kept
notes and the block `make fuzz` writes between its markers survive a
rerun; an empty `## Fuzzing` block is left at the end when none exists.
"""
import json
import re
import sys

from report_numbers import (FCGI_BEFORE, core, exactness, instructions, load,
                            redis_mem, targets, throughput)
from report_page import (header, how_to_read, sect_core, sect_exact,
                         sect_instr, sect_peers, sect_redis, sect_repro,
                         sect_targets, sect_wrk)

KEPT = ("History", "Replaying", "Fuzzing")


FUZZ_BEGIN = "<!-- fuzz:begin -->"
FUZZ_END = "<!-- fuzz:end -->"


def kept_sections(path):
    """The KEPT sections of the existing page, verbatim, in page order.
    The fuzzing section is the block `make fuzz` (tests/fuzz/run.sh)
    writes between its markers, kept with them; with none yet, an empty
    one is left for it."""
    try:
        text = open(path).read()
    except FileNotFoundError:
        text = ""
    fuzz = FUZZ_BEGIN + "\n## Fuzzing\n" + FUZZ_END
    b, e = text.find(FUZZ_BEGIN), text.find(FUZZ_END)
    if 0 <= b < e:
        fuzz = text[b:e + len(FUZZ_END)]
        text = text[:b] + text[e + len(FUZZ_END):]
    parts = re.split(r"(?m)^(?=## )", text)
    kept = [p.rstrip("\n") for p in parts
            if p.startswith("## ") and p[3:].startswith(KEPT)
            and not p[3:].startswith("Fuzzing")]
    return kept + [fuzz]


def main(raw, doc, out_json, keep_from=None):
    recs = load(raw)
    m = recs["machine"][0]
    quick = m["quick"] == 1
    setup = recs["wrk_setup"][0]
    instr = instructions(recs)
    thr = throughput(recs)
    exact = exactness(recs)
    rules, keys, clock = core(recs)
    mem = redis_mem(recs)
    tg = targets(instr, thr, exact, rules, keys)
    lines = dict(recs["wrk_lines"][0])
    lines["skipped"] = [r["config"] for r in recs.get("wrk_skipped", [])]
    fcgi = recs["wrk_fcgi"][0]["conf"].strip() if "wrk_fcgi" in recs else \
        "(the line was left out of this run)"

    fcgi_nginx = "; ".join(
        "%s `%s`" % (r["config"], r["conf"].strip())
        for r in recs.get("wrk_fcgi_nginx", [])) or \
        "(the line was left out of this run)"

    kept = kept_sections(keep_from or doc)
    load_end = recs["load_end"][0]["loadavg"]
    blocks = [header(m, recs["timing"], quick, load_end),
              how_to_read(setup),
              sect_targets(tg), sect_instr(instr),
              sect_wrk(thr, setup, lines, tg), sect_exact(exact),
              sect_core(rules, keys, clock, quick), sect_redis(mem),
              sect_peers(fcgi, lines["lease"], fcgi_nginx),
              sect_repro()]
    text = "\n\n".join("\n".join(b) for b in blocks)
    text += "\n\n" + "\n\n".join(kept) + "\n"
    with open(doc, "w") as f:
        f.write(text)

    result = {
        "command": "make bench", "quick": quick, "machine": m,
        "loadavg_end": load_end,
        "timing_s": {t["part"]: t["seconds"] for t in recs["timing"]},
        "targets": tg, "instructions": instr,
        "throughput": {"setup": setup, "clients": lines["clients"],
                       "lease_options": lines["lease"],
                       "skipped": lines["skipped"], "fcgi_conf": fcgi,
                       "fcgi_nginx_conf": fcgi_nginx,
                       "fcgi_before": FCGI_BEFORE, "configs": thr},
        "exactness": exact,
        "core": {"rules": rules, "keys": keys, "clock_ns": clock},
        "redis_bytes_per_key": mem,
    }
    with open(out_json, "w") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: report.py RAW DOC JSON [PAGE_TO_KEEP_SECTIONS_OF]")
    main(*sys.argv[1:])
