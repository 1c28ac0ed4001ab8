#!/usr/bin/env bash
# Quick start: installs what is missing, builds, prints `pipescope-cli check` over the demo
# traffic and schemas in resources/, then starts the main job on its embedded default:
# `pipescope-cli run`, the local collector writing a capture (Ctrl-C stops it). Any arguments are
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
  identities:    $cli identity --capture $build/demo.pipescope --issues

Starting the local pipeline on its embedded default (collector on 127.0.0.1:8089, a new capture
in $build, the demo schemas). Point a PostHog or Segment SDK at http://127.0.0.1:8089; Ctrl-C stops.
MSG
cd "$build"
exec "$cli" run --schemas "$root/resources/schemas" --stats
