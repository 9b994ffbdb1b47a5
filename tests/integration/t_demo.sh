#!/bin/bash
# t_demo.sh -- `make demo` works as the README says: with stdin closed it
# serves on loopback, curl sees 200 turn into 429, and it stops cleanly.
source "$(dirname "$0")/lib.sh"
cd "$RL2_ROOT"

out="$T_DIR/demo.out"
# Objects of other demos (another checkout's test, a user's demo) may come
# and go meanwhile: only this demo's must be gone at the end.
demo_objects() {
    ls /dev/shm 2>/dev/null | grep '^rl2-demo-' | sort
}
objects_before=$(demo_objects)
# Own process group, so the whole tree can be stopped at once.
setsid bash -c "exec timeout 60 make --no-print-directory demo BUILD=$BUILD" \
    </dev/null >"$out" 2>&1 &
demo=$!

url=""
for _ in $(seq 1 300); do
    url=$(grep -o 'http://127.0.0.1:[0-9]*/' "$out" | head -1)
    [ -n "$url" ] && break
    sleep 0.1
done
like "demo prints the URL it serves" '^http://127.0.0.1:[0-9]+/$' "$url"
like "demo prints the curl lines" 'curl -i http' "$(cat "$out")"

codes=""
for _ in 1 2 3 4 5 6 7; do
    codes="$codes $(code "$url")"
done
is "demo: 5 requests pass, then 429" " 200 200 200 200 200 429 429" "$codes"
is "demo: /health is exempt" "200" "$(code "${url}health")"

kill -TERM -- "-$demo" 2>/dev/null
for _ in $(seq 1 100); do
    kill -0 "$demo" 2>/dev/null || break
    sleep 0.1
done
port=${url#http://127.0.0.1:}
port=${port%/}
for _ in $(seq 1 100); do
    rl2_port_busy "$port" || break
    sleep 0.1
done
if rl2_port_busy "$port"; then
    not_ok "demo stops on SIGTERM"
else
    ok "demo stops on SIGTERM"
fi
left=$(comm -13 <(echo "$objects_before") <(demo_objects))
for _ in $(seq 1 300); do
    [ -z "$left" ] && break
    sleep 0.1
    left=$(comm -13 <(echo "$objects_before") <(demo_objects))
done
is "demo removes its shared-memory objects" "" "$left"
done_testing
