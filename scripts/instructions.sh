#!/usr/bin/env bash
# Instructions per request of the load server's apps in process, in every mode that the
# `requests` and `requests_actix` examples list with --modes (axum's bare, ApiKeyLayer on
# the route and around the app, with scopes and rate limits, and the references:
# tower-http, governor, static headers, floor; actix-web's bare, auth and policy),
# counted by callgrind: exact and repeatable where timings on a shared machine are not.
# Each mode runs 1 000 and 11 000 requests; the difference over 10 000 is the cost of
# one, start-up excluded. axum modes are reported over bare, actix modes over actix-bare.
#
#   scripts/instructions.sh
#
# The modes are counted in a build without keygate-bench's governor feature, as they
# were before that mode existed: tower_governor turns on axum's default features, whose
# original-uri (a URI cloned into every request) and tracing/log add work to every
# request of every mode. The modes that build does not serve (governor) are counted in
# the default build, over the bare of that build; that build's bare and policy
# (KEYGATE_INSTR_ALSO, default "policy") are printed below the table, for a comparison
# in one build.
#
# governor's clock (quanta) calibrates the TSC once, at start-up, for as long as time
# allows: millions of instructions, a different number every run, which would move the
# difference of two runs by hundreds a request. Each count leaves out the calibration
# (the inclusive cost of quanta's `Clock::default`, from callgrind_annotate); what is
# left varies by a couple of instructions a request, where the other modes vary by one.
#
# Under valgrind the CPU's SHA extensions are not offered, so SHA-256 (one per
# authenticated keygate request, and in floor) runs in software: about 3 600 instructions
# (keygate_core::verify::digest, inclusive) instead of a few hundred. The auth and policy
# figures include that; tower-http and governor hash nothing with SHA-256.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install -y valgrind" >&2; exit 1; }
target="${CARGO_TARGET_DIR:-target}"
out=$(mktemp -d)
# Two builds of the examples, one after the other: each is copied before the next
# replaces it. The actix modes are counted in the plain one, as the axum ones.
cargo build --release -q -p keygate-bench --no-default-features --example requests --example requests_actix
cp "$target/release/examples/requests" "$out/requests-plain"
cp "$target/release/examples/requests_actix" "$out/requests-actix"
cargo build --release -q -p keygate-bench --example requests
cp "$target/release/examples/requests" "$out/requests-full"

count() { # build mode n -> instructions, less quanta's calibration (see above)
    local file="$out/$1.$2.$3"
    valgrind --tool=callgrind --callgrind-out-file="$file" "$out/requests-$1" "$2" "$3" >/dev/null 2>&1 ||
        { echo "requests ($1 build) failed in mode $2: run $out/requests-$1 $2 $3" >&2; return 1; }
    callgrind_annotate --inclusive=yes "$file" | awk '
        /PROGRAM TOTALS/ {gsub(",", "", $1); total = $1}
        index($0, "<quanta::Clock as core::default::Default>::default") && !calibration {
            gsub(",", "", $1); calibration = $1
        }
        END {if (total) print total - calibration}'
}
per_request() { # build mode -> instructions per request
    local small large
    small=$(count "$1" "$2" 1000)
    large=$(count "$1" "$2" 11000)
    [ -n "$small" ] && [ -n "$large" ] || { echo "callgrind counted nothing for $2 ($1 build)" >&2; exit 1; }
    echo $(( (large - small) / 10000 ))
}

declare -A per ref full
order=()
while read -r mode reference; do
    order+=("$mode")
    ref[$mode]=$reference
done < <("$out/requests-full" --modes; "$out/requests-actix" --modes)
plain=" $("$out/requests-plain" --modes | cut -d' ' -f1 | tr '\n' ' ') "
actix=" $("$out/requests-actix" --modes | cut -d' ' -f1 | tr '\n' ' ') "
extra=()
for mode in "${order[@]}"; do
    if [[ "$plain" == *" $mode "* ]]; then
        per[$mode]=$(per_request plain "$mode")
    elif [[ "$actix" == *" $mode "* ]]; then
        per[$mode]=$(per_request actix "$mode")
    else
        extra+=("$mode")
    fi
done
if (( ${#extra[@]} )); then
    also=()
    for mode in ${KEYGATE_INSTR_ALSO-policy}; do
        [[ -v "ref[$mode]" ]] || { echo "KEYGATE_INSTR_ALSO: unknown mode \`$mode\`" >&2; exit 1; }
        also+=("$mode")
    done
    for mode in "${extra[@]}"; do also+=("${ref[$mode]}"); done
    for mode in $(printf '%s\n' "${also[@]}" "${extra[@]}" | awk '!seen[$0]++'); do
        full[$mode]=$(per_request full "$mode")
    done
fi

printf "%-14s %13s %10s  %s\n" mode instructions over reference
for mode in "${order[@]}"; do
    if [[ -v "per[$mode]" ]]; then
        printf "%-14s %13d %10s  %s\n" "$mode" "${per[$mode]}" "+$(( per[$mode] - per[${ref[$mode]}] ))" "${ref[$mode]}"
    else
        printf "%-14s %13d %10s  %s\n" "$mode" "${full[$mode]}" "+$(( full[$mode] - full[${ref[$mode]}] ))" \
            "${ref[$mode]} of the default build"
    fi
done
if (( ${#extra[@]} )); then
    echo "the default build (with tower_governor, so axum's default features), for ${extra[*]}:"
    for mode in "${order[@]}"; do
        [[ -v "full[$mode]" && -v "per[$mode]" ]] || continue
        printf "  %-12s %13d %10s  over %s there; %+d against the table\n" "$mode" "${full[$mode]}" \
            "+$(( full[$mode] - full[${ref[$mode]}] ))" "${ref[$mode]}" $(( full[$mode] - per[$mode] ))
    done
fi
echo "callgrind files (callgrind_annotate): $out"
