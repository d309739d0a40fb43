#!/usr/bin/env bash
# Builds the example and test-only policy plugins under plugins/ for wasm32-wasip2 and
# publishes them to build/plugins/ (examples) and build/plugins/testing/ (test-only).
#
#   scripts/build-plugins.sh           build every plugin (cheap when nothing changed)
#   scripts/build-plugins.sh --clippy  lint every plugin crate and the SDK, -D warnings
#   scripts/build-plugins.sh --test    run the unit tests of the SDK and the examples
#
# Each package gets its own cargo invocation: cargo unifies the SDK's features across
# the packages of one invocation, and the features pick the WIT world a plugin exports.
# Builds go to target/plugins so they never contend with the host's target dir.
# Concurrent callers (test threads, several test binaries) serialize on a lock file.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

mode=build
case "${1:-}" in
"") ;;
--clippy) mode=clippy ;;
--test) mode=test ;;
-h | --help)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "build-plugins.sh: unknown argument \`$1\` (try --help)" >&2
    exit 2
    ;;
esac

target=wasm32-wasip2
cargo="${CARGO:-cargo}"
export CARGO_TARGET_DIR="$root/target/plugins"
# The workspace's release profile keeps line tables for the host's backtraces; plugins drop
# their debug info (ten times smaller, and faster to compile on load) but keep the name
# section, so a trap's wasm backtrace still names the plugin's functions.
export CARGO_PROFILE_RELEASE_DEBUG=false
export CARGO_PROFILE_RELEASE_STRIP=debuginfo
out="$root/build/plugins"

mkdir -p "$out/testing"
exec 9>"$out/.lock"
flock 9

if ! rustup target list --installed | grep -qx "$target"; then
    echo "build-plugins: installing the $target target" >&2
    rustup target add "$target" >&2
fi

# package | cargo features ("-" for none) | published file under build/plugins
plugins=(
    "seed-ttl-table|-|seed-ttl-table.wasm"
    "annotations|-|annotations.wasm"
    "crud-invalidation|-|crud-invalidation.wasm"
    "fault-trap|-|testing/fault-trap.wasm"
    "fault-loop|-|testing/fault-loop.wasm"
    "fault-oom|-|testing/fault-oom.wasm"
    "fault-init|-|testing/fault-init.wasm"
    "wrong-wit|-|testing/wrong-wit.wasm"
    "no-policy|-|testing/no-policy.wasm"
    "reload-probe|-|testing/reload-probe-v1.wasm"
    "reload-probe|v2|testing/reload-probe-v2.wasm"
)

# Every world the SDK can select, for linting it on its own.
sdk_feature_sets=(
    cache-policy
    ttl-table
    invalidation-rules
    cache-policy,ttl-table
    cache-policy,invalidation-rules
    ttl-table,invalidation-rules
    cache-policy,ttl-table,invalidation-rules
)

feature_args() {
    if [[ "$1" != "-" ]]; then
        printf '%s\n' --features "$1"
    fi
}

case "$mode" in
clippy)
    for set in "${sdk_feature_sets[@]}"; do
        "$cargo" clippy --quiet --release --target "$target" -p mcp-bridge-plugin-sdk \
            --features "$set" -- -D warnings
        echo "clippy: mcp-bridge-plugin-sdk [$set] ok" >&2
    done
    for entry in "${plugins[@]}"; do
        IFS='|' read -r package features _ <<<"$entry"
        mapfile -t extra < <(feature_args "$features")
        "$cargo" clippy --quiet --release --target "$target" -p "$package" "${extra[@]}" \
            -- -D warnings
        echo "clippy: $package${extra[*]:+ ${extra[*]}} ok" >&2
    done
    # The unit tests too, which build for the build machine's own target.
    "$cargo" clippy --quiet --all-targets -p mcp-bridge-plugin-sdk \
        --features cache-policy,ttl-table,invalidation-rules -- -D warnings
    for package in seed-ttl-table annotations crud-invalidation; do
        "$cargo" clippy --quiet --all-targets -p "$package" -- -D warnings
    done
    echo "clippy: unit tests ok" >&2
    exit 0
    ;;
test)
    # On the build machine's own target: the plugin logic is plain Rust.
    "$cargo" test --quiet -p mcp-bridge-plugin-sdk --features cache-policy,ttl-table,invalidation-rules
    for package in seed-ttl-table annotations crud-invalidation; do
        "$cargo" test --quiet -p "$package"
    done
    exit 0
    ;;
esac

for entry in "${plugins[@]}"; do
    IFS='|' read -r package features file <<<"$entry"
    mapfile -t extra < <(feature_args "$features")
    "$cargo" build --quiet --release --target "$target" -p "$package" "${extra[@]}"
    artifact="$CARGO_TARGET_DIR/$target/release/${package//-/_}.wasm"
    dest="$out/$file"
    if ! cmp -s "$artifact" "$dest"; then
        # Copy under a temporary name, then rename: a reader never sees half a file.
        tmp="$(dirname "$dest")/.$(basename "$dest").tmp.$$"
        cp "$artifact" "$tmp"
        mv -f "$tmp" "$dest"
    fi
    size=$(wc -c <"$dest")
    echo "build-plugins: ${dest#"$root"/} ($((size / 1024)) KiB, $package${extra[*]:+ ${extra[*]}})" >&2
done
