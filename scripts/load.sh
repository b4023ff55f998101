#!/usr/bin/env bash
# keygate's throughput budgets, measured in one run, server pinned to core 0 and wrk to
# core 1:
# - the same axum app bare, with ApiKeyLayer, and with scopes and rate limits, rounds
#   interleaved so that machine noise hits every mode alike (the budget is in
#   instructions: scripts/instructions.sh, docs/ARCHITECTURE.md),
#   with requests/s and the server's CPU time per request;
# - valid-key throughput alone and under a flood of well-formed wrong keys sent at a
#   fixed rate (KEYGATE_FLOOD_RATE, default 2000/s, by the `flood` generator beside 32
#   valid wrk connections), with and without the per-key-id failure limit (budget:
#   >= 0.8 of the unflooded value), in a first round (which pays for the guesses hashed
#   before the limit) and a second. The generator shares core 1 with wrk: a fixed
#   slice of it.
#
#   scripts/load.sh [seconds per run] [rounds]     (defaults: 5 and 3)
#
# KEYGATE_LOAD_MODES picks the modes of the first part (default: every mode that
# `load_server --modes` compares with bare, but governor; bare is always run), checked
# against that list. KEYGATE_LOAD_FRAMEWORK=actix runs the first part on actix-web
# instead (the modes compared with actix-bare, with ApiKeyMiddleware; `auth` is taken for
# `actix-auth`), and no flood. governor needs the default build, which turns on axum's
# default features in every mode (see scripts/instructions.sh); so the server is that
# build only when governor is asked for.
#
# Traffic goes to 127.0.0.1 only, bounded by the round time.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
rounds="${2:-3}"
addr=127.0.0.1:3900

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }
server="${CARGO_TARGET_DIR:-target}/release/load_server"
flood_bin="${CARGO_TARGET_DIR:-target}/release/flood"

cpu_ticks() { # pid -> user + system clock ticks so far
    awk '{print $14 + $15}' "/proc/$1/stat"
}

run() { # mode -> "requests/s server-CPU-µs-per-request"
    local mode=$1 out key pid res t0 t1
    out=$(mktemp)
    taskset -c 0 "$server" "$mode" "$addr" >"$out" &
    pid=$!
    for _ in $(seq 1 100); do grep -q "^key: " "$out" && (exec 3<>/dev/tcp/127.0.0.1/3900) 2>/dev/null && break; sleep 0.05; done
    key=$(sed -n 's/^key: //p' "$out")
    t0=$(cpu_ticks "$pid")
    res=$(taskset -c 1 wrk -t1 -c32 -d"${secs}s" -H "Authorization: Bearer $key" "http://$addr/v1/ping")
    t1=$(cpu_ticks "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -f "$out"
    awk -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" '
        /requests in/ {n = $1} /Requests\/sec/ {rps = $2}
        END {printf "%s %.2f\n", rps, ticks / hz * 1e6 / n}' <<<"$res"
}

# Rounds interleave the modes; each round's ratios are kept, and the median of them
# reported beside the ratio of means, since one noisy round can move a mean. Reference
# modes run in the same rounds: tower-http's fixed-token bearer check (a floor for any
# authentication layer); one layer adding three static response headers (with
# tower-http's, the floor of what the X-RateLimit-* headers cost); `floor`, a layer
# doing only the two costs keygate cannot drop, a SHA-256 of the key and a Principal in
# the request's extensions; and `floor-headers`, both of the last two at once: what
# `policy`'s unavoidable work costs; and `governor`, tower-http's check with tower_governor
# keyed by the token, the stack a user would hand-build instead of `policy` (see
# crates/keygate-bench/src/lib.rs).
case "${KEYGATE_LOAD_FRAMEWORK:-axum}" in
    axum) base=bare ;;
    actix) base=actix-bare ;;
    *) echo "KEYGATE_LOAD_FRAMEWORK is axum or actix" >&2; exit 1 ;;
esac
build() { # cargo flags -> load_server built, and its modes in $known ("mode reference" lines)
    cargo build --release -q -p keygate-bench "$@" --bin load_server --bin flood
    known=$("$server" --modes)
}
reference() { # mode -> the mode it is compared with, or nothing if it is no mode
    awk -v m="$1" '$1 == m {print $2}' <<<"$known"
}
resolve() { # -> $modes from the environment, or fail on a name $known lacks
    local name all
    all=$(awk -v b="$base" '$2 == b {printf "%s ", $1}' <<<"$known")
    modes=""
    for name in ${KEYGATE_LOAD_MODES:-$all}; do
        if [ "$base" = actix-bare ] && [ "$(reference "actix-$name")" = actix-bare ]; then
            name="actix-$name"
        fi
        [ -n "$(reference "$name")" ] ||
            { echo "unknown mode \`$name\`: one of $(cut -d' ' -f1 <<<"$known" | paste -sd' ')" >&2; return 1; }
        modes="$modes $name"
    done
}
# The build without the governor feature serves every mode but governor as at 24943c9;
# the default build, only when a mode asked for needs it, turns on axum's default
# features in every mode (see scripts/instructions.sh): a constant cost per request.
build --no-default-features
resolve 2>/dev/null || { build; resolve; }
echo "framework: ${KEYGATE_LOAD_FRAMEWORK:-axum}"
others=$(tr ' ' '\n' <<<"$modes" | grep -vx -e "$base" -e '' | tr '\n' ' ')
# Each round runs bare first and last, the other modes in between in an order rotated
# from round to round; a mode's baseline is bare interpolated to its place in the round,
# so that a machine getting slower or faster during a round biases no mode.
results=$(mktemp)
run "$base" >/dev/null # warm-up, not counted: a machine's first run is often slower
for round in $(seq 1 "$rounds"); do
    read -ra order <<<"$others"
    shift_by=$(( (round - 1) % ${#order[@]} ))
    order=("$base" "${order[@]:shift_by}" "${order[@]:0:shift_by}" "$base")
    line="round $round:"
    for place in "${!order[@]}"; do
        mode=${order[$place]}
        read -r rps cpu < <(run "$mode")
        echo "$round $place $mode $rps $cpu ${#order[@]}" >>"$results"
        line="$line $mode=$rps"
    done
    echo "$line"
done
awk -v modes="$base $others" -v bare="$base" '
    {round[NR] = $1; place[NR] = $2; mode[NR] = $3; rps[NR] = $4; cpu[NR] = $5; last = $6 - 1
     if ($3 == bare) base[$1, $2 == 0 ? 0 : 1] = $4; k = $1 > k ? $1 : k}
    function median(a, n,   i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) {t = a[i]; a[i] = a[j]; a[j] = t}
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END {
        for (i = 1; i <= NR; i++) {
            m = mode[i]; j = round[i]
            b = base[j, 0] + (base[j, 1] - base[j, 0]) * place[i] / last
            sum[m] += rps[i]; sumbase[m] += b; cpus[m] += cpu[i]; runs[m]++
            ratio[m, j] = rps[i] / b
        }
        n = split(modes, ms, " ")
        printf "%-13s %11s %14s %15s %17s %14s\n", "mode", "requests/s", "CPU µs/request", "ratio of means",
            "median of ratios", "round ratios"
        for (i = 1; i <= n; i++) {
            m = ms[i]
            if (m == bare) {
                printf "%-13s %11.0f %14.2f %15s %17s %14s\n", m, sum[m] / runs[m], cpus[m] / runs[m],
                    "1.000", "1.000", ""
                continue
            }
            for (j = 1; j <= k; j++) ratios[j] = ratio[m, j]
            med = median(ratios, k) # sorts ratios
            printf "%-13s %11.0f %14.2f %15.3f %17.3f %6.3f..%.3f\n", m, sum[m] / runs[m], cpus[m] / runs[m],
                sum[m] / sumbase[m], med, ratios[1], ratios[k]
        }
        for (j = 1; j <= k; j++) drift[j] = base[j, 1] / base[j, 0]
        med = median(drift, k) # sorts drift
        printf "drift: %s at the end of a round / at its start: median %.3f, %.3f..%.3f\n", bare, med, drift[1], drift[k]
        print "budget (docs/ARCHITECTURE.md): instructions.sh counts; the flood >= 0.8 of valid traffic alone"
    }' "$results"
rm -f "$results"

flood() { # mode -> "alone under_first flood_rps_first under_steady flood_rps_steady"
    local mode=$1 out keys key pid alone first steady
    out=$(mktemp); keys=$(mktemp)
    taskset -c 0 "$server" "$mode" "$addr" "$keys" >"$out" &
    pid=$!
    for _ in $(seq 1 200); do grep -q "^key: " "$out" && (exec 3<>/dev/tcp/127.0.0.1/3900) 2>/dev/null && break; sleep 0.05; done
    key=$(sed -n 's/^key: //p' "$out")
    # Warm the valid key (its one argon2 verify) before measuring.
    taskset -c 1 wrk -t1 -c1 -d1s -H "Authorization: Bearer $key" "http://$addr/v1/ping" >/dev/null
    alone=$(taskset -c 1 wrk -t1 -c32 -d"${secs}s" -H "Authorization: Bearer $key" "http://$addr/v1/ping" |
        awk '/Requests\/sec/ {print $2}')
    # Twice: the first round pays for the guesses hashed before the failure limit
    # (once per key id and window), the second is the steady state after it.
    first=$(flooded "$key" "$keys")
    steady=$(flooded "$key" "$keys")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$alone $first $steady"
    rm -f "$out" "$keys"
}

flooded() { # valid key, flood key file -> "valid_rps flood_rps" while both run
    # The flood is open-loop at a fixed rate (KEYGATE_FLOOD_RATE requests/s, default
    # 2000, over 4 connections), from its own generator (crates/keygate-bench/src/bin/flood.rs),
    # not a second closed-loop wrk: its size is then a setting, whatever the server does.
    local fout fpid under
    fout=$(mktemp)
    taskset -c 1 "$flood_bin" "$addr" "$2" "${KEYGATE_FLOOD_RATE:-2000}" "$secs" 4 >"$fout" &
    fpid=$!
    under=$(taskset -c 1 wrk -t1 -c32 -d"${secs}s" -H "Authorization: Bearer $1" "http://$addr/v1/ping" |
        awk '/Requests\/sec/ {print $2}')
    wait "$fpid" || true
    echo "$under $(sed -n 's/.* rate=\([0-9]*\)\/s.*/\1/p' "$fout")"
    rm -f "$fout"
}

[ "$base" = bare ] || exit 0 # the flood modes are axum's
for mode in flood flood-unthrottled; do
    read -r alone under flood_rps steady steady_flood_rps < <(flood "$mode")
    awk -v m="$mode" -v a="$alone" -v u="$under" -v f="$flood_rps" -v s="$steady" -v sf="$steady_flood_rps" 'BEGIN {
        printf "%s: valid alone=%.0f; under flood, first round=%.0f (flood requests/s=%.0f) ratio=%.3f, then=%.0f (%.0f) ratio=%.3f (budget >= 0.8)\n",
            m, a, u, f, u / a, s, sf, s / a
    }'
done
