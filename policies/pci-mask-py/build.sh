#!/usr/bin/env bash
# Build the Python `pci-mask` policy (app.py) into a WebAssembly component with componentize-py.
#
#   policies/pci-mask-py/build.sh [--app FILE.py] [OUT.wasm]
#
#   OUT.wasm   default: target/policies/pci-mask-py.wasm (relative paths: the caller's directory)
#   --app      build another single-file Python policy against the same WIT world
#              (the tests build tests/sandbox_probe.py this way); default: app.py next to this script
#
# Every build also gets warden_pan.py (the PAN detector, a copy of policy-sdk/pan/src/lib.rs)
# from this directory, so any app can `import warden_pan`.
#
# componentize-py (pinned below) is installed from PyPI into a private venv,
# target/toolchains/python (override with WARDEN_PY_TOOLCHAIN), the first time only. Needs
# python3 >= 3.9 with the venv module (Debian: apt-get install python3-venv). Nothing is
# generated into the source tree: the app is copied to a temporary directory and componentized
# there (componentize-py would leave __pycache__ next to the sources).
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1

die() { echo "pci-mask-py/build.sh: $*" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

app="$here/app.py"
out=""
while (($#)); do
    case "$1" in
        --app)
            (($# >= 2)) || die "--app needs a file"
            app=$(cd "$(dirname "$2")" && pwd)/$(basename "$2") || die "no such file: $2"
            shift 2 ;;
        -h|--help)
            sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *)
            [ -z "$out" ] || die "only one OUT.wasm, got '$out' and '$1'"
            out=$1
            shift ;;
    esac
done
[ -f "$app" ] || die "no such file: $app"
module=$(basename "$app" .py)
[ "$module.py" = "$(basename "$app")" ] || die "the app must be a .py file: $app"
case "$module" in
    # componentize-py generates these top-level modules; an app of the same name would clash.
    # warden_pan is the detector built in beside every app.
    wit_world|componentize_py_types|componentize_py_runtime|componentize_py_async_support|poll_loop|warden_pan)
        die "the app module may not be named '$module'" ;;
esac

# Resolve OUT against the caller's directory.
out=${out:-$root/target/policies/pci-mask-py.wasm}
case "$out" in
    *.wasm) ;;
    *) die "OUT must end in .wasm: $out" ;;
esac
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")

# --- toolchain: componentize-py in a private venv ------------------------------------------
toolchain=${WARDEN_PY_TOOLCHAIN:-$root/target/toolchains/python}
cpy="$toolchain/bin/componentize-py"
want="componentize-py $COMPONENTIZE_PY_VERSION"

have_pinned() { [ -x "$cpy" ] && [ "$("$cpy" --version 2>/dev/null)" = "$want" ]; }

if ! have_pinned; then
    command -v python3 >/dev/null || die "python3 not found (Debian: apt-get install python3 python3-venv)"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' \
        || die "python3 >= 3.9 needed, found $(python3 --version 2>&1)"
    mkdir -p "$(dirname "$toolchain")"
    # One installer at a time (parallel test runs share the toolchain).
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
stage=$(mktemp -d "${TMPDIR:-/tmp}/pci-mask-py.XXXXXX")
trap 'rm -rf "$stage"' EXIT
cp "$app" "$stage/$module.py"
cp "$here/warden_pan.py" "$stage/warden_pan.py"

tmp_out="$(dirname "$out")/.$(basename "$out").tmp"
started=$EPOCHREALTIME
(cd "$stage" && "$cpy" --quiet -d "$root/wit" -w policy \
    componentize "$module" -p "$stage" -o "$tmp_out") \
    || { rm -f "$tmp_out"; die "componentize-py failed for $app (see above)"; }
# Rename into place, so a gateway watching the directory never loads a half-written file.
mv "$tmp_out" "$out"
elapsed=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
echo "built $out ($(stat -c %s "$out") bytes, ${elapsed}s, $want)"
