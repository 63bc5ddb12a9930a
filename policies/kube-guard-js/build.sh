#!/usr/bin/env bash
# Build the kube-guard-js policy (JavaScript) into a Warden policy component.
#   policies/kube-guard-js/build.sh [--features LIST] [OUT.wasm [SOURCE.js]]
#       OUT.wasm   default: target/policies/kube-guard-js.wasm (relative to the workspace root)
#       SOURCE.js  default: policies/kube-guard-js/policy.js (tests build tests/probe.js with it)
#       --features WASI-backed ComponentizeJS features to keep (default none; see build.mjs)
# Needs node >= 18 and npm. Installs the pinned ComponentizeJS from package-lock.json into this
# folder's node_modules (git-ignored) when it is missing or older than the lockfile.
set -euo pipefail

features=()
if [ "${1:-}" = "--features" ]; then
    features=(--features "${2:?--features needs a list, e.g. stdio,random,clocks}")
    shift 2
fi
# Resolve paths against the caller's directory before moving anywhere.
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/target/policies/kube-guard-js.wasm}
case "$out" in /*) ;; *) out=$PWD/$out ;; esac
source=${2:-$here/policy.js}
case "$source" in /*) ;; *) source=$PWD/$source ;; esac

for tool in node npm; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing (node >= 18 with npm)" >&2; exit 1; }
done

cd "$here"
# One install at a time (parallel test threads or CI jobs may call this together).
exec 9<"$here"
flock 9
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    # `npm ci`: exactly the lockfile's versions, from the configured npm registry.
    npm ci --no-audit --no-fund --loglevel=error
fi
flock -u 9

node build.mjs "${features[@]}" "$out" "$source"
