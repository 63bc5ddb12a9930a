#!/usr/bin/env bash
# The test suite, as the README gives it: builds every policy from source for wasm32-wasip2,
# checks each shipped policy against its case file with `warden policy test`, then runs the
# workspace's unit and integration tests. Needs: rustup's wasm32-wasip2 target, openssl.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "missing the wasm32-wasip2 target: rustup target add wasm32-wasip2" >&2
    exit 1
fi
command -v openssl >/dev/null || { echo "missing openssl (apt-get install openssl)" >&2; exit 1; }
command -v psql >/dev/null && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 ||
    { echo "missing PostgreSQL (apt-get install postgresql postgresql-client)" >&2; exit 1; }

out=target/policies
policies/build.sh "$out"

cargo build --quiet -p warden-gateway --bin warden
for cases in policies/*/cases.toml; do
    name=$(basename "$(dirname "$cases")")
    echo "== warden policy test $out/$name.wasm $cases"
    target/debug/warden policy test "$out/$name.wasm" "$cases"
done
# The Python port of pci-mask must pass the Rust one's case file (same verdicts, same edits).
echo "== warden policy test $out/pci-mask-py.wasm policies/pci-mask/cases.toml"
target/debug/warden policy test --memory-limit 24MiB --deadline 500ms "$out/pci-mask-py.wasm" policies/pci-mask/cases.toml

cargo test --workspace "$@"
