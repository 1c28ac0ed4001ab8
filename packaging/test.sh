#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (ctest; the `bench` label is excluded:
# benchmarks are run with tests/bench/run_bench.sh).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${PIPESCOPE_BUILD_DIR:-$root/build}
"$root/packaging/build.sh"
cd "$build"
ctest --output-on-failure --label-exclude bench -j"$(nproc)" "$@"
