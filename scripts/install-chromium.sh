#!/usr/bin/env bash
# Installs Debian's chromium (for the report render check, scripts/render-report.mjs)
# when /usr/bin/chromium is missing. Idempotent: a present browser returns at once.
# Needs root (CI and the test machines run as root); uses apt-get only.
set -euo pipefail

chromium=/usr/bin/chromium
if [[ -x "$chromium" ]]; then
  exit 0
fi

# Two test threads (or a test and CI) may call this at once; apt holds its own lock
# but fails instead of waiting, so serialise the callers here and let the second one
# find the browser installed.
lock_dir="${TMPDIR:-/tmp}"
exec 9>"$lock_dir/mcp-bridge-install-chromium.lock"
flock 9

if [[ -x "$chromium" ]]; then
  exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
  echo "install-chromium.sh: $chromium is missing and installing it needs root" >&2
  exit 1
fi

echo "installing chromium (Debian package) for the report render check" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends chromium >&2

if [[ ! -x "$chromium" ]]; then
  echo "install-chromium.sh: apt-get finished but $chromium is still missing" >&2
  exit 1
fi
