//! Shared helpers for stackmedic's integration tests against **real peers**.
//!
//! Every integration test of the workspace (files in `tests/tests/*.rs`) uses this crate to start
//! and tear down the real programs stackmedic talks to (see `DESIGN.md`, "Real peers for tests"):
//!
//! * [`nginx`]: a private nginx instance serving static files and writing access logs;
//! * [`caddy`]: a private Caddy writing its JSON access log;
//! * [`dnsmasq`]: a private dnsmasq answering DNS on a loopback port;
//! * [`docker`]: the Docker CLI, a `busybox` image built with `docker import`, container guards;
//! * [`dockerd`]: a second, private Docker Engine on a socket of its own and on a loopback TCP
//!   port with TLS and client certificates (made by `openssl`);
//! * [`prometheus`] / [`alertmanager`]: private Prometheus and Alertmanager servers, plus the
//!   paths of `promtool` and `amtool`;
//! * [`metrics`]: a small parser of the Prometheus text exposition format and a scraper;
//! * [`http`]: a tiny blocking HTTP/1.1 client for loopback URLs;
//! * [`postgres`]: a private PostgreSQL cluster (`initdb` in a temporary directory, run as the
//!   system user `postgres` on a loopback port, optionally with TLS), stopped, killed and
//!   started again for fault tests;
//! * [`process`]: the [`Process`] guard every helper uses to own a child process;
//! * [`hostile`]: misbehaving clients (idle, trickling, HTTP/2 preface only, endless bodies)
//!   and measurements of the server process (file descriptors, peak memory);
//! * [`alerting`]: the shipped rules, dashboards and metric list as tests read them;
//! * [`packaging`]: the Debian packages and images `scripts/package.sh` built, and the units;
//! * [`admin_api`]: a recording stand-in for the camera/PLC app's admin API (no real peer);
//! * [`ads`]: pyads' real ADS/AMS test server with a chosen PLC state;
//! * [`ffmpeg`]: a real live HLS stream written by ffmpeg;
//! * [`systemd`]: a real systemd as PID 1 in a container built from a `debootstrap`ed Debian
//!   root filesystem, its system bus reachable through a host socket;
//! * [`tmpfs`]: a tmpfs of fixed size, mounted for a test and unmounted after it;
//! * [`examples`]: the shipped example set copied with only its documented values changed, and
//!   the loop (exporter, remediator, Prometheus, Alertmanager) started from it;
//! * [`webhook_sink`]: a recording webhook receiver standing in for the pager and the ticket
//!   system Alertmanager notifies (no real peer).
//!
//! Rules the helpers follow, and that tests written with them should follow too:
//!
//! * all traffic stays on `127.0.0.1` (ports come from [`free_port`]);
//! * a peer that cannot start is a test **failure** (a panic with its stderr), never a skip;
//! * every started process or container is removed when its guard is dropped;
//! * child processes are started with argv ([`std::process::Command`]), never through a shell.
//!
//! The project's test command, `scripts/test.sh`, installs the peers, starts `dockerd`, builds
//! the workspace binaries (see [`bin_path`]) and runs `cargo nextest run --workspace`.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod admin_api;
pub mod ads;
pub mod alerting;
pub mod alertmanager;
pub mod backend;
pub mod caddy;
pub mod chromium;
pub mod dnsmasq;
pub mod docker;
pub mod dockerd;
pub mod examples;
pub mod exporter;
pub mod ffmpeg;
pub mod hostile;
pub mod http;
pub mod metrics;
pub mod nginx;
pub mod packaging;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod remediator;
pub mod systemd;
pub mod tls;
pub mod tmpfs;
pub mod webhook_sink;

pub use process::Process;

/// Returns a TCP port that is free on `127.0.0.1` right now.
///
/// The port is taken from below the kernel's range of ephemeral ports
/// (`net.ipv4.ip_local_port_range`, 32768–60999 by default): a port from that range can be
/// taken by any outgoing connection of any test while its server is down, so a container or
/// peer that is restarted on the same port (a remediated container, a reloaded server) could
/// find it taken. The port is checked by binding and releasing a listener, so another process
/// could in principle take it before the caller binds it; the peer helpers of this crate retry
/// with a new port when their peer reports "address already in use".
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 20_000;
    let below = ephemeral_low().max(FIRST + 1_000);
    let span = below - FIRST;
    // A start that differs between test processes (nextest runs each test in its own) and
    // between calls of one process.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let start = nanos
        .wrapping_mul(2_654_435_761)
        .wrapping_add(std::process::id().wrapping_mul(40_503))
        .wrapping_add(NEXT.fetch_add(7_919, Ordering::Relaxed));
    for i in 0..span {
        let port = FIRST + (start.wrapping_add(i) % span);
        let port = u16::try_from(port).expect("ports below 65536");
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"));
    listener
        .local_addr()
        .expect("local address of a bound listener")
        .port()
}

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .filter(|&low: &u32| low > 21_000 && low <= 65_535)
        .unwrap_or(32_768)
}

/// Calls `condition` every `poll` until it returns `true` or `timeout` has elapsed.
///
/// Returns whether the condition became true. The condition is always evaluated at least once,
/// and once more after the deadline, so a slow last poll is not lost.
pub fn wait_until(timeout: Duration, poll: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(poll.min(deadline - now));
        if Instant::now() >= deadline {
            return condition();
        }
    }
}

/// Async variant of [`wait_until`] for tests running on a Tokio runtime: awaits `condition()`
/// every `poll` (with `tokio::time::sleep`, so the runtime keeps running other tasks) until it
/// yields `true` or `timeout` has elapsed. Returns whether the condition became true.
pub async fn wait_until_async<F, Fut>(timeout: Duration, poll: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep(poll.min(deadline - now)).await;
        if Instant::now() >= deadline {
            return condition().await;
        }
    }
}

/// Returns whether something accepts TCP connections on `127.0.0.1:port`.
pub fn port_accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Path of a binary of this workspace (for example `"stackmedic-exporter"`) in the cargo target
/// directory the running test was built into.
///
/// The directory is derived from [`std::env::current_exe`]: integration tests run from
/// `target/<profile>/deps/<test>-<hash>`, and binaries live in `target/<profile>/`. The variable
/// `STACKMEDIC_BIN_DIR`, when set, names that directory instead.
///
/// Cargo does not build another package's binaries for a test run, so build them first:
/// `cargo build --workspace --bins` (`scripts/test.sh` does this before running nextest).
///
/// # Panics
/// When the binary does not exist, with a message saying how to build it.
pub fn bin_path(name: &str) -> PathBuf {
    let dir = match std::env::var_os("STACKMEDIC_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe()
                .unwrap_or_else(|e| panic!("cannot find the running test's executable: {e}"));
            let mut dir = exe
                .parent()
                .unwrap_or_else(|| panic!("test executable {} has no parent", exe.display()))
                .to_path_buf();
            if dir.file_name().is_some_and(|n| n == "deps") {
                dir.pop();
            }
            dir
        }
    };
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        panic!(
            "workspace binary `{name}` not found at {}: build the binaries first with \
             `cargo build --workspace --bins` (scripts/test.sh does this), or set \
             STACKMEDIC_BIN_DIR to the directory holding them",
            path.display()
        );
    }
    path
}

/// Deterministic bytes that are not all alike (xorshift from `start`), so that a digest or
/// archive bug cannot hide in runs of zeros, and that do not compress.
pub fn pseudo_random_bytes(len: usize, start: u64) -> Vec<u8> {
    let mut x = start | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Returns a name unique to this process and call, such as `prefix-4242-3-1a2b3c`: for
/// container names, temporary files and other resources shared between concurrently running
/// test processes.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}

/// Returns whether this process runs with effective user id 0 (read from `/proc/self/status`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Returns the path of a required system program (the first existing of `candidates`, then a
/// `PATH` lookup of the first candidate's file name).
///
/// # Panics
/// When none exists, naming the Debian package that provides it.
pub fn require_program(candidates: &[&str], package: &str) -> PathBuf {
    for candidate in candidates {
        let path = PathBuf::from(candidate);
        if path.is_file() {
            return path;
        }
    }
    if let Some(name) = candidates
        .first()
        .and_then(|c| std::path::Path::new(c).file_name())
    {
        if let Some(paths) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&paths) {
                let path = dir.join(name);
                if path.is_file() {
                    return path;
                }
            }
        }
    }
    panic!(
        "required program {} is not installed (Debian package `{package}`); \
         run scripts/test.sh as root, which installs it",
        candidates.join(" or ")
    );
}
