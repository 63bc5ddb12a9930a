#!/usr/bin/env bash
# Installs the PostgreSQL client matrix (tests/clients/) into target/clients/: a Python venv
# (psycopg 3, psycopg2, asyncpg, SQLAlchemy), node-postgres, and from Debian pgjdbc, a JDK,
# Go and pgx v4, with the Go client built against them. Idempotent and quiet: one line per
# thing, saying whether it was installed now or already there. Every version is pinned here,
# in requirements.txt and in package-lock.json; a pin that the registry no longer serves
# fails loudly, naming what to bump. Runs as root on Debian 12 (apt-get is only called when a
# Debian package is missing or at another version).
set -euo pipefail
cd "$(dirname "$0")/../.."
src=tests/clients
out=target/clients
mkdir -p "$out"

# Debian 12 (bookworm) versions. pgjdbc ships /usr/share/java/postgresql.jar; golang-go is
# Go 1.19, which predates pgx v5's minimum, so pgx is v4 from Debian, used in GOPATH mode
# (no Go module proxy is reachable from CI).
apt_pins=(
    libpostgresql-jdbc-java=42.5.5-0+deb12u1
    default-jdk-headless=2:1.17-74
    golang-go=2:1.19~1
    golang-github-jackc-pgx-v4-dev=4.15.0-4
)
missing=()
for pin in "${apt_pins[@]}"; do
    pkg=${pin%%=*} want=${pin#*=}
    have=$(dpkg-query -W -f='${db:Status-Abbrev}${Version}' "$pkg" 2>/dev/null || true)
    if [ "$have" = "ii $want" ]; then
        echo "clients: $pkg $want already installed"
    else
        missing+=("$pin")
    fi
done
if ((${#missing[@]})); then
    if [ "$(id -u)" != 0 ]; then
        echo "clients: missing Debian packages: ${missing[*]} (apt-get install them as root)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    log=$out/apt.log
    # apt's output (debconf notices included) is shown only when it fails.
    # A pin the mirror no longer serves (a Debian security update replaced it) falls back to
    # the mirror's version of the same package, said loudly: the matrix tests still decide.
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends --allow-downgrades "${missing[@]}"; } >"$log" 2>&1; then
        echo "clients: warning: pinned versions unavailable (${missing[*]}); installing the mirror's" >&2
        if ! apt-get install -y -qq --no-install-recommends "${missing[@]%%=*}" >>"$log" 2>&1; then
            cat "$log" >&2
            echo "clients: apt-get install ${missing[*]%%=*} failed" >&2
            exit 1
        fi
    fi
    for pin in "${missing[@]}"; do
        echo "clients: ${pin%%=*} $(dpkg-query -W -f='${Version}' "${pin%%=*}") installed"
    done
fi
if [ ! -f /usr/share/java/postgresql.jar ]; then
    echo "clients: /usr/share/java/postgresql.jar is missing after installing libpostgresql-jdbc-java" >&2
    exit 1
fi

# Python: a venv whose packages are exactly requirements.txt (--no-deps, then pip check).
venv=$out/venv
if [ -x "$venv/bin/python" ] && cmp -s "$src/requirements.txt" "$venv/.requirements.txt"; then
    echo "clients: python venv $venv already installed"
else
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r "$src/requirements.txt"
    "$venv/bin/python" -m pip check -q >/dev/null
    cp "$src/requirements.txt" "$venv/.requirements.txt"
    echo "clients: python venv $venv installed ($(grep -v '^#' "$src/requirements.txt" | paste -sd ' '))"
fi

# node-postgres: npm ci from the committed lock file, so transitive versions are pinned too.
node=$out/node
if [ -d "$node/node_modules/pg" ] && cmp -s "$src/package-lock.json" "$node/.package-lock.json"; then
    echo "clients: node-postgres in $node already installed"
else
    rm -rf "$node"
    mkdir -p "$node"
    cp "$src/package.json" "$src/package-lock.json" "$node/"
    (cd "$node" && npm ci --silent --no-audit --no-fund >/dev/null)
    cp "$src/package-lock.json" "$node/.package-lock.json"
    echo "clients: node-postgres $(node -p "require('./$node/node_modules/pg/package.json').version") installed in $node"
fi

# pgx v4 client: GOPATH mode against Debian's /usr/share/gocode; the build cache stays in
# target/ so the build needs no HOME.
bin=$out/pgx_client
if [ -x "$bin" ] && [ "$bin" -nt "$src/pgx_client.go" ]; then
    echo "clients: $bin already built"
else
    GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$PWD/$out/go-cache" GOFLAGS='' \
        go build -o "$bin" "$src/pgx_client.go"
    echo "clients: $bin built (go $(go env GOVERSION | sed 's/^go//'), pgx 4.15 from /usr/share/gocode)"
fi
