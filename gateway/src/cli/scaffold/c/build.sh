#!/usr/bin/env bash
# Build the __POLICY_NAME__ policy: C -> wasm32-wasi core module (clang -O2) -> component
# (wasm-tools component new).
#
#   ./build.sh [OUT.wasm]     default: __POLICY_NAME__.wasm next to this script
#                             (a relative OUT is taken from the caller's directory)
#
# Installs what is missing: clang, lld, wasi-libc and the wasm32 compiler-rt builtins with apt
# (as root; elsewhere install them yourself), and wit-bindgen-cli and wasm-tools (pinned below)
# with `cargo install` into .toolchain/ here, minutes the first time (WARDEN_C_TOOLCHAIN=DIR
# puts them elsewhere, to share them between projects). Bindings and objects go to a temporary
# directory, never into the project. Every *.c file here is compiled.
set -euo pipefail

# Pinned: wit-bindgen on Warden's 0.61 line, wasm-tools on the wit-component version that
# wit-bindgen 0.61 uses.
WIT_BINDGEN_VERSION=0.61.1
WASM_TOOLS_VERSION=1.258.3

die() { echo "build.sh: $*" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -le 1 ] || die "usage: build.sh [OUT.wasm]"
out=${1:-$here/__POLICY_NAME__.wasm}
case "$out" in /*) ;; *) out=$PWD/$out ;; esac

tools=${WARDEN_C_TOOLCHAIN:-$here/.toolchain}
mkdir -p "$tools"
# One installer at a time (parallel builds may share the toolchain).
exec 9>"$tools/.lock"
if command -v flock >/dev/null; then flock 9; fi

# --- 1. clang, wasm-ld, wasi-libc, compiler-rt builtins (Debian packages) ---------------------
sysroot_ok() {
    command -v clang >/dev/null && command -v wasm-ld >/dev/null &&
        [ -f /usr/include/wasm32-wasi/stdlib.h ] && [ -f /usr/lib/wasm32-wasi/libc.a ] &&
        [ -f "$(clang --target=wasm32-wasi -print-libgcc-file-name 2>/dev/null)" ]
}
if ! sysroot_ok; then
    packages=(clang lld wasi-libc libclang-rt-dev-wasm32)
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing ${packages[*]} with apt-get" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
    fi
    sysroot_ok || die "need clang, wasm-ld and the wasm32-wasi sysroot: apt-get install ${packages[*]}"
fi

# --- 2. wit-bindgen-cli and wasm-tools, pinned ---------------------------------------------------
# install_tool CRATE BINARY VERSION FEATURES
install_tool() {
    local crate=$1 bin=$2 version=$3 features=$4
    if [ -x "$tools/bin/$bin" ] && "$tools/bin/$bin" --version 2>/dev/null | grep -q " $version\b"; then
        return
    fi
    command -v cargo >/dev/null || die "need cargo to install $crate $version"
    echo "cargo install $crate@$version into $tools (takes minutes, once)" >&2
    cargo install --quiet --locked --force --root "$tools" --no-default-features \
        --features "$features" "$crate@$version" ||
        die "cargo install $crate@$version failed"
}
install_tool wit-bindgen-cli wit-bindgen "$WIT_BINDGEN_VERSION" c
install_tool wasm-tools wasm-tools "$WASM_TOOLS_VERSION" component
exec 9>&-

# --- 3. bindings, compile, link, componentize ----------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/__POLICY_NAME__.XXXXXX")
trap 'rm -rf "$work"' EXIT
gen=$work/gen
if ! log=$("$tools/bin/wit-bindgen" c "$here/wit" --world policy --out-dir "$gen" 2>&1); then
    echo "$log" >&2
    die "wit-bindgen c failed"
fi

cflags=(--target=wasm32-wasi --sysroot=/usr -isystem /usr/include/wasm32-wasi -O2 -std=c11
    -fno-common -I"$gen" -I"$here")
strict=(-Wall -Wextra -Werror -Wshadow -Wvla -Wformat=2)
objects=()
for src in "$here"/*.c; do
    obj=$work/$(basename "${src%.c}").o
    clang "${cflags[@]}" "${strict[@]}" -c "$src" -o "$obj" || die "compiling $src failed"
    objects+=("$obj")
done
# The generated glue: not ours to warn about.
clang "${cflags[@]}" -c "$gen/policy.c" -o "$work/bindings.o" || die "compiling the bindings failed"
clang "${cflags[@]}" -mexec-model=reactor -Wl,--strip-debug \
    "${objects[@]}" "$work/bindings.o" "$gen/policy_component_type.o" -o "$work/core.wasm" ||
    die "linking failed"

mkdir -p "$(dirname "$out")"
# Write next to OUT, then rename: a gateway watching OUT's directory never loads half a file.
tmp=$(dirname "$out")/.$(basename "$out").tmp.$$
"$tools/bin/wasm-tools" component new --validate "$work/core.wasm" -o "$tmp" ||
    die "wasm-tools component new failed (a WASI import means some libc call needs the OS: a policy must not use one)"
mv "$tmp" "$out"
echo "built $out ($(wc -c <"$out") bytes); test it with: warden policy test $out $here/cases.toml"
