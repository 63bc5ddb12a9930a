#!/usr/bin/env bash
# Build the __POLICY_NAME__ policy (policy.js) into a WebAssembly component with ComponentizeJS.
#
#   ./build.sh [OUT.wasm]     default: __POLICY_NAME__.wasm next to this script
#                             (a relative OUT is taken from the caller's directory)
#
# Needs node >= 18 and npm. Installs the ComponentizeJS pinned in package-lock.json with
# `npm ci` into node_modules/ here (about 385 MB) when it is missing or older than the lock
# file. WARDEN_JS_TOOLCHAIN=DIR installs it into DIR/node_modules instead, shared by every
# project built with the same pins.
set -euo pipefail

die() { echo "build.sh: $*" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -le 1 ] || die "usage: build.sh [OUT.wasm]"
out=${1:-$here/__POLICY_NAME__.wasm}
case "$out" in /*) ;; *) out=$PWD/$out ;; esac
for tool in node npm; do
    command -v "$tool" >/dev/null || die "$tool is missing (node >= 18 with npm)"
done

toolchain=${WARDEN_JS_TOOLCHAIN:-$here}
mkdir -p "$toolchain"
toolchain=$(cd "$toolchain" && pwd)
# One install at a time (parallel builds may share the toolchain).
exec 9<"$toolchain"
if command -v flock >/dev/null; then flock 9; fi
if [ "$toolchain" != "$here" ]; then
    # A shared install: copy the manifest and lock file under a neutral name, rewriting them
    # only when the pins differ, so projects with the same pins do not reinstall each other's.
    node - "$here" "$toolchain" <<'JS'
const fs = require('fs');
const path = require('path');
const [from, to] = process.argv.slice(2);
for (const file of ['package.json', 'package-lock.json']) {
  const json = JSON.parse(fs.readFileSync(path.join(from, file), 'utf8'));
  json.name = 'warden-js-toolchain';
  if (json.packages && json.packages['']) json.packages[''].name = json.name;
  const text = `${JSON.stringify(json, null, 2)}\n`;
  const dest = path.join(to, file);
  if (!fs.existsSync(dest) || fs.readFileSync(dest, 'utf8') !== text) fs.writeFileSync(dest, text);
}
JS
fi
if [ ! -f "$toolchain/node_modules/.package-lock.json" ] ||
    [ "$toolchain/package-lock.json" -nt "$toolchain/node_modules/.package-lock.json" ]; then
    # `npm ci`: exactly the lock file's versions; from npm's cache when it has them.
    (cd "$toolchain" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error) >&2 ||
        die "npm ci failed in $toolchain"
fi
exec 9<&-

WARDEN_JS_TOOLCHAIN=$toolchain node "$here/build.mjs" "$out"
echo "test it with: warden policy test $out $here/cases.toml"
