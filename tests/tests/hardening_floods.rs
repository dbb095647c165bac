//! Floods of large labels and of unauthenticated reads cannot grow the remediator's memory or
//! slow its webhooks: 60 webhooks whose alert names a container outside the allow-list with a
//! label of about 1 MiB (each one denied and audited), then rounds of 24 parallel
//! unauthenticated GETs of `/` and `/api/actions?limit=1000`, then webhooks timed while 16
//! readers GET both in a loop.
//!
//! What keeps them bounded: stored values and reasons are cut (`limits`), the history comes in
//! pages, and reads run on read-only connections of their own, not the writer thread. The
//! figures asserted are the goals of the hardening work with margins for a debug build on a
//! busy machine; `cargo bench --bench floods` (release) records the figures themselves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stackmedic_tests::hostile::status_bytes;
use stackmedic_tests::http;
use stackmedic_tests::remediator::{alert, payload, Flags, Remediator};

const TOKEN: &str = "hardening-floods-token";
/// Webhooks with a label of about 1 MiB.
const LARGE_WEBHOOKS: usize = 60;
/// Parallel unauthenticated readers of the first read flood, and rounds of it.
const READERS: usize = 24;
const READ_ROUNDS: usize = 3;
/// Parallel readers while webhooks are timed, and webhooks timed.
const BUSY_READERS: usize = 16;
const TIMED_WEBHOOKS: usize = 300;
/// The goal: resident memory under 100 MiB through all of it.
const RSS_LIMIT: u64 = 100 << 20;
/// Largest answer of `/` or `/api/actions?limit=1000`: a page of bounded rows.
const ANSWER_LIMIT: usize = 1 << 20;
/// The goal is a webhook p99 under 20 ms with a release build; a debug build on two shared
/// cores gets a margin of ten.
const P99_LIMIT: Duration = Duration::from_millis(200);

fn config() -> &'static str {
    "global: {dry_run: true, max_body_bytes: 2097152, reconcile_interval: 0s}\n\
     webhook: {bearer_token_file: '{dir}/token'}\n\
     targets:\n- name: app\n  docker: {containers: [app-1, app-2]}\n\
     rules:\n- name: app-down\n  matchers: ['alertname=\"AppDown\"']\n  action: container_restart\n  target: app\n  container_label: container\n"
}

fn get_ok(url: &str) -> usize {
    let r = http::get(url).unwrap_or_else(|e| panic!("GET {url}: {e:#}"));
    assert_eq!(r.status, 200, "GET {url}: {}", r.text());
    r.body.len()
}

fn p99(mut latencies: Vec<Duration>) -> Duration {
    latencies.sort();
    latencies[(latencies.len() * 99).div_ceil(100) - 1]
}

#[test]
fn large_label_and_read_floods_keep_memory_and_webhook_latency_bounded() {
    let dir = tempfile::Builder::new()
        .prefix("stackmedic-floods-")
        .tempdir()
        .unwrap();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    let mut rem = Remediator::start_with(dir, config(), Flags::default());
    let pid = rem.process().pid();

    // 1. Large labels: each webhook's alert names a container of about 1 MiB, outside the
    //    allow-list, so it is denied and its reason (which quotes the label) is audited.
    let filler = "x".repeat(1_000_000);
    for i in 0..LARGE_WEBHOOKS {
        let container = format!("{i:03}{filler}");
        let p = payload(vec![alert(
            "firing",
            &[("alertname", "AppDown"), ("container", &container)],
            "2026-11-22T10:00:00Z",
        )]);
        let r = rem.webhook(&p, Some(TOKEN)).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json().unwrap()["denied"], 1, "{}", r.text());
    }
    let history = rem.history();
    let denials: Vec<&serde_json::Value> = history["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["result"] == "denied")
        .collect();
    assert_eq!(denials.len(), LARGE_WEBHOOKS, "one row per distinct label");
    let value_bytes = history["limits"]["value_bytes"].as_u64().unwrap() as usize;
    for d in &denials {
        let detail = d["detail"].as_str().unwrap();
        assert!(
            detail.len() <= value_bytes + 32 && detail.contains("bytes)"),
            "a stored reason is cut and says so: {} bytes, ends {:?}",
            detail.len(),
            &detail[detail.len().saturating_sub(40)..]
        );
    }

    // 2. Rounds of parallel unauthenticated reads of the page and the largest history page.
    let page = rem.url("/");
    let api = rem.url("/api/actions?limit=1000");
    let mut largest = 0;
    for _ in 0..READ_ROUNDS {
        let readers: Vec<_> = (0..READERS)
            .map(|i| {
                let url = if i % 2 == 0 {
                    page.clone()
                } else {
                    api.clone()
                };
                std::thread::spawn(move || get_ok(&url))
            })
            .collect();
        for r in readers {
            largest = largest.max(r.join().unwrap());
        }
    }
    let peak_reads = status_bytes(pid, "VmHWM");

    // 3. Webhooks timed with and without readers: accepted alerts of distinct occurrences
    //    (dry run: each is decided and audited).
    let timed_webhooks = |from: usize, n: usize| -> Vec<Duration> {
        (from..from + n)
            .map(|i| {
                let p = payload(vec![alert(
                    "firing",
                    &[
                        ("alertname", "AppDown"),
                        ("container", "app-1"),
                        ("instance", &format!("host-{i}")),
                    ],
                    "2026-11-22T10:00:00Z",
                )]);
                let started = Instant::now();
                let r = rem.webhook(&p, Some(TOKEN)).unwrap();
                let took = started.elapsed();
                assert_eq!(r.status, 200, "{}", r.text());
                took
            })
            .collect()
    };
    let quiet = p99(timed_webhooks(0, TIMED_WEBHOOKS / 3));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..BUSY_READERS)
        .map(|i| {
            let url = if i % 2 == 0 {
                page.clone()
            } else {
                api.clone()
            };
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    get_ok(&url);
                    n += 1;
                }
                n
            })
        })
        .collect();
    // Let every reader get going before the first timed webhook.
    std::thread::sleep(Duration::from_millis(500));
    let busy = p99(timed_webhooks(TIMED_WEBHOOKS, TIMED_WEBHOOKS));
    stop.store(true, Ordering::Relaxed);
    let reads: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    let peak = status_bytes(pid, "VmHWM");
    eprintln!(
        "largest answer {largest} bytes; peak RSS after the read floods {} MiB, at the end {} MiB; \
         webhook p99 {quiet:?} alone, {busy:?} with {BUSY_READERS} readers ({reads} reads)",
        peak_reads >> 20,
        peak >> 20
    );
    assert!(
        largest < ANSWER_LIMIT,
        "an answer of {largest} bytes: pages must be capped"
    );
    assert!(
        peak < RSS_LIMIT,
        "peak resident memory {} MiB, goal {} MiB\n{}",
        peak >> 20,
        RSS_LIMIT >> 20,
        rem.process().describe()
    );
    assert!(reads >= BUSY_READERS, "the readers did not read: {reads}");
    assert!(
        busy < P99_LIMIT,
        "webhook p99 {busy:?} with {BUSY_READERS} readers (alone {quiet:?})"
    );
}
