#!/usr/bin/env bash
# Decode + validation benchmark: builds bench_pipeline if needed, installs ajv (npm ci) under the
# build directory, generates the corpus, runs both, and prints figures and ratios side by side.
#
#   tests/bench/run_bench.sh [BUILD_DIR]       (default: <repo>/build)
#   env: EVENTS=200000  REPEAT=5  SEED=<generator default>
#
# Performance targets are printed as PASS/BELOW for information only: shared machines are noisy,
# so the exit status never depends on a timing. It is non-zero only when something is wrong:
# a build or run failure, or verdicts that disagree (ours vs planted, ours vs ajv).
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bench_src=$src/tests/bench
build=$(realpath -m "${1:-$src/build}")
events=${EVENTS:-200000}
repeat=${REPEAT:-5}
seed_args=()
[[ -n ${SEED:-} ]] && seed_args=(--seed "$SEED")

say() { printf '%s\n' "$*" >&2; }
die() { say "run_bench: $*"; exit 2; }

command -v node >/dev/null || die "node is not installed (ajv runs on it)"
command -v npm >/dev/null || die "npm is not installed"

# --- build ---------------------------------------------------------------------------------------
if [[ ! -f $build/CMakeCache.txt ]]; then
    say "run_bench: configuring $build (Release)"
    cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >&2
fi
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")
cxx_flags=$(sed -n 's/^CMAKE_CXX_FLAGS:[A-Z]*=//p' "$build/CMakeCache.txt")
say "run_bench: building bench_pipeline in $build"
cmake --build "$build" --target bench_pipeline >&2
bin=$build/tests/bench/bench_pipeline
[[ -x $bin ]] || die "no $bin after the build"

# --- ajv, installed under the build directory (never in the source tree) -----------------------
node_dir=$build/bench-node
mkdir -p "$node_dir"
cp "$bench_src/package.json" "$node_dir/package.json"
if [[ -f $bench_src/package-lock.json ]]; then
    if ! cmp -s "$bench_src/package-lock.json" "$node_dir/.installed-lock.json" || [[ ! -d $node_dir/node_modules/ajv ]]; then
        cp "$bench_src/package-lock.json" "$node_dir/package-lock.json"
        say "run_bench: npm ci in $node_dir"
        (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
        cp "$bench_src/package-lock.json" "$node_dir/.installed-lock.json"
    fi
elif [[ ! -d $node_dir/node_modules/ajv ]]; then
    say "run_bench: npm install in $node_dir (no package-lock.json in $bench_src)"
    (cd "$node_dir" && npm install --no-audit --no-fund --loglevel=error >&2)
fi

# --- corpus and runs -------------------------------------------------------------------------------
work=$build/bench-data
mkdir -p "$work"
corpus=$work/corpus.ndjson
"$bin" --generate "$corpus" --events "$events" "${seed_args[@]}" >&2

ours_out=$work/bench_pipeline.out
ajv_out=$work/ajv.out
say "run_bench: bench_pipeline ($events events, best of $repeat)"
set +e
"$bin" --corpus "$corpus" --repeat "$repeat" --check --schemas "$bench_src/schemas" \
    --properties-out "$work/properties.tsv" --invalid-out "$work/invalid.pipescope.txt" | tee "$ours_out" >&2
ours_status=${PIPESTATUS[0]}
set -e
[[ $ours_status -le 1 ]] || die "bench_pipeline failed (exit $ours_status); see $ours_out"
say "run_bench: ajv"
AJV_NODE_MODULES=$node_dir node --max-old-space-size=8192 "$bench_src/ajv_validate.mjs" \
    --schemas "$bench_src/schemas" --properties "$work/properties.tsv" --repeat "$repeat" \
    --invalid-out "$work/invalid.ajv.txt" | tee "$ajv_out" >&2

# --- table ---------------------------------------------------------------------------------------------
# value FILE RECORD NAME KEY: the KEY=value on the line "RECORD NAME ..." of FILE.
value() {
    awk -v r="$2" -v n="$3" -v k="$4" '$1 == r && ($2 == n || n == "") {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) { print kv[2]; exit } } }' "$1"
}
num() { awk -v x="$1" 'BEGIN {
    s = sprintf("%.0f", x); out = ""; neg = substr(s, 1, 1) == "-"; if (neg) s = substr(s, 2)
    while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
    print (neg ? "-" : "") s out }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }

rate() { value "$1" BENCH "$2" events_per_s; }
mbs() { value "$1" BENCH "$2" mb_per_s; }
r_simd=$(rate "$ours_out" simdjson_parse)
r_nlo=$(rate "$ours_out" nlohmann_parse)
r_dec=$(rate "$ours_out" decode)
r_dv=$(rate "$ours_out" decode_validate)
r_val=$(rate "$ours_out" validate)
r_ajv=$(rate "$ajv_out" ajv_validate)

row() { # label rate mb/s vs-floor
    printf '  %-36s %13s %9s %9s\n' "$1" "$(num "$2")" "$3" "$4"
}
counts_row() { # label file who
    printf '  %-12s %11s %9s %10s\n' "$1" "$(num "$(value "$2" COUNTS "$3" valid)")" \
        "$(num "$(value "$2" COUNTS "$3" invalid)")" "$(num "$(value "$2" COUNTS "$3" unplanned)")"
}
triple() { echo "$(value "$1" COUNTS "$2" valid)/$(value "$1" COUNTS "$2" invalid)/$(value "$1" COUNTS "$2" unplanned)"; }

echo
echo "Pipescope decode + validation benchmark"
printf '  build    %s (%s%s)\n' "$build" "${build_type:-no build type}" "${cxx_flags:+, CXXFLAGS $cxx_flags}"
[[ $build_type == Release || $build_type == RelWithDebInfo ]] ||
    echo "  WARNING: not an optimised build; these figures say little"
printf '  corpus   %s events, %s MB, mean event %s B; properties %s MB, mean %s B\n' \
    "$(num "$(value "$ours_out" CORPUS '' lines)")" "$(value "$ours_out" CORPUS '' mb)" \
    "$(num "$(value "$ours_out" CORPUS '' mean_event_bytes)")" \
    "$(awk -v b="$(value "$ours_out" PROPERTIES '' bytes)" 'BEGIN { printf "%.2f", b / 1e6 }')" \
    "$(num "$(value "$ours_out" PROPERTIES '' mean_properties_bytes)")"
printf '  ajv      %s\n' "$(sed -n 's/^ajv_validate: //p' "$ajv_out")"
printf '  method   one thread per stage, best of %s runs, all figures from this run\n' "$repeat"
echo
printf '  %-36s %13s %9s %9s\n' "stage" "events/s" "MB/s" "vs (a)"
row "(a) simdjson DOM parse (floor)" "$r_simd" "$(mbs "$ours_out" simdjson_parse)" "1.00x"
row "(b) nlohmann_json parse" "$r_nlo" "$(mbs "$ours_out" nlohmann_parse)" "$(ratio "$r_nlo" "$r_simd")"
row "(c) pipescope decode" "$r_dec" "$(mbs "$ours_out" decode)" "$(ratio "$r_dec" "$r_simd")"
row "(d) pipescope decode + validate" "$r_dv" "$(mbs "$ours_out" decode_validate)" "$(ratio "$r_dv" "$r_simd")"
row "(e) pipescope validate only" "$r_val" "$(mbs "$ours_out" validate)" "-"
row "(f) ajv validate only" "$r_ajv" "$(mbs "$ajv_out" ajv_validate)" "-"
echo
echo "  ratios"
printf '    %-44s %s\n' "decode+validate / simdjson parse" "$(ratio "$r_dv" "$r_simd")"
printf '    %-44s %s\n' "decode / simdjson parse" "$(ratio "$r_dec" "$r_simd")"
printf '    %-44s %s\n' "nlohmann parse / simdjson parse" "$(ratio "$r_nlo" "$r_simd")"
printf '    %-44s %s\n' "pipescope validate / ajv validate" "$(ratio "$r_val" "$r_ajv")"
printf '    %-44s %s ns\n' "validation cost per event in the pipeline" \
    "$(awk -v d="$r_dec" -v dv="$r_dv" 'BEGIN { printf "%.0f", 1e9 / dv - 1e9 / d }')"
echo
printf '  %-12s %11s %9s %10s\n' "verdicts" "valid" "invalid" "unplanned"
counts_row "planted" "$ours_out" planted
counts_row "pipescope" "$ours_out" pipescope
counts_row "ajv" "$ajv_out" ajv

mismatch=0
if [[ $(triple "$ours_out" pipescope) != "$(triple "$ajv_out" ajv)" ]] ||
    ! cmp -s "$work/invalid.pipescope.txt" "$work/invalid.ajv.txt"; then
    mismatch=1
    echo
    echo "  !!!!!!!! MISMATCH: pipescope and ajv disagree on which events are invalid !!!!!!!!"
    echo "  first differing events (line of $work/properties.tsv; < pipescope only, > ajv only):"
    diff "$work/invalid.pipescope.txt" "$work/invalid.ajv.txt" | grep '^[<>]' | head -10 |
        while read -r side line; do
            printf '    %s line %s: %s\n' "$side" "$line" "$(sed -n "${line}p" "$work/properties.tsv" | cut -c1-300)"
        done
fi
if [[ $ours_status -ne 0 ]] || ! grep -q '^CHECK ok' "$ours_out"; then
    mismatch=1
    echo
    echo "  !!!!!!!! MISMATCH: pipescope's verdicts differ from what the generator planted !!!!!!!!"
    grep '^CHECK\|^    ' "$ours_out" | head -40 | sed 's/^/    /'
fi
[[ $mismatch -eq 0 ]] && echo "  verdicts agree: pipescope = ajv = planted, event by event"

echo
echo "  targets (information only: the exit status never depends on timings)"
if ge "$r_val" "$r_ajv"; then verdict=PASS; else verdict=BELOW; fi
printf '    %-48s %-5s  %s of ajv\n' "validation alone >= ajv" "$verdict" "$(ratio "$r_val" "$r_ajv")"
if ge "$r_dv" 1000000; then verdict=PASS; else verdict=BELOW; fi
printf '    %-48s %-5s  %s events/s\n' "decode+validate >= 1,000,000 events/s, 1 core" "$verdict" "$(num "$r_dv")"
echo
echo "  raw output: $ours_out, $ajv_out"
exit "$mismatch"
