#!/usr/bin/env bash
# Installs the Debian 12 packages Pipescope needs to build, run and test, and only those that
# are missing (a second run costs nothing). Needs root or sudo.
set -euo pipefail

packages=(
  # toolchain
  cmake ninja-build g++ pkg-config ccache
  # engine (core/)
  libsimdjson-dev nlohmann-json3-dev libpcre2-dev libsqlite3-dev zlib1g-dev libxxhash-dev
  libmicrohttpd-dev libcurl4-openssl-dev libzstd-dev librdkafka-dev
  # UI and tests (Qt Test drives every suite)
  qt6-base-dev
  # test oracles and data: valijson for differential validation, the official JSON Schema suite
  libvalijson-dev json-schema-test-suite
  # end-to-end tests: posthog-js runs in a real browser; kcat is the third-party Kafka client
  chromium kcat
)
# The end-to-end tests install real SDKs (posthog-node, @segment/analytics-node, posthog-js) and
# the benchmark ajv from the npm registry: Node.js and npm, unless the machine has them already.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=()
if [[ $(id -u) != 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
