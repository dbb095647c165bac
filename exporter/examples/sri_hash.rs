//! Hashes a file with the SRI probe's hasher and prints its SRI token, the time taken, the
//! throughput and the process's peak resident memory: the measuring half of
//! `scripts/bench-sri.sh`.
//!
//! Usage: `sri_hash [sha256|sha384|sha512] FILE`

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use stackmedic_exporter::probe::sri::{self, Alg};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (alg, file) = match args.as_slice() {
        [file] => (Alg::Sha384, file),
        [alg, file] => (
            Alg::parse(alg).ok_or_else(|| anyhow::anyhow!("unknown algorithm {alg:?}"))?,
            file,
        ),
        _ => anyhow::bail!("usage: sri_hash [sha256|sha384|sha512] FILE"),
    };
    let mut f = std::fs::File::open(file)?;
    let start = Instant::now();
    let (digests, n) = sri::hash_reader(&mut f, &[alg], &AtomicBool::new(false))?;
    let secs = start.elapsed().as_secs_f64();
    let token = digests
        .get(&alg)
        .map(|d| sri::sri_token(alg, d))
        .unwrap_or_default();
    println!("token {token}");
    println!("bytes {n}");
    println!("seconds {secs:.3}");
    println!("mib_per_second {:.1}", n as f64 / secs / (1024.0 * 1024.0));
    println!("peak_rss_kib {}", peak_rss_kib().unwrap_or(0));
    Ok(())
}

/// `VmHWM` of `/proc/self/status`: the most resident memory the process has used.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
