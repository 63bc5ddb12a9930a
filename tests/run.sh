#!/usr/bin/env bash
# The test suite, as the README gives it: builds every policy from source for wasm32-wasip2,
# checks each shipped policy against its case file with `warden policy test`, then runs the
# workspace's unit and integration tests. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase reports its time, so a slow CI run shows where its minutes went.
phase() { echo "== [${SECONDS}s] $*"; }

# What the suite needs, installed when missing (as root on Debian): PostgreSQL server and psql
# (the tests start their own servers), openssl (test keys), clang + wasi-libc (C policies; clang
# also brings the libclang that the build of PostgreSQL's parser, libpg_query, needs),
# python3-venv (Python policies), OpenSSH server and clients (the SSH tests start their own
# sshd), asciinema (replayed recordings are checked with it), and rustup's wasm32-wasip2 target.
need=()
command -v openssl >/dev/null || need+=(openssl)
command -v psql >/dev/null || need+=(postgresql-client)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v clang >/dev/null && command -v wasm-ld >/dev/null && [ -f /usr/lib/wasm32-wasi/libc.a ] ||
    need+=(clang lld wasi-libc libclang-rt-dev-wasm32)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3 python3-venv)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null && command -v scp >/dev/null && command -v sftp >/dev/null || need+=(openssh-client)
command -v asciinema >/dev/null || need+=(asciinema)
command -v script >/dev/null || need+=(bsdutils)
if ((${#need[@]})); then
    if [ "$(id -u)" != 0 ]; then
        echo "missing packages: ${need[*]} (apt-get install them as root)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

phase "building the policies"
out=target/policies
# Compiled components, shared by the case files and the tests (keyed by sha256; each Python or
# JavaScript component compiles in tens of seconds). Emptied each run: componentize-py builds
# are not byte-reproducible, so old entries would only accumulate.
WARDEN_POLICY_CACHE=$PWD/target/test-policy-cache
rm -rf "$WARDEN_POLICY_CACHE"
export WARDEN_POLICY_CACHE
policies/build.sh "$out"
# The tests use these components as built (from this source, just now) instead of compiling
# each Rust policy a second time; `cargo test` run alone builds its own.
WARDEN_BUILT_POLICIES=$PWD/$out
export WARDEN_BUILT_POLICIES

phase "building warden"
cargo build --quiet -p warden-gateway --bin warden
phase "policy case files"
# A policy with more than one config has a case file per config: cases.toml, cases-NAME.toml.
for cases in policies/*/cases.toml policies/*/cases-*.toml; do
    [ -e "$cases" ] || continue
    name=$(basename "$(dirname "$cases")")
    echo "== warden policy test $out/$name.wasm $cases"
    target/debug/warden policy test --cache "$WARDEN_POLICY_CACHE" "$out/$name.wasm" "$cases"
done
# The Python port of pci-mask must pass the Rust one's case files (same verdicts, same edits).
for cases in policies/pci-mask/cases.toml policies/pci-mask/cases-lineage.toml; do
    echo "== warden policy test $out/pci-mask-py.wasm $cases"
    target/debug/warden policy test --cache "$WARDEN_POLICY_CACHE" --memory-limit 24MiB --deadline 500ms \
        "$out/pci-mask-py.wasm" "$cases"
done

# The PostgreSQL client matrix (tests/clients: psycopg 3, psycopg2, asyncpg, SQLAlchemy,
# node-postgres, pgjdbc, pgx v4), pinned, into target/clients; the clients_* tests run them.
phase "installing the client matrix"
tests/clients/install.sh

phase "cargo test"
cargo test --workspace "$@"

# The decoders a client's bytes reach first (PostgreSQL messages and start-up packet, framing,
# the SSH line assembler, shell input without a terminal, the SFTP reader and the host's SFTP
# replies), fuzzed with proptest for a bounded time: many more
# cases than the default run above.
# (`--workspace`, as above: the same features, so nothing is compiled again.)
phase "fuzzing the decoders"
PROPTEST_CASES=${WARDEN_FUZZ_CASES:-20000} timeout 900 cargo test -q --workspace --lib fuzz
phase "done"
