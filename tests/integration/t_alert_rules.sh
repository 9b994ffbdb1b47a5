#!/bin/bash
# t_alert_rules.sh -- the Prometheus alerting rules and the Grafana
# dashboard shipped in conf/: promtool accepts the rules and their unit
# tests pass; every query of both names only metrics the limiter
# exports (the exposition code and the metrics table of
# docs/operations.md agree on those names), and parses as PromQL.  The
# check itself is shown to catch a misspelt metric.
source "$(dirname "$0")/lib.sh"
cd "$RL2_ROOT"

RULES=conf/prometheus/ratelimit2.rules.yml
DASH=conf/grafana/ratelimit2-dashboard.json
CHECK=tests/tools/check_metric_names.py
SRC=common/obs/metrics_prom.c
DOCS=docs/operations.md

# quiet_is NAME CMD... -- a test: CMD exits 0; its output shown if not.
quiet_is() {
    local name=$1 out rc
    shift
    out=$("$@" 2>&1)
    rc=$?
    is "$name" 0 "$rc"
    [ "$rc" -ne 0 ] && printf '%s\n' "$out" | sed 's/^/# /'
}

quiet_is "promtool check rules accepts the alerting rules" \
    promtool check rules "$RULES"
quiet_is "promtool test rules: every alert quiet, pending and firing as its tests say" \
    promtool test rules conf/prometheus/ratelimit2.rules.test.yml \
    conf/prometheus/ratelimit2.anomaly.test.yml

# Each alert the operations guide promises is in the file.
for a in RateLimit2RedisDown RateLimit2FailoverActive RateLimit2RedisErrors \
    RateLimit2ZoneNearlyFull RateLimit2ZoneEvicting RateLimit2RefusalSpike \
    RateLimit2RefusalAnomaly RateLimit2RefundsDropped RateLimit2AlertsLost; do
    grep -q "alert: $a\$" "$RULES" && cat conf/prometheus/*.test.yml \
        | grep -q "alertname: $a\$" \
        && grep -q "\`$a\`" "$DOCS" && ok "$a: in the rules, tested, documented" \
        || not_ok "$a: in the rules, tested, documented"
done

QUERIES_OUT=$T_DIR/queries.yml quiet_is \
    "every query of the rules and the dashboard names only exported metrics" \
    python3 "$CHECK" "$SRC" "$DOCS" "$RULES" "$DASH" "$RULES"
n=$(grep -c '^      - record: q' "$T_DIR/queries.yml" 2>/dev/null)
[ "${n:-0}" -ge 30 ] && ok "the check read $n queries" \
    || not_ok "the check read ${n:-0} queries (expected at least 30)"
quiet_is "every dashboard and rule query parses as PromQL (promtool)" \
    promtool check rules "$T_DIR/queries.yml"
quiet_is "the dashboard is JSON" python3 -m json.tool "$DASH"

# Planted faults: a misspelt metric in the dashboard, a metric in the
# table that nothing exports.
sed 's/ratelimit2_zone_evictions_total/ratelimit2_zone_eviction_total/' \
    "$DASH" >"$T_DIR/bad.json"
out=$(python3 "$CHECK" "$SRC" "$DOCS" "$RULES" "$T_DIR/bad.json" 2>&1)
rc=$?
is "a misspelt metric in the dashboard fails the check" 1 "$rc"
like "... naming the metric and the panel" \
    'Zone: memory, evictions: ratelimit2_zone_eviction_total is not a metric the limiter exports' \
    "$out"
{ cat "$DOCS"; echo '| `ratelimit2_ghost_total` | counter | | nothing |'; } \
    >"$T_DIR/docs.md"
out=$(python3 "$CHECK" "$SRC" "$T_DIR/docs.md" "$RULES" "$DASH" 2>&1)
like "a metric only in the table fails the check" \
    'ratelimit2_ghost_total is in the metrics table but .* does not export it' \
    "$out"

done_testing
