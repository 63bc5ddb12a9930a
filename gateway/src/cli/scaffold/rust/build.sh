#!/usr/bin/env bash
# Build the __POLICY_NAME__ policy into a WebAssembly component.
#
#   ./build.sh [OUT.wasm]     default: __POLICY_NAME__.wasm next to this script
#                             (a relative OUT is taken from the caller's directory)
#
# Needs Rust (rustup); adds the wasm32-wasip2 target when it is missing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -le 1 ] || { echo "usage: build.sh [OUT.wasm]" >&2; exit 1; }
out=${1:-$here/__POLICY_NAME__.wasm}
case "$out" in /*) ;; *) out=$PWD/$out ;; esac

cd "$here"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --quiet --release --target wasm32-wasip2
mkdir -p "$(dirname "$out")"
# Copy, then rename: a gateway watching OUT's directory never loads a half-written file.
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/__CRATE_NAME__.wasm" "$out.tmp"
mv "$out.tmp" "$out"
echo "built $out ($(wc -c <"$out") bytes); test it with: warden policy test $out $here/cases.toml"
