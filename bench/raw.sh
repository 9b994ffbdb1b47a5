# bench/raw.sh -- raw SECTION KEY=VALUE...: append one JSON record to
# $RAW (one line; bench/report.py reads them).  A value that looks like a
# number is written as one, anything else as a string.
raw() {
    local sec=$1 kv k v out
    shift
    out="{\"section\":\"$sec\""
    for kv in "$@"; do
        k=${kv%%=*}
        v=${kv#*=}
        if [[ "$v" =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; then
            out="$out,\"$k\":$v"
        else
            v=${v//\\/\\\\}
            out="$out,\"$k\":\"${v//\"/\\\"}\""
        fi
    done
    echo "$out}" >>"$RAW"
}
