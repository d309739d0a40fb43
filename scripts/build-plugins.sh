#!/usr/bin/env bash
# Builds the example and test-only policy plugins under plugins/ for wasm32-wasip2 and
# publishes them to build/plugins/ (examples) and build/plugins/testing/ (test-only).
#
#   scripts/build-plugins.sh           build every plugin (cheap when nothing changed)
#   scripts/build-plugins.sh --clippy  lint every plugin crate, the SDK and the artifacts crate, -D warnings
#   scripts/build-plugins.sh --test    run the unit tests of the SDK (its README too), the examples and the artifacts crate
#
# Every plugin builds in one cargo invocation, run by the build script of the plugin
# artifacts crate (plugins/testing/artifacts) into target/plugins whenever a plugin, the
# SDK or wit/ changes; the tests and benches get their plugins from that crate too. Its
# `publish-plugins` binary copies the results here.
# Concurrent callers serialize on a lock file.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

mode=build
case "${1:-}" in
"") ;;
--clippy) mode=clippy ;;
--test) mode=test ;;
-h | --help)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "build-plugins.sh: unknown argument \`$1\` (try --help)" >&2
    exit 2
    ;;
esac

target=wasm32-wasip2
cargo="${CARGO:-cargo}"
out="$root/build/plugins"
artifacts=mcp-bridge-plugin-artifacts
# The examples with unit tests of their own, run on the build machine's target.
examples=(seed-ttl-table annotations crud-invalidation)

mkdir -p "$out/testing"
exec 9>"$out/.lock"
flock 9

if ! rustup target list --installed | grep -qx "$target"; then
    echo "build-plugins: installing the $target target" >&2
    rustup target add "$target" >&2
fi

# Building the artifacts crate builds every plugin; running it publishes them or lists them.
publish_plugins() {
    "$cargo" run --quiet -p "$artifacts" -- "$@"
}

case "$mode" in
clippy)
    mapfile -t plugins < <(publish_plugins --packages)
    packages=(-p mcp-bridge-plugin-sdk)
    for package in "${plugins[@]}"; do
        packages+=(-p "$package")
    done
    # The plugins' own target directory, where the artifacts crate builds them.
    CARGO_TARGET_DIR="$root/target/plugins" "$cargo" clippy --quiet --release \
        --target "$target" "${packages[@]}" -- -D warnings
    echo "clippy: the SDK and ${#plugins[@]} plugins ok" >&2
    # The unit tests too, which build for the build machine's own target.
    example_packages=()
    for package in "${examples[@]}"; do
        example_packages+=(-p "$package")
    done
    CARGO_TARGET_DIR="$root/target/plugins" "$cargo" clippy --quiet --all-targets \
        -p mcp-bridge-plugin-sdk "${example_packages[@]}" -- -D warnings
    "$cargo" clippy --quiet --all-targets -p "$artifacts" -- -D warnings
    echo "clippy: unit tests and the artifacts crate ok" >&2
    exit 0
    ;;
test)
    # On the build machine's own target: the plugin logic is plain Rust. The SDK's
    # doctests include the README's tutorial.
    example_packages=()
    for package in "${examples[@]}"; do
        example_packages+=(-p "$package")
    done
    CARGO_TARGET_DIR="$root/target/plugins" "$cargo" test --quiet \
        -p mcp-bridge-plugin-sdk "${example_packages[@]}"
    "$cargo" test --quiet -p "$artifacts"
    exit 0
    ;;
esac

publish_plugins build/plugins
