//! Benchmark of the remediator's performance targets, printing figures (not a timed test):
//!
//! 1. from a stored job to the Docker restart call, on an idle server: 50 alerts, each restarting
//!    a container through an engine stand-in on loopback that timestamps the restart request (so
//!    the figure is the remediator's own latency, not the engine's);
//! 2. a storm of distinct alerts, one notification per request, from concurrent keep-alive
//!    clients for `BENCH_SECONDS` (default 60): throughput of durably accepted notifications,
//!    latency percentiles, and the server's resident memory sampled every 5 s;
//! 3. the same group re-sent for 10 s (the deduplication path).
//!
//! Run: `cargo bench -p stackmedic-remediator --bench webhook_storm`
//! (`BENCH_SECONDS=10` for a shorter storm, `BENCH_CONCURRENCY` for more senders).

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A Docker Engine stand-in: `/version`, container inspect (running) and restart, which it
/// timestamps.
async fn fake_engine(restarts: Arc<Mutex<Vec<f64>>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let restarts = restarts.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut r = BufReader::new(r);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or("").to_string();
                    let path = parts.next().unwrap_or("").to_string();
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((n, v)) = h.split_once(':') {
                            if n.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let (status, text) = if path.ends_with("/version") {
                        (
                            "200 OK",
                            r#"{"ApiVersion":"1.41","MinAPIVersion":"1.12","Version":"20.10.24"}"#
                                .to_string(),
                        )
                    } else if method == "POST" && path.contains("/restart") {
                        restarts.lock().expect("lock").push(unix_now());
                        ("204 No Content", String::new())
                    } else if path.contains("/json") {
                        ("200 OK", r#"{"Id":"b","Name":"/bench-app","State":{"Status":"running","Running":true},"Config":{"Labels":{}}}"#.to_string())
                    } else {
                        ("404 Not Found", r#"{"message":"no"}"#.to_string())
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    if w.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn alert_body(alertname: &str, instance: &str) -> String {
    notification(alertname, instance, "firing")
}

/// A notification of one alert in `status` (`firing` or `resolved`).
fn notification(alertname: &str, instance: &str, status: &str) -> String {
    format!(
        r#"{{"version":"4","groupKey":"{{}}:{{alertname=\"{alertname}\"}}","status":"{status}","receiver":"remediator","groupLabels":{{"alertname":"{alertname}"}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://127.0.0.1:9093","truncatedAlerts":0,"alerts":[{{"status":"{status}","labels":{{"alertname":"{alertname}","instance":"{instance}","severity":"critical"}},"annotations":{{"summary":"bench"}},"startsAt":"2026-11-22T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://127.0.0.1:9090/graph","fingerprint":"{instance}"}}]}}"#
    )
}

struct Storm {
    count: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

async fn storm(url: &str, seconds: u64, concurrency: usize, distinct: bool, tag: &str) -> Storm {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let client = client.clone();
        let url = url.to_string();
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut errors = 0usize;
            let mut i = 0u64;
            while Instant::now() < deadline {
                let instance = if distinct {
                    format!("{tag}-{worker}-{i}")
                } else {
                    format!("{tag}-same")
                };
                i += 1;
                let body = alert_body("Storm", &instance);
                let t = Instant::now();
                match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("task");
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Storm {
        count: latencies.len(),
        errors,
        elapsed,
        latencies,
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn report(name: &str, s: &Storm) {
    println!(
        "{name}: {} notifications in {:.1} s = {:.0}/s, errors {}, latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
        s.count,
        s.elapsed.as_secs_f64(),
        s.count as f64 / s.elapsed.as_secs_f64(),
        s.errors,
        pct(&s.latencies, 0.50),
        pct(&s.latencies, 0.90),
        pct(&s.latencies, 0.99),
        pct(&s.latencies, 1.0),
    );
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let seconds = env_or("BENCH_SECONDS", 60);
    let concurrency = env_or("BENCH_CONCURRENCY", 16) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let restarts = Arc::new(Mutex::new(Vec::new()));
        let engine_port = fake_engine(restarts.clone()).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("bench.yml");
        std::fs::write(
            &config,
            format!(
                "docker: {{host: 'http://127.0.0.1:{engine_port}'}}\n\
                 targets:\n\
                 - name: storm\n  docker: {{containers: [bench-app]}}\n\
                 - name: latency\n  flapping: {{count: 0}}\n  docker: {{containers: [bench-app]}}\n  verify: {{deadline: 5s, stable_for: 0s}}\n\
                 rules:\n\
                 - name: storm\n  matchers: ['alertname=\"Storm\"']\n  action: container_restart\n  target: storm\n  dry_run: true\n\
                 - name: latency\n  matchers: ['alertname=\"Latency\"']\n  action: container_restart\n  target: latency\n"
            ),
        )
        .expect("write config");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let child = Command::new(env!("CARGO_BIN_EXE_stackmedic-remediator"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start stackmedic-remediator");
        let pid = child.id();
        let _server = Server(child);
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if client.get(format!("{base}/-/ready")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "stackmedic-remediator benchmark, {} CPU(s), {concurrency} concurrent senders, database on {}",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            dir.path().display()
        );

        let url = format!("{base}/webhook");
        // Stored job to Docker restart call.
        let history_url = format!("{base}/api/actions?limit=1000");
        let mut delays = Vec::new();
        let mut sent_at = Vec::new();
        for i in 0..50 {
            sent_at.push(unix_now());
            let before = restarts.lock().expect("lock").len();
            let r = client
                .post(&url)
                .header("content-type", "application/json")
                .body(alert_body("Latency", &format!("lat-{i}")))
                .send()
                .await
                .expect("post");
            assert!(r.status().is_success());
            for _ in 0..500 {
                if restarts.lock().expect("lock").len() > before {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            // All latency alerts name one container, one subject: the alert resolves before the
            // next outage, so each opens its own incident.
            client
                .post(&url)
                .header("content-type", "application/json")
                .body(notification("Latency", &format!("lat-{i}"), "resolved"))
                .send()
                .await
                .expect("post");
        }
        let history: serde_json::Value = client.get(&history_url).send().await.expect("history").json().await.expect("json");
        let mut accepted: Vec<f64> = history["actions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|x| x["rule"] == "latency" && x["result"] == "succeeded")
                    .filter_map(|x| x["accepted_at"].as_f64())
                    .collect()
            })
            .unwrap_or_default();
        accepted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let restart_times = restarts.lock().expect("lock").clone();
        assert_eq!(accepted.len(), 50, "every latency job must have succeeded");
        assert_eq!(restart_times.len(), 50, "every latency job must have called restart");
        let mut from_send = Vec::new();
        for ((a, r), s) in accepted.iter().zip(restart_times.iter()).zip(sent_at.iter()) {
            delays.push(Duration::from_secs_f64((r - a).max(0.0)));
            from_send.push(Duration::from_secs_f64((r - s).max(0.0)));
        }
        delays.sort();
        from_send.sort();
        println!(
            "webhook sent to Docker restart call ({} jobs): ms p50 {:.2} p99 {:.2} max {:.2}",
            from_send.len(),
            pct(&from_send, 0.5),
            pct(&from_send, 0.99),
            pct(&from_send, 1.0)
        );
        println!(
            "stored job to Docker restart call ({} jobs): ms p50 {:.2} p99 {:.2} max {:.2}",
            delays.len(),
            pct(&delays, 0.5),
            pct(&delays, 0.99),
            pct(&delays, 1.0)
        );
        // Memory sampler.
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sampler = {
            let samples = samples.clone();
            tokio::spawn(async move {
                let t0 = Instant::now();
                loop {
                    samples.lock().expect("lock").push((t0.elapsed().as_secs(), rss_kib(pid)));
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            })
        };
        let s = storm(&url, seconds, concurrency, true, "d").await;
        report("distinct alerts (each stored as a job, decided as a dry run)", &s);
        sampler.abort();
        let rss: Vec<String> = samples
            .lock()
            .expect("lock")
            .iter()
            .map(|(t, k)| format!("{t}s:{:.1}MiB", *k as f64 / 1024.0))
            .collect();
        println!("server RSS during the storm: {}", rss.join(" "));

        // Let the queued dry-run decisions drain before the next phase.
        let drain = Instant::now();
        for _ in 0..3000 {
            let m = client.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.unwrap_or_default();
            let depth = m
                .lines()
                .find(|l| l.starts_with("stackmedic_remediator_queue_depth "))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
                .unwrap_or(0.0);
            if depth == 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "queue drained {:.1} s after the storm; server RSS then: {:.1}MiB",
            drain.elapsed().as_secs_f64(),
            rss_kib(pid) as f64 / 1024.0
        );

        let s = storm(&url, 10.min(seconds), concurrency, false, "dup").await;
        report("the same group re-sent (deduplicated)", &s);

    });
}
