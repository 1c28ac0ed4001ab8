#!/usr/bin/env bash
# Configures and builds Pipescope into build/ (or $PIPESCOPE_BUILD_DIR) with the default preset.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${PIPESCOPE_BUILD_DIR:-$root/build}
"$root/packaging/install-deps.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=${PIPESCOPE_BUILD_TYPE:-RelWithDebInfo} >/dev/null
cmake --build "$build" -j"$(nproc)"
