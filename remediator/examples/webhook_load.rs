//! A load generator for the remediator's webhook, run as a process of its own so that what it
//! measures is the server (`scripts/bench-webhooks.sh` starts both):
//!
//! ```text
//! webhook_load --url http://127.0.0.1:8791/webhook [--senders 16] [--seconds 20]
//!              [--warmup 2] [--token TOKEN] [--same]
//! ```
//!
//! Each sender keeps one HTTP/1.1 connection and posts one notification at a time, each of one
//! firing alert of a new occurrence (`--same`: the same alert again, the deduplication path),
//! and waits for the answer, which must be 200. One thread runs every sender, so the generator
//! takes little of the machine. It prints one line of figures: notifications, rate, errors and
//! latency percentiles of the measured period (after `--warmup`).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Options {
    host: String,
    path: String,
    senders: usize,
    seconds: f64,
    warmup: f64,
    token: Option<String>,
    same: bool,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "webhook_load: {problem}\nusage: webhook_load --url http://127.0.0.1:PORT/webhook [--senders N] [--seconds S] [--warmup S] [--token T] [--same]"
    );
    std::process::exit(2)
}

fn options() -> Options {
    let mut o = Options {
        host: String::new(),
        path: String::new(),
        senders: 16,
        seconds: 20.0,
        warmup: 2.0,
        token: None,
        same: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "--url" => {
                let url = value("--url");
                let rest = url
                    .strip_prefix("http://")
                    .unwrap_or_else(|| usage("only http:// URLs"));
                let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
                o.host = host.to_owned();
                o.path = format!("/{path}");
            }
            "--senders" => {
                o.senders = value("--senders")
                    .parse()
                    .unwrap_or_else(|_| usage("--senders is a number"))
            }
            "--seconds" => {
                o.seconds = value("--seconds")
                    .parse()
                    .unwrap_or_else(|_| usage("--seconds is a number"))
            }
            "--warmup" => {
                o.warmup = value("--warmup")
                    .parse()
                    .unwrap_or_else(|_| usage("--warmup is a number"))
            }
            "--token" => o.token = Some(value("--token")),
            "--same" => o.same = true,
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    if o.host.is_empty() {
        usage("--url is required");
    }
    o
}

/// One notification of one firing alert whose fingerprint is `instance`.
fn body(instance: &str) -> String {
    format!(
        r#"{{"version":"4","groupKey":"{{}}:{{alertname=\"Storm\"}}","status":"firing","receiver":"remediator","groupLabels":{{"alertname":"Storm"}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://127.0.0.1:9093","truncatedAlerts":0,"alerts":[{{"status":"firing","labels":{{"alertname":"Storm","instance":"{instance}","severity":"critical"}},"annotations":{{"summary":"load"}},"startsAt":"2026-11-22T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://127.0.0.1:9090/graph","fingerprint":"{instance}"}}]}}"#
    )
}

/// Reads one response; returns its status.
async fn response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(status)
}

struct Result {
    latencies: Vec<Duration>,
    errors: usize,
}

async fn sender(
    o: std::sync::Arc<Options>,
    id: usize,
    start: Instant,
    measure_from: Instant,
    end: Instant,
) -> Result {
    let mut out = Result {
        latencies: Vec::with_capacity(200_000),
        errors: 0,
    };
    let auth = o
        .token
        .as_ref()
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut conn = None;
    let mut buf = Vec::with_capacity(8192);
    let mut i = 0u64;
    while Instant::now() < end {
        if conn.is_none() {
            match TcpStream::connect(&o.host).await {
                Ok(c) => {
                    let _ = c.set_nodelay(true);
                    conn = Some(c);
                }
                Err(_) => {
                    out.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let instance = if o.same {
            "load-same".to_owned()
        } else {
            format!("load-{}-{id}-{i}", start.elapsed().as_nanos())
        };
        i += 1;
        let b = body(&instance);
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{b}",
            o.path,
            o.host,
            b.len()
        );
        let sent = Instant::now();
        let r = match c.write_all(request.as_bytes()).await {
            Ok(()) => response(c, &mut buf).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(200) => {
                if sent >= measure_from {
                    out.latencies.push(sent.elapsed());
                }
            }
            Ok(_) => out.errors += 1,
            Err(_) => {
                out.errors += 1;
                conn = None;
            }
        }
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn main() {
    let o = std::sync::Arc::new(options());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (latencies, errors, measured) = rt.block_on(async {
        let start = Instant::now();
        let measure_from = start + Duration::from_secs_f64(o.warmup);
        let end = measure_from + Duration::from_secs_f64(o.seconds);
        let tasks: Vec<_> = (0..o.senders)
            .map(|id| tokio::spawn(sender(o.clone(), id, start, measure_from, end)))
            .collect();
        let mut latencies = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let r = t.await.expect("a sender");
            latencies.extend(r.latencies);
            errors += r.errors;
        }
        (
            latencies,
            errors,
            end.saturating_duration_since(measure_from),
        )
    });
    let mut latencies = latencies;
    latencies.sort();
    println!(
        "{} notifications in {:.1} s = {:.0}/s with {} senders ({}), errors {errors}, latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
        latencies.len(),
        measured.as_secs_f64(),
        latencies.len() as f64 / measured.as_secs_f64(),
        o.senders,
        if o.same { "the same alert" } else { "a new occurrence each" },
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
}
