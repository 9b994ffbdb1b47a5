#!/bin/bash
# coverage.sh [BUILD] -- run the test suites with the gcov build (make
# coverage builds it: COV=1, BUILD=build/cov) and print line and branch
# coverage per folder: each folder of common/, then mod_ratelimit2/,
# fcgi/ and ctl/, and the total.  The table is written to
# BUILD/coverage.txt too, and gcovr's per-line data to
# BUILD/coverage-core.json and BUILD/coverage-module.json.
#
# ONLY= selects suites as for tests/run-all.sh (ONLY=unit/ for the unit
# programs alone).  The exit status is run-all.sh's: the summary is
# printed either way.
set -u
cd "$(dirname "$0")/.."
BUILD=${1:-build/cov}
COV=1 # suites that measure the release build skip themselves
export BUILD COV

if ! command -v gcovr >/dev/null 2>&1; then
    echo "coverage: gcovr not found (apt-get install gcovr)" >&2
    exit 2
fi
if [ ! -e "$BUILD/mod/.libs/mod_ratelimit2.gcno" ]; then
    echo "coverage: no gcov build in $BUILD (make COV=1 all)" >&2
    exit 2
fi

# Counts from an earlier run would be added to this one's.
find "$BUILD" -name '*.gcda' -delete

# The programs write their counts into BUILD/**/*.gcda when they exit,
# Apache's children too, which run as nobody (tests/integration/lib.sh),
# as do the programs lighttpd and nginx start: every folder of BUILD is
# writable by all, and umask 0 makes the .gcda files so as they appear.
find "$BUILD" -type d -exec chmod a+rwx {} +
umask 000

tests/run-all.sh
rc=$?

umask 022
# Which gcov file goes with which source: the core, ratelimit2-fcgi/cgi
# and ratelimit2ctl are compiled from the tree (paths from the top); the
# Apache module from its copy in BUILD/mod by apxs, whose objects are in
# BUILD/mod/.libs: gcov runs there, and the summary maps the names back
# to mod_ratelimit2/.
gcovr --root . --object-directory "$BUILD" \
    --exclude-directories "$BUILD/mod" \
    --filter 'common/' --filter 'fcgi/' --filter 'ctl/' \
    --gcov-ignore-parse-errors --json "$BUILD/coverage-core.json" || rc=2
(cd "$BUILD/mod" && gcovr --root . --object-directory .libs \
    --gcov-ignore-parse-errors --json coverage.json) && mv "$BUILD/mod/coverage.json" \
    "$BUILD/coverage-module.json" || rc=2

python3 - "$BUILD" <<'PY' | tee "$BUILD/coverage.txt"
import json, os, sys

build = sys.argv[1]
files = {}
for name, prefix in (("coverage-core.json", ""),
                     ("coverage-module.json", "mod_ratelimit2/")):
    path = os.path.join(build, name)
    if not os.path.exists(path):
        continue
    for f in json.load(open(path))["files"]:
        files[prefix + f["file"]] = f

def folder(path):
    parts = path.split("/")
    if parts[0] == "common" and len(parts) > 2:
        return "common/" + parts[1]
    return parts[0]

order = ["common/" + d for d in
         "base algo policy store redis decide obs backend load include"
         .split()] + ["mod_ratelimit2", "fcgi", "ctl"]
rows = {}
for path, f in files.items():
    r = rows.setdefault(folder(path), [0, 0, 0, 0, 0])
    r[4] += 1
    for line in f["lines"]:
        if line.get("gcovr/noncode") or line.get("gcovr/excluded"):
            continue
        r[1] += 1
        r[0] += line["count"] > 0
        for b in line["branches"]:
            r[3] += 1
            r[2] += b["count"] > 0

def pct(a, b):
    return "%6.1f%%" % (100.0 * a / b) if b else "      -"

print("%-22s %5s %15s %7s %15s %7s" % ("folder", "files", "lines", "",
                                       "branches", ""))
total = [0, 0, 0, 0, 0]
for name in order + sorted(set(rows) - set(order)):
    if name not in rows:
        continue
    r = rows[name]
    total = [a + b for a, b in zip(total, r)]
    print("%-22s %5d %7d/%-7d %s %7d/%-7d %s"
          % (name, r[4], r[0], r[1], pct(r[0], r[1]),
             r[2], r[3], pct(r[2], r[3])))
r = total
print("%-22s %5d %7d/%-7d %s %7d/%-7d %s"
      % ("TOTAL", r[4], r[0], r[1], pct(r[0], r[1]),
         r[2], r[3], pct(r[2], r[3])))
PY
exit "$rc"
