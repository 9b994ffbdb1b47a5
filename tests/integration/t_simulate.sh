#!/bin/bash
# t_simulate.sh -- ratelimit2ctl simulate compared with a real Apache:
#   - Apache (mod_ratelimit2, the suite's clock) takes a sequence of
#     requests from four addresses and two users at known seconds, under
#     a policy of a token bucket, a fixed window and a sliding window per
#     address and a limit per user; its own access log says which it
#     refused (429).  simulate, replaying that log, reports for every
#     client exactly the refusals Apache gave: their number, the first
#     and the last;
#   - the same traffic through Apache under a policy B whose fixed window
#     is wider: simulate -c A --against B lists exactly the clients, and
#     per client the requests, that one of the two real runs refused and
#     the other admitted;
#   - --tiers: a user's and an address's line give them the tier whose
#     limits the replay applies;
#   - bad input: an unreadable log, a bad --tiers line (file:line), a
#     policy that does not exist, --tiers for a policy without
#     tier_from.variable, --against elsewhere: clear errors, exit 2 or 3.
#
# The time in Apache's log: the suite's clock moves the limiter's
# monotonic clock only (fake_clock.c), and Apache writes its own log
# with the real time.  Each request carries the suite's time in a header
# that the log format writes where %t would be, in %t's form; Apache
# still writes every line, status and user itself.
. "$(dirname "$0")/lib.sh"

CTL="$BUILD/ctl/ratelimit2ctl"
D=$T_DIR/apache
PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
# The suite's clock starts at this second (UTC): the limiter's
# monotonic time and the log's time are then the same number.
T0=$(date -u -d '2026-12-06 00:00:00' +%s)

policy() { # policy FILE FIXED_WINDOW_RATE
    cat >"$1" <<CONF
mode = "enforce";
match = "first";
rules = (
  { name = "tb"; paths = [ "/tb/*" ]; key = "ip";
    limits = ( { rate = "3/10s"; algorithm = "token_bucket"; } ); },
  { name = "fw"; paths = [ "/fw/*" ]; key = "ip";
    limits = ( { rate = "$2"; algorithm = "fixed_window"; } ); },
  { name = "sw"; paths = [ "/sw/*" ]; key = "ip";
    limits = ( { rate = "4/10s"; algorithm = "sliding_window"; } ); },
  { name = "per_user"; paths = [ "/u/*" ]; key = "user";
    limits = ( { rate = "2/10s"; algorithm = "fixed_window"; } ); }
);
CONF
}
policy "$T_DIR/a.conf" "4/10s"
policy "$T_DIR/b.conf" "6/10s"

apache_conf "$D" "$PORT" event
site_pages "$D/htdocs" tb fw sw u
htpasswd -bc "$D/htpasswd" alice pw 2>/dev/null
htpasswd -b "$D/htpasswd" bob pw 2>/dev/null
chmod 644 "$D/htpasswd"
fake_clock_on || { not_ok "the suite's clock builds"; done_testing; exit 1; }

# run POLICY LOG -- a fresh zone and Apache under POLICY, the traffic,
# its log copied to LOG.
run() {
    cat >"$D/site.conf" <<CONF
RateLimit2Zone $(zone_name "$(basename "$1" .conf)") 10000
RateLimit2Policy "$1"
LogFormat "%h %l %u %{X-Sim-Time}i \"%r\" %>s %b" simtime
CustomLog "$D/logs/sim.log" simtime
<Location /u>
    AuthType Basic
    AuthName sim
    AuthUserFile "$D/htpasswd"
    Require valid-user
</Location>
CONF
    rm -f "$D/logs/sim.log"
    apache_start "$D" || return 1
    traffic
    apache_stop "$D"
    cp "$D/logs/sim.log" "$2"
}

# at SEC -- send what was queued, then move the suite's clock to second
# SEC; hit N ADDR PATH [USER] -- queue N requests at that second from
# 127.0.0.ADDR.  One curl a second (--next between clients): a fork
# costs more than the requests on a loaded machine.
Q=()
at() {
    [ ${#Q[@]} -eq 0 ] || curl -s "${Q[@]}"
    Q=()
    [ $# -eq 0 ] && return
    clock_set $(((T0 + $1) * 1000000))
    printf -v SEC_T '[06/Dec/2026:00:00:%02d +0000]' "$1"
}
hit() {
    [ ${#Q[@]} -eq 0 ] || Q+=(--next)
    Q+=(--interface "127.0.0.$2" -H "X-Sim-Time: $SEC_T")
    [ $# -ge 4 ] && Q+=(-u "$4:pw")
    for _ in $(seq "$1"); do
        Q+=(-o /dev/null "$URL$3")
    done
}

traffic() {
    at 0
    hit 5 2 /tb/x
    hit 6 3 /fw/x
    hit 6 4 /sw/x
    hit 3 5 /u/x alice
    hit 1 5 /u/x bob
    at 1
    hit 2 6 /tb/x
    at 4
    hit 2 2 /tb/x
    hit 1 3 /fw/x
    hit 2 4 /sw/x
    at 10
    hit 5 3 /fw/x
    at 12
    hit 3 4 /sw/x
    hit 3 5 /u/x alice
    at 13
    hit 4 2 /tb/x
    at 15
    hit 3 5 /u/x bob
    at 17
    hit 4 3 /fw/x
    at 25
    hit 3 2 /tb/x
    hit 7 3 /fw/x
    hit 3 4 /sw/x
    hit 3 5 /u/x alice
    at
}

# in_order LOG -- LOG's lines by client (user:NAME or the address), then
# by the suite's second, then as logged.  Apache writes a line when a
# request's answer has gone out, so on a loaded machine the line of one
# client's request can follow the next request's, sent by another client
# on a connection of its own: the log's order across clients is not the
# order of sending, one client's requests of one second (one connection,
# one after the other) are.
in_order() {
    awk '{ print ($3 != "-" ? "user:" $3 : $1), $4, NR, $0 }' "$1" \
        | sort -k1,1 -k2,2 -k3,3n | cut -d' ' -f4-
}

# refusals LOG -- "CLIENT REFUSED FIRST LAST" per client Apache refused,
# CLIENT user:NAME or the address, times as simulate writes them.
refusals() {
    in_order "$1" | awk '$(NF-1) == 429 {
        c = $3 != "-" ? "user:" $3 : $1
        t = "2026-12-06T" substr($4, 14, 8) ".000000Z"
        if (!(c in n)) first[c] = t
        n[c]++; last[c] = t
    } END { for (c in n) print c, n[c], first[c], last[c] }' | sort
}

# sim_refusals JSON I -- the same from simulate's JSON, policy I.
sim_refusals() {
    jq -r ".policies[$2].clients[] | \"\(.client) \(.refused) \(.first) \
\(.last)\"" "$1" | sort
}

# differ LOG_A LOG_B -- "CLIENT A_ONLY B_ONLY" per client whose request
# one run refused and the other admitted, request by request (the same
# requests: each client's in the order it sent them, in_order).
differ() {
    paste -d ' ' <(in_order "$1") <(in_order "$2") | awk '{
        h = NF / 2
        c = $3 != "-" ? "user:" $3 : $1
        a = $(h - 1) == 429; b = $(NF - 1) == 429
        if (a && !b) ao[c]++
        if (b && !a) bo[c]++
        if (a != b) seen[c] = 1
    } END { for (c in seen) print c, ao[c] + 0, bo[c] + 0 }' | sort
}

run "$T_DIR/a.conf" "$T_DIR/a.log" || { not_ok "apache runs A"; done_testing; exit 1; }
run "$T_DIR/b.conf" "$T_DIR/b.log" || { not_ok "apache runs B"; done_testing; exit 1; }

EXPECT_A=$(refusals "$T_DIR/a.log")
EXPECT_B=$(refusals "$T_DIR/b.log")
# Not a vacuous comparison: Apache refused every one of the five
# clients that broke a limit (each algorithm, and the users), not 127.0.0.6.
is "apache A refused the five clients that broke a limit" \
    "127.0.0.2 127.0.0.3 127.0.0.4 user:alice user:bob" \
    "$(echo "$EXPECT_A" | awk '{ print $1 }' | xargs)"
is "apache's log has every request" 66 "$(wc -l <"$T_DIR/a.log")"

"$CTL" -c "$T_DIR/a.conf" simulate --json "$T_DIR/a.log" >"$T_DIR/a.json"
is "simulate A exits 0" 0 $?
is "simulate reports, per client, the refusals Apache gave (A)" \
    "$EXPECT_A" "$(sim_refusals "$T_DIR/a.json" 0)"
is "simulate refuses as many requests as Apache did, of all (A)" \
    "66 $(grep -c '" 429 ' "$T_DIR/a.log")" \
    "$(jq -r '"\(.requests) \(.policies[0].refused)"' "$T_DIR/a.json")"
is "the log's 429s counted" "$(grep -c '" 429 ' "$T_DIR/a.log")" \
    "$(jq -r .logged_429 "$T_DIR/a.json")"
is "refusals by rule add up" "$(jq -r '.policies[0].refused' "$T_DIR/a.json")" \
    "$(jq '[.policies[0].rules[].refused] | add' "$T_DIR/a.json")"
like "each rule refused some" '^fw/fw per_user/per_user sw/sw tb/tb$' \
    "$(jq -r '.policies[0].rules[].rule' "$T_DIR/a.json" | sort | xargs)"

# --against: policy B replayed on the same requests (A's log: what the
# clients sent is the same), checked against B's own Apache run.
"$CTL" -c "$T_DIR/a.conf" simulate --against "$T_DIR/b.conf" --json \
    "$T_DIR/a.log" >"$T_DIR/ab.json"
is "simulate --against exits 0" 0 $?
is "B's replay gives, per client, the refusals Apache gave under B" \
    "$EXPECT_B" "$(sim_refusals "$T_DIR/ab.json" 1)"
EXPECT_D=$(differ "$T_DIR/a.log" "$T_DIR/b.log")
like "the two real runs differ for 127.0.0.3 alone" '^127\.0\.0\.3 [1-9][0-9]* 0$' \
    "$EXPECT_D"
is "--against lists exactly the clients and requests the runs differ on" \
    "$EXPECT_D" \
    "$(jq -r '.differ[] | "\(.client) \(.a_only) \(.b_only)"' \
        "$T_DIR/ab.json" | sort)"
out=$("$CTL" -c "$T_DIR/a.conf" simulate --against "$T_DIR/b.conf" \
    "$T_DIR/a.log")
like "the text answer names both policies and the difference" \
    "b.conf \(B, --against\).*differ +1 clients.*127\.0\.0\.3" \
    "$(echo "$out" | tr '\n' ' ')"

# Several files merge by time: the log cut in two, the halves given in
# reverse order, replays the same.
head -n 40 "$T_DIR/a.log" >"$T_DIR/a1.log"
tail -n +41 "$T_DIR/a.log" | gzip >"$T_DIR/a2.log.gz"
"$CTL" -c "$T_DIR/a.conf" simulate --json "$T_DIR/a2.log.gz" \
    "$T_DIR/a1.log" >"$T_DIR/split.json"
is "two files (one gzip) merged by time replay as one" \
    "$EXPECT_A" "$(sim_refusals "$T_DIR/split.json" 0)"

# ---- --tiers: the tier the server's variable would have held ----
cat >"$T_DIR/t.conf" <<'CONF'
tier_from = { variable = "RL2_TIER"; };
tiers = ( { name = "free"; }, { name = "pro"; } );
default_tier = "free";
rules = (
  { name = "api"; paths = [ "/api/*" ]; key = "user";
    tiers = { free = ( { rate = "2/10s"; } ); pro = ( { rate = "5/10s"; } ); }; },
  { name = "anon"; paths = [ "/a/*" ]; key = "ip";
    tiers = { free = ( { rate = "2/10s"; } ); pro = ( { rate = "5/10s"; } ); }; }
);
CONF
for u in "127.0.0.1 - alice /api/x" "127.0.0.1 - bob /api/x" \
    "192.0.2.8 - - /a/x" "192.0.2.9 - - /a/x" "2001:db8::9 - - /a/x"; do
    set -- $u
    for _ in 1 2 3 4 5; do
        echo "$1 $2 $3 [06/Dec/2026:10:00:00 +0000] \"GET $4 HTTP/1.1\" 200 3"
    done
done >"$T_DIR/t.log"
printf '# plans\nuser:alice pro\n\n192.0.2.9   pro\nkey:k1 free\n2001:DB8:0::9 pro\n' \
    >"$T_DIR/tiers.txt"
"$CTL" -c "$T_DIR/t.conf" simulate --tiers "$T_DIR/tiers.txt" --json \
    "$T_DIR/t.log" >"$T_DIR/t.json"
is "--tiers: the pro user and addresses (IPv6 written otherwise) pass, the free ones are refused 3 each" \
    "192.0.2.8 3 user:bob 3" \
    "$(jq -r '.policies[0].clients[] | "\(.client) \(.refused)"' \
        "$T_DIR/t.json" | sort | xargs)"
is "--tiers: refusals by tier" "free 6" \
    "$(jq -r '.policies[0].tiers[] | "\(.tier) \(.refused)"' "$T_DIR/t.json" \
        | xargs)"

# ---- bad input ----
err=$("$CTL" -c "$T_DIR/a.conf" simulate "$T_DIR/none.log" 2>&1)
is "an unreadable log: exit 3" 3 $?
like "... naming it" "none\.log" "$err"
printf 'user:alice pro\nuser:bob gold\n' >"$T_DIR/bad.txt"
err=$("$CTL" -c "$T_DIR/t.conf" simulate --tiers "$T_DIR/bad.txt" \
    "$T_DIR/t.log" 2>&1)
is "an unknown tier in --tiers: exit 2" 2 $?
like "... with file:line" "bad\.txt:2: tier \"gold\"" "$err"
printf 'user:alice pro\nuser:alice free\n' >"$T_DIR/dup.txt"
err=$("$CTL" -c "$T_DIR/t.conf" simulate --tiers "$T_DIR/dup.txt" \
    "$T_DIR/t.log" 2>&1)
like "a key named twice: file:line" "dup\.txt:2: \"user:alice\" is named twice" "$err"
printf 'user:bob pro\nuser:x\0y pro\n' >"$T_DIR/nul.txt"
err=$("$CTL" -c "$T_DIR/t.conf" simulate --tiers "$T_DIR/nul.txt" \
    "$T_DIR/t.log" 2>&1)
like "a NUL byte: file:line" "nul\.txt:2: a NUL byte" "$err"
# ... also as the last byte of a file without a final newline.
printf 'user:bob pro\nuser:bob2 pro\0' >"$T_DIR/nul2.txt"
err=$("$CTL" -c "$T_DIR/t.conf" simulate --tiers "$T_DIR/nul2.txt" \
    "$T_DIR/t.log" 2>&1)
like "a NUL as the file's last byte: file:line" "nul2\.txt:2: a NUL byte" \
    "$err"
printf 'not-an-address pro\n' >"$T_DIR/addr.txt"
err=$("$CTL" -c "$T_DIR/t.conf" simulate --tiers "$T_DIR/addr.txt" \
    "$T_DIR/t.log" 2>&1)
like "a key that is no address: file:line" "addr\.txt:1: .*expected user:NAME" "$err"
err=$("$CTL" -c "$T_DIR/a.conf" simulate --tiers "$T_DIR/tiers.txt" \
    "$T_DIR/a.log" 2>&1)
is "--tiers for a policy without tier_from.variable: exit 2" 2 $?
like "... saying so" "tier_from\.variable" "$err"
err=$("$CTL" -c "$T_DIR/none.conf" simulate "$T_DIR/a.log" 2>&1)
is "a policy that does not exist: exit 3" 3 $?
err=$("$CTL" -c "$T_DIR/a.conf" simulate --against "$T_DIR/none.conf" \
    "$T_DIR/a.log" 2>&1)
is "--against a policy that does not exist: exit 3" 3 $?
like "... naming it" "--against: .*none\.conf" "$err"
"$CTL" -c "$T_DIR/a.conf" simulate >/dev/null 2>&1
is "no log: exit 2" 2 $?
"$CTL" -c "$T_DIR/a.conf" coverage --against "$T_DIR/b.conf" \
    "$T_DIR/a.log" >/dev/null 2>&1
is "--against elsewhere: exit 2" 2 $?

done_testing
