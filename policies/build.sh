#!/usr/bin/env bash
# Build every shipped policy from source for wasm32-wasip2 (Rust crates here, other languages
# through their own build.sh) and copy the components into a
# directory as NAME.wasm (module names use dashes: pci-mask.wasm).
#   policies/build.sh [OUT_DIR]     (default: target/policies)
set -euo pipefail
# Resolve OUT_DIR against the caller's directory before moving to the workspace root.
if [ $# -gt 0 ]; then
    mkdir -p "$1"
    out=$(cd "$1" && pwd)
fi
cd "$(dirname "$0")/.."
out=${out:-$PWD/target/policies}

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi

names=()
for manifest in policies/*/Cargo.toml; do
    names+=("$(basename "$(dirname "$manifest")")")
done
args=()
for n in "${names[@]}"; do args+=(-p "$n"); done
cargo build --quiet --profile policy --target wasm32-wasip2 "${args[@]}"

mkdir -p "$out"
for n in "${names[@]}"; do
    # Copy then rename, so a gateway watching $out never loads a half-written file.
    cp "target/wasm32-wasip2/policy/${n//-/_}.wasm" "$out/.$n.wasm.tmp"
    mv "$out/.$n.wasm.tmp" "$out/$n.wasm"
    echo "built $out/$n.wasm ($(stat -c %s "$out/$n.wasm") bytes)"
done

# Policies in other languages: each folder without a Cargo.toml has its own build.sh, which
# installs its toolchain (PyPI, npm, Debian, crates.io) on first use.
for script in policies/*/build.sh; do
    dir=$(dirname "$script")
    [ -f "$dir/Cargo.toml" ] && continue
    n=$(basename "$dir")
    "$script" "$out/$n.wasm"
    echo "built $out/$n.wasm ($(stat -c %s "$out/$n.wasm") bytes)"
done
