#!/usr/bin/env bash
# Build the shipped policies from source for wasm32-wasip2 (Rust crates here, other languages
# through their own build.sh) and copy the components into a
# directory as NAME.wasm (module names use dashes: pci-mask.wasm).
#   policies/build.sh [OUT_DIR [NAME...]]
#     OUT_DIR  default: target/policies
#     NAME     only these policies (folder names under policies/, e.g. pci-mask sql-guard);
#              none: every policy, in every language
# Cargo's output is read from $CARGO_TARGET_DIR when set (else target/).
set -euo pipefail
# Resolve OUT_DIR against the caller's directory before moving to the workspace root.
if [ $# -gt 0 ]; then
    mkdir -p "$1"
    out=$(cd "$1" && pwd)
    shift
fi
cd "$(dirname "$0")/.."
out=${out:-$PWD/target/policies}
# Relative to the workspace root, as cargo (run from here) reads it.
target_dir=${CARGO_TARGET_DIR:-target}

die() { echo "policies/build.sh: $*" >&2; exit 1; }

# Every policy folder: a Rust crate (Cargo.toml) or another language (its own build.sh).
all=()
for dir in policies/*/; do
    dir=${dir%/}
    [ -f "$dir/Cargo.toml" ] || [ -x "$dir/build.sh" ] || continue
    all+=("$(basename "$dir")")
done
if [ $# -eq 0 ]; then
    wanted=("${all[@]}")
else
    wanted=()
    for n in "$@"; do
        [[ " ${all[*]} " == *" $n "* ]] || die "no policy '$n' (there are: ${all[*]})"
        [[ " ${wanted[*]-} " == *" $n "* ]] || wanted+=("$n")
    done
fi
rust=() other=()
for n in "${wanted[@]}"; do
    if [ -f "policies/$n/Cargo.toml" ]; then rust+=("$n"); else other+=("$n"); fi
done

mkdir -p "$out"
if ((${#rust[@]})); then
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
        rustup target add wasm32-wasip2
    fi
    args=()
    for n in "${rust[@]}"; do args+=(-p "$n"); done
    cargo build --quiet --profile policy --target wasm32-wasip2 "${args[@]}"
    for n in "${rust[@]}"; do
        # Copy then rename, so a gateway watching $out never loads a half-written file.
        cp "$target_dir/wasm32-wasip2/policy/${n//-/_}.wasm" "$out/.$n.wasm.tmp"
        mv "$out/.$n.wasm.tmp" "$out/$n.wasm"
        echo "built $out/$n.wasm ($(stat -c %s "$out/$n.wasm") bytes)"
    done
fi

# Policies in other languages: each folder without a Cargo.toml has its own build.sh, which
# installs its toolchain (PyPI, npm, Debian, crates.io) on first use.
for n in ${other[@]+"${other[@]}"}; do
    "policies/$n/build.sh" "$out/$n.wasm"
    echo "built $out/$n.wasm ($(stat -c %s "$out/$n.wasm") bytes)"
done
