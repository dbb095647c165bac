//! Hashes a file with the SRI probe's hasher and prints its SRI token, the wall and CPU time
//! taken, the throughput and the process's peak resident memory: the measuring half of
//! `scripts/bench-sri.sh`.
//!
//! Usage: `sri_hash [--sha2] [sha256|sha384|sha512] FILE`
//!
//! `--sha2` hashes with the `sha2` crate instead, the hasher the probe used before, so that
//! both can be measured side by side in one run.

use std::io::Read as _;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use stackmedic_exporter::probe::sri::{self, Alg, HASH_BUFFER};

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let old = args.first().is_some_and(|a| a == "--sha2");
    if old {
        args.remove(0);
    }
    let (alg, file) = match args.as_slice() {
        [file] => (Alg::Sha384, file),
        [alg, file] => (
            Alg::parse(alg).ok_or_else(|| anyhow::anyhow!("unknown algorithm {alg:?}"))?,
            file,
        ),
        _ => anyhow::bail!("usage: sri_hash [--sha2] [sha256|sha384|sha512] FILE"),
    };
    let mut f = std::fs::File::open(file)?;
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let (digest, n) = if old {
        sha2_crate(&mut f, alg)?
    } else {
        let (digests, n) = sri::hash_reader(&mut f, &[alg], &AtomicBool::new(false))?;
        (digests.get(&alg).cloned().unwrap_or_default(), n)
    };
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!("token {}", sri::sri_token(alg, &digest));
    println!("bytes {n}");
    println!("seconds {secs:.3}");
    println!("cpu_seconds {cpu:.3}");
    println!(
        "mib_per_cpu_second {:.1}",
        n as f64 / cpu / (1024.0 * 1024.0)
    );
    println!("peak_rss_kib {}", peak_rss_kib().unwrap_or(0));
    Ok(())
}

/// The same streaming loop as `sri::hash_reader`, with the `sha2` crate's digests.
fn sha2_crate(f: &mut std::fs::File, alg: Alg) -> std::io::Result<(Vec<u8>, u64)> {
    fn run<D: sha2::Digest>(f: &mut std::fs::File) -> std::io::Result<(Vec<u8>, u64)> {
        let mut h = D::new();
        let mut buf = vec![0u8; HASH_BUFFER];
        let mut total = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok((h.finalize().to_vec(), total));
            }
            h.update(&buf[..n]);
            total += n as u64;
        }
    }
    match alg {
        Alg::Sha256 => run::<sha2::Sha256>(f),
        Alg::Sha384 => run::<sha2::Sha384>(f),
        Alg::Sha512 => run::<sha2::Sha512>(f),
    }
}

/// CPU time of this (single-threaded) process so far, from the scheduler's exact account in
/// `/proc/self/schedstat` (nanoseconds on a CPU).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 / 1e9)
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
