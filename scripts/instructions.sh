#!/usr/bin/env bash
# Instructions per request of the load server's axum app in process, in every mode
# (bare, with ApiKeyLayer, with scopes and rate limits, and the two tower-http
# references), counted by callgrind: exact and repeatable where timings on a shared
# machine are not. Each mode runs 1 000 and 11 000 requests; the difference over
# 10 000 is the cost of one, start-up excluded.
#
#   scripts/instructions.sh
#
# Under valgrind the CPU's SHA extensions are not offered, so SHA-256 (one per
# authenticated request) runs in software: about 3 500 instructions instead of a few
# hundred. The auth and policy figures include that.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install -y valgrind" >&2; exit 1; }
cargo build --release -q -p keygate-bench --example requests
bin="${CARGO_TARGET_DIR:-target}/release/examples/requests"
out=$(mktemp -d)
count() { # mode n -> instructions
    valgrind --tool=callgrind --callgrind-out-file="$out/$1.$2" "$bin" "$1" "$2" 2>&1 |
        sed -n 's/.*refs: *//p' | tr -d ,
}
declare -A per
modes="bare auth policy auth-around policy-around tower-http headers floor floor-headers"
for mode in $modes; do
    small=$(count "$mode" 1000)
    large=$(count "$mode" 11000)
    per[$mode]=$(( (large - small) / 10000 ))
done
printf "%-13s %14s %10s\n" mode instructions "over bare"
for mode in $modes; do
    printf "%-13s %14d %10s\n" "$mode" "${per[$mode]}" "+$(( per[$mode] - per[bare] ))"
done
echo "callgrind files (callgrind_annotate): $out"
