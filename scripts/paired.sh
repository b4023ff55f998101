#!/usr/bin/env bash
# keygate's throughput budget measured in pairs: a base mode (by default the bare app) and
# one other mode served at the same time, both pinned to core 0, each driven by its own
# wrk on core 1.
#
#   scripts/paired.sh [seconds per round] [rounds]     (defaults: 5 and 6)
#
# The scheduler shares core 0 between the two servers, so each serves what its share of
# the core allows, and the ratio of their requests/s is the ratio of their costs per
# request. Whatever the machine does meanwhile (another tenant, a change of clock speed)
# slows both servers at once, where `scripts/load.sh` runs the modes one after another
# and compares runs that the machine may have treated differently. The two servers
# swap ports and start order every round.
#
# KEYGATE_LOAD_MODES picks the modes paired with the base (default: every other mode
# compared with the same reference as the base, in `load_server --modes` order);
# KEYGATE_LOAD_BASE picks the base (default: bare), any mode of `load_server --modes`,
# e.g. keygate's policy against the hand-built tower-http + tower_governor stack:
#
#   KEYGATE_LOAD_BASE=governor KEYGATE_LOAD_MODES=policy scripts/paired.sh 5 6
#
# KEYGATE_LOAD_FRAMEWORK=actix makes actix-bare the default base, so that the default
# modes are actix-auth and actix-policy (and takes `auth` for `actix-auth`, and so on).
# Mode names are checked against `load_server --modes`, the one list of them. governor
# needs the default build, which turns on axum's default features in every mode (see
# scripts/instructions.sh); so the server is that build only when governor is asked for,
# and governor is no default mode.
#
# Besides the ratio of requests/s, each round gives the ratio of requests per CPU second
# of the two servers (from /proc), which holds whatever share of the core each got. The
# ratios mean something only while the servers, not the load generators, are the
# bottleneck: the script prints how busy both cores were.
# Traffic goes to 127.0.0.1 only, bounded by the round time.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
rounds="${2:-6}"

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }
server="${CARGO_TARGET_DIR:-target}/release/load_server"
hz=$(getconf CLK_TCK)

build() { # cargo flags -> load_server built, and its modes in $known ("mode reference" lines)
    cargo build --release -q -p keygate-bench "$@" --bin load_server
    known=$("$server" --modes)
}
reference() { # mode -> the mode it is compared with, or nothing if it is no mode
    awk -v m="$1" '$1 == m {print $2}' <<<"$known"
}
case "${KEYGATE_LOAD_FRAMEWORK:-axum}" in
    axum) framework_base=bare ;;
    actix) framework_base=actix-bare ;;
    *) echo "KEYGATE_LOAD_FRAMEWORK is axum or actix" >&2; exit 1 ;;
esac
known_mode() { # name -> the mode it names (actix's short names under actix), or fail
    local name=$1
    if [ "$framework_base" = actix-bare ] && [ "$(reference "actix-$name")" = actix-bare ]; then
        name="actix-$name"
    fi
    [ -n "$(reference "$name")" ] ||
        { echo "unknown mode \`$1\`: one of $(cut -d' ' -f1 <<<"$known" | paste -sd' ')" >&2; return 1; }
    echo "$name"
}
resolve() { # -> $base and $modes from the environment, or fail on a name $known lacks
    local name default
    base=$(known_mode "${KEYGATE_LOAD_BASE:-$framework_base}") || return 1
    default=$(awk -v r="$(reference "$base")" -v b="$base" '$2 == r && $1 != b {printf "%s ", $1}' <<<"$known")
    modes=""
    for name in ${KEYGATE_LOAD_MODES:-$default}; do
        modes="$modes $(known_mode "$name")" || return 1
    done
}
# The build without the governor feature serves every mode but governor as at 24943c9;
# the default build, only when a mode asked for needs it, turns on axum's default
# features in every mode (see scripts/instructions.sh): a constant cost per request.
build --no-default-features
resolve 2>/dev/null || { build; resolve; }

cpu_ticks() { # pid -> user + system clock ticks so far
    awk '{print $14 + $15}' "/proc/$1/stat"
}

core_busy() { # core -> busy and total clock ticks so far, from /proc/stat
    awk -v cpu="cpu$1" '$1 == cpu {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat
}

start() { # mode port out -> pid, once the server answers
    taskset -c 0 "$server" "$1" "127.0.0.1:$2" >"$3" &
    local pid=$!
    for _ in $(seq 1 200); do
        grep -q "^key: " "$3" && (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && break
        sleep 0.05
    done
    echo "$pid"
}

stop() { # pids... -> once they are gone (started in a subshell: not this shell's children)
    kill "$@" 2>/dev/null || true
    for pid in "$@"; do
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    done
}

pair() { # mode round -> "ratio per_cpu_ratio base_rps mode_rps core1_busy servers_share_of_core0"
    local mode=$1 round=$2 base_port=3901 mode_port=3902 dir
    local -a pids keys
    if (( round % 2 == 0 )); then base_port=3902 mode_port=3901; fi
    dir=$(mktemp -d)
    # Start order alternates too: the first server up gets no head start in the run.
    if (( round % 2 == 0 )); then
        pids[1]=$(start "$mode" "$mode_port" "$dir/mode.out")
        pids[0]=$(start "$base" "$base_port" "$dir/base.out")
    else
        pids[0]=$(start "$base" "$base_port" "$dir/base.out")
        pids[1]=$(start "$mode" "$mode_port" "$dir/mode.out")
    fi
    keys[0]=$(sed -n 's/^key: //p' "$dir/base.out")
    keys[1]=$(sed -n 's/^key: //p' "$dir/mode.out")
    if [ -z "${keys[0]}" ] || [ -z "${keys[1]}" ]; then
        stop "${pids[@]}"
        echo "a server did not start ($base and $mode, ports $base_port and $mode_port)" >&2
        exit 1
    fi
    # A short warm-up of each: the key's one verification, the first connections.
    taskset -c 1 wrk -t1 -c4 -d1s -H "Authorization: Bearer ${keys[0]}" "http://127.0.0.1:$base_port/v1/ping" >/dev/null
    taskset -c 1 wrk -t1 -c4 -d1s -H "Authorization: Bearer ${keys[1]}" "http://127.0.0.1:$mode_port/v1/ping" >/dev/null
    local c0 c1 t0 t1 u0 u1 v0 v1
    read -r c0 t0 < <(core_busy 1)
    u0=$(cpu_ticks "${pids[0]}"); v0=$(cpu_ticks "${pids[1]}")
    taskset -c 1 wrk -t1 -c32 -d"${secs}s" -H "Authorization: Bearer ${keys[0]}" \
        "http://127.0.0.1:$base_port/v1/ping" >"$dir/base.wrk" &
    local w0=$!
    taskset -c 1 wrk -t1 -c32 -d"${secs}s" -H "Authorization: Bearer ${keys[1]}" \
        "http://127.0.0.1:$mode_port/v1/ping" >"$dir/mode.wrk" &
    local w1=$!
    wait "$w0" "$w1"
    u1=$(cpu_ticks "${pids[0]}"); v1=$(cpu_ticks "${pids[1]}")
    read -r c1 t1 < <(core_busy 1)
    stop "${pids[@]}"
    local base_rps mode_rps
    base_rps=$(awk '/Requests\/sec/ {print $2}' "$dir/base.wrk")
    mode_rps=$(awk '/Requests\/sec/ {print $2}' "$dir/mode.wrk")
    rm -rf "$dir"
    if [ -z "$base_rps" ] || [ -z "$mode_rps" ] || (( u1 == u0 || v1 == v0 )); then
        echo "a round of $mode against $base measured nothing (wrk failed, or a server used no CPU)" >&2
        exit 1
    fi
    # Requests per CPU second of each server: the ratio of their costs, whatever share
    # of the core each got.
    awk -v b="$base_rps" -v m="$mode_rps" -v bt=$((u1 - u0)) -v mt=$((v1 - v0)) -v busy=$((c1 - c0)) \
        -v total=$((t1 - t0)) -v secs="$secs" -v hz="$hz" \
        'BEGIN {printf "%.4f %.4f %.0f %.0f %.3f %.3f\n", m / b, (m / mt) / (b / bt), b, m, busy / total,
            (bt + mt) / hz / secs}'
}

echo "base: $base; $rounds rounds of ${secs}s, $base and each mode at once on core 0"
results=$(mktemp)
for mode in $modes; do
    line="$mode:"
    for round in $(seq 1 "$rounds"); do
        read -r ratio per_cpu base_rps mode_rps core1 core0 < <(pair "$mode" "$round")
        echo "$mode $ratio $per_cpu $base_rps $mode_rps $core1 $core0" >>"$results"
        line="$line $ratio"
    done
    echo "$line"
done
awk -v modes="$modes" -v base="$base" -v budget="$([ "$(reference "$base")" = "$base" ] && echo 1)" '
    {k = ++n[$1]; r[$1, k] = $2; q[$1, k] = $3; b[$1] += $4; m[$1] += $5
     if ($6 > top) top = $6; if (low == "" || $7 < low) low = $7}
    function median(a, k,   i, j, t) {
        for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) {t = a[i]; a[i] = a[j]; a[j] = t}
        return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }
    END {
        printf "%-14s %11s %11s %15s %17s %14s %16s\n", "mode", "base req/s", "mode req/s", "ratio of means",
            "median of ratios", "round ratios", "per CPU (median)"
        c = split(modes, ms, " ")
        for (i = 1; i <= c; i++) {
            x = ms[i]; k = n[x]
            for (j = 1; j <= k; j++) {a[j] = r[x, j]; p[j] = q[x, j]}
            med = median(a, k); pmed = median(p, k)
            printf "%-14s %11.0f %11.0f %15.3f %17.3f %6.3f..%.3f %16.3f\n", x, b[x] / k, m[x] / k, m[x] / b[x],
                med, a[1], a[k], pmed
        }
        printf "servers: at least %.0f%% of core 0 between them; load generators: core 1 busy at most %.0f%%\n",
            low * 100, top * 100
        if (budget) print "budget (docs/ARCHITECTURE.md): instructions.sh counts; policy >= 1.0 of governor per CPU second"
    }' "$results"
rm -f "$results"
