//! Many large webhooks at once cannot grow the remediator's memory without bound: request
//! bodies in flight share one process-wide budget (`--web.max-body-bytes-in-flight`), a body
//! beyond it gets 503 with `Retry-After` (which Alertmanager retries), and a retry later is
//! accepted. Peak memory is read from `/proc/<pid>/status` (`VmHWM`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use stackmedic_tests::hostile::status_bytes;
use stackmedic_tests::http;
use stackmedic_tests::remediator::{alert, payload, Flags, Remediator};

const TOKEN: &str = "hardening-memory-token";
/// Webhooks sent at once, each about 1 MiB.
const PARALLEL: usize = 128;
/// Clients retrying refused webhooks at once, as several Alertmanager groups would.
const RETRYING: usize = 8;
/// The default of `--web.max-body-bytes-in-flight`, which the test runs with.
const BUDGET: &str = "8MiB";
/// Peak resident memory allowed: well above what was measured with the default budget
/// (63–79 MiB, debug build), well below what the same webhooks reach without it (378–857 MiB
/// with `--web.max-body-bytes-in-flight=1GiB`).
const PEAK_LIMIT: u64 = 200 << 20;

/// Webhooks of about 1 MiB each: an Alertmanager group of many alerts with many short labels,
/// none matching a rule. Short labels are the costly shape: each becomes map entries and
/// strings, several times its size in JSON. Built once and made distinct by a marker, since
/// building 128 of them alert by alert takes long in a debug build.
fn big_webhooks(n: usize) -> Vec<Arc<Vec<u8>>> {
    let names: Vec<String> = (0..60).map(|i| format!("l{i}")).collect();
    let alerts = (0..1200)
        .map(|i| {
            let instance = format!("h{i}-SLOT0000");
            let mut labels: Vec<(&str, &str)> = vec![("alertname", "HardeningFlood")];
            labels.push(("instance", &instance));
            labels.extend(names.iter().map(|n| (n.as_str(), "v")));
            alert("firing", &labels, "2026-11-22T10:00:00Z")
        })
        .collect();
    let template = serde_json::to_string(&payload(alerts)).unwrap();
    (0..n)
        .map(|i| {
            Arc::new(
                template
                    .replace("SLOT0000", &format!("S{i:07}"))
                    .into_bytes(),
            )
        })
        .collect()
}

struct Answer {
    status: u16,
    retry_after: Option<String>,
}

/// Sends `body` as `POST /webhook` in two halves with a barrier between them, so that every
/// request is in flight at the same time, and reads the answer.
fn post_in_halves(port: u16, body: &[u8], barrier: &Barrier) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (first, rest) = body.split_at(body.len() / 2);
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(first).unwrap();
    barrier.wait();
    // The server may answer 503 before it has read everything; it still reads to the end.
    let _ = s.write_all(rest);
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let retry_after = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("retry-after: ")
                .or(l.strip_prefix("Retry-After: "))
        })
        .map(str::to_owned);
    Answer {
        status,
        retry_after,
    }
}

#[test]
fn parallel_large_webhooks_stay_within_the_body_budget() {
    let dir = tempfile::Builder::new()
        .prefix("stackmedic-remediator-")
        .tempdir()
        .unwrap();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    let mut rem = Remediator::start_with(
        dir,
        "global: {max_body_bytes: 2097152}\nwebhook: {bearer_token_file: '{dir}/token'}\nrules: []\n",
        Flags::default(),
    );
    let pid = rem.process().pid();
    let bodies = big_webhooks(PARALLEL);
    let size = bodies[0].len();
    assert!(
        (900_000..1_200_000).contains(&size),
        "a body is {size} bytes"
    );
    let before = status_bytes(pid, "VmRSS");

    let barrier = Arc::new(Barrier::new(PARALLEL));
    let port = rem.port();
    let threads: Vec<_> = bodies
        .iter()
        .cloned()
        .map(|body| {
            let barrier = barrier.clone();
            std::thread::spawn(move || post_in_halves(port, &body, &barrier))
        })
        .collect();
    let answers: Vec<Answer> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let peak = status_bytes(pid, "VmHWM");
    let accepted = answers.iter().filter(|a| a.status == 200).count();
    let busy: Vec<usize> = (0..PARALLEL)
        .filter(|i| answers[*i].status == 503)
        .collect();
    eprintln!(
        "{PARALLEL} parallel webhooks of {size} bytes: {accepted} accepted, {} refused with 503; \
         RSS before {} MiB, peak {} MiB",
        busy.len(),
        before >> 20,
        peak >> 20
    );
    assert_eq!(
        accepted + busy.len(),
        PARALLEL,
        "every answer is 200 or 503: {:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert!(accepted >= 1, "nothing was accepted");
    assert!(
        !busy.is_empty(),
        "{PARALLEL} bodies of 1 MiB in flight at once must exceed a budget of {BUDGET}"
    );
    for i in &busy {
        assert_eq!(
            answers[*i].retry_after.as_deref(),
            Some("1"),
            "a 503 tells the client when to retry"
        );
    }
    assert!(
        peak < PEAK_LIMIT,
        "peak resident memory {} MiB is above {} MiB\n{}",
        peak >> 20,
        PEAK_LIMIT >> 20,
        rem.process().describe()
    );

    // Retried as Alertmanager retries (after Retry-After, until accepted), every refused
    // webhook is accepted: nothing is lost.
    let url = rem.url("/webhook");
    let retries: Vec<_> = (0..RETRYING)
        .map(|t| {
            let mine: Vec<Arc<Vec<u8>>> = busy
                .iter()
                .filter(|i| *i % RETRYING == t)
                .map(|i| bodies[*i].clone())
                .collect();
            let url = url.clone();
            std::thread::spawn(move || {
                let auth = format!("Bearer {TOKEN}");
                let headers = [
                    ("Content-Type", "application/json"),
                    ("Authorization", auth.as_str()),
                ];
                let mut refusals = 0;
                for body in mine {
                    loop {
                        let r = http::request("POST", &url, &headers, Some(&body)).unwrap();
                        if r.status == 503 && refusals < 100 {
                            refusals += 1;
                            std::thread::sleep(Duration::from_secs(1));
                            continue;
                        }
                        assert_eq!(r.status, 200, "retried webhook: {}", r.text());
                        break;
                    }
                }
                refusals
            })
        })
        .collect();
    let refusals: usize = retries.into_iter().map(|t| t.join().unwrap()).sum();
    let samples = stackmedic_tests::metrics::scrape(&rem.url("/metrics")).unwrap();
    let count = |result| {
        stackmedic_tests::metrics::find(
            &samples,
            "stackmedic_remediator_webhooks_total",
            &[("result", result)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(count("accepted") as usize, PARALLEL);
    assert_eq!(count("busy") as usize, PARALLEL - accepted + refusals);
}

/// Distinct unmatched alert names sent, in webhooks of [`NAMES_PER_WEBHOOK`] alerts.
const DISTINCT_NAMES: usize = 100_000;
const NAMES_PER_WEBHOOK: usize = 1_000;
/// The goal: resident memory grows by less than this over the names after the first batches.
const UNMATCHED_GROWTH_LIMIT: u64 = 20 << 20;

/// 100,000 distinct alert names no rule matches, through the real binary: the memory of
/// unmatched alerts stays within its bounds (200 names, 256 KiB), the "no rule matches" log
/// lines within 10 a minute, and what was forgotten or not logged is counted. Resident memory
/// is read after a warm-up of 10,000 names (allocator pools, the database's pages) and at the
/// end.
#[test]
fn distinct_unmatched_alert_names_do_not_grow_memory() {
    let dir = tempfile::Builder::new()
        .prefix("stackmedic-remediator-")
        .tempdir()
        .unwrap();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    let mut rem = Remediator::start_with(
        dir,
        "global: {max_body_bytes: 2097152, reconcile_interval: 0s}\nwebhook: {bearer_token_file: '{dir}/token'}\nrules: []\n",
        Flags::default(),
    );
    let pid = rem.process().pid();
    let url = rem.url("/webhook");
    let auth = format!("Bearer {TOKEN}");
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", auth.as_str()),
    ];
    let mut warm = 0;
    let started = std::time::Instant::now();
    for batch in 0..DISTINCT_NAMES / NAMES_PER_WEBHOOK {
        let alerts = (0..NAMES_PER_WEBHOOK)
            .map(|i| {
                let name = format!("UnmatchedName{:06}", batch * NAMES_PER_WEBHOOK + i);
                alert(
                    "firing",
                    &[("alertname", &name), ("instance", "host-1")],
                    "2026-11-22T10:00:00Z",
                )
            })
            .collect();
        let body = serde_json::to_vec(&payload(alerts)).unwrap();
        let r = http::request("POST", &url, &headers, Some(&body)).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.json().unwrap()["unmatched"],
            NAMES_PER_WEBHOOK,
            "{}",
            r.text()
        );
        if batch == 9 {
            warm = status_bytes(pid, "VmRSS");
        }
    }
    let took = started.elapsed();
    let end = status_bytes(pid, "VmRSS");
    let growth = end.saturating_sub(warm);
    let samples = stackmedic_tests::metrics::scrape(&rem.url("/metrics")).unwrap();
    let find = |name: &str, labels: &[(&str, &str)]| {
        stackmedic_tests::metrics::find(&samples, name, labels).unwrap_or(0.0)
    };
    let dropped_names = find(
        "stackmedic_remediator_unmatched_dropped_total",
        &[("what", "name")],
    );
    let dropped_lines = find(
        "stackmedic_remediator_unmatched_dropped_total",
        &[("what", "log_line")],
    );
    let log = rem.process().stderr();
    let logged = log.matches("no rule matches this alert").count();
    eprintln!(
        "{DISTINCT_NAMES} unmatched names in {took:?}: RSS after 10,000 {} KiB, at the end {} KiB \
         (growth {} KiB); {logged} log lines, {dropped_lines} not logged; {dropped_names} names forgotten",
        warm >> 10,
        end >> 10,
        growth >> 10
    );
    assert!(
        growth < UNMATCHED_GROWTH_LIMIT,
        "resident memory grew by {} MiB over 90,000 unmatched names\n{}",
        growth >> 20,
        rem.process().describe()
    );
    // Every alert is counted, by name for the first 200 names and as __other__ beyond.
    assert_eq!(
        find(
            "stackmedic_remediator_alerts_total",
            &[("decision", "unmatched")]
        ),
        DISTINCT_NAMES as f64
    );
    assert_eq!(
        find(
            "stackmedic_remediator_unmatched_alerts_total",
            &[("alertname", "__other__")]
        ),
        (DISTINCT_NAMES - 200) as f64
    );
    // What is remembered is bounded and what is forgotten counted.
    assert_eq!(dropped_names, (DISTINCT_NAMES - 200) as f64);
    let history = rem.history();
    assert_eq!(
        history["unmatched"].as_array().map(Vec::len),
        Some(200),
        "the page's memory keeps the latest 200 names"
    );
    // At most 10 lines a minute (plus one per minute saying how many were not logged).
    let minutes = took.as_secs() / 60 + 2;
    assert!(
        logged as u64 <= 10 * minutes,
        "{logged} 'no rule matches' lines in {took:?}"
    );
    assert_eq!(logged as f64 + dropped_lines, DISTINCT_NAMES as f64);
}
