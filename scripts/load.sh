#!/usr/bin/env bash
# keygate's throughput budgets, measured in one run, server pinned to core 0 and wrk to
# core 1:
# - the same axum app bare, with ApiKeyLayer, and with scopes and rate limits, rounds
#   interleaved so that machine noise hits every mode alike (budget: >= 0.95 of bare);
# - valid-key throughput alone and under a flood of well-formed wrong keys (4 flood
#   connections beside 32 valid ones), with and without the per-key-id failure limit
#   (budget: >= 0.8 of the unflooded value).
#
#   scripts/load.sh [seconds per round] [rounds]     (defaults: 5 and 3)
#
# Traffic goes to 127.0.0.1 only, bounded by the round time.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
rounds="${2:-3}"
addr=127.0.0.1:3900

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }
cargo build --release -q -p keygate-bench --bin load_server
server=target/release/load_server

run() { # mode -> requests/s
    local mode=$1 out key pid rps
    out=$(mktemp)
    taskset -c 0 "$server" "$mode" "$addr" >"$out" &
    pid=$!
    for _ in $(seq 1 100); do grep -q "^key: " "$out" && (exec 3<>/dev/tcp/127.0.0.1/3900) 2>/dev/null && break; sleep 0.05; done
    key=$(sed -n 's/^key: //p' "$out")
    rps=$(taskset -c 1 wrk -t1 -c32 -d"${secs}s" -H "Authorization: Bearer $key" "http://$addr/v1/ping" |
        awk '/Requests\/sec/ {print $2}')
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -f "$out"
    echo "$rps"
}

declare -A total=([bare]=0 [auth]=0 [policy]=0)
for round in $(seq 1 "$rounds"); do
    line="round $round:"
    for mode in bare auth policy; do
        rps=$(run "$mode")
        total[$mode]=$(awk -v a="${total[$mode]}" -v b="$rps" 'BEGIN {print a + b}')
        line="$line $mode=$rps"
    done
    echo "$line"
done
ratio_line() {
    awk -v b="${total[bare]}" -v a="${total[auth]}" -v p="${total[policy]}" -v n="$rounds" 'BEGIN {
        printf "mean requests/s: bare=%.0f auth=%.0f policy=%.0f\n", b / n, a / n, p / n
        printf "ratio auth/bare=%.3f policy/bare=%.3f (budget >= 0.95)\n", a / b, p / b
    }'
}
ratio_line

flood() { # mode -> "alone under flood_rps"
    local mode=$1 out keys key pid fpid alone under fout
    out=$(mktemp); keys=$(mktemp); fout=$(mktemp)
    taskset -c 0 "$server" "$mode" "$addr" "$keys" >"$out" &
    pid=$!
    for _ in $(seq 1 200); do grep -q "^key: " "$out" && (exec 3<>/dev/tcp/127.0.0.1/3900) 2>/dev/null && break; sleep 0.05; done
    key=$(sed -n 's/^key: //p' "$out")
    # Warm the valid key (its one argon2 verify) before measuring.
    taskset -c 1 wrk -t1 -c1 -d1s -H "Authorization: Bearer $key" "http://$addr/v1/ping" >/dev/null
    alone=$(taskset -c 1 wrk -t1 -c32 -d"${secs}s" -H "Authorization: Bearer $key" "http://$addr/v1/ping" |
        awk '/Requests\/sec/ {print $2}')
    FLOOD_KEYS="$keys" taskset -c 1 wrk -t1 -c4 -d"${secs}s" -s scripts/flood.lua "http://$addr/v1/ping" >"$fout" &
    fpid=$!
    under=$(taskset -c 1 wrk -t1 -c32 -d"${secs}s" -H "Authorization: Bearer $key" "http://$addr/v1/ping" |
        awk '/Requests\/sec/ {print $2}')
    wait "$fpid" || true
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$alone $under $(awk '/Requests\/sec/ {print $2}' "$fout")"
    rm -f "$out" "$keys" "$fout"
}

for mode in flood flood-unthrottled; do
    read -r alone under flood_rps < <(flood "$mode")
    awk -v m="$mode" -v a="$alone" -v u="$under" -v f="$flood_rps" 'BEGIN {
        printf "%s: valid alone=%.0f under flood=%.0f (flood requests/s=%.0f) ratio=%.3f (budget >= 0.8)\n", m, a, u, f, u / a
    }'
done
