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
  started=$SECONDS
  (cd "$root" && cmake --preset tsan -B "$tsan" >/dev/null)
  cmake --build "$tsan" -j"$(nproc)" --target tst_store tst_collector tst_route tst_pipeline
  export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$root/tests/tsan.supp"
  # Test functions that measure the process's memory (RSS) measure TSan's shadow memory here:
  # they run in the normal build only.
  rss_bound='^(decompressionBombsHoldLittle)$'
  status=0
  for suite in tst_store tst_collector tst_route tst_pipeline; do
    mapfile -t functions < <("$tsan/tests/$suite" -functions | sed 's/()$//' | grep -Ev "$rss_bound")
    echo "test.sh: $suite under ThreadSanitizer (${#functions[@]} functions)"
    (cd "$tsan/tests" && QT_QPA_PLATFORM=offscreen "./$suite" "${functions[@]}" >"$suite.tsan.log" 2>&1) ||
      { status=$?; tail -n 60 "$tsan/tests/$suite.tsan.log"; echo "test.sh: $suite failed under ThreadSanitizer"; }
  done
  echo "test.sh: ThreadSanitizer suites took $((SECONDS - started)) s (build and run)"
  exit "$status"
fi
