//! A crash loop through the loop as shipped (the example set with only its documented values
//! changed; real dockerd, Prometheus, Alertmanager, exporter and remediator, nothing shortened):
//! the watched container is stopped and cannot start again — its port is taken, so each start
//! exits at once with an error in its log. Each restart fails its verification at once, with the
//! exit code and the log line; after its three attempts the remediator pages on-call, once, well
//! within a minute of the first alert; nothing else pages for the container meanwhile.
//!
//! The pager is `WebhookSink`, the tests' own receiver standing in for on-call (no real pager
//! runs here).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::Value;
use stackmedic_tests::docker::docker;
use stackmedic_tests::examples::ShippedLoop;
use stackmedic_tests::remediator::unix_now;
use stackmedic_tests::wait_until;

#[test]
fn a_crash_loop_of_the_shipped_loop_pages_once_within_a_minute_of_the_first_alert() {
    let mut l = ShippedLoop::start("sm-crashloop");
    let name = l.name.clone();
    // Down, and unable to come back: whatever starts it finds its port taken.
    docker(&["stop", "-t", "1", &name]);
    let _taken = TcpListener::bind(("127.0.0.1", l.web_port))
        .expect("the page's port is free once the container stopped");
    // The first alert: the first ContainerDown of the container the remediator accepted. Its
    // moment is kept on the test's monotonic clock (when it was seen, less how long before that
    // the remediator had stamped it: two wall-clock readings a moment apart), so a step of the
    // wall clock while the loop runs does not count as time spent.
    let mut first_alert = None;
    assert!(
        wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
            first_alert = l.stack.history()["actions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["alertname"] == "ContainerDown" && a["subject"] == subject(&name))
                .filter_map(|a| a["accepted_at"].as_f64())
                .reduce(f64::min)
                .map(|at| (at, Instant::now(), unix_now()));
            first_alert.is_some()
        }),
        "ContainerDown never reached the remediator: {}",
        l.stack.describe()
    );
    let (first_alert, seen, seen_unix) = first_alert.unwrap();
    let first_instant = seen
        .checked_sub(Duration::from_secs_f64((seen_unix - first_alert).max(0.0)))
        .unwrap_or(seen);
    let watching = Instant::now();
    let pages = |l: &ShippedLoop| -> Vec<(Value, Instant)> {
        l.sink
            .alerts("/page")
            .into_iter()
            .filter(|(a, _)| a["labels"]["container"] == name.as_str() && a["status"] == "firing")
            .collect()
    };
    let mut paged = None;
    assert!(
        wait_until(Duration::from_secs(90), Duration::from_millis(100), || {
            paged = pages(&l).into_iter().next();
            paged.is_some()
        }),
        "the crash loop never paged: {:#}",
        l.stack.history()
    );
    let (page, at) = paged.unwrap();
    let after = at.duration_since(first_instant).as_secs_f64();
    println!("loop: crash loop paged {after:.1} s after the first alert");
    let history = l.stack.history();
    let timeline = timeline(&history, first_alert);
    println!("{timeline}");
    if after >= 60.0 {
        panic!(
            "paged {after:.1} s after the first alert; the remediator's audit from it (seconds \
             by its clock):\n{timeline}\n{}",
            l.stack.describe()
        );
    }
    assert_eq!(page["labels"]["alertname"], "StackmedicRemediationFailed");
    let tried = page["annotations"]["remediation_tried"]
        .as_str()
        .unwrap_or_default();
    assert!(
        tried.contains("exit code"),
        "the page says how it exited: {tried}"
    );
    assert!(
        tried.contains("last log lines"),
        "the page quotes its log: {tried}"
    );
    let failed: Vec<Value> = l.stack.history()["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["result"] == "failed" && a["subject"] == subject(&name))
        .cloned()
        .collect();
    assert_eq!(
        failed.len(),
        3,
        "three attempts, each failing at once: {failed:#?}"
    );
    // One page for one cause: nothing else pages for the container for the rest of the minute.
    let rest = Duration::from_secs(60).saturating_sub(watching.elapsed());
    std::thread::sleep(rest.min(Duration::from_secs(20)));
    let names: std::collections::BTreeSet<String> = pages(&l)
        .iter()
        .filter_map(|(a, _)| a["labels"]["alertname"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        names.len(),
        1,
        "more than one page for one crash loop: {names:?}"
    );
    l.container.take();
}

/// The remediator's subject of the watched container.
fn subject(name: &str) -> String {
    format!("container:{name}")
}

/// The audit rows, oldest first, each with its time in seconds after the first alert: what a slow
/// page spent its time on.
fn timeline(history: &Value, first_alert: f64) -> String {
    let mut rows: Vec<&Value> = history["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    rows.sort_by_key(|a| a["id"].as_i64());
    rows.iter()
        .map(|a| {
            let at = |k: &str| {
                a[k].as_f64()
                    .map_or_else(|| "-".to_owned(), |t| format!("{:+.1}", t - first_alert))
            };
            format!(
                "  {:>7} s  {} {} incident {} job {} (accepted {}, started {}): {}",
                at("time"),
                a["alertname"].as_str().unwrap_or_default(),
                a["result"].as_str().unwrap_or_default(),
                a["incident_id"],
                a["job_id"],
                at("accepted_at"),
                at("started_at"),
                a["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .chars()
                    .take(160)
                    .collect::<String>()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
