#!/usr/bin/env bash
# Installs the real MCP servers (npm), clients (PyPI) and the MCP conformance suite with
# the Node 22 it needs (the `node` npm package) that the integration tests use,
# pinned by package-lock.json and requirements.txt, into build/test-deps/ at the repo
# root. Idempotent and cheap when nothing changed: a stamp records the inputs' hash.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/build/test-deps"
mkdir -p "$out"

# Two test threads may call this at once; the lock makes the second wait and then
# find everything installed.
exec 9>"$out/.lock"
flock 9

stamp="$out/.stamp"
inputs_hash="$(cat "$here/package.json" "$here/package-lock.json" "$here/requirements.txt" "$here/install.sh" | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$inputs_hash" ]]; then
  exit 0
fi

echo "installing test dependencies into $out" >&2
cp "$here/package.json" "$here/package-lock.json" "$out/"
(cd "$out" && npm ci --no-audit --no-fund --loglevel=error >&2)

if [[ ! -x "$out/venv/bin/python" ]]; then
  python3 -m venv "$out/venv"
fi
"$out/venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2

echo "$inputs_hash" > "$stamp"
