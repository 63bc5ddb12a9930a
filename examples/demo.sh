#!/usr/bin/env bash
# examples/demo.sh — Warden in front of a throwaway PostgreSQL and sshd with sample card data.
#
#   examples/demo.sh             run the demo, then keep Warden up for you until Ctrl-C
#   examples/demo.sh --no-wait   run the demo and exit (CI, a quick look)
#   examples/demo.sh --keep      keep the run directory and the PostgreSQL data after exit
#
# On a fresh Debian machine as root it installs what is missing (PostgreSQL server and client,
# OpenSSH server and client, sudo, curl; set DEMO_NO_INSTALL=1 to only be told) and adds
# rustup's wasm32-wasip2 target. Rust itself (rustup) must be there. Then it:
#   1. builds `warden` and the policies quickstart.toml uses (policies/build.sh OUT NAME...),
#   2. starts PostgreSQL on a free loopback port in a temp dir, loaded with examples/cards.sql
#      (the gateway's role `warden` is no superuser and owns nothing), and an sshd (the host
#      `web-1`) on another, holding a log file with card numbers; warden logs in to web-1 as the
#      unprivileged account `warden-demo` (created for the run, removed after), whose one sudo
#      rule (/etc/sudoers.d/warden-demo) allows exactly the demo's `sudo -n tail -n 2` of that
#      log; not run as root, the login is you,
#   3. writes a run directory from examples/quickstart.toml (free ports, a fresh HS256 secret,
#      the gateway's own database password and SSH key, web-1's pinned host key, the policies),
#   4. starts `warden serve`, mints a token for agent-7 acting for alice and one for bob, an
#      approver, and prints psql and ssh lines to paste,
#   5. shows, with psql, an allowed query, a masked one, a denied DROP (SQLSTATE 42501; the
#      server never sees it) and a read held for approval and approved by bob; with ssh, an
#      allowed command, masked output, a denied write under /etc (exit status 126; the host
#      never runs it), a sudo held for approval and approved by bob, a command off ssh-guard's
#      allowlist held and denied by bob (the host never runs it), scp refused, and an
#      interactive session in which warden owns the line (a listing runs, a write is refused);
#      then the audit trail (sessions, replay, hash-chain verification).
# Everything listens on 127.0.0.1 only; everything it started is stopped and removed on exit.
set -euo pipefail

# The comment block above, up to `set -euo pipefail`.
usage() { sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

WAIT=1
KEEP=0
for arg in "$@"; do
    case $arg in
        --no-wait) WAIT=0 ;;
        --keep) KEEP=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "demo.sh: unknown option $arg" >&2; usage >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if [[ -t 1 ]]; then
    BOLD=$'\e[1m' DIM=$'\e[2m' GREEN=$'\e[32m' YELLOW=$'\e[33m' RED=$'\e[31m' OFF=$'\e[0m'
else
    BOLD='' DIM='' GREEN='' YELLOW='' RED='' OFF=''
fi
step() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$OFF"; }
info() { printf '    %s\n' "$*"; }
ok() { printf '    %s✓ %s%s\n' "$GREEN" "$*" "$OFF"; }
warn() { printf '    %s! %s%s\n' "$YELLOW" "$*" "$OFF" >&2; }
die() { printf '%sdemo.sh: %s%s\n' "$RED" "$*" "$OFF" >&2; exit 1; }
# Print a command as the reader would type it (tokens shortened), before running it.
show() { printf '%s$ %s%s\n' "$DIM" "$*" "$OFF"; }
indent() { sed 's/^/    /'; }

IS_ROOT=0
[[ $(id -u) == 0 ]] && IS_ROOT=1

# ---------------------------------------------------------------------------------------------
step "Checking what the demo needs"
find_pgbin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true; }
PGBIN=$(find_pgbin)
missing=()
[[ -n $PGBIN && -x $PGBIN/initdb && -x $PGBIN/pg_ctl ]] || missing+=(postgresql)
command -v psql >/dev/null || missing+=(postgresql-client)
command -v curl >/dev/null || missing+=(curl)
SSHD=/usr/sbin/sshd
[[ -x $SSHD ]] || missing+=(openssh-server)
for tool in ssh ssh-keygen scp; do
    command -v $tool >/dev/null || { missing+=(openssh-client); break; }
done
# The approval step on web-1 runs `sudo`.
command -v sudo >/dev/null || missing+=(sudo)
# Building Warden compiles PostgreSQL's parser (libpg_query): a C compiler and libclang.
command -v clang >/dev/null || missing+=(clang)
if ((${#missing[@]})); then
    info "missing Debian packages: ${missing[*]}"
    if ((IS_ROOT)) && [[ -z ${DEMO_NO_INSTALL:-} ]] && command -v apt-get >/dev/null; then
        info "installing them: apt-get install -y ${missing[*]}"
        info "(the postgresql and openssh-server packages may also start their own servers on ports 5432 and 22; the demo uses neither)"
        timeout 900 apt-get update -qq
        DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "${missing[@]}" >/dev/null
        PGBIN=$(find_pgbin)
    else
        die "install them first: apt-get install -y ${missing[*]}  (as root; or run this script as root)"
    fi
fi
[[ -n $PGBIN && -x $PGBIN/initdb ]] || die "no PostgreSQL server under /usr/lib/postgresql/*/bin (apt-get install -y postgresql)"
if ((IS_ROOT)); then
    id postgres >/dev/null 2>&1 || die "no 'postgres' OS user to run the server as (apt-get install -y postgresql creates it)"
    # web-1's login account and its one sudo rule.
    for tool in useradd userdel visudo; do
        command -v $tool >/dev/null || die "no $tool (useradd, userdel: apt-get install -y passwd; visudo: sudo)"
    done
fi
command -v cargo >/dev/null || die "Rust is missing: install it with rustup (https://rustup.rs), then run this again"
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    command -v rustup >/dev/null || die "the wasm32-wasip2 target is missing and there is no rustup to add it; install Rust with rustup"
    info "adding the wasm32-wasip2 target: rustup target add wasm32-wasip2"
    timeout 900 rustup target add wasm32-wasip2 || die "rustup target add wasm32-wasip2 failed"
fi
[[ -x $SSHD ]] || die "no $SSHD (apt-get install -y openssh-server)"
ok "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') in $PGBIN, $(psql --version), $(ssh -V 2>&1 | cut -d, -f1), $(cargo --version | cut -d' ' -f1-2), wasm32-wasip2"

# ---------------------------------------------------------------------------------------------
# State for the clean-up trap: it stops what was started and removes what was made.
RUN='' PGDIR='' PG_STARTED=0 SSHDIR='' WEB1='' WARDEN_PID='' HELD_PID='' WARDEN=''
# web-1's login when run as root: an unprivileged account made for the run.
DEMO_USER=warden-demo DEMO_USER_MADE=0 SUDOERS_DROPIN='' SUDO_LOG=''
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    [[ -n $HELD_PID ]] && kill "$HELD_PID" 2>/dev/null
    if [[ -n $WARDEN_PID ]]; then
        # Ctrl-C in a terminal reaches warden too; it may be stopping already.
        printf '\n%s==> Stopping warden (pid %s)%s\n' "$BOLD" "$WARDEN_PID" "$OFF"
        kill -TERM "$WARDEN_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$WARDEN_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$WARDEN_PID" 2>/dev/null
        wait "$WARDEN_PID" 2>/dev/null
        # With the gateway stopped, the audit file is free for the CLI: check its chain.
        if [[ -s $RUN/warden-audit.redb ]]; then
            show "warden audit verify --db $RUN/warden-audit.redb --checkpoints $RUN/audit-checkpoints.jsonl --pubkey $RUN/audit-key.pub.pem"
            timeout 60 "$WARDEN" audit verify --db "$RUN/warden-audit.redb" \
                --checkpoints "$RUN/audit-checkpoints.jsonl" --pubkey "$RUN/audit-key.pub.pem" 2>&1 | indent
        fi
    fi
    if ((PG_STARTED)); then
        as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
            as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate -w -t 30 stop >/dev/null 2>&1
        info "PostgreSQL stopped"
    fi
    if [[ -s $SSHDIR/sshd.pid ]]; then
        kill "$(cat "$SSHDIR/sshd.pid")" 2>/dev/null && info "sshd stopped"
    fi
    # The sudo rule and the login account go whatever --keep says.
    if [[ -n $SUDOERS_DROPIN ]]; then
        rm -f "$SUDOERS_DROPIN" "$(dirname "$SUDOERS_DROPIN")/.$(basename "$SUDOERS_DROPIN").tmp" &&
            info "removed the sudo rule $SUDOERS_DROPIN"
    fi
    if ((DEMO_USER_MADE)); then
        # sshd was stopped just now; give its last session a moment to end.
        for _ in $(seq 20); do
            id "$DEMO_USER" >/dev/null 2>&1 || break
            userdel -r "$DEMO_USER" >/dev/null 2>&1 || sleep 0.25
        done
        if id "$DEMO_USER" >/dev/null 2>&1; then
            warn "could not remove the account $DEMO_USER (userdel -r $DEMO_USER)"
        else
            info "removed the account $DEMO_USER"
        fi
    fi
    if ((KEEP)); then
        [[ -n $RUN ]] && info "kept the run directory $RUN"
        [[ -n $WEB1 ]] && info "kept web-1's files $WEB1"
        [[ -n $PGDIR ]] && info "kept the PostgreSQL directory $PGDIR (log: $PGDIR/server.log)"
    else
        [[ -n $RUN ]] && rm -rf "$RUN"
        [[ -n $WEB1 ]] && rm -rf "$WEB1"
        [[ -n $PGDIR ]] && rm -rf "$PGDIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

as_pg() {
    if ((IS_ROOT)); then runuser -u postgres -- "$@"; else "$@"; fi
}

# A loopback port nobody listens on, not handed out before in this run.
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

RUN=$(mktemp -d /tmp/warden-demo.XXXXXX)
PGDIR=$(mktemp -d /tmp/warden-demo-pg.XXXXXX)
CFG=$RUN/quickstart.toml

# ---------------------------------------------------------------------------------------------
step "Building warden and the policies"
build_started=$SECONDS
show "cargo build -p warden-gateway --bin warden"
timeout 3600 cargo build --quiet -p warden-gateway --bin warden || die "building warden failed"
WARDEN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/warden
[[ -x $WARDEN ]] || die "no $WARDEN after the build"
warden_built=$SECONDS
# Only the policies quickstart.toml names (its `module = "..."` entries): the C, JavaScript and
# Python examples, and their toolchains, are not built for a demo that never loads them.
mapfile -t DEMO_POLICIES < <(grep -v '^[[:space:]]*#' examples/quickstart.toml |
    grep -o 'module = "[^"]*"' | cut -d'"' -f2 | sort -u)
((${#DEMO_POLICIES[@]})) || die "found no module = \"...\" in examples/quickstart.toml"
show "policies/build.sh $RUN/policies ${DEMO_POLICIES[*]}"
timeout 1800 policies/build.sh "$RUN/policies" "${DEMO_POLICIES[@]}" | indent || die "building the policies failed"
ok "built in $((SECONDS - build_started)) s (warden $((warden_built - build_started)) s, policies $((SECONDS - warden_built)) s)"

# ---------------------------------------------------------------------------------------------
step "Starting a throwaway PostgreSQL on loopback"
((IS_ROOT)) && chown postgres: "$PGDIR"
chmod 700 "$PGDIR"
PG_SUPER_PW=$(random_word 24)
printf '%s\n' "$PG_SUPER_PW" >"$PGDIR/superuser.pw"
((IS_ROOT)) && chown postgres: "$PGDIR/superuser.pw"
as_pg "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --pwfile="$PGDIR/superuser.pw" \
    --auth-local=trust --auth-host=scram-sha-256 --no-sync -E UTF8 --locale=C.UTF-8 \
    >"$PGDIR/initdb.log" 2>&1 || { cat "$PGDIR/initdb.log" >&2; die "initdb failed"; }
rm -f "$PGDIR/superuser.pw"
for attempt in 1 2 3 4 5; do
    PGPORT=$(free_port)
    # log_statement=all: the server log shows every statement that reached it.
    if as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 -o \
        "-p $PGPORT -c listen_addresses=127.0.0.1 -k $PGDIR -c fsync=off -c log_statement=all -c log_connections=on -c log_line_prefix='%m [%p] %q%u@%d '" \
        start >/dev/null 2>&1; then
        PG_STARTED=1
        break
    fi
    grep -q "could not bind\|already in use" "$PGDIR/server.log" 2>/dev/null && [[ $attempt -lt 5 ]] && continue
    tail -n 20 "$PGDIR/server.log" >&2 || true
    die "PostgreSQL did not start"
done
for _ in $(seq 100); do
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" -t 2 && break
    sleep 0.1
done
"$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" -t 5 || die "PostgreSQL is not accepting connections on port $PGPORT"
# The demo itself administers the server over its unix socket (local trust).
psql_admin() {
    local db=$1
    shift
    timeout 120 psql -X -q -v ON_ERROR_STOP=1 "host=$PGDIR port=$PGPORT user=postgres dbname=$db" "$@"
}
ok "PostgreSQL on 127.0.0.1:$PGPORT, data and log in $PGDIR"

GW_PW=$(random_word 32)
# The gateway's own login: no superuser, nor any other role attribute; cards.sql grants it
# read and write on the three demo tables (and their sequences), nothing else, and no
# ownership. Statement logging off for this one statement: the password stays out of the
# server log.
psql_admin postgres -c "SET log_statement = 'none'" \
    -c "SET password_encryption = 'scram-sha-256'" \
    -c "CREATE ROLE warden LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD '$GW_PW'" \
    -c "CREATE DATABASE payments"
show "psql -d payments -v gateway_role=warden -f examples/cards.sql"
psql_admin payments -v gateway_role=warden -f examples/cards.sql
# Checked, not assumed: the role has no attribute beyond LOGIN, owns nothing and is granted
# only on the demo tables.
role_attrs=$(psql_admin payments -Atc "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls FROM pg_roles WHERE rolname = 'warden'")
[[ $role_attrs == f ]] || die "the gateway's role warden is a superuser or has other privileged attributes"
role_owns=$(psql_admin payments -Atc "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = 'warden'")
[[ $role_owns == 0 ]] || die "the gateway's role warden owns $role_owns relations"
role_grants=$(psql_admin payments -Atc "SELECT string_agg(DISTINCT table_name || ' ' || privilege_type, ', ' ORDER BY table_name || ' ' || privilege_type) FROM information_schema.role_table_grants WHERE grantee = 'warden' AND table_name NOT IN ('cards', 'owners', 'merchants')")
[[ -z $role_grants ]] || die "the gateway's role warden has grants beyond the demo tables: $role_grants"
ok "database payments: $(psql_admin payments -Atc 'SELECT count(*) FROM cards') cards; role warden (SCRAM-SHA-256): no superuser, owns nothing, reads and writes rows of cards, owners, merchants"

# ---------------------------------------------------------------------------------------------
step "Starting a throwaway sshd on loopback: the host web-1"
# sshd's own files (host key, config, pid, log) live in $SSHDIR, in the run directory; the
# gateway's own key and web-1's pinned host key go in the run directory too, where
# quickstart.toml names them. What the host holds for its login (the card log, the wrapper
# that writes down each command, and that record) lives in $WEB1, readable by that login.
SSHDIR=$RUN/sshd
mkdir -m 700 "$SSHDIR"
WEB1=$(mktemp -d /tmp/warden-demo-web1.XXXXXX)
chmod 755 "$WEB1"
LOG=$WEB1/payments.log
# Step 8's command: the one thing web-1's login may run with sudo.
SUDO_CMD="sudo -n tail -n 2 $LOG"
ssh-keygen -q -t ed25519 -N '' -C web-1 -f "$SSHDIR/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C warden-gateway -f "$RUN/ssh-upstream-key"
cat >"$LOG" <<'EOF_LOG'
2025-11-27T09:14:07Z INFO  charge approved card=4111 1111 1111 1111 amount=12.50 EUR merchant="Blue Fern Cafe"
2025-11-27T09:14:09Z WARN  charge declined card=5500-0055-5555-5559 amount=80.00 EUR reason="do not honour"
2025-11-27T09:15:31Z INFO  refund issued   card=378282246310005 amount=5.00 EUR merchant="Blue Fern Cafe"
2025-11-27T09:16:02Z INFO  charge approved card=4000056655665556 amount=230.00 EUR merchant="Harbour Tools"
2025-11-27T09:16:40Z ERROR retry order=10442 customer note: "please use my other card 6011 1111 1111 1117"
EOF_LOG
chmod 644 "$LOG"

# Warden logs in to web-1 as an unprivileged account, never as root: the sudo of step 8 is then
# a real boundary, which approval crosses through one sudoers rule for exactly that command.
if ((IS_ROOT)); then
    # One run at a time owns the account and the sudo rule (this lock goes when the script ends).
    exec 8>/run/warden-demo.lock
    flock -n 8 || die "another examples/demo.sh runs as root (the account $DEMO_USER is in use); let it finish first"
    DEMO_USER_MARK="Warden demo upstream login (examples/demo.sh)"
    if id "$DEMO_USER" >/dev/null 2>&1; then
        # Left by a run that could not clean up; anyone else's account is not ours to change.
        [[ $(getent passwd "$DEMO_USER" | cut -d: -f5) == "$DEMO_USER_MARK" ]] ||
            die "there is already a user $DEMO_USER that this demo did not create; it will not change it"
        info "reusing the account $DEMO_USER left by an earlier run"
    else
        # -p '*': no password works, yet the account is not locked (sshd without PAM refuses a
        # locked one).
        useradd -m -s /bin/bash -c "$DEMO_USER_MARK" -p '*' "$DEMO_USER" ||
            die "could not create the account $DEMO_USER"
    fi
    DEMO_USER_MADE=1
    SSH_USER=$DEMO_USER
    ssh_home=$(getent passwd "$SSH_USER" | cut -d: -f6)
    ssh_group=$(id -gn "$SSH_USER")
    # What sshd's StrictModes asks: home and ~/.ssh not writable by others, the key file the
    # user's own.
    chmod go-w "$ssh_home"
    install -d -m 700 -o "$SSH_USER" -g "$ssh_group" "$ssh_home/.ssh"
    install -m 600 -o "$SSH_USER" -g "$ssh_group" "$RUN/ssh-upstream-key.pub" "$ssh_home/.ssh/authorized_keys"
    AUTH_KEYS=.ssh/authorized_keys
    STRICT_MODES=yes
    # The one sudo rule: exactly step 8's command, as root, no password; and a log of what sudo
    # ran, as whom (root's only), which step 8 shows. Written under a name sudo ignores (it has
    # a dot), checked with visudo, then renamed into place.
    SUDOERS_DROPIN=/etc/sudoers.d/$DEMO_USER
    SUDO_LOG=$WEB1/sudo.log
    tail_bin=$(command -v tail)
    sudoers_tmp=/etc/sudoers.d/.$DEMO_USER.tmp
    (umask 077 && printf '%s\n' \
        "# examples/demo.sh: web-1's login may run this one command as root (removed on exit)." \
        "Defaults:$DEMO_USER logfile=$SUDO_LOG, loglinelen=0" \
        "$DEMO_USER ALL=(root) NOPASSWD: $tail_bin -n 2 $LOG" >"$sudoers_tmp")
    chmod 0440 "$sudoers_tmp"
    visudo -cqf "$sudoers_tmp" || die "visudo refused the rule in $sudoers_tmp"
    mv "$sudoers_tmp" "$SUDOERS_DROPIN"
    grep -qx '[@#]includedir /etc/sudoers.d' /etc/sudoers ||
        warn "/etc/sudoers does not include /etc/sudoers.d: step 8's sudo will be refused"
    ok "login $SSH_USER (no password, no root): gateway's key in $ssh_home/.ssh/authorized_keys; sudo only for '$tail_bin -n 2 $LOG' ($SUDOERS_DROPIN)"
else
    SSH_USER=$(id -un)
    warn "not root: web-1's login (warden's upstream) is you, $SSH_USER, with all your rights; as root the demo uses an unprivileged account"
    warn "step 8 needs '$SUDO_CMD' to work for you without a password"
    cp "$RUN/ssh-upstream-key.pub" "$SSHDIR/authorized_keys"
    AUTH_KEYS=$SSHDIR/authorized_keys
    # The key file sits under /tmp, which is writable by all: StrictModes would refuse it.
    STRICT_MODES=no
fi
# sshd runs every command through this (ForceCommand), which writes it down first: the host's
# own record of what reached it, as log_statement = all is PostgreSQL's.
cat >"$WEB1/run-logged" <<EOF_WRAP
#!/bin/sh
case \$SSH_ORIGINAL_COMMAND in
    '') exec "\${SHELL:-/bin/sh}" -l ;;
    internal-sftp) echo "\$(date +%T.%3N) (sftp session)" >>"$WEB1/ran.log"; exec /usr/lib/openssh/sftp-server ;;
esac
printf '%s %s\n' "\$(date +%T.%3N)" "\$SSH_ORIGINAL_COMMAND" >>"$WEB1/ran.log"
exec "\${SHELL:-/bin/sh}" -c "\$SSH_ORIGINAL_COMMAND"
EOF_WRAP
chmod 755 "$WEB1/run-logged"
: >"$WEB1/ran.log"
chmod 644 "$WEB1/ran.log"
((IS_ROOT)) && chown "$SSH_USER:" "$WEB1/ran.log"
# Privilege separation needs this directory when sshd runs as root.
((IS_ROOT)) && mkdir -p /run/sshd
SSHD_PORT=''
for attempt in 1 2 3 4 5; do
    port=$(free_port)
    cat >"$SSHDIR/sshd_config" <<EOF_CFG
Port $port
ListenAddress 127.0.0.1
HostKey $SSHDIR/host_ed25519
PidFile $SSHDIR/sshd.pid
AuthorizedKeysFile $AUTH_KEYS
AllowUsers $SSH_USER
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes $STRICT_MODES
PermitRootLogin no
ForceCommand $WEB1/run-logged
Subsystem sftp internal-sftp
LogLevel VERBOSE
EOF_CFG
    # sshd binds before it daemonises: a taken port is a failed start, and the next port is tried.
    if "$SSHD" -f "$SSHDIR/sshd_config" -E "$SSHDIR/sshd.log" 2>"$SSHDIR/sshd.err"; then
        SSHD_PORT=$port
        break
    fi
    [[ $attempt -lt 5 ]] || { tail -n 20 "$SSHDIR/sshd.err" "$SSHDIR/sshd.log" >&2; die "sshd did not start"; }
done
printf '[127.0.0.1]:%s %s\n' "$SSHD_PORT" "$(cut -d' ' -f1-2 "$SSHDIR/host_ed25519.pub")" >"$RUN/ssh-known-hosts"
# A direct login with the gateway's key, host key pinned: the host works before warden is in front.
for _ in $(seq 50); do
    timeout 10 ssh -F none -i "$RUN/ssh-upstream-key" -o IdentitiesOnly=yes -o BatchMode=yes \
        -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$RUN/ssh-known-hosts" -o LogLevel=ERROR \
        -p "$SSHD_PORT" "$SSH_USER@127.0.0.1" true </dev/null 2>"$SSHDIR/direct.err" && break
    sleep 0.2
done
[[ -s $WEB1/ran.log ]] || { cat "$SSHDIR/direct.err" "$SSHDIR/sshd.log" >&2; die "could not log in to sshd on port $SSHD_PORT as $SSH_USER with the gateway's key"; }
: >"$WEB1/ran.log"
ok "sshd on 127.0.0.1:$SSHD_PORT, login $SSH_USER with the gateway's key only (root may not log in), web-1's files in $WEB1"
info "$LOG, as it is on the host:"
indent <"$LOG"

# ---------------------------------------------------------------------------------------------
step "Writing the run directory $RUN"
WPORT=$(free_port)
SPORT=$(free_port)
APORT=$(free_port)
sed -e "s/127\.0\.0\.1:6432/127.0.0.1:$WPORT/" \
    -e "s/127\.0\.0\.1:2222/127.0.0.1:$SPORT/" \
    -e "s/127\.0\.0\.1:9190/127.0.0.1:$APORT/" \
    -e "s/^port = 5432\$/port = $PGPORT/" \
    -e "s/^port = 22\$/port = $SSHD_PORT/" \
    -e "s/^user = \"warden-demo\"\$/user = \"$SSH_USER\"/" \
    examples/quickstart.toml >"$CFG"
if ! grep -q "^listen = \"127.0.0.1:$WPORT\"" "$CFG" || ! grep -q "^listen = \"127.0.0.1:$APORT\"" "$CFG" ||
    ! grep -q "^listen = \"127.0.0.1:$SPORT\"" "$CFG" || ! grep -q "^port = $PGPORT\$" "$CFG" ||
    ! grep -q "^port = $SSHD_PORT\$" "$CFG" || ! grep -q "^user = \"$SSH_USER\"\$" "$CFG"; then
    die "examples/quickstart.toml changed: could not set the ports in $CFG"
fi
(umask 077 && head -c 48 /dev/urandom | base64 -w0 >"$RUN/dev-secret")
# The key that signs the audit chain's checkpoints: outside the database, readable by warden only.
show "warden audit keygen --key $RUN/audit-key.pem --pubkey $RUN/audit-key.pub.pem"
"$WARDEN" audit keygen --key "$RUN/audit-key.pem" --pubkey "$RUN/audit-key.pub.pem" | indent
(umask 077 && printf '%s' "$GW_PW" >"$RUN/pg-password")
info "quickstart.toml  ports: postgres listener $WPORT, ssh listener $SPORT, admin $APORT, upstreams $PGPORT (postgres) and $SSHD_PORT (sshd)"
info "dev-secret       HS256 secret for development tokens"
info "pg-password      warden's own PostgreSQL password (clients never see it)"
info "ssh-upstream-key warden's own SSH key for web-1 (clients never see it)"
info "ssh-known-hosts  web-1's pinned host key: $(cut -d' ' -f2- "$RUN/ssh-known-hosts" | cut -c1-40)…"
info "policies/        $(cd "$RUN/policies" && ls -- *.wasm | tr '\n' ' ')"

# ---------------------------------------------------------------------------------------------
step "Minting tokens"
show "warden token mint --config $CFG --sub alice --act agent-7 --group agents --ttl 1h"
ALICE_TOKEN=$("$WARDEN" token mint --config "$CFG" --sub alice --act agent-7 --group agents --ttl 1h)
show "warden token mint --config $CFG --sub bob --group approvers --ttl 1h"
BOB_TOKEN=$("$WARDEN" token mint --config "$CFG" --sub bob --group approvers --ttl 1h)
show "warden token mint --config $CFG --sub erin --group auditors --ttl 1h"
ERIN_TOKEN=$("$WARDEN" token mint --config "$CFG" --sub erin --group auditors --ttl 1h)
ok "alice (via agent-7): ${ALICE_TOKEN:0:24}…   bob (approver): ${BOB_TOKEN:0:24}…   erin (auditor): ${ERIN_TOKEN:0:24}…"

# ---------------------------------------------------------------------------------------------
step "Starting warden"
"$WARDEN" serve --help >/dev/null 2>&1 ||
    die "this build of warden has no 'serve' command yet (the PostgreSQL adapter is not merged); stopping here"
show "warden serve --config $CFG"
WARDEN_LOG=${WARDEN_LOG:-info} "$WARDEN" serve --config "$CFG" >"$RUN/warden.log" 2>&1 &
WARDEN_PID=$!
# On first start warden compiles every policy in the directory to native code (the
# interpreted ones, with their language runtimes, take longest); later starts use the cache.
for i in $(seq 3000); do
    grep -q "^postgres listening on" "$RUN/warden.log" 2>/dev/null &&
        grep -q "^ssh listening on" "$RUN/warden.log" 2>/dev/null &&
        grep -q "^admin listening on" "$RUN/warden.log" 2>/dev/null && break
    kill -0 "$WARDEN_PID" 2>/dev/null || { tail -n 30 "$RUN/warden.log" >&2; WARDEN_PID=''; die "warden exited"; }
    ((i == 50)) && info "compiling the policies (first start only; cached in $RUN/policies/.cache) ..."
    sleep 0.2
done
grep -q "^ssh listening on" "$RUN/warden.log" || { tail -n 30 "$RUN/warden.log" >&2; die "warden did not start listening within 10 minutes"; }
ok "$(grep -h "listening on" "$RUN/warden.log" | tr '\n' ';' | sed 's/;$//; s/;/, /g') (pid $WARDEN_PID, log $RUN/warden.log)"
# Warden made its own SSH host key on first start; clients pin it, as warden pins web-1's.
for _ in $(seq 50); do
    GW_HOST_KEY=$(ssh-keygen -y -f "$RUN/ssh-host-key" 2>/dev/null) && break
    sleep 0.2
done
[[ -n ${GW_HOST_KEY:-} ]] || die "warden did not create its SSH host key $RUN/ssh-host-key"
printf '[127.0.0.1]:%s %s\n' "$SPORT" "$GW_HOST_KEY" >"$RUN/gateway-known-hosts"
ok "warden's SSH host key $(ssh-keygen -lf "$RUN/gateway-known-hosts" | cut -d' ' -f2), pinned for clients in $RUN/gateway-known-hosts"
# The token is the SSH password; this helper answers ssh's prompt with it.
(umask 077 && printf '%s\n' "$ALICE_TOKEN" >"$RUN/alice.token")
printf '#!/bin/sh\ncat %q\n' "$RUN/alice.token" >"$RUN/alice-askpass"
chmod 700 "$RUN/alice-askpass"

ADMIN=http://127.0.0.1:$APORT
CONN="host=127.0.0.1 port=$WPORT dbname=payments user=alice sslmode=disable"
cat <<EOF

${BOLD}Connect as agent-7 acting for alice${OFF} (the password is the token; psql never learns the
database's own credentials):

  PGPASSWORD=$ALICE_TOKEN psql "$CONN"

${BOLD}Or log in to web-1 through Warden${OFF} (the login name is the target; the password is the same
token, answered here by $RUN/alice-askpass; warden logs in to the host with its own key):

  SSH_ASKPASS=$RUN/alice-askpass SSH_ASKPASS_REQUIRE=force ssh -p $SPORT -o UserKnownHostsFile=$RUN/gateway-known-hosts web-1@127.0.0.1
  SSH_ASKPASS=$RUN/alice-askpass SSH_ASKPASS_REQUIRE=force ssh -p $SPORT -o UserKnownHostsFile=$RUN/gateway-known-hosts web-1@127.0.0.1 cat $LOG

${BOLD}Approve or deny held statements and commands as bob:${OFF}

  WARDEN_TOKEN=$BOB_TOKEN $WARDEN approvals --admin $ADMIN list
  WARDEN_TOKEN=$BOB_TOKEN $WARDEN approvals --admin $ADMIN approve apr-... --reason "ticket 123"
EOF

# ---------------------------------------------------------------------------------------------
# psql as alice through warden; -v VERBOSITY=verbose shows SQLSTATEs.
psql_alice() {
    PGPASSWORD=$ALICE_TOKEN PGCONNECT_TIMEOUT=10 timeout "${PSQL_TIMEOUT:-60}" \
        psql -X -v VERBOSITY=verbose "$CONN" "$@"
}
approvals() { WARDEN_TOKEN=$BOB_TOKEN timeout 60 "$WARDEN" approvals --admin "$ADMIN" "$@"; }
# Wait until the client in the background (pid $1) is held: sets APR (its id) and LISTING.
await_approval() {
    APR='' LISTING=''
    for _ in $(seq 120); do
        LISTING=$(approvals list 2>&1 || true)
        APR=$(grep -o 'apr-[0-9a-zA-Z]\+' <<<"$LISTING" | head -n 1 || true)
        [[ -n $APR ]] && return 0
        kill -0 "$1" 2>/dev/null || return 1
        sleep 0.5
    done
    return 1
}
# ssh, scp as alice through warden. The askpass helper gives the token; under setsid there is
# no terminal for ssh to ask instead. -F none: your ~/.ssh/config plays no part.
# shellcheck disable=SC2054  # the comma is part of one option's value
SSH_OPTS=(-F none -o UserKnownHostsFile="$RUN/gateway-known-hosts" -o StrictHostKeyChecking=yes
    -o PubkeyAuthentication=no -o PreferredAuthentications=keyboard-interactive,password -o LogLevel=ERROR)
as_alice() {
    local prog=$1
    shift
    env -u DISPLAY SSH_ASKPASS="$RUN/alice-askpass" SSH_ASKPASS_REQUIRE=force \
        timeout "${SSH_TIMEOUT:-60}" setsid -w "$prog" "${SSH_OPTS[@]}" "$@" </dev/null
}
ssh_alice() { as_alice ssh -p "$SPORT" web-1@127.0.0.1 "$@"; }

FAILED=()

step "1. An allowed query: a table without card data"
show "psql -c 'SELECT name, city, mcc FROM merchants ORDER BY id'"
if out=$(psql_alice -c 'SELECT name, city, mcc FROM merchants ORDER BY id' 2>&1); then
    printf '%s\n' "$out" | indent
    ok "answered as from the database itself"
else
    printf '%s\n' "$out" | indent
    warn "the query failed"; FAILED+=("allowed query")
fi

step "2. A masked query: card numbers leave only as their last four digits"
Q2='SELECT id, holder, pan, pan_char, note FROM cards ORDER BY id LIMIT 5'
show "psql -c '$Q2'"
if out=$(psql_alice -c "$Q2" 2>&1); then
    printf '%s\n' "$out" | indent
    if grep -q '4111111111111111\|5500 0055 5555 5559' <<<"$out"; then
        warn "an unmasked PAN reached the client"; FAILED+=("masking")
    else
        ok "PANs masked by pci-mask (the database holds e.g. $(psql_admin payments -Atc 'SELECT pan FROM cards WHERE id = 2'))"
    fi
else
    printf '%s\n' "$out" | indent
    warn "the query failed"; FAILED+=("masked query")
fi

Q2B='SELECT reverse(pan) FROM cards WHERE id = 2'
show "psql -c \"$Q2B\"   # the author transforms the card number"
out=$(psql_alice -c "$Q2B" 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" | indent
if ((rc != 0)) && grep -q 'pci-mask' <<<"$out"; then
    ok "refused by lineage: cards.pan may leave only as itself, masked"
else
    warn "expected pci-mask to refuse an expression over cards.pan"; FAILED+=("lineage")
fi

step "3. A denied statement: sql-guard refuses DROP"
show "psql -c 'DROP TABLE cards'"
out=$(psql_alice -c 'DROP TABLE cards' 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" | indent
if ((rc != 0)) && grep -q 42501 <<<"$out"; then
    ok "refused with SQLSTATE 42501 (insufficient_privilege)"
else
    warn "expected an error with SQLSTATE 42501"; FAILED+=("deny")
fi
# Lines look like `... [pid] warden@payments LOG:  statement: ...` (or `execute <name>: ...`).
if grep -qi "warden@payments LOG: .*DROP" "$PGDIR/server.log"; then
    warn "the server's statement log shows the DROP"; FAILED+=("deny never forwarded")
else
    ok "the server's statement log (log_statement = all) has no DROP: it never arrived"
fi
info "table still there: $(psql_admin payments -Atc 'SELECT count(*) FROM cards') rows"

step "4. Approval: a read of all cards waits for a human"
show "psql -c 'SELECT * FROM cards'   # in the background: it is held"
PSQL_TIMEOUT=300 psql_alice -c 'SELECT * FROM cards' >"$RUN/held.out" 2>&1 &
HELD_PID=$!
if await_approval "$HELD_PID"; then
    show "WARDEN_TOKEN=<bob> warden approvals --admin $ADMIN list"
    printf '%s\n' "$LISTING" | indent
    show "WARDEN_TOKEN=<bob> warden approvals --admin $ADMIN approve $APR --reason \"demo: reconciliation ticket 4711\""
    approvals approve "$APR" --reason "demo: reconciliation ticket 4711" 2>&1 | indent || true
    if wait "$HELD_PID"; then held_rc=0; else held_rc=$?; fi
    HELD_PID=''
    info "alice's psql, which had been waiting:"
    indent <"$RUN/held.out"
    if ((held_rc == 0)) && grep -q '(20 rows)' "$RUN/held.out"; then
        ok "approved by bob; the rows came back masked"
    else
        warn "the held query did not complete after approval (psql exit $held_rc)"; FAILED+=("approval")
    fi
else
    warn "no pending approval appeared"
    printf '%s\n' "$LISTING" | indent
    kill "$HELD_PID" 2>/dev/null || true
    wait "$HELD_PID" 2>/dev/null || true
    HELD_PID=''
    indent <"$RUN/held.out"
    FAILED+=("approval")
fi

step "5. ssh: an allowed command on web-1"
show "ssh -p $SPORT web-1@127.0.0.1 'uname -a'"
out=$(ssh_alice 'uname -a' 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" | indent
if ((rc == 0)) && grep -q "$(uname -s)" <<<"$out"; then
    ok "ran on the host, with warden's key; ssh only ever saw warden's host key"
else
    warn "expected uname's answer (ssh exit $rc)"; FAILED+=("ssh allowed")
fi

step "6. ssh: masked output: card numbers leave web-1 only as their last four digits"
show "ssh -p $SPORT web-1@127.0.0.1 'cat $LOG'"
out=$(ssh_alice "cat $LOG" 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" | indent
if ((rc != 0)) || ! grep -q 'card=\*\*\*\* \*\*\*\* \*\*\*\* 1111' <<<"$out"; then
    warn "expected the log with masked card numbers (ssh exit $rc)"; FAILED+=("ssh masking")
elif grep -q '4111 1111 1111 1111\|5500-0055-5555-5559\|378282246310005\|4000056655665556\|6011 1111 1111 1117' <<<"$out"; then
    warn "an unmasked PAN reached the client"; FAILED+=("ssh masking")
else
    ok "PANs masked by pci-mask, line by line, separators kept (the file on the host is unchanged)"
fi

step "7. ssh: a denied command: ssh-guard refuses a write under /etc"
BAD='echo pwned > /etc/warden-demo'
[[ -e /etc/warden-demo ]] && warn "/etc/warden-demo exists already (a previous run?)"
show "ssh -p $SPORT web-1@127.0.0.1 '$BAD'"
out=$(ssh_alice "$BAD" 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" | indent
info "exit status $rc"
if ((rc == 126)) && grep -q 'warden: denied.*ssh-guard' <<<"$out"; then
    ok "refused by ssh-guard with exit status 126 (the conventional \"cannot execute\")"
else
    warn "expected 'warden: denied ... ssh-guard' and exit status 126"; FAILED+=("ssh deny")
fi
show "cat $WEB1/ran.log   # every command the host ran, written down by sshd's ForceCommand"
indent <"$WEB1/ran.log"
if grep -qF '/etc/warden-demo' "$WEB1/ran.log" || [[ -e /etc/warden-demo ]]; then
    warn "the host ran the denied command"; FAILED+=("ssh deny never forwarded")
else
    ok "the host ran uname and cat, never the write: it never arrived (and there is no /etc/warden-demo)"
fi

step "8. ssh: sudo waits for a human"
show "ssh -p $SPORT web-1@127.0.0.1 '$SUDO_CMD'   # in the background: it is held"
SSH_TIMEOUT=300 ssh_alice "$SUDO_CMD" >"$RUN/held-ssh.out" 2>&1 &
HELD_PID=$!
if await_approval "$HELD_PID"; then
    show "WARDEN_TOKEN=<bob> warden approvals --admin $ADMIN list"
    printf '%s\n' "$LISTING" | indent
    if grep -qF "$SUDO_CMD" "$WEB1/ran.log"; then
        warn "the host ran it before approval"; FAILED+=("ssh approval")
    fi
    show "WARDEN_TOKEN=<bob> warden approvals --admin $ADMIN approve $APR --reason \"demo: incident 815, read the card log as root\""
    approvals approve "$APR" --reason "demo: incident 815, read the card log as root" 2>&1 | indent || true
    if wait "$HELD_PID"; then held_rc=0; else held_rc=$?; fi
    HELD_PID=''
    info "alice's ssh, which had been waiting (exit status $held_rc):"
    indent <"$RUN/held-ssh.out"
    if ((held_rc == 0)) && grep -q 'held for approval' "$RUN/held-ssh.out" &&
        grep -q '\*\*\*\* 1117' "$RUN/held-ssh.out" && ! grep -q '6011 1111 1111 1117' "$RUN/held-ssh.out"; then
        ok "approved by bob; sudo ran on the host, and its output came back masked"
    else
        warn "the held command did not complete as expected after approval"; FAILED+=("ssh approval")
    fi
    if [[ -n $SUDO_LOG ]]; then
        show "cat $SUDO_LOG   # web-1's sudo log (root's only): who ran what, as whom"
        [[ -s $SUDO_LOG ]] && indent <"$SUDO_LOG"
        # A line for a command sudo ran reads `DATE : USER : PWD=... ; USER=root ; COMMAND=...`;
        # a refused one has the reason before PWD.
        if grep -sF "USER=root ; COMMAND=$tail_bin -n 2 $LOG" "$SUDO_LOG" | grep -F " : $SSH_USER : PWD=" >/dev/null; then
            ok "$SSH_USER ran it as root through its one sudoers rule ($SUDOERS_DROPIN); it may run nothing else as root"
        else
            warn "web-1's sudo log does not show the command run as root by $SSH_USER"; FAILED+=("ssh approval: sudo as root")
        fi
    fi
else
    warn "no pending approval appeared"
    printf '%s\n' "$LISTING" | indent
    kill "$HELD_PID" 2>/dev/null || true
    wait "$HELD_PID" 2>/dev/null || true
    HELD_PID=''
    indent <"$RUN/held-ssh.out"
    FAILED+=("ssh approval")
fi

step "8b. ssh: a command off ssh-guard's allowlist waits for a human, who can refuse it"
OFF_LIST="touch $WEB1/off-list-marker"
show "ssh -p $SPORT web-1@127.0.0.1 '$OFF_LIST'   # in the background: touch is not a read-only command"
ssh_alice "$OFF_LIST" >"$RUN/held-off-list.out" 2>&1 &
HELD_PID=$!
if await_approval "$HELD_PID"; then
    printf '%s\n' "$LISTING" | indent
    show "WARDEN_TOKEN=<bob> warden approvals --admin $ADMIN deny $APR --reason \"demo: no writes on web-1\""
    approvals deny "$APR" --reason "demo: no writes on web-1" 2>&1 | indent || true
    if wait "$HELD_PID"; then held_rc=0; else held_rc=$?; fi
    HELD_PID=''
    indent <"$RUN/held-off-list.out"
    if ((held_rc == 126)) && grep -q 'allowlist' "$RUN/held-off-list.out" &&
        [[ ! -e $WEB1/off-list-marker ]] && ! grep -qF "$OFF_LIST" "$WEB1/ran.log"; then
        ok "held (ssh-guard allowlist), denied by bob with exit status 126; the host never ran it"
    else
        warn "the off-list command did not end as expected"; FAILED+=("ssh allowlist hold")
    fi
else
    warn "no pending approval appeared"
    kill "$HELD_PID" 2>/dev/null || true
    wait "$HELD_PID" 2>/dev/null || true
    HELD_PID=''
    indent <"$RUN/held-off-list.out"
    FAILED+=("ssh allowlist hold")
fi

step "9. scp: file transfer is off on web-1 (ssh-guard's default; with allow_sftp = true, files read are masked like output)"
show "scp -P $SPORT web-1@127.0.0.1:$LOG $RUN/copied.log"
out=$(as_alice scp -P "$SPORT" "web-1@127.0.0.1:$LOG" "$RUN/copied.log" 2>&1) && rc=0 || rc=$?
printf '%s\n' "$out" | indent
if ((rc != 0)) && [[ ! -e $RUN/copied.log ]]; then
    ok "refused, nothing copied: scp speaks SFTP, which ssh-guard allows only with allow_sftp = true"
    info "(scp reports any refused lookup as \"No such file\"; warden's reason is in the audit trail, replayed below)"
else
    warn "expected scp to be refused (exit $rc)"; FAILED+=("scp refused")
fi

step "9b. ssh: an interactive session: the gateway owns the line"
# Keys typed into a terminal session go to warden's own line editor; each complete command is
# judged, then sent whole to the host, or not at all. (Keys are piped here, with pauses.)
TTY_BAD='echo pwned > /etc/warden-demo-tty'
show "ssh -tt -p $SPORT web-1@127.0.0.1   # then types: ls $WEB1 / $TTY_BAD / exit"
out=$( (sleep 2; printf 'ls %s\n' "$WEB1"; sleep 1; printf '%s\n' "$TTY_BAD"; sleep 1; printf 'exit\n') |
    env -u DISPLAY SSH_ASKPASS="$RUN/alice-askpass" SSH_ASKPASS_REQUIRE=force \
        timeout 60 setsid -w ssh "${SSH_OPTS[@]}" -tt -p "$SPORT" web-1@127.0.0.1 2>&1 |
    sed 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\r//g' | grep -v '^ *$') || true
printf '%s\n' "$out" | indent
if grep -q 'web-1:~\$ ls' <<<"$out" && grep -q 'warden: denied' <<<"$out" && [[ ! -e /etc/warden-demo-tty ]]; then
    ok "warden drew the prompt, ran the listing and refused the write: the host never saw a byte of it"
else
    warn "expected warden's prompt, the listing and a refusal"; FAILED+=("ssh interactive")
fi

step "10. The audit trail, read live by an auditor"
# The running gateway holds the database; erin (group auditors) reads it through the admin API.
# The first signed checkpoint comes within the interval of the start (10 s here): wait for it.
for _ in $(seq 60); do [[ -s $RUN/audit-checkpoints.jsonl ]] && break; sleep 0.5; done
show "WARDEN_TOKEN=<erin> warden audit verify --admin $ADMIN --checkpoints $RUN/audit-checkpoints.jsonl --pubkey $RUN/audit-key.pub.pem"
verify_rc=0
verify=$(WARDEN_TOKEN=$ERIN_TOKEN timeout 60 "$WARDEN" audit verify --admin "$ADMIN" \
    --checkpoints "$RUN/audit-checkpoints.jsonl" --pubkey "$RUN/audit-key.pub.pem" 2>&1) || verify_rc=$?
printf '%s\n' "$verify" | indent
if ((verify_rc == 0)) && grep -q '^audit chain OK' <<<"$verify" && grep -q '^checkpoints OK' <<<"$verify"; then
    ok "hash chain, records, recordings and signed checkpoints verify"
else
    warn "the chain did not verify"; FAILED+=("audit verify")
fi
show "WARDEN_TOKEN=<erin> warden sessions --admin $ADMIN"
if WARDEN_TOKEN=$ERIN_TOKEN timeout 60 "$WARDEN" sessions --admin "$ADMIN" 2>&1 | indent; then
    ids=$(WARDEN_TOKEN=$ERIN_TOKEN timeout 60 "$WARDEN" sessions --admin "$ADMIN" --json 2>/dev/null |
        sed -n 's/^{"id":"\([^"]*\)".*/\1/p' || true)
    for id in $ids; do
        show "warden replay $id --admin $ADMIN --no-wait"
        WARDEN_TOKEN=$ERIN_TOKEN timeout 60 "$WARDEN" replay "$id" --admin "$ADMIN" --no-wait 2>&1 |
            head -n 60 | indent || true
    done
else
    warn "could not list the sessions"; FAILED+=("sessions")
fi
show "warden audit export --admin $ADMIN --verdict deny --format csv"
WARDEN_TOKEN=$ERIN_TOKEN timeout 60 "$WARDEN" audit export --admin "$ADMIN" --verdict deny --format csv 2>&1 |
    cut -c1-160 | head -n 12 | indent || true
show "warden audit report --admin $ADMIN --out $RUN/evidence.md"
if WARDEN_TOKEN=$ERIN_TOKEN timeout 60 "$WARDEN" audit report --admin "$ADMIN" --out "$RUN/evidence.md" 2>&1 | indent; then
    sed -n '1,/^## Sessions/p' "$RUN/evidence.md" | indent
else
    warn "no evidence report"; FAILED+=("audit report")
fi

step "11. Rollout: what a stricter policy would have done to this traffic"
# A security engineer asks: what if cardholder reads of more than one row needed an approver?
# The candidate (here cardholder-approval with max_limit = 1) is replayed against every recorded
# command of payments, beside the chain as it is; nothing is enforced. Exit status 1 means
# something the chain lets through would now be refused or held.
CANDIDATE='{"tables":["cards"],"max_limit":1}'
show "WARDEN_TOKEN=<erin> warden policy whatif --config $CFG --target payments --module $RUN/policies/cardholder-approval.wasm --replace cardholder-approval --module-config '$CANDIDATE' --admin $ADMIN"
whatif_rc=0
whatif=$(WARDEN_TOKEN=$ERIN_TOKEN timeout 120 "$WARDEN" policy whatif --config "$CFG" --target payments \
    --module "$RUN/policies/cardholder-approval.wasm" --replace cardholder-approval \
    --module-config "$CANDIDATE" --admin "$ADMIN" 2>&1) || whatif_rc=$?
printf '%s\n' "$whatif" | indent
if ((whatif_rc == 1)) && grep -q 'mask → require-approval  cardholder-approval@candidate' <<<"$whatif"; then
    ok "step 2's read of five cards would wait for an approver (exit status $whatif_rc: a CI gate for policy changes)"
else
    warn "expected the candidate to hold step 2's read (exit status $whatif_rc)"; FAILED+=("what-if")
fi

step "12. Metrics for the operator"
show "curl -s $ADMIN/metrics | grep -E '^warden_(sessions_opened|commands)_total'"
metrics=$(curl -s --max-time 10 "$ADMIN/metrics" 2>&1 || true)
grep -E '^warden_(sessions_opened|commands)_total' <<<"$metrics" | indent || true
if grep -q '^warden_commands_total{.*verdict="deny"' <<<"$metrics"; then
    ok "Prometheus text on the admin listener: sessions, verdicts per policy, latencies, approvals, audit appends"
else
    warn "no command counts in /metrics"; FAILED+=("metrics")
fi

step "Summary"
if ((${#FAILED[@]})); then
    warn "steps that did not behave as described: ${FAILED[*]}"
    DEMO_RC=1
else
    ok "allowed, masked, denied, approved, with psql and with ssh: each verdict is in the audit log"
    DEMO_RC=0
fi

if ((WAIT)); then
    SUDO_HINT=''
    ((DEMO_USER_MADE)) && SUDO_HINT="; approved, web-1's sudo
                         still refuses it: $SSH_USER may run only step 8's tail as root"
    cat <<EOF

${BOLD}Warden keeps running.${OFF} Paste the psql line above into another terminal and try things:
  SELECT holder, note FROM cards WHERE id = 8 LIMIT 1;  -- a PAN inside text, masked
  SELECT * FROM cards LIMIT 5;                          -- small reads of cards pass
  SELECT count(*) FROM cards;                           -- no LIMIT: held for bob
  DELETE FROM merchants;                                -- no WHERE: denied
Or the first ssh line, for a shell on web-1 where every line you type is checked:
  grep declined $LOG     # masked
  rm -rf /usr/lib        # denied, and the shell stays open
  sudo -i                # held for bob (Ctrl-C withdraws it)$SUDO_HINT
Warden's log: $RUN/warden.log    PostgreSQL's log: $PGDIR/server.log
What web-1 ran: $WEB1/ran.log    sshd's log: $SSHDIR/sshd.log
Press Ctrl-C to stop and clean up.
EOF
    while kill -0 "$WARDEN_PID" 2>/dev/null; do sleep 1; done
    warn "warden exited on its own:"
    tail -n 20 "$RUN/warden.log" >&2 || true
    exit 1
fi
exit "$DEMO_RC"
