#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and runs the main job on its embedded default,
# `pipescope-cli check` over the demo traffic and schemas in resources/. Any arguments are
# passed to pipescope-cli instead (e.g. `packaging/run.sh check --schemas s/ events.ndjson`).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${PIPESCOPE_BUILD_DIR:-$root/build}
"$root/packaging/build.sh"
cli="$build/app/pipescope-cli"
if (($# > 0)); then
  exec "$cli" "$@"
fi

demo="$root/resources/demo"
set +e
"$cli" check --schemas "$root/resources/schemas" \
  "$demo/web-client.ndjson" "$demo/backend-server.ndjson.gz" \
  --report "$build/demo-report.json" --capture "$build/demo.pipescope"
status=$?
set -e
if ((status == 2)); then exit 2; fi
cat <<MSG

The demo traffic has planted problems, so findings are expected (exit $status).
  JSON report:   $build/demo-report.json
  capture:       $build/demo.pipescope
  dead letters:  $cli export --capture $build/demo.pipescope --dlq
MSG
