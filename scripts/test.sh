#!/usr/bin/env bash
# The test command of stackmedic: sudo ./scripts/test.sh [nextest arguments…]
#
# 1. installs the real peers the integration tests run against (Debian packages, pyads), the
#    packaging tool cargo-deb and, when missing, the test runner cargo-nextest,
# 2. stops the services those packages start, so nothing system-wide occupies their ports,
# 3. starts dockerd when no Docker daemon answers,
# 4. runs cargo fmt --check, cargo clippy -D warnings, builds the workspace binaries, runs
#    scripts/package.sh once (the one release build: Debian packages in dist/ and the images,
#    which the packaging tests use) and runs cargo nextest run --workspace --no-fail-fast (extra
#    arguments go to nextest, e.g. a filter).
#
# Idempotent; on a machine where everything is present it goes straight to the checks.
# STACKMEDIC_SKIP_INSTALL=1 skips steps 1 and 2 (dockerd is still started if needed).
# STACKMEDIC_SKIP_PACKAGE=1 skips scripts/package.sh; the packaging tests then use the dist/ and
# images of an earlier run, or fail.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

section() {
    printf '\n==> %s\n' "$*"
}

fail() {
    printf '\nERROR: %s\n' "$*" >&2
    exit 1
}

# sudo's secure_path usually lacks the Rust toolchain and the system sbin directories.
for dir in "${CARGO_HOME:-$HOME/.cargo}/bin" /usr/local/sbin /usr/sbin /sbin; do
    if [[ -d "$dir" && ":$PATH:" != *":$dir:"* ]]; then
        PATH="$PATH:$dir"
    fi
done
export PATH

is_root() {
    [[ "$(id -u)" == 0 ]]
}

# --- 1. peers -----------------------------------------------------------------------------------

# "package:command…": a package counts as present when dpkg says it is installed, or when all of
# its commands exist (for example Docker from docker-ce instead of docker.io).
PEERS=(
    "docker.io:docker:dockerd"
    "docker-compose:docker-compose"
    "nginx:nginx"
    "prometheus:prometheus:promtool"
    "prometheus-alertmanager:prometheus-alertmanager:amtool"
    "ffmpeg:ffmpeg"
    "busybox-static:"
    "openssl:openssl"
    "curl:curl"
    "chromium:chromium"
    "prometheus-blackbox-exporter:prometheus-blackbox-exporter"
    "caddy:caddy"
    "logrotate:logrotate"
    # PostgreSQL: tests run clusters of their own (initdb in a temporary folder as the user
    # postgres, the server's programs from /usr/lib/postgresql/<version>/bin, checked below).
    "postgresql:psql:pg_isready"
    # DNS probes: dnsmasq without the system service of the package `dnsmasq`.
    "dnsmasq-base:dnsmasq"
    # A real systemd as PID 1 in a container: its Debian root filesystem is made by debootstrap
    # once per machine and cached in /var/cache/stackmedic-tests (tests/src/systemd.rs).
    "debootstrap:debootstrap"
    # Packaging: cargo-deb's dependency detection, the units' checks, the maintainer scripts'
    # user creation, ExecReload's kill, the images' CA certificates.
    "dpkg-dev:dpkg-shlibdeps"
    "systemd:systemd-analyze"
    "adduser:adduser"
    "procps:kill"
    "ca-certificates:"
)

package_present() {
    local package="$1"
    shift
    if [[ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)" == "install ok installed" ]]; then
        return 0
    fi
    [[ $# -gt 0 ]] || return 1
    local command
    for command in "$@"; do
        command -v "$command" >/dev/null 2>&1 || return 1
    done
}

install_peers() {
    section "Checking the test peers (Debian packages, pyads)"
    local missing=() entry package commands
    for entry in "${PEERS[@]}"; do
        package="${entry%%:*}"
        IFS=: read -r -a commands <<<"${entry#*:}"
        if ! package_present "$package" "${commands[@]}"; then
            missing+=("$package")
        fi
    done
    # busybox-static must provide the static /bin/busybox the Docker test image is built from.
    if [[ ! -x /bin/busybox ]] && [[ " ${missing[*]} " != *" busybox-static "* ]]; then
        missing+=(busybox-static)
    fi
    # postgresql must provide a server (psql and pg_isready alone come with the client package).
    if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null \
        && [[ " ${missing[*]} " != *" postgresql "* ]]; then
        missing+=(postgresql)
    fi

    if [[ ${#missing[@]} -gt 0 ]]; then
        is_root || fail "missing packages (${missing[*]}): run this script as root (sudo ./scripts/test.sh)"
        section "Installing ${missing[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    else
        echo "all Debian packages present"
    fi

    install_cargo_deb

    if ! python3 -c 'import pyads' >/dev/null 2>&1; then
        section "Installing pyads (PyPI)"
        # Debian's own Python refuses system-wide pip installs (PEP 668) unless told otherwise.
        python3 -m pip install --quiet pyads \
            || python3 -m pip install --quiet --break-system-packages pyads
        python3 -c 'import pyads' || fail "pyads is still not importable by python3"
    else
        echo "pyads present"
    fi
}

# The test runner: installed from crates.io when missing (a fresh machine has only Rust).
CARGO_NEXTEST_VERSION=0.9.143

# The version scripts/package.sh requires, read from it so that it is written once.
CARGO_DEB_VERSION="$(sed -n 's/^CARGO_DEB_VERSION=//p' scripts/package.sh)"

install_cargo_deb() {
    if [[ "$(cargo deb --version 2>/dev/null || true)" == "cargo-deb $CARGO_DEB_VERSION" ]]; then
        echo "cargo-deb $CARGO_DEB_VERSION present"
        return
    fi
    command -v cargo >/dev/null 2>&1 || fail "cargo is not in PATH (install Rust stable for this user)"
    section "Installing cargo-deb $CARGO_DEB_VERSION (crates.io)"
    cargo install --locked cargo-deb --version "$CARGO_DEB_VERSION"
}

stop_system_services() {
    section "Stopping system services installed with the peers (tests start their own)"
    local service pidfile pid
    for service in nginx prometheus prometheus-alertmanager prometheus-blackbox-exporter caddy \
        postgresql; do
        if [[ -x "/etc/init.d/$service" ]] || systemctl cat "$service.service" >/dev/null 2>&1; then
            if command -v service >/dev/null 2>&1; then
                service "$service" stop >/dev/null 2>&1 || true
            elif [[ -x "/etc/init.d/$service" ]]; then
                "/etc/init.d/$service" stop >/dev/null 2>&1 || true
            fi
        fi
    done
    # Without an init system the stop above may not reach a daemon started by hand: use the pid
    # files the Debian packages write (PostgreSQL's: one per cluster, /run/postgresql/15-main.pid).
    for pidfile in /run/nginx.pid /run/prometheus.pid /run/prometheus-alertmanager.pid \
        /run/prometheus-blackbox-exporter.pid /run/postgresql/*.pid; do
        [[ -s "$pidfile" ]] || continue
        pid="$(head -n 1 "$pidfile" | tr -dc '0-9')"
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            echo "stopping pid $pid from $pidfile"
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    echo "done"
}

if [[ "${STACKMEDIC_SKIP_INSTALL:-0}" == 1 ]]; then
    section "STACKMEDIC_SKIP_INSTALL=1: not checking or installing the peers"
else
    install_peers
    if is_root; then
        stop_system_services
    else
        echo "not root: leaving system services alone"
    fi
fi

# --- 2. Docker daemon ---------------------------------------------------------------------------

section "Docker daemon"
if docker info >/dev/null 2>&1; then
    echo "dockerd is running ($(docker info --format '{{.ServerVersion}}' 2>/dev/null))"
else
    is_root || fail "no Docker daemon answers and only root can start one: run sudo ./scripts/test.sh"
    command -v dockerd >/dev/null 2>&1 || fail "dockerd is not installed (package docker.io)"
    DOCKERD_LOG=/tmp/stackmedic-dockerd.log
    echo "starting dockerd (log: $DOCKERD_LOG)"
    # setsid + nohup: dockerd keeps running after this script (and its terminal) ends.
    setsid nohup dockerd --bridge=none --iptables=false --ip6tables=false \
        </dev/null >"$DOCKERD_LOG" 2>&1 &
    dockerd_pid=$!
    disown || true
    for _ in $(seq 1 60); do
        if docker info >/dev/null 2>&1 || ! kill -0 "$dockerd_pid" 2>/dev/null; then
            break
        fi
        sleep 1
    done
    if ! docker info >/dev/null 2>&1; then
        echo "--- last lines of $DOCKERD_LOG ---" >&2
        tail -n 40 "$DOCKERD_LOG" >&2 || true
        fail "dockerd did not come up (it exited, or docker info still fails after 60 s)"
    fi
    echo "dockerd is running ($(docker info --format '{{.ServerVersion}}' 2>/dev/null))"
fi

# --- 3. checks and tests ------------------------------------------------------------------------

command -v cargo >/dev/null 2>&1 || fail "cargo is not in PATH (install Rust stable for this user)"
if ! cargo nextest --version >/dev/null 2>&1; then
    section "Installing cargo-nextest $CARGO_NEXTEST_VERSION (crates.io)"
    cargo install --locked cargo-nextest --version "$CARGO_NEXTEST_VERSION"
    cargo nextest --version >/dev/null 2>&1 || fail "cargo-nextest is still missing after cargo install"
fi

section "cargo fmt --all -- --check"
cargo fmt --all -- --check

section "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# Integration tests run the workspace binaries (stackmedic_tests::bin_path); cargo does not
# build another package's binaries for a test run, so build them all first.
section "cargo build --workspace --bins"
cargo build --workspace --bins

if [[ "${STACKMEDIC_SKIP_PACKAGE:-0}" == 1 ]]; then
    section "STACKMEDIC_SKIP_PACKAGE=1: not running scripts/package.sh"
else
    section "scripts/package.sh (release build, Debian packages, images)"
    ./scripts/package.sh
fi

section "cargo nextest run --workspace --no-fail-fast $*"
cargo nextest run --workspace --no-fail-fast "$@"
