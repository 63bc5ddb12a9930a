#!/usr/bin/env bash
# Build the __POLICY_NAME__ policy (app.py) into a WebAssembly component with componentize-py.
#
#   ./build.sh [OUT.wasm]     default: __POLICY_NAME__.wasm next to this script
#                             (a relative OUT is taken from the caller's directory)
#
# componentize-py (pinned below) is installed from PyPI into a private venv, .toolchain/ here
# (WARDEN_PY_TOOLCHAIN=DIR puts it elsewhere, to share one between projects), the first time
# only. Needs python3 >= 3.9 with the venv module (Debian: apt-get install python3-venv).
# Every *.py file here is copied to a temporary directory and componentized there, so nothing
# is generated into the project; `app` is the module that defines the exports.
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1

die() { echo "build.sh: $*" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -le 1 ] || die "usage: build.sh [OUT.wasm]"
out=${1:-$here/__POLICY_NAME__.wasm}
case "$out" in *.wasm) ;; *) die "OUT must end in .wasm: $out" ;; esac
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")

# --- toolchain: componentize-py in a private venv ------------------------------------------
toolchain=${WARDEN_PY_TOOLCHAIN:-$here/.toolchain}
cpy="$toolchain/bin/componentize-py"
want="componentize-py $COMPONENTIZE_PY_VERSION"

have_pinned() { [ -x "$cpy" ] && [ "$("$cpy" --version 2>/dev/null)" = "$want" ]; }

if ! have_pinned; then
    command -v python3 >/dev/null || die "python3 not found (Debian: apt-get install python3 python3-venv)"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' \
        || die "python3 >= 3.9 needed, found $(python3 --version 2>&1)"
    mkdir -p "$(dirname "$toolchain")"
    # One installer at a time (parallel builds may share the toolchain).
    exec 9>"$toolchain.lock"
    if command -v flock >/dev/null; then flock 9; fi
    if ! have_pinned; then
        echo "installing $want into $toolchain" >&2
        rm -rf "$toolchain"
        python3 -m venv "$toolchain" >&2 \
            || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
        "$toolchain/bin/python" -m pip install --quiet --disable-pip-version-check \
            "componentize-py==$COMPONENTIZE_PY_VERSION" >&2 \
            || die "pip could not install componentize-py==$COMPONENTIZE_PY_VERSION from PyPI"
        have_pinned || die "$cpy does not report '$want'"
    fi
    exec 9>&-
fi

# --- build ----------------------------------------------------------------------------------
stage=$(mktemp -d "${TMPDIR:-/tmp}/__POLICY_NAME__.XXXXXX")
trap 'rm -rf "$stage"' EXIT
cp "$here"/*.py "$stage/"

# Write next to OUT, then rename: a gateway watching OUT's directory never loads half a file.
tmp_out="$(dirname "$out")/.$(basename "$out").tmp"
(cd "$stage" && "$cpy" --quiet -d "$here/wit" -w policy componentize app -p "$stage" -o "$tmp_out") \
    || { rm -f "$tmp_out"; die "componentize-py failed (see above)"; }
mv "$tmp_out" "$out"
echo "built $out ($(wc -c <"$out") bytes); test it with: warden policy test $out $here/cases.toml"
