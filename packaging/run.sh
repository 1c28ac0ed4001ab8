#!/usr/bin/env bash
# Quick start: installs what is missing, builds, prints `pipescope-cli check` over the demo
# traffic and schemas in resources/, then starts the main job on its embedded default. With a
# display (DISPLAY or WAYLAND_DISPLAY set) that is the desktop inspector `pipescope`: the same
# engine in-process, its collector on 127.0.0.1:8089, a new capture in the user's data folder.
# Without one it is the headless `pipescope-cli run`, the local collector writing a capture
# (Ctrl-C stops it). PIPESCOPE_HEADLESS=1 chooses the headless run even with a display. Any
# arguments are passed to pipescope-cli instead (e.g. `packaging/run.sh check --schemas s/ events.ndjson`).
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

MSG
gui="$build/app/pipescope"
if [[ -z ${PIPESCOPE_HEADLESS:-} && ( -n ${DISPLAY:-} || -n ${WAYLAND_DISPLAY:-} ) && -x $gui ]]; then
  cat <<MSG
A display is available (${WAYLAND_DISPLAY:+WAYLAND_DISPLAY=$WAYLAND_DISPLAY }${DISPLAY:+DISPLAY=$DISPLAY}): starting the desktop inspector on its embedded
default (collector on 127.0.0.1:8089, a new capture in the user's data folder, the demo schemas).
Point a PostHog or Segment SDK at http://127.0.0.1:8089; its "Send events here" panel has snippets.
(PIPESCOPE_HEADLESS=1 packaging/run.sh runs the headless pipeline instead.)
MSG
  exec "$gui" --schemas "$root/resources/schemas"
fi
cat <<MSG
No display${PIPESCOPE_HEADLESS:+ wanted (PIPESCOPE_HEADLESS is set)}: starting the headless pipeline on its embedded default
(collector on 127.0.0.1:8089, a new capture in $build, the demo schemas). Point a PostHog or
Segment SDK at http://127.0.0.1:8089; Ctrl-C stops.
MSG
cd "$build"
exec "$cli" run --schemas "$root/resources/schemas" --stats
