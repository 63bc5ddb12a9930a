#!/usr/bin/env bash
# gateway/benches/ssh.sh — SSH through Warden against the same sshd directly.
#
#   gateway/benches/ssh.sh [--size 1G] [--file-size 512M] [--text-size 64M] [--runs 3]
#                          [--execs 100] [--interactive 50] [--interactive-only] [--perf]
#                          [--debug] [--hold]
#
# Starts its own OpenSSH sshd and Warden on free loopback ports in a temp dir. The client logs
# in to Warden with a key registered in [[ssh.keys]], and straight to sshd with the gateway's
# own key, both with BatchMode and pinned host keys. Paths: direct; Warden with (a) allow-all,
# (b) allow-all + pci-mask (output masked), (c) ssh-guard + pci-mask (when policies/ssh-guard
# exists; its config allows sftp). For each path it measures, with the median of --runs runs
# (interleaved across paths):
#   1. bulk output: ssh HOST 'head -c SIZE /dev/zero' > /dev/null (default 1G), MB/s;
#   2. masked text: ssh HOST "yes '<64-byte line with a card number>' | head -c TEXT_SIZE",
#      MB/s, and the card numbers that reach the client;
#   3. scp (SFTP protocol, OpenSSH 9) of a FILE_SIZE file of random bytes (default 512M),
#      upload and download, MB/s (a transfer whose file stops growing for 10 s is stopped and
#      counted as hung; each path's round trip is first checked byte for byte);
#   5. --interactive × (a key typed at a terminal session's prompt until it shows; Enter on a
#      short `echo` until its output shows), default 50, through `ssh -tt` on a pty
#      (gateway/benches/interactive.py), p50/p99 ms; --interactive-only measures only this;
#   4. --execs × `ssh HOST true` (default 100) on fresh connections and on one multiplexed
#      connection (ControlMaster=auto, ControlPersist), p50/p99/mean ms per exec, Warden's CPU
#      per exec, and how many logins sshd saw (1 for a multiplexed series when the gateway
#      shares its upstream login between channels);
# then prints markdown tables (progress goes to stderr). --perf also profiles the whole machine
# (perf record -a) during one bulk run and one fresh-exec series through allow-all. --hold
# measures nothing: it starts sshd and Warden, prints the ssh command line of every path, and
# waits (Ctrl-C stops everything), to reproduce something by hand.
#
# Sizes take head's suffixes (K, M, G = powers of 1024); MB/s is 10^6 bytes per second.
# SIZE, FILE_SIZE, TEXT_SIZE, RUNS and EXECS may also be given as environment variables.
# Client legs use KEX (default curve25519-sha256, what Warden's russh offers; KEX= leaves
# OpenSSH's default, sntrup761x25519, which costs tens of ms more per connection and would
# favour Warden unfairly); a direct fresh-exec series with OpenSSH's default is added.
# Needs: openssh-server and openssh-client (sshd, ssh, scp, ssh-keygen), root (sshd's privilege
# separation, logins as root on loopback), Rust with the wasm32-wasip2 target; perf for --perf.
# Warden is built in release mode (--debug: the debug build; WARDEN_BIN=path: that binary, no
# build); WARDEN_POLICIES=dir: take allow-all.wasm, pci-mask.wasm, ssh-guard.wasm from there.
set -euo pipefail
export LC_ALL=C

SIZE=${SIZE:-1G}
KEX=${KEX-curve25519-sha256}
FILE_SIZE=${FILE_SIZE:-512M}
TEXT_SIZE=${TEXT_SIZE:-64M}
RUNS=${RUNS:-3}
EXECS=${EXECS:-100}
INTERACTIVE=${INTERACTIVE:-50}
INTERACTIVE_ONLY=0
PERF=0
HOLD=0
PROFILE=release

usage() { sed -n '2,36p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while (($#)); do
    case $1 in
        --size) SIZE=$2; shift 2 ;;
        --file-size) FILE_SIZE=$2; shift 2 ;;
        --text-size) TEXT_SIZE=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --execs) EXECS=$2; shift 2 ;;
        --interactive) INTERACTIVE=$2; shift 2 ;;
        --interactive-only) INTERACTIVE_ONLY=1; shift ;;
        --perf) PERF=1; shift ;;
        --hold) HOLD=1; shift ;;
        --debug) PROFILE=debug; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "ssh.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'ssh.sh: %s\n' "$*" >&2; exit 1; }

bytes_of() { numfmt --from=iec "$1" 2>/dev/null || die "'$1' is not a size (e.g. 256M, 1G)"; }
SIZE_B=$(bytes_of "$SIZE")
FILE_B=$(bytes_of "$FILE_SIZE")
TEXT_B=$(bytes_of "$TEXT_SIZE")
for n in "$RUNS" "$EXECS"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "'$n' is not a positive number"
done

[[ $(id -u) == 0 ]] || die "run as root: sshd needs its privilege-separation setup and the logins are root@127.0.0.1"
missing=()
[[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
for c in ssh scp ssh-keygen; do command -v "$c" >/dev/null || missing+=(openssh-client); done
((PERF)) && ! command -v perf >/dev/null && missing+=(linux-perf)
if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if [[ -z ${BENCH_NO_INSTALL:-} ]] && command -v apt-get >/dev/null; then
        log "installing ${missing[*]} (apt-get)"
        timeout 900 apt-get update -qq
        DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        die "missing: ${missing[*]} — apt-get install -y ${missing[*]}"
    fi
fi
mkdir -p /run/sshd

# ---------------------------------------------------------------------------------------------
# Clean-up: stop exactly what this script started (by pid, or by its control socket), and
# remove its directory.
DIR='' WARDEN_PID='' SSHD_PID='' CONTROL_PATHS=()
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    for cp in "${CONTROL_PATHS[@]}"; do
        [[ -S $cp ]] && ssh -F /dev/null -o ControlPath="$cp" -O exit x >/dev/null 2>&1
    done
    if [[ -n $WARDEN_PID ]]; then
        kill -TERM "$WARDEN_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$WARDEN_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$WARDEN_PID" 2>/dev/null
        wait "$WARDEN_PID" 2>/dev/null
    fi
    # The listening sshd only; the connections it forked end with their clients.
    [[ -n $SSHD_PID ]] && kill -TERM "$SSHD_PID" 2>/dev/null
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
keygen() { ssh-keygen -q -t ed25519 -N '' -C "$(basename "$1")" -f "$1"; }
pubkey() { cut -d' ' -f1,2 "$1.pub"; }
# utime + stime of a process and all its threads, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
CLK_TCK=$(getconf CLK_TCK)

DIR=$(mktemp -d /tmp/warden-ssh-bench.XXXXXX)
chmod 755 "$DIR"
mkdir -p "$DIR/sshd" "$DIR/warden/policies" "$DIR/files"

# ---------------------------------------------------------------------------------------------
# Warden and its policies first: a cold release build takes minutes; fail before measuring.
if [[ -n ${WARDEN_BIN:-} ]]; then
    WARDEN=$WARDEN_BIN
    WARDEN_DESC="Warden $WARDEN_BIN"
else
    log "building warden ($PROFILE)"
    if [[ $PROFILE == release ]]; then
        timeout 3600 cargo build --quiet --release -p warden-gateway --bin warden
    else
        timeout 3600 cargo build --quiet -p warden-gateway --bin warden
    fi
    WARDEN=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/warden
    WARDEN_DESC="Warden $PROFILE build"
fi
[[ -x $WARDEN ]] || die "no warden binary at $WARDEN"

# Only the Rust policies the chains use (policies/build.sh would also build the other
# languages' toolchains, which this benchmark does not need).
POLICIES=(allow-all pci-mask)
[[ -f policies/ssh-guard/Cargo.toml ]] && POLICIES+=(ssh-guard)
if [[ -n ${WARDEN_POLICIES:-} ]]; then
    for p in "${POLICIES[@]}"; do
        cp "$WARDEN_POLICIES/$p.wasm" "$DIR/warden/policies/$p.wasm" || die "no $p.wasm in $WARDEN_POLICIES"
    done
else
    log "building the policies: ${POLICIES[*]}"
    rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2 >&2
    args=()
    for p in "${POLICIES[@]}"; do args+=(-p "$p"); done
    timeout 1800 cargo build --quiet --profile policy --target wasm32-wasip2 "${args[@]}"
    for p in "${POLICIES[@]}"; do
        cp "${CARGO_TARGET_DIR:-$ROOT/target}/wasm32-wasip2/policy/${p//-/_}.wasm" "$DIR/warden/policies/$p.wasm"
    done
fi

# ---------------------------------------------------------------------------------------------
log "starting sshd"
S=$DIR/sshd
keygen "$S/host_ed25519"
keygen "$S/gw_ed25519"
cp "$S/gw_ed25519.pub" "$S/authorized_keys"
for attempt in 1 2 3 4 5; do
    SPORT=$(free_port)
    cat >"$S/sshd_config" <<EOF
Port $SPORT
ListenAddress 127.0.0.1
HostKey $S/host_ed25519
PidFile $S/sshd.pid
AuthorizedKeysFile $S/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
# VERBOSE: one "Accepted publickey" line per login, counted below.
LogLevel VERBOSE
Subsystem sftp internal-sftp
# Debian's bash reads ~/.bashrc for a command sshd starts when SHLVL < 2 (shell_level 1); an
# interactive root .bashrc (pyenv init, ...) would add 100+ ms to every exec on every path.
SetEnv SHLVL=1
MaxSessions 100
MaxStartups 200:30:400
EOF
    if /usr/sbin/sshd -f "$S/sshd_config" -E "$S/sshd.log" 2>>"$S/sshd.log"; then
        for _ in $(seq 100); do [[ -s $S/sshd.pid ]] && break; sleep 0.05; done
        if [[ -s $S/sshd.pid ]]; then
            SSHD_PID=$(cat "$S/sshd.pid")
            break
        fi
    fi
    ((attempt < 5)) || { tail "$S/sshd.log" >&2; die "sshd did not start"; }
done
echo "[127.0.0.1]:$SPORT $(pubkey "$S/host_ed25519")" >"$S/known_hosts"
logins() { grep -c 'Accepted publickey' "$S/sshd.log" || true; }

# ---------------------------------------------------------------------------------------------
log "starting Warden"
W=$DIR/warden
(umask 077 && head -c 48 /dev/urandom | base64 -w0 >"$W/secret")
keygen "$W/host_key"   # pinned by the client below
keygen "$W/client_ed25519"
target() { # name, policy chain
    cat <<EOF

[targets.$1]
protocol = "ssh"
allow_subjects = ["*"]
# The benchmark's throwaway sshd lets root in; a real target logs in unprivileged.
allow_privileged_upstream = true
max_sessions_per_principal = 100000
policies = [$2]

[targets.$1.ssh]
host = "127.0.0.1"
port = $SPORT
user = "root"
key_file = "$S/gw_ed25519"
known_hosts = "$S/known_hosts"
EOF
}
{
    cat <<EOF
[policy]
dir = "policies"

[audit]
path = "audit.redb"

[identity]
issuer = "warden-bench"
audience = "warden"
hs256_secret_file = "secret"
max_ttl = "1h"

[ssh]
listen = "127.0.0.1:0"
host_key = "host_key"

[[ssh.keys]]
key = "$(pubkey "$W/client_ed25519")"
subject = "bench"
EOF
    target allow '{ module = "allow-all" }'
    target mask '{ module = "allow-all" }, { module = "pci-mask" }'
    if [[ " ${POLICIES[*]} " == *" ssh-guard "* ]]; then
        target guard '{ module = "ssh-guard", config = { allow_sftp = true } }, { module = "pci-mask" }'
    fi
} >"$W/bench.toml"
WARDEN_LOG=${WARDEN_LOG:-warn} "$WARDEN" serve --config "$W/bench.toml" >"$W/warden.log" 2>&1 &
WARDEN_PID=$!
for _ in $(seq 300); do
    grep -q "^ssh listening on" "$W/warden.log" 2>/dev/null && break
    kill -0 "$WARDEN_PID" 2>/dev/null || { cat "$W/warden.log" >&2; WARDEN_PID=''; die "warden exited"; }
    sleep 0.2
done
WPORT=$(sed -n 's/^ssh listening on .*:\([0-9]*\)$/\1/p' "$W/warden.log" | head -n 1)
[[ -n $WPORT ]] || { tail "$W/warden.log" >&2; die "warden did not start an ssh listener"; }
echo "[127.0.0.1]:$WPORT $(pubkey "$W/host_key")" >"$W/known_hosts"

# ---------------------------------------------------------------------------------------------
# A command slower than 10 MB/s (plus 30 s) counts as hung and is stopped.
LIMIT=$((30 + SIZE_B / 10000000))

# One path = name|port|login|key|known_hosts.
PATHS=("direct|$SPORT|root|$S/gw_ed25519|$S/known_hosts"
    "warden allow-all|$WPORT|allow|$W/client_ed25519|$W/known_hosts"
    "warden allow-all+pci-mask|$WPORT|mask|$W/client_ed25519|$W/known_hosts")
if [[ " ${POLICIES[*]} " == *" ssh-guard "* ]]; then
    PATHS+=("warden ssh-guard+pci-mask|$WPORT|guard|$W/client_ed25519|$W/known_hosts")
fi
NAMES=()
declare -A PORT LOGIN KEY KH
for p in "${PATHS[@]}"; do
    IFS='|' read -r name port login key kh <<<"$p"
    NAMES+=("$name")
    PORT[$name]=$port LOGIN[$name]=$login KEY[$name]=$key KH[$name]=$kh
done
# Client options for a path (no user config; host keys pinned).
opts() {
    printf '%s\n' -F /dev/null -i "${KEY[$1]}" -o IdentitiesOnly=yes -o BatchMode=yes \
        -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=${KH[$1]}" -o LogLevel=ERROR \
        -o ConnectTimeout=10
    [[ -z $KEX || -n ${DEFAULT_KEX:-} ]] || printf '%s\n' -o "KexAlgorithms=$KEX"
}
sshx() { # name, [ssh options...] -- remote command... (stdout is the caller's)
    local name=$1 o extra=()
    shift
    while (($#)) && [[ $1 != -- ]]; do extra+=("$1"); shift; done
    shift
    mapfile -t o < <(opts "$name")
    timeout "$LIMIT" ssh "${o[@]}" "${extra[@]}" -p "${PORT[$name]}" "${LOGIN[$name]}@127.0.0.1" "$@"
}
on() { local name=$1; shift; sshx "$name" -- "$@"; }
# scp, stopped (status 124) when the file being written has not grown for $STALL seconds:
# the "remote" file is on this machine too, so a stalled transfer is seen without guessing a
# time limit from the size.
STALL=10
copy() { # name, up|down, local file, remote file
    local name=$1 dir=$2 lf=$3 rf=$4 o pid dog rc=0 watch
    mapfile -t o < <(opts "$name")
    if [[ $dir == up ]]; then
        scp -q "${o[@]}" -P "${PORT[$name]}" "$lf" "${LOGIN[$name]}@127.0.0.1:$rf" &
        watch=$rf
    else
        scp -q "${o[@]}" -P "${PORT[$name]}" "${LOGIN[$name]}@127.0.0.1:$rf" "$lf" &
        watch=$lf
    fi
    pid=$!
    (
        last=-1 same=0
        while sleep 1; do
            size=$(stat -c %s "$watch" 2>/dev/null || echo 0)
            if [[ $size == "$last" ]]; then
                if ((++same >= STALL)); then
                    touch "$DIR/stalled.$pid"
                    kill -TERM "$pid" 2>/dev/null
                    exit 0
                fi
            else
                same=0 last=$size
            fi
        done
    ) </dev/null >/dev/null 2>&1 &
    dog=$!
    wait "$pid" || rc=$?
    kill "$dog" 2>/dev/null
    wait "$dog" 2>/dev/null || true
    if [[ -e $DIR/stalled.$pid ]]; then
        rm -f "$DIR/stalled.$pid"
        return 124
    fi
    return "$rc"
}
now_us() { echo "${EPOCHREALTIME/./}"; }
mbps() { awk -v b="$1" -v us="$2" 'BEGIN { printf "%.1f", b / us }'; } # bytes/µs = MB/s
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { # a / b with two decimals, or "—"
    if [[ -n $1 && -n $2 ]]; then awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "—" }'; else echo "—"; fi
}

# Interactive round trips: one terminal session per path (gateway/benches/interactive.py).
interactive_table() {
    local name o r e50 e99 l50 l99 de50 dl50
    cat <<EOF

### Interactive terminal session: $INTERACTIVE × key echo and line round trip (ms)

| path | key echo p50 | p99 | vs direct (p50) | line → output p50 | p99 | vs direct (p50) |
|---|---:|---:|---:|---:|---:|---:|
EOF
    for name in "${NAMES[@]}"; do
        mapfile -t o < <(opts "$name")
        log "$name: $INTERACTIVE × interactive key echo and line round trip"
        r=$(timeout 300 python3 "$(dirname "${BASH_SOURCE[0]}")/interactive.py" "$INTERACTIVE" -- \
            ssh "${o[@]}" -tt -p "${PORT[$name]}" "${LOGIN[$name]}@127.0.0.1" 2>>"$DIR/interactive.log") ||
            { log "$name: interactive run failed: $(tail -n 2 "$DIR/interactive.log")"; r="— — — —"; }
        read -r e50 e99 l50 l99 <<<"$r"
        [[ $name == direct ]] && de50=$e50 dl50=$l50
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$e50" "$e99" "$(ratio "$e50" "$de50")" \
            "$l50" "$l99" "$(ratio "$l50" "$dl50")"
    done
    cat <<EOF

Direct, the host's bash (readline) echoes each key; through Warden the gateway's line editor
does, and the line is judged, audited (a durable append) and sent whole before the host runs it.
EOF
}
if ((INTERACTIVE_ONLY)); then
    interactive_table
    exit 0
fi

if ((HOLD)); then
    for name in "${NAMES[@]}"; do
        mapfile -t o < <(opts "$name")
        printf '%s:\n  ssh %s -p %s %s@127.0.0.1 CMD\n' "$name" "${o[*]}" "${PORT[$name]}" "${LOGIN[$name]}"
    done
    echo "Warden: pid $WARDEN_PID, log $W/warden.log; sshd log $S/sshd.log. Ctrl-C (or kill $$) stops everything."
    while kill -0 "$WARDEN_PID" 2>/dev/null; do sleep 1; done
    die "warden exited"
fi

# The masked-text line: 64 bytes with a Luhn-valid test card number in it.
TEXT_LINE='order 000123 paid with card 4111 1111 1111 1111 amount 12.34 EUR'
TEXT_CMD="yes '$TEXT_LINE' | head -c $TEXT_B"

# Sanity: every path answers and output arrives whole (else stop); the file round-trips byte
# for byte (else say so, and measure anyway).
log "creating a $FILE_SIZE file of random bytes"
head -c "$FILE_B" /dev/urandom >"$DIR/files/src.bin"
SRC_SUM=$(sha256sum <"$DIR/files/src.bin" | cut -d' ' -f1)
declare -A SANITY
same() { [[ -f $1 && $(sha256sum <"$1" | cut -d' ' -f1) == "$SRC_SUM" ]]; }
for name in "${NAMES[@]}"; do
    out=$(on "$name" echo ok 2>&1) || die "$name: ssh failed: $out"
    [[ $out == ok ]] || die "$name: 'echo ok' printed '$out'"
    n=$(on "$name" 'head -c 1048576 /dev/zero' | wc -c)
    [[ $n == 1048576 ]] || die "$name: 1 MiB of zeros arrived as $n bytes"
    SANITY[$name]=''
    rc=0
    copy "$name" up "$DIR/files/src.bin" "$DIR/files/sanity.bin" 2>"$DIR/err" || rc=$?
    if ((rc)) || ! same "$DIR/files/sanity.bin"; then
        SANITY[$name]+="upload: $( ((rc == 124)) && echo "hung (no progress for $STALL s)" || echo "exit $rc, or the file differs") $(head -c 200 "$DIR/err"); "
        log "$name: ${SANITY[$name]}"
    fi
    rm -f "$DIR/files/sanity.bin"
    rc=0
    copy "$name" down "$DIR/files/sanity.bin" "$DIR/files/src.bin" 2>"$DIR/err" || rc=$?
    if ((rc)) || ! same "$DIR/files/sanity.bin"; then
        SANITY[$name]+="download: $( ((rc == 124)) && echo "hung (no progress for $STALL s)" || echo "exit $rc, or the file differs") $(head -c 200 "$DIR/err"); "
        log "$name: ${SANITY[$name]}"
    fi
    rm -f "$DIR/files/sanity.bin"
done

# ---------------------------------------------------------------------------------------------
# Bulk, text and scp, interleaved: run r of every path before run r+1 of any.
declare -A BULK TEXT UP DOWN TEXT_NR TEXT_PANS CPU_BULK
for name in "${NAMES[@]}"; do BULK[$name]='' TEXT[$name]='' UP[$name]='' DOWN[$name]='' CPU_BULK[$name]=''; done
timed() { # command... : prints the elapsed µs, or "hang" / "fail" (its stdout is dropped)
    local t0 t1 rc=0
    t0=$(now_us)
    "$@" >/dev/null || rc=$?
    t1=$(now_us)
    if ((rc == 0)); then
        echo "$((t1 - t0))"
    elif ((rc == 124)); then
        log "hung, stopped: $*"
        echo hang
    else
        log "failed ($rc): $*"
        echo fail
    fi
}
for r in $(seq "$RUNS"); do
    for name in "${NAMES[@]}"; do
        log "run $r/$RUNS, $name: head -c $SIZE /dev/zero"
        c0=$(cpu_ticks "$WARDEN_PID")
        BULK[$name]+="$(timed on "$name" "head -c $SIZE_B /dev/zero") "
        CPU_BULK[$name]+="$(($(cpu_ticks "$WARDEN_PID") - c0)) "

        log "run $r/$RUNS, $name: $TEXT_SIZE of text lines"
        t0=$(now_us)
        # Lines and card numbers that reached the client; the status is ssh's.
        rc=0
        res=$(on "$name" "$TEXT_CMD" | awk '/4111 1111 1111 1111/ { u++ } END { print NR, u + 0 }'
            exit "${PIPESTATUS[0]}") || rc=$?
        if ((rc == 0)); then
            TEXT[$name]+="$(($(now_us) - t0)) "
            read -r "TEXT_NR[$name]" "TEXT_PANS[$name]" <<<"$res"
        else
            log "$name: the text run failed ($rc)"
            TEXT[$name]+="$( ((rc == 124)) && echo hang || echo fail) "
        fi

        log "run $r/$RUNS, $name: scp up and down, $FILE_SIZE"
        UP[$name]+="$(timed copy "$name" up "$DIR/files/src.bin" "$DIR/files/up.bin") "
        rm -f "$DIR/files/up.bin"
        DOWN[$name]+="$(timed copy "$name" down "$DIR/files/down.bin" "$DIR/files/src.bin") "
        rm -f "$DIR/files/down.bin"
    done
done
# Median MB/s of a list of µs ("hang" and "fail" entries dropped; empty if all failed).
med_mbps() { # bytes, list
    local b=$1 us
    for us in $2; do [[ $us == hang || $us == fail ]] || mbps "$b" "$us"; echo; done | { grep . || true; } | median
}
# "412.3", or "412.3 (1 of 3 hung)", or "hung ×3".
cell() { # bytes, list
    local m h f note=''
    m=$(med_mbps "$1" "$2")
    h=$(grep -o hang <<<"$2" | wc -l || true)
    f=$(grep -o fail <<<"$2" | wc -l || true)
    ((h)) && note+="$h of $RUNS hung"
    ((f)) && note+="${note:+, }$f of $RUNS failed"
    if [[ -z $m ]]; then echo "${note:-—}"; elif [[ -n $note ]]; then echo "$m ($note)"; else echo "$m"; fi
}

# ---------------------------------------------------------------------------------------------
# Exec latency: fresh connections, then one multiplexed connection.
declare -A FRESH MUX FRESH_LOGINS MUX_LOGINS FRESH_CPU MUX_CPU MUX_OK
series() { # name, extra ssh options... : EXECS timed `true`s, one µs figure per line on stdout
    local name=$1 o t0 t1
    shift
    mapfile -t o < <(opts "$name")
    for _ in $(seq "$EXECS"); do
        t0=$(now_us)
        timeout 60 ssh "${o[@]}" "$@" -p "${PORT[$name]}" "${LOGIN[$name]}@127.0.0.1" true </dev/null ||
            { log "$name: ssh true failed"; echo fail; continue; }
        t1=$(now_us)
        echo $((t1 - t0))
    done
}
for name in "${NAMES[@]}"; do
    log "$name: $EXECS × ssh true, fresh connections"
    for _ in 1 2 3; do on "$name" true </dev/null || log "$name: warm-up ssh true failed"; done
    l0=$(logins) c0=$(cpu_ticks "$WARDEN_PID")
    FRESH[$name]=$(series "$name")
    FRESH_CPU[$name]=$(($(cpu_ticks "$WARDEN_PID") - c0))
    FRESH_LOGINS[$name]=$(($(logins) - l0))

    log "$name: $EXECS × ssh true, one multiplexed connection"
    cp="$DIR/cm-${LOGIN[$name]}"
    CONTROL_PATHS+=("$cp")
    mux=(-o ControlMaster=auto -o "ControlPath=$cp" -o ControlPersist=300)
    l0=$(logins)
    # The first one becomes the master and stays in the background (not timed).
    sshx "$name" "${mux[@]}" -- true </dev/null >/dev/null 2>>"$DIR/mux.log" ||
        log "$name: opening the master failed: $(tail -n 2 "$DIR/mux.log")"
    for _ in 1 2 3; do sshx "$name" "${mux[@]}" -- true </dev/null || log "$name: warm-up failed"; done
    if ssh -F /dev/null -o "ControlPath=$cp" -O check x >/dev/null 2>&1; then MUX_OK[$name]=yes; else MUX_OK[$name]=no; fi
    c0=$(cpu_ticks "$WARDEN_PID")
    MUX[$name]=$(series "$name" "${mux[@]}")
    MUX_CPU[$name]=$(($(cpu_ticks "$WARDEN_PID") - c0))
    ssh -F /dev/null -o "ControlPath=$cp" -O exit x >/dev/null 2>&1 || true
    MUX_LOGINS[$name]=$(($(logins) - l0))
done
DEFAULT_KEX_FRESH=''
if [[ -n $KEX ]]; then
    log "direct: $EXECS × ssh true, fresh connections, OpenSSH's default key exchange"
    DEFAULT_KEX_FRESH=$(DEFAULT_KEX=1 series direct)
    DEFAULT_KEX_NAME=$(DEFAULT_KEX=1 sshx direct -v -- true 2>&1 </dev/null | sed -n 's/^debug1: kex: algorithm: //p')
fi
# Whatever Warden still holds now that every client is gone (should be nothing).
sleep 2
HELD=$(ss -Htnp state established 2>/dev/null | grep -c "pid=$WARDEN_PID," || true)
HELD_UP=$(ss -Htnp state established "( dport = :$SPORT )" 2>/dev/null | grep -c "pid=$WARDEN_PID," || true)
WARNINGS=$(grep -ci 'warn\|error' "$W/warden.log" || true)

# p50 / p99 (nearest rank) / mean in ms, and the number of failures, of a list of µs.
lat_stats() {
    grep -v fail <<<"$1" | sort -n | awk -v fails="$(grep -c fail <<<"$1" || true)" '
        { v[NR] = $1; s += $1 }
        END {
            if (NR == 0) { print "— — — " fails; exit }
            p50 = v[int((NR * 50 + 99) / 100)]; p99 = v[int((NR * 99 + 99) / 100)]
            printf "%.2f %.2f %.2f %d\n", p50 / 1000, p99 / 1000, s / NR / 1000, fails
        }'
}

# ---------------------------------------------------------------------------------------------
# Optional profile: the whole machine during one bulk run and one fresh-exec series.
PERF_BULK='' PERF_EXEC=''
if ((PERF)); then
    prof() { # label, command...
        local data=$DIR/perf-$1.data
        shift
        perf record -q -a -o "$data" -- "$@" >/dev/null 2>&1 || log "perf record failed"
        {
            echo "Whole machine, by thread name (Warden's are tokio-rt-worker, warden-audit-wr, warden-epoch):"
            perf report -i "$data" --no-children --sort comm --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' | head -n 10 || true
            echo
            echo "Warden only, by symbol (% of all samples):"
            perf report -i "$data" --no-children --pid "$WARDEN_PID" --sort dso,sym --stdio 2>/dev/null |
                grep -E '^ +[0-9.]+%' | head -n 20 || true
        }
    }
    log "perf: bulk through allow-all"
    PERF_BULK=$(prof bulk bash -c "$(declare -f sshx on opts); $(declare -p PORT LOGIN KEY KH KEX LIMIT); on 'warden allow-all' 'head -c $SIZE_B /dev/zero' >/dev/null")
    log "perf: fresh execs through allow-all"
    PERF_EXEC=$(prof exec bash -c "$(declare -f sshx on opts); $(declare -p PORT LOGIN KEY KH KEX LIMIT); for i in \$(seq $EXECS); do on 'warden allow-all' true </dev/null; done")
fi

# ---------------------------------------------------------------------------------------------
CPU=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)
SSH_VERSION=$(ssh -V 2>&1 | cut -d, -f1)
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
cat <<EOF

## SSH benchmark ($(date -u +%Y-%m-%d))

$(nproc) × $CPU; $SSH_VERSION (client and sshd), $WARDEN_DESC (russh server to the client,
russh client to sshd); everything on one machine over loopback TCP, clients and servers sharing
the CPUs. Logins by ed25519 key on every leg; key exchange ${KEX:-OpenSSH default} on the client
legs; default ciphers: chacha20-poly1305 on the client legs (OpenSSH's choice), AES-GCM on Warden's upstream leg (Warden's choice).
Medians of $RUNS runs. Load average at the end: $LOAD.

### Bulk and file transfer (MB/s = 10^6 bytes/s; × = vs direct)

| path | head -c $SIZE /dev/zero | × | Warden CPU s/GB | text lines, $TEXT_SIZE | × | card numbers shown / lines | scp upload $FILE_SIZE | × | scp download $FILE_SIZE | × |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
D_BULK=$(med_mbps "$SIZE_B" "${BULK[direct]}")
D_TEXT=$(med_mbps "$TEXT_B" "${TEXT[direct]}")
D_UP=$(med_mbps "$FILE_B" "${UP[direct]}")
D_DOWN=$(med_mbps "$FILE_B" "${DOWN[direct]}")
for name in "${NAMES[@]}"; do
    b=$(med_mbps "$SIZE_B" "${BULK[$name]}")
    t=$(med_mbps "$TEXT_B" "${TEXT[$name]}")
    u=$(med_mbps "$FILE_B" "${UP[$name]}")
    d=$(med_mbps "$FILE_B" "${DOWN[$name]}")
    bc=$(cell "$SIZE_B" "${BULK[$name]}") tc=$(cell "$TEXT_B" "${TEXT[$name]}")
    uc=$(cell "$FILE_B" "${UP[$name]}") dc=$(cell "$FILE_B" "${DOWN[$name]}")
    cpu='—'
    if [[ $name != direct ]]; then
        cpu=$(for c in ${CPU_BULK[$name]}; do echo "$c"; done | median |
            awk -v hz="$CLK_TCK" -v b="$SIZE_B" '{ printf "%.2f", $1 / hz / (b / 1e9) }')
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s / %s | %s | %s | %s | %s |\n' "$name" \
        "$bc" "$(ratio "$b" "$D_BULK")" "$cpu" "$tc" "$(ratio "$t" "$D_TEXT")" \
        "${TEXT_PANS[$name]:-—}" "${TEXT_NR[$name]:-—}" "$uc" "$(ratio "$u" "$D_UP")" \
        "$dc" "$(ratio "$d" "$D_DOWN")"
done
for name in "${NAMES[@]}"; do
    if [[ -n ${SANITY[$name]} ]]; then
        printf '\nThe unmeasured round trip (byte-for-byte check) through %s: %s\n' "$name" "${SANITY[$name]}"
    fi
done

cat <<EOF

### Exec round trip: $EXECS × \`ssh HOST true\` (ms per exec)

| path | connections | p50 | p99 | mean | added p50 vs direct | Warden CPU ms/exec | sshd logins | failures |
|---|---|---:|---:|---:|---:|---:|---:|---:|
EOF
read -r DF50 _ _ _ <<<"$(lat_stats "${FRESH[direct]}")"
read -r DM50 _ _ _ <<<"$(lat_stats "${MUX[direct]}")"
for name in "${NAMES[@]}"; do
    for kind in fresh mux; do
        if [[ $kind == fresh ]]; then
            list=${FRESH[$name]} base=$DF50 cpu=${FRESH_CPU[$name]} lg=${FRESH_LOGINS[$name]} label="fresh"
        else
            list=${MUX[$name]} base=$DM50 cpu=${MUX_CPU[$name]} lg=${MUX_LOGINS[$name]}
            label="multiplexed"
            [[ ${MUX_OK[$name]} == yes ]] || label="multiplexed (no master!)"
        fi
        read -r p50 p99 mean fails <<<"$(lat_stats "$list")"
        added=$(awk -v a="$p50" -v b="$base" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/) printf "%+.2f", a - b; else print "—" }')
        wcpu='—'
        [[ $name != direct ]] && wcpu=$(awk -v t="$cpu" -v hz="$CLK_TCK" -v n="$EXECS" 'BEGIN { printf "%.2f", t / hz * 1000 / n }')
        [[ $name == direct ]] && added='—'
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$label" "$p50" "$p99" "$mean" \
            "$added" "$wcpu" "$lg" "$fails"
    done
done
if [[ -n $DEFAULT_KEX_FRESH ]]; then
    read -r p50 p99 mean fails <<<"$(lat_stats "$DEFAULT_KEX_FRESH")"
    printf '| direct, %s | fresh | %s | %s | %s | — | — | %s | %s |\n' "${DEFAULT_KEX_NAME:-default KEX}" \
        "$p50" "$p99" "$mean" "$EXECS" "$fails"
fi
cat <<EOF

Client legs use ${KEX:-the default key exchange of OpenSSH}. "sshd logins" counts the logins sshd
accepted during the series (the multiplexed series includes opening its master): through
Warden, each client connection costs one upstream login. A failure is an exec whose ssh exited
non-zero. Warden CPU is utime + stime of the gateway process (all threads), at $CLK_TCK
ticks/s. After the last client: Warden still held $HELD TCP connections ($HELD_UP of them to
sshd); its log has $WARNINGS warning or error lines.
EOF
((INTERACTIVE > 0)) && interactive_table
if ((PERF)); then
    cat <<EOF

### Profile (perf record -a), bulk $SIZE through allow-all

\`\`\`
$PERF_BULK
\`\`\`

### Profile (perf record -a), $EXECS fresh execs through allow-all

\`\`\`
$PERF_EXEC
\`\`\`
EOF
fi
