#!/usr/bin/env bash
# Build the allowlist-c policy: C → wasm32-wasi core module (clang -O2) → component
# (wasm-tools component new).
#
#   policies/allowlist-c/build.sh [OUT.wasm]           default: target/policies/allowlist-c.wasm
#   policies/allowlist-c/build.sh --probe [OUT.wasm]   the sandbox probe (tests/probe.c), for
#                                                      tests only; default:
#                                                      target/test-policies/allowlist-c-probe.wasm
#
# Installs what is missing: clang, lld, wasi-libc and the wasm32 compiler-rt builtins with apt
# (as root), wit-bindgen-cli and wasm-tools with `cargo install` into target/toolchains/c (or
# $WARDEN_C_TOOLCHAIN), and for --probe the WASI preview1→preview2 adapter (crates.io) into the
# same place. Bindings and
# objects go to a temporary directory under target/, never into the source tree. The output
# is written next to OUT and renamed into place, so a gateway watching OUT's directory never
# loads a half-written file.
set -euo pipefail

# Pinned: wit-bindgen on the workspace's 0.61 line, wasm-tools on the wit-component version
# that wit-bindgen 0.61 uses, the adapter on the host's wasmtime version.
WIT_BINDGEN_VERSION=0.61.1
WASM_TOOLS_VERSION=1.258.3
ADAPTER_VERSION=48.0.8

die() {
    echo "allowlist-c/build.sh: $*" >&2
    exit 1
}

probe=0
if [ "${1:-}" = "--probe" ]; then
    probe=1
    shift
fi
case "${1:-}" in -*) die "usage: build.sh [--probe] [OUT.wasm]" ;; esac
[ $# -le 1 ] || die "usage: build.sh [--probe] [OUT.wasm]"
out=
if [ $# -eq 1 ]; then
    case $1 in /*) out=$1 ;; *) out=$PWD/$1 ;; esac
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
[ -f "$root/wit/policy.wit" ] || die "cannot find wit/policy.wit under $root"
if [ -z "$out" ]; then
    if ((probe)); then
        out=$root/target/test-policies/allowlist-c-probe.wasm
    else
        out=$root/target/policies/allowlist-c.wasm
    fi
fi
# WARDEN_C_TOOLCHAIN: where the cargo-installed tools live (default target/toolchains/c); CI can
# point it at a directory that outlives the clone, so the minutes of `cargo install` are paid once
# per machine.
tools=${WARDEN_C_TOOLCHAIN:-$root/target/toolchains/c}
mkdir -p "$tools"
started=$(date +%s%N)

# One installer at a time (parallel test threads may call this script at once).
exec 9>"$tools/.lock"
flock 9

# --- 1. clang, wasm-ld, wasi-libc, compiler-rt builtins (Debian packages) ---------------------
sysroot_ok() {
    command -v clang >/dev/null && command -v wasm-ld >/dev/null &&
        [ -f /usr/include/wasm32-wasi/stdlib.h ] && [ -f /usr/lib/wasm32-wasi/libc.a ] &&
        [ -f "$(clang --target=wasm32-wasi -print-libgcc-file-name 2>/dev/null)" ]
}
if ! sysroot_ok; then
    packages=(clang lld wasi-libc libclang-rt-dev-wasm32)
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "allowlist-c: installing ${packages[*]} with apt-get" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
    fi
    sysroot_ok || die "need clang, wasm-ld and the wasm32-wasi sysroot: apt-get install ${packages[*]}"
fi

# --- 2. wit-bindgen-cli and wasm-tools, pinned, in target/toolchains/c --------------------------
# install_tool CRATE BINARY VERSION FEATURES
install_tool() {
    local crate=$1 bin=$2 version=$3 features=$4
    if [ -x "$tools/bin/$bin" ] && "$tools/bin/$bin" --version 2>/dev/null | grep -q " $version\b"; then
        return
    fi
    command -v cargo >/dev/null || die "need cargo to install $crate $version"
    echo "allowlist-c: cargo install $crate@$version into $tools (takes minutes, once)" >&2
    cargo install --quiet --locked --force --root "$tools" --no-default-features \
        --features "$features" "$crate@$version" ||
        die "cargo install $crate@$version failed"
}
install_tool wit-bindgen-cli wit-bindgen "$WIT_BINDGEN_VERSION" c
install_tool wasm-tools wasm-tools "$WASM_TOOLS_VERSION" component
WIT_BINDGEN=$tools/bin/wit-bindgen
WASM_TOOLS=$tools/bin/wasm-tools

# --- 3. the WASI preview1 adapter (probe only: the policy itself imports no WASI) ---------------
adapter=
if ((probe)); then
    adapter=$tools/wasi_snapshot_preview1.reactor-$ADAPTER_VERSION.wasm
    if [ ! -s "$adapter" ]; then
        echo "allowlist-c: fetching wasi-preview1-component-adapter-provider $ADAPTER_VERSION" >&2
        src=$tools/adapter-src
        mkdir -p "$src/src"
        cat >"$src/Cargo.toml" <<EOF
[package]
name = "write-adapter"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
wasi-preview1-component-adapter-provider = "=$ADAPTER_VERSION"

[workspace]
EOF
        cat >"$src/src/main.rs" <<'EOF'
fn main() {
    let out = std::env::args().nth(1).expect("usage: write-adapter OUT");
    std::fs::write(out, wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER)
        .expect("write the adapter");
}
EOF
        cargo run --quiet --manifest-path "$src/Cargo.toml" --target-dir "$tools/adapter-target" \
            -- "$adapter.tmp" || die "could not get the WASI preview1 adapter"
        mv "$adapter.tmp" "$adapter"
    fi
fi

flock -u 9

# --- 4. bindings, compile, link, componentize --------------------------------------------------
mkdir -p "$root/target/tmp"
work=$(mktemp -d "$root/target/tmp/allowlist-c.XXXXXX")
trap 'rm -rf "$work"' EXIT
gen=$work/gen

if ! log=$("$WIT_BINDGEN" c "$root/wit" --world policy --out-dir "$gen" 2>&1); then
    echo "$log" >&2
    die "wit-bindgen c failed"
fi

cflags=(--target=wasm32-wasi --sysroot=/usr -isystem /usr/include/wasm32-wasi -O2 -std=c11
    -fno-common -I"$gen" -I"$here")
strict=(-Wall -Wextra -Werror -Wshadow -Wvla -Wformat=2)
if ((probe)); then
    sources=("$here/tests/probe.c")
else
    sources=("$here/policy.c" "$here/allowlist.c")
fi
objects=()
for src in "${sources[@]}"; do
    obj=$work/$(basename "${src%.c}").o
    clang "${cflags[@]}" "${strict[@]}" -c "$src" -o "$obj" || die "compiling $src failed"
    objects+=("$obj")
done
# The generated glue: not ours to warn about.
clang "${cflags[@]}" -c "$gen/policy.c" -o "$work/bindings.o" || die "compiling the bindings failed"

clang "${cflags[@]}" -mexec-model=reactor -Wl,--strip-debug \
    "${objects[@]}" "$work/bindings.o" "$gen/policy_component_type.o" -o "$work/core.wasm" ||
    die "linking failed"

adapt=()
[ -z "$adapter" ] || adapt=(--adapt "wasi_snapshot_preview1=$adapter")
mkdir -p "$(dirname "$out")"
tmp=$(dirname "$out")/.$(basename "$out").tmp.$$
"$WASM_TOOLS" component new --validate "$work/core.wasm" "${adapt[@]}" -o "$tmp" ||
    die "wasm-tools component new failed (a WASI import in the policy means some libc call needs the OS: the policy must not use one)"
mv "$tmp" "$out"

elapsed_ms=$((($(date +%s%N) - started) / 1000000))
echo "built $out ($(stat -c %s "$out") bytes, ${elapsed_ms} ms)"
