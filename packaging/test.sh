#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (ctest; the `bench` label is excluded:
# benchmarks are run with tests/bench/run_bench.sh). Then the threaded suites again under
# ThreadSanitizer in a second build directory (preset "tsan"; PIPESCOPE_TSAN=0 skips it).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${PIPESCOPE_BUILD_DIR:-$root/build}
"$root/packaging/build.sh"
(cd "$build" && ctest --output-on-failure --label-exclude bench -j"$(nproc)" "$@")

if [[ ${PIPESCOPE_TSAN:-1} != 0 ]]; then
  tsan=${PIPESCOPE_TSAN_BUILD_DIR:-$root/build-tsan}
  threaded='^tst_(store|collector|route|pipeline)$'
  started=$SECONDS
  (cd "$root" && cmake --preset tsan -B "$tsan" >/dev/null)
  cmake --build "$tsan" -j"$(nproc)" --target tst_store tst_collector tst_route tst_pipeline
  (cd "$tsan" && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$root/tests/tsan.supp" \
     ctest --output-on-failure -R "$threaded" -j"$(nproc)")
  echo "test.sh: ThreadSanitizer suites took $((SECONDS - started)) s (build and run)"
fi
