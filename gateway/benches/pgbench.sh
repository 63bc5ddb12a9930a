#!/usr/bin/env bash
# gateway/benches/pgbench.sh — PostgreSQL through Warden, against the same server directly and
# through PgBouncer.
#
#   gateway/benches/pgbench.sh [-T SECONDS] [--clients "1 16"] [--modes "simple prepared"]
#                              [--scripts "select tpcb"]
#                              [--scale N] [--rows N] [--idle N] [--no-warden] [--debug]
#
# Starts its own PostgreSQL, PgBouncer and Warden on free loopback ports in a temp dir, then
#   1. pgbench for each script (-S select-only, and the default TPC-B-like script of three
#      UPDATEs, a SELECT and an INSERT per transaction), protocol (-M simple / prepared) and
#      client count, for -T seconds each (default 10): directly, through PgBouncer (session
#      pooling), and through Warden with (a) allow-all, (b) sql-guard + pci-mask (sql-guard's
#      default write budget: every UPDATE and INSERT is measured) and (c) the same without the
#      write budget (what measuring writes costs);
#   2. a large read, --rows rows (default 1,000,000) × 5 columns with card numbers in them,
#      with psql (text format) and with tokio-postgres (binary format: the `bigread` example,
#      built with Warden) directly and through Warden (allow-all, and masked by pci-mask);
#      and (d) sql-guard + pci-mask with cardholder-approval beside them in shadow mode (what
#      one shadow policy costs);
#   3. the resident memory of Warden and of PgBouncer holding --idle (default 1,000) idle
#      authenticated sessions (a small Python client opens them);
#   4. what-if throughput: once Warden has stopped, `warden policy whatif` replays every command
#      the runs recorded on (b) through sql-guard, pci-mask and a candidate cardholder-approval;
# and prints the results as markdown tables (progress goes to stderr).
#
# Needs, as root on Debian: PostgreSQL server + pgbench (postgresql, postgresql-contrib on old
# releases), pgbouncer, python3, Rust with the wasm32-wasip2 target. Missing Debian packages
# are installed with apt-get (BENCH_NO_INSTALL=1 to only be told). Warden is built in release
# mode (--debug: the debug build; WARDEN_BIN=path: use that binary, no build).
# --no-warden runs only the direct and PgBouncer parts.
set -euo pipefail

DURATION=10
CLIENTS="1 16"
MODES="simple prepared"
SCRIPTS="select tpcb"
SCALE=10
ROWS=1000000
IDLE=1000
WITH_WARDEN=1
PROFILE=release

usage() { sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while (($#)); do
    case $1 in
        -T | --duration) DURATION=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --modes) MODES=$2; shift 2 ;;
        --scripts) SCRIPTS=$2; shift 2 ;;
        --scale) SCALE=$2; shift 2 ;;
        --rows) ROWS=$2; shift 2 ;;
        --idle) IDLE=$2; shift 2 ;;
        --no-warden) WITH_WARDEN=0; shift ;;
        --debug) PROFILE=debug; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "pgbench.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
for n in "$DURATION" "$SCALE" "$ROWS" "$IDLE" $CLIENTS; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "pgbench.sh: '$n' is not a number" >&2; exit 2; }
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'pgbench.sh: %s\n' "$*" >&2; exit 1; }

IS_ROOT=0
[[ $(id -u) == 0 ]] && IS_ROOT=1
as_pg() { if ((IS_ROOT)); then runuser -u postgres -- "$@"; else "$@"; fi; }

# ---------------------------------------------------------------------------------------------
# What it needs.
find_pgbin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true; }
PGBIN=$(find_pgbin)
missing=()
[[ -n $PGBIN && -x $PGBIN/initdb ]] || missing+=(postgresql)
command -v psql >/dev/null || missing+=(postgresql-client)
command -v pgbouncer >/dev/null || [[ -x /usr/sbin/pgbouncer ]] || missing+=(pgbouncer)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
    if ((IS_ROOT)) && [[ -z ${BENCH_NO_INSTALL:-} ]] && command -v apt-get >/dev/null; then
        log "installing ${missing[*]} (apt-get)"
        timeout 900 apt-get update -qq
        DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "${missing[@]}" >/dev/null
        PGBIN=$(find_pgbin)
    else
        die "missing: ${missing[*]} — apt-get install -y ${missing[*]}"
    fi
fi
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
PGBENCH=$PGBIN/pgbench
[[ -x $PGBENCH ]] || PGBENCH=$(command -v pgbench) || die "no pgbench (it comes with the postgresql package)"
((IS_ROOT)) && { id postgres >/dev/null 2>&1 || die "no 'postgres' OS user (apt-get install -y postgresql)"; }

# 1,000 idle sessions need about two descriptors each in Warden (client + upstream).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < 2 * IDLE + 256)); then
    log "open-file limit $(ulimit -n) is low for $IDLE idle sessions; lowering --idle"
    IDLE=$((($(ulimit -n) - 256) / 2))
fi

# ---------------------------------------------------------------------------------------------
# Clean-up: stop exactly what this script started, by pid, and remove its directory.
DIR='' PG_STARTED=0 WARDEN_PID='' IDLE_PID=''
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    [[ -n $IDLE_PID ]] && kill "$IDLE_PID" 2>/dev/null && wait "$IDLE_PID" 2>/dev/null
    if [[ -n $WARDEN_PID ]]; then
        kill -TERM "$WARDEN_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$WARDEN_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$WARDEN_PID" 2>/dev/null
        wait "$WARDEN_PID" 2>/dev/null
    fi
    if [[ -n $DIR && -s $DIR/pgbouncer/pgbouncer.pid ]]; then
        local bpid
        bpid=$(cat "$DIR/pgbouncer/pgbouncer.pid")
        kill -TERM "$bpid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$bpid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$bpid" 2>/dev/null
    fi
    if ((PG_STARTED)); then
        as_pg "$PGBIN/pg_ctl" -D "$DIR/pg/data" -m immediate -w -t 30 stop >/dev/null 2>&1
    fi
    if [[ -n $DIR ]]; then
        if [[ -n ${BENCH_KEEP:-} ]]; then log "kept $DIR"; else rm -rf "$DIR"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

USED_PORTS=' '
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 40000))
        [[ $USED_PORTS == *" $p "* ]] && continue
        if ! timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p" 2>/dev/null; then
            USED_PORTS+="$p "
            echo "$p"
            return 0
        fi
    done
    die "found no free loopback port"
}
random_word() { head -c 48 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9' | head -c "${1:-24}"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

DIR=$(mktemp -d /tmp/warden-bench.XXXXXX)
chmod 755 "$DIR"
mkdir -p "$DIR/pg" "$DIR/pgbouncer" "$DIR/warden"
((IS_ROOT)) && chown postgres: "$DIR/pg" "$DIR/pgbouncer"
chmod 700 "$DIR/pg"

# ---------------------------------------------------------------------------------------------
# Warden and its policies first: a cold release build takes minutes; fail before measuring.
WARDEN='' WARDEN_DESC="Warden not measured"
if ((WITH_WARDEN)); then
    if [[ -n ${WARDEN_BIN:-} ]]; then
        WARDEN=$WARDEN_BIN
        WARDEN_DESC="Warden $WARDEN_BIN"
    else
        log "building warden ($PROFILE)"
        if [[ $PROFILE == release ]]; then
            timeout 3600 cargo build --quiet --release -p warden-gateway --bin warden --example bigread
        else
            timeout 3600 cargo build --quiet -p warden-gateway --bin warden --example bigread
        fi
        WARDEN=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/warden
        WARDEN_DESC="Warden $PROFILE build"
    fi
    [[ -x $WARDEN ]] || die "no warden binary at $WARDEN"
    if ! "$WARDEN" serve --help >/dev/null 2>&1; then
        log "this warden has no 'serve' command yet: measuring direct and PgBouncer only"
        WITH_WARDEN=0
        WARDEN_DESC="Warden not measured (no 'serve' command in this build)"
    else
        log "building the policies"
        timeout 1800 policies/build.sh "$DIR/warden/policies" >&2
    fi
fi

# ---------------------------------------------------------------------------------------------
log "starting PostgreSQL"
SUPER_PW=$(random_word)
printf '%s\n' "$SUPER_PW" >"$DIR/pg/pw"
((IS_ROOT)) && chown postgres: "$DIR/pg/pw"
as_pg "$PGBIN/initdb" -D "$DIR/pg/data" -U postgres --pwfile="$DIR/pg/pw" --auth-local=trust \
    --auth-host=scram-sha-256 --no-sync -E UTF8 --locale=C.UTF-8 >"$DIR/pg/initdb.log" 2>&1 ||
    { cat "$DIR/pg/initdb.log" >&2; die "initdb failed"; }
rm -f "$DIR/pg/pw"
MAX_CONN=$((IDLE + 100))
for attempt in 1 2 3 4 5; do
    PGPORT=$(free_port)
    if as_pg "$PGBIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/server.log" -w -t 60 -o \
        "-p $PGPORT -c listen_addresses=127.0.0.1 -k $DIR/pg -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=$MAX_CONN -c shared_buffers=256MB" \
        start >/dev/null 2>&1; then
        PG_STARTED=1
        break
    fi
    grep -q "could not bind\|already in use" "$DIR/pg/server.log" 2>/dev/null && ((attempt < 5)) && continue
    tail -n 20 "$DIR/pg/server.log" >&2 || true
    die "PostgreSQL did not start"
done
"$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" -t 30 || die "PostgreSQL not ready"
psql_admin() {
    local db=$1
    shift
    timeout 900 psql -X -q -v ON_ERROR_STOP=1 "host=$DIR/pg port=$PGPORT user=postgres dbname=$db" "$@"
}
PG_VERSION=$(psql_admin postgres -Atc 'SHOW server_version' | cut -d' ' -f1)

# The login every path uses: SCRAM over TCP, as an application would.
BENCH_PW=$(random_word 32)
psql_admin postgres -c "SET password_encryption = 'scram-sha-256'" \
    -c "CREATE ROLE bench LOGIN PASSWORD '$BENCH_PW'" -c "CREATE DATABASE bench OWNER bench"
log "pgbench -i -s $SCALE"
timeout 1800 "$PGBENCH" -i -q -s "$SCALE" "host=$DIR/pg port=$PGPORT user=postgres dbname=bench" >"$DIR/pg/init.log" 2>&1 ||
    { cat "$DIR/pg/init.log" >&2; die "pgbench -i failed"; }
log "creating big_read: $ROWS rows × 5 columns"
psql_admin bench <<SQL
CREATE TABLE big_read AS
SELECT g AS id,
       'holder ' || g AS holder,
       CASE WHEN g % 2 = 0 THEN '4111 1111 1111 1111' ELSE '5500005555555559' END AS pan,
       'order ' || g || ' paid with card ' || CASE WHEN g % 3 = 0 THEN '6011111111111117' ELSE 'on file' END AS note,
       (g % 100000) / 100.0 AS amount
  FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO bench;
SQL

# ---------------------------------------------------------------------------------------------
log "starting PgBouncer"
BPORT=$(free_port)
cat >"$DIR/pgbouncer/pgbouncer.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$PGPORT dbname=bench user=bench password=$BENCH_PW

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BPORT
unix_socket_dir =
; Loopback benchmark: clients are not authenticated by PgBouncer; the server login is SCRAM.
auth_type = trust
auth_file = $DIR/pgbouncer/userlist.txt
; Session pooling: one server connection per client session, as Warden holds one upstream per
; session; it also keeps prepared statements (-M prepared) working on PgBouncer 1.18.
pool_mode = session
default_pool_size = 40
max_client_conn = $((IDLE + 100))
max_db_connections = 80
logfile = $DIR/pgbouncer/pgbouncer.log
pidfile = $DIR/pgbouncer/pgbouncer.pid
ignore_startup_parameters = extra_float_digits
EOF
echo '"bench" ""' >"$DIR/pgbouncer/userlist.txt"
((IS_ROOT)) && chown -R postgres: "$DIR/pgbouncer"
chmod 600 "$DIR/pgbouncer/pgbouncer.ini"
if ((IS_ROOT)); then
    timeout 30 "$PGBOUNCER" -d -q -u postgres "$DIR/pgbouncer/pgbouncer.ini"
else
    timeout 30 "$PGBOUNCER" -d -q "$DIR/pgbouncer/pgbouncer.ini"
fi
for _ in $(seq 100); do [[ -s $DIR/pgbouncer/pgbouncer.pid ]] && break; sleep 0.1; done
[[ -s $DIR/pgbouncer/pgbouncer.pid ]] || { cat "$DIR/pgbouncer/pgbouncer.log" >&2; die "PgBouncer did not start"; }
BOUNCER_PID=$(cat "$DIR/pgbouncer/pgbouncer.pid")
BOUNCER_VERSION=$("$PGBOUNCER" --version | head -n 1 | awk '{print $2}')
"$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$BPORT" -t 30 || die "PgBouncer not ready"

# ---------------------------------------------------------------------------------------------
WPORT='' ALLOW_TOKEN='' GUARD_TOKEN=''
if ((WITH_WARDEN)); then
    log "starting Warden"
    WPORT=$(free_port)
    APORT=$(free_port)
    W=$DIR/warden
    (umask 077 && head -c 48 /dev/urandom | base64 -w0 >"$W/secret" && printf '%s' "$BENCH_PW" >"$W/pg-password")
    cat >"$W/bench.toml" <<EOF
[policy]
dir = "policies"

[audit]
path = "audit.redb"

[identity]
issuer = "warden-bench"
audience = "warden"
hs256_secret_file = "secret"
max_ttl = "1h"

[postgres]
listen = "127.0.0.1:$WPORT"
# Loopback benchmark: no TLS, so the token travels as a plaintext password on 127.0.0.1 only.
allow_plaintext_password = true

# One token opens every benchmark session (16 pgbench clients, --idle idle ones), all from
# 127.0.0.1: the caps are raised to fit the run.
[connections]
per_address = 100000
[sessions]
max_per_principal = 100000

[targets.allow]
protocol = "postgres"
allow_subjects = ["*"]
policies = [{ module = "allow-all" }]

[targets.allow.postgres]
host = "127.0.0.1"
port = $PGPORT
database = "bench"
user = "bench"
password_file = "pg-password"

[targets.guard]
protocol = "postgres"
allow_subjects = ["*"]
policies = [{ module = "sql-guard" }, { module = "pci-mask" }]

[targets.guard.postgres]
host = "127.0.0.1"
port = $PGPORT
database = "bench"
user = "bench"
password_file = "pg-password"

[targets.nobudget]
protocol = "postgres"
allow_subjects = ["*"]
policies = [{ module = "sql-guard", config = { write_budget = false } }, { module = "pci-mask" }]

[targets.nobudget.postgres]
host = "127.0.0.1"
port = $PGPORT
database = "bench"
user = "bench"
password_file = "pg-password"

[targets.shadow]
protocol = "postgres"
allow_subjects = ["*"]
# Every pgbench read of pgbench_accounts has no LIMIT: the shadow would hold each one, so every
# command also records a disagreement.
policies = [{ module = "sql-guard" }, { module = "pci-mask" },
    { module = "cardholder-approval", config = { tables = ["pgbench_accounts"], max_limit = 5 }, mode = "shadow" }]

[targets.shadow.postgres]
host = "127.0.0.1"
port = $PGPORT
database = "bench"
user = "bench"
password_file = "pg-password"

[admin]
listen = "127.0.0.1:$APORT"
EOF
    WARDEN_LOG=${WARDEN_LOG:-warn} "$WARDEN" serve --config "$W/bench.toml" >"$W/warden.log" 2>&1 &
    WARDEN_PID=$!
    for _ in $(seq 300); do
        grep -q "^postgres listening on" "$W/warden.log" 2>/dev/null && break
        kill -0 "$WARDEN_PID" 2>/dev/null || { cat "$W/warden.log" >&2; WARDEN_PID=''; die "warden exited"; }
        sleep 0.2
    done
    grep -q "^postgres listening on" "$W/warden.log" || { tail "$W/warden.log" >&2; die "warden did not start"; }
    ALLOW_TOKEN=$("$WARDEN" token mint --config "$W/bench.toml" --sub bench --act pgbench --ttl 1h)
    GUARD_TOKEN=$ALLOW_TOKEN
fi

# ---------------------------------------------------------------------------------------------
# One path = name, port, dbname, user, password.
PATHS=("direct|$PGPORT|bench|bench|$BENCH_PW" "pgbouncer|$BPORT|bench|bench|")
if ((WITH_WARDEN)); then
    PATHS+=("warden allow-all|$WPORT|allow|bench|$ALLOW_TOKEN" "warden sql-guard+pci-mask|$WPORT|guard|bench|$GUARD_TOKEN"
        "warden sql-guard+pci-mask, no write budget|$WPORT|nobudget|bench|$GUARD_TOKEN"
        "warden sql-guard+pci-mask + shadow cardholder-approval|$WPORT|shadow|bench|$GUARD_TOKEN")
fi

# Sanity: every path answers before anything is timed.
for p in "${PATHS[@]}"; do
    IFS='|' read -r name port db user pw <<<"$p"
    out=$(PGPASSWORD=$pw PGCONNECT_TIMEOUT=10 timeout 60 psql -X -Atc 'SELECT count(*) FROM pgbench_branches' \
        "host=127.0.0.1 port=$port dbname=$db user=$user sslmode=disable" 2>&1) ||
        die "$name does not answer: $out"
    [[ $out == "$SCALE" ]] || die "$name answered '$out' to SELECT count(*) FROM pgbench_branches"
done

NPROC=$(nproc)
declare -A TPS LAT TX GROWTH
# The audit store's size on disk (0 without Warden): what each Warden run adds to it.
audit_size() { if [[ -n ${W:-} && -f $W/audit.redb ]]; then stat -c %s "$W/audit.redb"; else echo 0; fi; }
for p in "${PATHS[@]}"; do
    IFS='|' read -r name port db user pw <<<"$p"
    for script in $SCRIPTS; do
        flag=()
        [[ $script == select ]] && flag=(-S)
        for mode in $MODES; do
            for c in $CLIENTS; do
                j=$((c < NPROC ? c : NPROC))
                k="$name|$script|$mode|$c"
                log "$name: pgbench ${flag[*]} -M $mode -c $c -j $j -T $DURATION"
                before=$(audit_size)
                if out=$(PGPASSWORD=$pw timeout $((DURATION + 120)) "$PGBENCH" -n "${flag[@]}" -M "$mode" -c "$c" -j "$j" \
                    -T "$DURATION" -h 127.0.0.1 -p "$port" -U "$user" "$db" 2>&1); then
                    TPS[$k]=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | tail -n 1)
                    LAT[$k]=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' <<<"$out" | tail -n 1)
                    TX[$k]=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out" | tail -n 1)
                    GROWTH[$k]=$(($(audit_size) - before))
                else
                    log "$name $script -M $mode -c $c failed: $(grep -m 3 -i 'error\|fatal\|abort' <<<"$out" | tr '\n' ' ')"
                    TPS[$k]=''
                    LAT[$k]=''
                fi
            done
        done
    done
done

ratio() { # a / b with two decimals, or "—"
    if [[ -n $1 && -n $2 ]]; then awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "—" }'; else echo "—"; fi
}
fmt0() { if [[ -n $1 ]]; then printf '%.0f' "$1"; else echo "failed"; fi; }

# ---------------------------------------------------------------------------------------------
# Idle sessions: a Python client logs N sessions in (cleartext, md5 or trust), then holds them.
cat >"$DIR/idle.py" <<'PY'
import asyncio, hashlib, struct, sys

host, port, user, db, password, n, hold = sys.argv[1:8]
n, hold = int(n), float(hold)

async def login(sem):
    async with sem:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 30)
        params = b"user\0" + user.encode() + b"\0database\0" + db.encode() + b"\0\0"
        w.write(struct.pack("!ii", 8 + len(params), 196608) + params)
        await w.drain()
        while True:
            kind = await asyncio.wait_for(r.readexactly(1), 60)
            (size,) = struct.unpack("!i", await r.readexactly(4))
            body = await r.readexactly(size - 4)
            if kind == b"R":
                (code,) = struct.unpack("!i", body[:4])
                if code == 0:
                    continue
                if code == 3:
                    secret = password.encode()
                elif code == 5:
                    inner = hashlib.md5(password.encode() + user.encode()).hexdigest()
                    secret = b"md5" + hashlib.md5(inner.encode() + body[4:8]).hexdigest().encode()
                else:
                    raise RuntimeError(f"authentication method {code} is not supported here")
                w.write(b"p" + struct.pack("!i", 4 + len(secret) + 1) + secret + b"\0")
                await w.drain()
            elif kind == b"E":
                raise RuntimeError(body.replace(b"\0", b" ").decode(errors="replace"))
            elif kind == b"Z":
                return w

async def main():
    sem = asyncio.Semaphore(32)
    results = await asyncio.gather(*(login(sem) for _ in range(n)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    print(f"ready {n - len(errors)} {len(errors)} {errors[0] if errors else ''}", flush=True)
    await asyncio.sleep(hold)

asyncio.run(main())
PY

declare -A IDLE_BEFORE IDLE_AFTER IDLE_OK IDLE_BACKENDS
idle_run() { # name pid port db user password
    local name=$1 pid=$2 port=$3 db=$4 user=$5 pw=$6 out
    log "$name: opening $IDLE idle sessions"
    IDLE_BEFORE[$name]=$(rss_kib "$pid")
    local backends_before
    backends_before=$(psql_admin postgres -Atc "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bench'")
    out=$DIR/idle-$port-$db.out
    timeout 600 python3 "$DIR/idle.py" 127.0.0.1 "$port" "$user" "$db" "$pw" "$IDLE" 300 >"$out" 2>&1 &
    IDLE_PID=$!
    for _ in $(seq 1200); do
        grep -q '^ready' "$out" && break
        kill -0 "$IDLE_PID" 2>/dev/null || break
        sleep 0.25
    done
    sleep 2
    IDLE_AFTER[$name]=$(rss_kib "$pid")
    IDLE_OK[$name]=$(awk '/^ready/ {print $2}' "$out")
    IDLE_BACKENDS[$name]=$(($(psql_admin postgres -Atc "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bench'") - backends_before))
    if [[ -z ${IDLE_OK[$name]} ]]; then
        log "$name: the idle client failed: $(tail -n 3 "$out" | tr '\n' ' ')"
    elif [[ ${IDLE_OK[$name]} != "$IDLE" ]]; then
        log "$name: only ${IDLE_OK[$name]} of $IDLE sessions opened: $(awk '/^ready/ {$1=$2=$3=""; print}' "$out")"
    fi
    kill "$IDLE_PID" 2>/dev/null || true
    wait "$IDLE_PID" 2>/dev/null || true
    IDLE_PID=''
    # Let the sessions close before the next measurement.
    for _ in $(seq 100); do
        [[ $(psql_admin postgres -Atc "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bench'") -le 40 ]] && break
        sleep 0.2
    done
}
IDLE_NAMES=(pgbouncer)
idle_run pgbouncer "$BOUNCER_PID" "$BPORT" bench bench ""
if ((WITH_WARDEN)); then
    IDLE_NAMES+=(warden)
    idle_run warden "$WARDEN_PID" "$WPORT" guard bench "$GUARD_TOKEN"
fi

# ---------------------------------------------------------------------------------------------
# The large read: psql prints every row; awk counts bytes, rows and card numbers left unmasked.
READ_PATHS=("direct|$PGPORT|bench|bench|$BENCH_PW")
if ((WITH_WARDEN)); then
    READ_PATHS+=("warden allow-all|$WPORT|allow|bench|$ALLOW_TOKEN" "warden sql-guard+pci-mask (masked)|$WPORT|guard|bench|$GUARD_TOKEN")
fi
declare -A READ_S READ_BYTES READ_ROWS READ_PANS READ_GROWTH
for p in "${READ_PATHS[@]}"; do
    IFS='|' read -r name port db user pw <<<"$p"
    log "$name: SELECT $ROWS rows × 5 columns"
    before=$(audit_size)
    start=$(date +%s.%N)
    if res=$(PGPASSWORD=$pw timeout 900 psql -X -At -c 'SELECT id, holder, pan, note, amount FROM big_read' \
        "host=127.0.0.1 port=$port dbname=$db user=$user sslmode=disable" |
        LC_ALL=C awk '{ b += length($0) + 1 } /4111 1111 1111 1111|5500005555555559|6011111111111117/ { u++ }
                      END { printf "%d %d %d\n", NR, b, u }'); then
        end=$(date +%s.%N)
        read -r "READ_ROWS[$name]" "READ_BYTES[$name]" "READ_PANS[$name]" <<<"$res"
        READ_S[$name]=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
        READ_GROWTH[$name]=$(($(audit_size) - before))
    else
        log "$name: the read failed"
        READ_S[$name]=''
    fi
done
# The same read in binary format (tokio-postgres via the bigread example, next to the binary).
BIGREAD=${BIGREAD_BIN:-$(dirname "${WARDEN:-$ROOT/target/$PROFILE/warden}")/examples/bigread}
declare -A BIN_S BIN_BYTES BIN_ROWS BIN_PANS
HAVE_BIN=0
if [[ -x $BIGREAD ]]; then
    HAVE_BIN=1
    for p in "${READ_PATHS[@]}"; do
        IFS='|' read -r name port db user pw <<<"$p"
        log "$name: SELECT $ROWS rows × 5 columns, binary format"
        if res=$(timeout 900 "$BIGREAD" "host=127.0.0.1 port=$port dbname=$db user=$user password=$pw sslmode=disable" \
            'SELECT id, holder, pan, note, amount FROM big_read'); then
            read -r "BIN_ROWS[$name]" "BIN_BYTES[$name]" "BIN_PANS[$name]" "BIN_S[$name]" <<<"$res"
        else
            log "$name: the binary read failed"
            BIN_S[$name]=''
        fi
    done
else
    log "no bigread example at $BIGREAD: the binary read is skipped"
fi
# The issue's growth attack: three 8 MB statements that return nothing.
BIG_GROWTH='' BIG_TRAFFIC=''
if ((WITH_WARDEN)); then
    log "warden allow-all: three 8 MB statements"
    big=$DIR/big.sql
    python3 -c "import sys; sys.stdout.write(\"SELECT '\" + 'x' * (8 << 20) + \"' WHERE false;\\n\")" >"$big"
    before=$(audit_size)
    for _ in 1 2 3; do
        PGPASSWORD=$ALLOW_TOKEN timeout 300 psql -X -q -f "$big" \
            "host=127.0.0.1 port=$WPORT dbname=allow user=bench sslmode=disable" >/dev/null || log "a big statement failed"
    done
    sleep 1
    BIG_GROWTH=$(($(audit_size) - before))
    BIG_TRAFFIC=$((3 * $(stat -c %s "$big")))
fi
WARDEN_AFTER_READ=''
if ((WITH_WARDEN)); then
    WARDEN_AFTER_READ=$(awk '/^VmRSS:/ {r = $2} /^VmHWM:/ {h = $2} END { printf "%.1f MiB resident, peak %.1f MiB", r / 1024, h / 1024 }' "/proc/$WARDEN_PID/status")
fi

# ---------------------------------------------------------------------------------------------
# What-if throughput: the commands the runs recorded on `guard`, replayed offline (Warden
# stopped, so the database file is free) through its chain plus a candidate.
WHATIF_LINE=''
if ((WITH_WARDEN)); then
    kill -TERM "$WARDEN_PID" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$WARDEN_PID" 2>/dev/null || break; sleep 0.2; done
    wait "$WARDEN_PID" 2>/dev/null || true
    WARDEN_PID=''
    log "warden policy whatif over the recorded guard traffic"
    start=$(date +%s.%N)
    rc=0
    (cd "$W" && timeout 3600 "$WARDEN" policy whatif --config bench.toml --target guard \
        --module policies/cardholder-approval.wasm --module-config '{"tables":["pgbench_accounts"],"max_limit":5}' \
        --db audit.redb --json >"$W/whatif.json" 2>"$W/whatif.log") || rc=$?
    end=$(date +%s.%N)
    if ((rc <= 1)); then
        n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["commands"])' "$W/whatif.json")
        s=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
        WHATIF_LINE="| sql-guard, pci-mask + candidate cardholder-approval | $n | $s | $(awk -v n="$n" -v s="$s" 'BEGIN { printf "%.0f", n / s }') |"
    else
        log "whatif failed: $(tail -n 3 "$W/whatif.log" | tr '\n' ' ')"
    fi
fi

# ---------------------------------------------------------------------------------------------
CPU=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)
cat <<EOF

## PostgreSQL benchmark ($(date -u +%Y-%m-%d))

$NPROC × $CPU; PostgreSQL $PG_VERSION (fsync off), PgBouncer $BOUNCER_VERSION (session pooling),
$WARDEN_DESC; everything on one machine over loopback TCP, pgbench and
the servers sharing the CPUs. Logins: SCRAM-SHA-256 to PostgreSQL (Warden and PgBouncer use
their own), a JWT as the password to Warden.

EOF
for script in $SCRIPTS; do
    if [[ $script == select ]]; then
        title="pgbench -S (select-only)"
    else
        title="pgbench, default TPC-B-like script (3 UPDATEs, a SELECT and an INSERT per transaction)"
    fi
    cat <<EOF

### $title, $DURATION s per run, scale $SCALE

| path | protocol | clients | TPS | avg latency (ms) | vs direct | vs PgBouncer |
|---|---|---:|---:|---:|---:|---:|
EOF
    for p in "${PATHS[@]}"; do
        IFS='|' read -r name _ <<<"$p"
        for mode in $MODES; do
            for c in $CLIENTS; do
                t=${TPS[$name|$script|$mode|$c]}
                printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$mode" "$c" "$(fmt0 "$t")" \
                    "${LAT[$name|$script|$mode|$c]:-—}" "$(ratio "$t" "${TPS[direct|$script|$mode|$c]}")" \
                    "$(ratio "$t" "${TPS[pgbouncer|$script|$mode|$c]}")"
            done
        done
    done
done

cat <<EOF

### Large read: $ROWS rows × 5 columns (psql, whole result)

| path | seconds | rows/s | MB/s | vs direct | rows | card numbers left unmasked |
|---|---:|---:|---:|---:|---:|---:|
EOF
# One row per read path from the arrays named SECONDS ROWS BYTES PANS (namerefs).
read_rows() {
    local -n secs=$1 rows=$2 bytes=$3 pans=$4
    local p name s
    for p in "${READ_PATHS[@]}"; do
        IFS='|' read -r name _ <<<"$p"
        s=${secs[$name]:-}
        if [[ -z $s ]]; then
            printf '| %s | failed | | | | | |\n' "$name"
            continue
        fi
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$s" \
            "$(awk -v r="${rows[$name]}" -v s="$s" 'BEGIN { printf "%.0f", r / s }')" \
            "$(awk -v b="${bytes[$name]}" -v s="$s" 'BEGIN { printf "%.1f", b / s / 1e6 }')" \
            "$(ratio "${secs[direct]}" "$s")" "${rows[$name]}" "${pans[$name]}"
    done
}
read_rows READ_S READ_ROWS READ_BYTES READ_PANS
if ((HAVE_BIN)); then
    cat <<EOF

### Large read in binary format: $ROWS rows × 5 columns (tokio-postgres, whole result)

| path | seconds | rows/s | MB/s | vs direct | rows | rows with a card number in clear |
|---|---:|---:|---:|---:|---:|---:|
EOF
    read_rows BIN_S BIN_ROWS BIN_BYTES BIN_PANS
fi
echo
echo '"vs direct" is throughput relative to direct (direct seconds / these seconds).'
[[ -n $WARDEN_AFTER_READ ]] && echo "Warden after the reads: $WARDEN_AFTER_READ."

cat <<EOF

### Memory with $IDLE idle sessions (resident set size)

| process | RSS before (MiB) | RSS with idle sessions (MiB) | per session (KiB) | sessions opened | PostgreSQL backends added |
|---|---:|---:|---:|---:|---:|
EOF
for name in "${IDLE_NAMES[@]}"; do
    b=${IDLE_BEFORE[$name]:-0} a=${IDLE_AFTER[$name]:-0} n=${IDLE_OK[$name]:-0}
    printf '| %s | %s | %s | %s | %s | %s |\n' "$name" \
        "$(awk -v k="$b" 'BEGIN { printf "%.1f", k / 1024 }')" \
        "$(awk -v k="$a" 'BEGIN { printf "%.1f", k / 1024 }')" \
        "$(awk -v a="$a" -v b="$b" -v n="$n" 'BEGIN { if (n > 0) printf "%.1f", (a - b) / n; else print "—" }')" \
        "$n" "${IDLE_BACKENDS[$name]:-—}"
done

if ((WITH_WARDEN)); then
    cat <<EOF

### One shadow policy: sql-guard + pci-mask with and without cardholder-approval in shadow mode

| script | protocol | clients | TPS without | TPS with shadow | with / without |
|---|---|---:|---:|---:|---:|
EOF
    for script in $SCRIPTS; do
        for mode in $MODES; do
            for c in $CLIENTS; do
                a=${TPS[warden sql-guard+pci-mask|$script|$mode|$c]:-}
                b=${TPS[warden sql-guard+pci-mask + shadow cardholder-approval|$script|$mode|$c]:-}
                printf '| %s | %s | %s | %s | %s | %s |\n' "$script" "$mode" "$c" "$(fmt0 "$a")" "$(fmt0 "$b")" "$(ratio "$b" "$a")"
            done
        done
    done
    if [[ -n $WHATIF_LINE ]]; then
        cat <<EOF

### What-if replay: recorded commands judged again, offline (warden policy whatif --db)

Each command goes through the chain as it is and the chain with the candidate: two judgements.

| chain | commands | seconds (whole run) | commands/s |
|---|---:|---:|---:|
$WHATIF_LINE
EOF
    fi
    cat <<EOF

### Audit space: bytes the audit store grew per byte of traffic

| workload | traffic | audit growth | stored per byte of traffic |
|---|---:|---:|---:|
EOF
    per() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "—" }'; }
    [[ -n $BIG_GROWTH ]] && printf '| three 8 MB statements (allow-all) | %s B | %s B | %s |\n' \
        "$BIG_TRAFFIC" "$BIG_GROWTH" "$(per "$BIG_GROWTH" "$BIG_TRAFFIC")"
    for name in "warden allow-all" "warden sql-guard+pci-mask (masked)"; do
        [[ -n ${READ_GROWTH[$name]:-} ]] && printf '| %s rows read, %s (psql text) | %s B | %s B | %s |\n' \
            "$ROWS" "$name" "${READ_BYTES[$name]}" "${READ_GROWTH[$name]}" "$(per "${READ_GROWTH[$name]}" "${READ_BYTES[$name]}")"
    done
    for k in "${!GROWTH[@]}"; do
        [[ $k == warden* && -n ${TX[$k]:-} && ${TX[$k]} -gt 0 ]] || continue
        printf '| pgbench %s: %s transactions | — | %s B | %s B per transaction |\n' \
            "$k" "${TX[$k]}" "${GROWTH[$k]}" "$(awk -v a="${GROWTH[$k]}" -v b="${TX[$k]}" 'BEGIN { printf "%.0f", a / b }')"
    done | sort
fi
