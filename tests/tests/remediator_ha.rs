//! Replicas sharing one PostgreSQL, against the real binaries and a real PostgreSQL (the Debian
//! package's server in a cluster of the test's own):
//!
//! * a replica killed (`kill -9`) while its action runs: the other replica takes its job over
//!   once the lease ran out and verifies the action — it does not run it again — on a real
//!   container; the failover time is printed (docs/ha.md records it);
//! * a storm of distinct alerts (40 streams, one failing stream, one stopped real container)
//!   through two clustered real Alertmanagers, each sending every alert to both replicas,
//!   while the replicas are killed at random moments (20 kills or more) and PostgreSQL is stopped once for 20 s: every acknowledged occurrence is acted on
//!   exactly once, no incident is left open, and the escalation of a failing subject is posted
//!   once per resend, never by two replicas at once. The streams' admin API is the test
//!   library's recorder, standing in for the camera/PLC app, which has no real peer; the
//!   escalation posts are counted by the test library's webhook sink as a third receiver
//!   beside the two Alertmanagers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stackmedic_tests::admin_api::{AdminApi, Rule};
use stackmedic_tests::alertmanager::Alertmanager;
use stackmedic_tests::docker::{ensure_docker, run_busybox};
use stackmedic_tests::postgres::Postgres;
use stackmedic_tests::remediator::{alert, payload, Flags, Remediator};
use stackmedic_tests::webhook_sink::WebhookSink;
use stackmedic_tests::{unique_name, wait_until};

/// A replica of the store `pg` named `name`, with further flags.
fn replica(pg: &Postgres, name: &str, config: &str, more: &[String]) -> Remediator {
    let dir = tempfile::Builder::new()
        .prefix("stackmedic-remediator-")
        .tempdir()
        .unwrap();
    let mut args = vec![
        format!("--storage.url={}", pg.url()),
        format!("--storage.password-file={}", pg.password_file().display()),
        format!("--replica.name={name}"),
    ];
    args.extend(more.iter().cloned());
    Remediator::start_with(
        dir,
        config,
        Flags {
            args,
            ..Flags::default()
        },
    )
}

/// The pending job in state `running`, with the replica holding it.
fn running(r: &Remediator) -> Option<(i64, String)> {
    let h = get_json(&r.url("/api/actions?limit=50"))?;
    h["pending_jobs"].as_array()?.iter().find_map(|j| {
        (j["state"] == "running").then(|| {
            (
                j["job_id"].as_i64().unwrap_or_default(),
                j["replica"].as_str().unwrap_or_default().to_string(),
            )
        })
    })
}

fn get_json(url: &str) -> Option<Value> {
    stackmedic_tests::http::get(url)
        .ok()
        .filter(|r| r.status == 200)
        .and_then(|r| r.json().ok())
}

#[test]
fn a_replica_killed_during_its_action_is_taken_over_and_the_action_verified_not_run_again() {
    ensure_docker();
    let pg = Postgres::start();
    // `sleep` as the container's first process ignores SIGTERM: a restart waits the whole
    // stop_timeout, so the action is still running when its replica is killed.
    let app = run_busybox(&unique_name("sm-ha-app"), &[], &["sleep", "600"]);
    let before = app.inspect()["State"]["StartedAt"].clone();
    let config = format!(
        "targets:\n- name: app\n  docker: {{containers: [{}], stop_timeout: 6s}}\n  verify: {{deadline: 60s}}\n\
         rules:\n- name: app-restart\n  matchers: ['alertname=\"AppDown\"']\n  action: container_restart\n  target: app\n",
        app.name()
    );
    // The default lease.
    let mut replicas = [
        replica(&pg, "r1", &config, &[]),
        replica(&pg, "r2", &config, &[]),
    ];
    // Both replicas get the alert, as each Alertmanager of a cluster sends it to both.
    let p = payload(vec![alert(
        "firing",
        &[("alertname", "AppDown")],
        "2026-12-06T08:00:00Z",
    )]);
    for r in &replicas {
        let resp = r.webhook(&p, None).unwrap();
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    let mut found = None;
    let started = wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
        found = running(&replicas[0]);
        found.is_some()
    });
    assert!(started, "no action started: {:#}", replicas[0].history());
    let (job, runner) = found.unwrap();
    let (dead, alive) = if runner == "r1" { (0, 1) } else { (1, 0) };
    replicas[dead].kill9();
    let killed = Instant::now();
    // The other replica takes the job over after the lease and verifies the action.
    let mut done = None;
    let verified = wait_until(Duration::from_secs(60), Duration::from_millis(50), || {
        done = replicas[alive]
            .actions_with("succeeded")
            .into_iter()
            .find(|a| a["job_id"] == job);
        done.is_some()
    });
    let failover = killed.elapsed();
    assert!(
        verified,
        "the other replica did not verify the action: {:#}\n{}",
        replicas[alive].history(),
        replicas[alive].process().describe()
    );
    let done = done.unwrap();
    println!(
        "failover: {:.1} s from kill -9 of replica {runner} during its action to the other replica's verified outcome (lease 6 s)",
        failover.as_secs_f64()
    );
    assert_eq!(
        done["replica"],
        if alive == 0 { "r1" } else { "r2" },
        "{done:#}"
    );
    assert!(
        done["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("not run again"),
        "{done:#}"
    );
    let took = replicas[alive].actions_with("taken_over");
    assert!(
        took.iter().any(|t| t["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("of replica {runner}"))),
        "{took:#?}"
    );
    // One restart: the container started once after the alert, and no second attempt ran.
    assert_ne!(app.inspect()["State"]["StartedAt"], before);
    assert_eq!(app.status().as_deref(), Some("running"));
    let attempts: Vec<Value> = replicas[alive].history()["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["result"] == "succeeded" || a["result"] == "failed")
        .cloned()
        .collect();
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert!(
        replicas[alive].metric("stackmedic_remediator_takeovers_total", &[]) >= 1.0,
        "the takeover is not counted"
    );
}

/// A deterministic pseudo-random sequence (its start value is printed, so a failing run can be
/// repeated).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

const STREAMS: usize = 40;
const BROKEN: &str = "cam-broken";

fn streams() -> Vec<String> {
    (0..STREAMS).map(|i| format!("cam-{i:02}")).collect()
}

/// The alerts of `streams` as Prometheus posts them to Alertmanager (`ends` resolves them).
fn am_alerts(streams: &[String], ends: Option<&str>) -> Value {
    Value::Array(
        streams
            .iter()
            .map(|s| {
                let mut a = json!({
                    "labels": {"alertname": "HlsPlaylistStale", "stream": s, "severity": "warning"},
                    "annotations": {"summary": format!("stream {s} is stale")},
                    "startsAt": "2026-12-06T08:00:00Z",
                });
                if let Some(e) = ends {
                    a["endsAt"] = e.into();
                }
                a
            })
            .collect(),
    )
}

/// The alert of a stopped container, as Prometheus posts it to Alertmanager.
fn container_alert(name: &str, ends: Option<&str>) -> Value {
    let mut a = json!({
        "labels": {"alertname": "ContainerDown", "container": name, "severity": "warning"},
        "annotations": {"summary": format!("container {name} is down")},
        "startsAt": "2026-12-06T08:00:00Z",
    });
    if let Some(e) = ends {
        a["endsAt"] = e.into();
    }
    json!([a])
}

/// How often Docker started the container since `since` (from the Unix epoch), from its events.
fn starts_since(id: &str, since: Duration) -> usize {
    stackmedic_tests::docker::docker_ok(&[
        "events",
        "--since",
        &format!("{}.{:09}", since.as_secs(), since.subsec_nanos()),
        "--until",
        &(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1)
        .to_string(),
        "--filter",
        &format!("container={id}"),
        "--filter",
        "event=start",
        "--format",
        "{{.Status}}",
    ])
    .lines()
    .filter(|l| !l.trim().is_empty())
    .count()
}

#[test]
fn a_storm_acts_once_per_occurrence_through_kills_and_a_database_outage() {
    ensure_docker();
    let mut pg = Postgres::start();
    // A real container among the streams: stopped before the storm, its alert in the first wave.
    let app = run_busybox(&unique_name("sm-ha-storm"), &[], &["sleep", "600"]);
    stackmedic_tests::docker::docker_ok(&["kill", app.name()]);
    let stopped_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let api = AdminApi::start(&[Rule::status(&format!("/api/streams/{BROKEN}/restart"), 500)]);
    let sink = WebhookSink::start();
    let mut allowed: Vec<String> = streams();
    allowed.push(BROKEN.into());
    let list = allowed
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let base = format!(
        "global: {{reconcile_interval: 0s}}\n\
         targets:\n- name: camera-app\n  max_attempts: 1\n  blast_radius: {{enabled: false}}\n  verify: {{resolve_within: 10m}}\n  http: {{base_url: '{}'}}\n\
         - name: app\n  max_attempts: 1\n  blast_radius: {{enabled: false}}\n  docker: {{containers: [{app}]}}\n  verify: {{resolve_within: 10m, stable_for: 1s}}\n\
         rules:\n- name: stream-restart\n  matchers: ['alertname=\"HlsPlaylistStale\"']\n  action: http_sequence\n  target: camera-app\n  \
           params: {{stream: {{label: stream, allowed: [{list}]}}}}\n  steps: [{{path: '/api/streams/{{stream}}/restart'}}]\n\
         - name: app-restart\n  matchers: ['alertname=\"ContainerDown\"']\n  action: container_restart\n  target: app\n",
        api.url("/"),
        app = app.name()
    );
    let lease = ["--replica.lease=3s".to_string()];
    let mut replicas = vec![
        replica(&pg, "r1", &base, &lease),
        replica(&pg, "r2", &base, &lease),
    ];
    // Two clustered Alertmanagers, each sending every alert to both replicas.
    let hooks: String = replicas
        .iter()
        .map(|r| {
            format!(
                "  - url: 'http://127.0.0.1:{}/webhook'\n    send_resolved: true\n",
                r.port()
            )
        })
        .collect();
    let ams = Alertmanager::start_cluster(
        &format!(
            "route:\n  receiver: remediators\n  group_by: [stream]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             \x20 routes:\n  - matchers: ['alertname=\"StackmedicRemediationFailed\"']\n    receiver: oncall\n\
             receivers:\n- name: remediators\n  webhook_configs:\n{hooks}- name: oncall\n"
        ),
        2,
    );
    // Escalations go to both Alertmanagers and to the sink that counts the posts.
    let config = format!(
        "{base}escalation:\n  alertmanager_urls: ['{}', '{}', 'http://127.0.0.1:{}']\n  resend_interval: 6s\n  min_backoff: 200ms\n",
        ams[0].url(""),
        ams[1].url(""),
        sink.port()
    );
    for r in &replicas {
        let resp = r.reconfigure(&config);
        assert_eq!(resp.status, 200, "{}", resp.text());
    }

    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("storm start value: {start}");
    let mut rng = Lcg(start);
    let all = streams();
    let mut kills = 0;
    let mut posted = 0;
    let mut outage_done = false;
    let started = Instant::now();
    // Waves of alerts, each posted to both Alertmanagers as Prometheus does, with a replica
    // killed and started again between them; PostgreSQL stopped for 20 s in the middle.
    while kills < 20 || posted < all.len() {
        if posted < all.len() {
            let wave: Vec<String> = all[posted..(posted + 5).min(all.len())].to_vec();
            let mut wave_alerts = am_alerts(&wave, None);
            if posted == 0 {
                for more in [
                    am_alerts(&[BROKEN.to_string()], None),
                    container_alert(app.name(), None),
                ] {
                    wave_alerts
                        .as_array_mut()
                        .unwrap()
                        .extend(more.as_array().unwrap().clone());
                }
            }
            for am in &ams {
                am.post_alerts(&wave_alerts).unwrap();
            }
            posted += wave.len();
        }
        std::thread::sleep(Duration::from_millis(300 + rng.next(1200)));
        let victim = rng.next(2) as usize;
        replicas[victim].kill9();
        kills += 1;
        std::thread::sleep(Duration::from_millis(200 + rng.next(1500)));
        replicas[victim].restart();
        if kills == 10 && !outage_done {
            outage_done = true;
            pg.stop();
            let stopped = Instant::now();
            // Webhooks get 503 and Alertmanager retries; readiness says why.
            let not_ready = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
                stackmedic_tests::http::get(&replicas[0].url("/-/ready"))
                    .is_ok_and(|r| r.status == 503)
            });
            assert!(not_ready, "PostgreSQL is stopped, yet /-/ready says ready");
            std::thread::sleep(Duration::from_secs(20).saturating_sub(stopped.elapsed()));
            pg.start_again();
        }
    }
    println!(
        "storm: {kills} kills, {} alerts, a 20 s database outage, in {:.0} s",
        all.len() + 2,
        started.elapsed().as_secs_f64()
    );

    // Every acknowledged occurrence is acted on: its restart was called, or its attempt was
    // interrupted by a kill and verified by the replica that took it over.
    let acted = |history: &Value, s: &str| -> bool {
        api.count(&format!("/api/streams/{s}/restart")) >= 1
            || history["actions"].as_array().is_some_and(|rows| {
                rows.iter().any(|a| {
                    a["subject"].as_str().unwrap_or_default().contains(s)
                        && a["result"] == "succeeded"
                })
            })
    };
    let done = wait_until(Duration::from_secs(120), Duration::from_millis(500), || {
        let h = replicas[0].history();
        all.iter().all(|s| acted(&h, s)) && app.status().as_deref() == Some("running")
    });
    assert!(
        done,
        "not every acknowledged alert was acted on: calls {:?}\n{:#}",
        api.calls()
            .iter()
            .map(|c| c.path.clone())
            .collect::<Vec<_>>(),
        replicas[0].history()
    );
    // The failing stream escalated; its page is posted once per resend.
    let escalated = wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        !sink.bodies("/api/v2/alerts").is_empty()
    });
    assert!(
        escalated,
        "the failing stream's escalation was never posted"
    );
    std::thread::sleep(Duration::from_secs(15));

    // The alerts resolve: every incident closes.
    let now = stackmedic_tests::remediator::rfc3339(stackmedic_tests::remediator::unix_now());
    let mut everything = all.clone();
    everything.push(BROKEN.into());
    for am in &ams {
        am.post_alerts(&am_alerts(&everything, Some(&now))).unwrap();
        am.post_alerts(&container_alert(app.name(), Some(&now)))
            .unwrap();
    }
    let closed = wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        replicas[0].incidents().is_empty()
    });
    assert!(
        closed,
        "incidents left open: {:#?}",
        replicas[0].incidents()
    );

    // Exactly once: no stream restarted twice, one attempt recorded per stream.
    let h = replicas[0].history();
    let rows = h["actions"].as_array().unwrap();
    let mut attempts: BTreeMap<String, usize> = BTreeMap::new();
    for a in rows {
        // An attempt's row has its start; re-checks and escalations have none.
        if (a["result"] == "succeeded" || a["result"] == "failed") && a["started_at"].is_number() {
            *attempts
                .entry(a["subject"].as_str().unwrap_or_default().to_string())
                .or_default() += 1;
        }
    }
    for s in &all {
        let calls = api.count(&format!("/api/streams/{s}/restart"));
        assert!(calls <= 1, "stream {s} restarted {calls} times");
        let n: usize = attempts
            .iter()
            .filter(|(k, _)| k.contains(s.as_str()))
            .map(|(_, n)| *n)
            .sum();
        let of_stream: Vec<&Value> = rows
            .iter()
            .filter(|a| {
                a["subject"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(s.as_str())
            })
            .collect();
        assert_eq!(n, 1, "stream {s}: {n} attempts recorded: {of_stream:#?}");
    }
    // The container: started once by the remediator, running, one attempt.
    assert_eq!(app.status().as_deref(), Some("running"));
    let starts = starts_since(app.id(), stopped_at);
    assert_eq!(starts, 1, "the container was started {starts} times");
    let n: usize = attempts
        .iter()
        .filter(|(k, _)| k.contains(app.name()))
        .map(|(_, n)| *n)
        .sum();
    assert_eq!(
        n,
        1,
        "container {}: {n} attempts: {attempts:#?}",
        app.name()
    );
    let interrupted = rows
        .iter()
        .filter(|a| {
            a["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("not run again")
        })
        .count();
    let taken = rows.iter().filter(|a| a["result"] == "taken_over").count();
    println!("storm: {interrupted} interrupted action(s) verified by another replica, {taken} takeover(s) audited");

    // The escalation: never posted by two replicas for one resend.
    // The firing posts (a resolving one carries an end in the past or now).
    let posts: Vec<Instant> = sink
        .bodies("/api/v2/alerts")
        .into_iter()
        .filter(|(body, _)| {
            body.as_array().is_some_and(|alerts| {
                alerts.iter().any(|a| {
                    a["labels"]["alertname"] == "StackmedicRemediationFailed"
                        && a["endsAt"]
                            .as_str()
                            .and_then(stackmedic_tests::remediator::unix_seconds)
                            .is_some_and(|e| e > stackmedic_tests::remediator::unix_now())
                })
            })
        })
        .map(|(_, at)| at)
        .collect();
    assert!(posts.len() >= 2, "{} escalation posts", posts.len());
    let mut firing: Vec<Instant> = posts.clone();
    firing.sort();
    for pair in firing.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(1500),
            "two escalation posts {gap:?} apart: posted twice for one resend ({} posts)",
            posts.len()
        );
    }
}

/// `storage migrate` from one host's SQLite store into PostgreSQL, as docs/ha.md says to move to
/// a pair: the history, the open incident and its waiting retry are copied, a second copy into
/// the filled store is refused, and a replica started on PostgreSQL shows the same history and
/// runs the retry when it is due (the streams' admin API is the test library's recorder).
#[test]
fn storage_migrate_moves_a_single_store_into_postgresql_and_its_work_goes_on() {
    let pg = Postgres::start();
    let api = AdminApi::start(&[Rule::status("/api/streams/cam-b/restart", 500)]);
    let config = format!(
        "targets:\n- name: camera-app\n  max_attempts: 2\n  backoff: 30s\n  blast_radius: {{enabled: false}}\n  http: {{base_url: '{}'}}\n\
         rules:\n- name: stream-restart\n  matchers: ['alertname=\"HlsPlaylistStale\"']\n  action: http_sequence\n  target: camera-app\n  \
           params: {{stream: {{label: stream, allowed: ['cam-a', 'cam-b']}}}}\n  steps: [{{path: '/api/streams/{{stream}}/restart'}}]\n",
        api.url("/")
    );
    let mut single = Remediator::start(&config);
    for stream in ["cam-a", "cam-b"] {
        single.fire(
            &[("alertname", "HlsPlaylistStale"), ("stream", stream)],
            "2026-12-06T08:00:00Z",
        );
    }
    single.wait_for("succeeded", 1, Duration::from_secs(30));
    single.wait_for("failed", 1, Duration::from_secs(30));
    let before = single.history();
    let incidents = |r: &Remediator| -> Vec<(String, String, i64)> {
        let mut v: Vec<_> = r
            .incidents()
            .iter()
            .map(|i| {
                (
                    i["subject"].as_str().unwrap_or_default().to_string(),
                    i["state"].as_str().unwrap_or_default().to_string(),
                    i["attempts"].as_i64().unwrap_or_default(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let open_before = incidents(&single);
    assert!(
        open_before
            .iter()
            .any(|(s, _, n)| s.contains("cam-b") && *n == 1),
        "{open_before:#?}"
    );
    single.kill9();

    let from = format!("sqlite://{}", single.dir().join("data").display());
    let migrate = |to: &str| {
        std::process::Command::new(stackmedic_tests::bin_path("stackmedic-remediator"))
            .args(["storage", "migrate", "--from", &from, "--to", to])
            .arg(format!(
                "--storage.password-file={}",
                pg.password_file().display()
            ))
            .output()
            .expect("run storage migrate")
    };
    let out = migrate(&pg.url());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "storage migrate failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("copied ") && stdout.contains(" incidents"),
        "{stdout}"
    );
    // The filled store is not written again.
    let again = migrate(&pg.url());
    assert!(
        !again.status.success(),
        "a second copy into a filled store passed"
    );
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");

    // A replica on PostgreSQL: the same history and open incident; the retry runs there.
    let replica = replica(&pg, "pg-1", &config, &[]);
    let ids = |h: &Value| -> Vec<(i64, String)> {
        h["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["id"].as_i64().unwrap(),
                    a["result"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let copied = replica.history();
    for row in ids(&before) {
        assert!(
            ids(&copied).contains(&row),
            "history row {row:?} not copied: {copied:#}"
        );
    }
    assert_eq!(incidents(&replica), open_before);
    let retried = wait_until(Duration::from_secs(90), Duration::from_millis(200), || {
        api.count("/api/streams/cam-b/restart") >= 2
    });
    assert!(
        retried,
        "the copied retry never ran: {:#}",
        replica.history()
    );
    let second = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        replica.actions_with("failed").iter().any(|a| {
            a["replica"] == "pg-1"
                && a["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("attempt 2 of 2"))
        })
    });
    assert!(
        second,
        "attempt 2 is not recorded by the replica: {:#}",
        replica.history()
    );
    assert_eq!(
        api.count("/api/streams/cam-a/restart"),
        1,
        "the healed stream acted again"
    );
}
