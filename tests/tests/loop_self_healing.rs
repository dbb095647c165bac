//! The self-healing loop as shipped: the example set of `examples/README.md` copied with only
//! its documented values changed (addresses and ports, the container's name, the compose file,
//! the access log, the token file), run by real dockerd, Prometheus, Alertmanager,
//! stackmedic-exporter and stackmedic-remediator, each with its copied file and otherwise its
//! defaults. Nothing is shortened: the rules' `for:`, the intervals, Alertmanager's waits and the
//! remediator's backoff are the shipped ones.
//!
//! - Five outages of the watched container in a row, each measured from `docker stop` to the
//!   container running and its page answering 200 (the time to recovery, printed as
//!   `loop: outage N mttr_seconds=… remediator_ms=…`, which `scripts/bench-loop.sh` collects):
//!   one from a healthy stack, one as soon as the remediator recorded the previous heal, one
//!   while the previous restart is still being verified, and two more from a healthy stack.
//!   Nobody touches anything, and on-call is never paged for them.
//! - A blip: the container killed and started again within a second (by the Engine's clock), as a deployment or a restart by hand does: no alert reaches the
//!   remediator and nothing acts (`loop: blip …`).
//! - The unfixable case: the container is removed; `ContainerMissing` fires and the remediator's
//!   `docker compose up -d` cannot bring it back (the compose file does not exist here, and on a
//!   host without the Compose plugin the message says so); after its attempts the remediator
//!   pages on-call through Alertmanager with `StackmedicRemediationFailed`.
//! - A human fixes it (runs the container again): the page resolves at on-call within a minute.
//!
//! The watched container is busybox `httpd` serving a page (Open WebUI's stand-in). The on-call
//! and ticket receivers of the Alertmanager example point at `WebhookSink`, the tests' own
//! fixture, a generic webhook receiver that records what it gets (there is no real pager to
//! run here); the camera app's address points at the admin-API recorder fixture.

use std::time::{Duration, Instant};

use serde_json::Value;
use stackmedic_tests::admin_api::AdminApi;
use stackmedic_tests::docker::{docker, ensure_docker};
use stackmedic_tests::examples::{loop_dir, run_watched, ExampleSet, LoopValues, Ports, Stack};
use stackmedic_tests::remediator::unix_now;
use stackmedic_tests::webhook_sink::WebhookSink;
use stackmedic_tests::{free_port, http, unique_name, wait_until};

/// Pages for `container` (any alert on the pager's path naming it), each with its arrival.
fn pages_for(sink: &WebhookSink, container: &str) -> Vec<(Value, Instant)> {
    sink.alerts("/page")
        .into_iter()
        .filter(|(a, _)| a["labels"]["container"] == container)
        .collect()
}

fn serves(url: &str) -> bool {
    http::get(url).is_ok_and(|r| r.status == 200)
}

fn running(name: &str) -> bool {
    let out = docker(&["inspect", "--format", "{{.State.Running}}", name]);
    String::from_utf8_lossy(&out.stdout).trim() == "true"
}

/// Whether `subject` has no open incident and no job queued or running (known, not just
/// unreadable): the remediator is done with it.
fn settled(stack: &Stack, subject: &str) -> bool {
    let history = stack.history();
    let (Some(open), Some(jobs)) = (
        history["incidents"].as_array(),
        history["pending_jobs"].as_array(),
    ) else {
        return false;
    };
    !open.iter().any(|i| i["subject"] == subject) && !jobs.iter().any(|j| j["subject"] == subject)
}

/// The audit rows of container restarts that started, oldest first.
fn restarts(stack: &Stack) -> Vec<Value> {
    let mut rows: Vec<Value> = stack.history()["actions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["action"] == "container_restart" && a["started_at"].is_number())
        .collect();
    rows.reverse();
    rows
}

/// The Engine's times of a container's last stop and start, as Unix seconds.
fn stop_and_start(name: &str) -> Option<(f64, f64)> {
    let out = docker(&[
        "inspect",
        "--format",
        "{{.State.FinishedAt}} {{.State.StartedAt}}",
        name,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut times = text.split_whitespace().map(|t| {
        humantime::parse_rfc3339_weak(t)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs_f64())
    });
    Some((times.next()??, times.next()??))
}

/// Stops the watched container for about a second (killed, then started again), until the
/// Engine reports a stop of a second at most (a loaded machine may take longer to start it:
/// that try is no blip, and is made again once the stack settled); then waits until Prometheus evaluated the remediation
/// tier on a scrape of the container running again, 5 s after it came back (longer than
/// ContainerDown's 2 s), and asserts that no alert reached the remediator meanwhile. Returns
/// the stop's length by the Engine's clock.
fn blip(stack: &Stack, name: &str, web: &str) -> Duration {
    for _ in 0..5 {
        let rows_before = stack.history()["actions"].as_array().map_or(0, Vec::len);
        let before = unix_now();
        // `docker stop -t 0` returns once the container is stopped (killed at once).
        docker(&["stop", "-t", "0", name]);
        assert!(!running(name), "docker stop did not stop {name}");
        // The blip's length (with `docker start`'s own): the scenario, not a wait for a
        // condition.
        std::thread::sleep(Duration::from_millis(300));
        docker(&["start", name]);
        assert!(
            wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
                running(name) && serves(web)
            }),
            "{name} did not start again"
        );
        let Some((stopped, started)) = stop_and_start(name) else {
            panic!("the Engine reports no stop and start of {name}");
        };
        let down = started - stopped;
        if down > 1.0 {
            // The Engine was slow to start it: an outage of over a second, which may be acted
            // on. Let whatever it caused end before the next try.
            println!("loop: blip of {down:.2} s is longer than a second: again");
            assert!(
                wait_until(Duration::from_secs(120), Duration::from_millis(250), || {
                    settled(stack, &format!("container:{name}"))
                        && stack
                            .rule_groups_evaluated_after("stackmedic-remediation", started + 5.0)
                        && !stack.firing("ContainerDown", "container", name)
                }),
                "the stack did not settle after a slow blip: {:#}",
                stack.history()
            );
            continue;
        }
        // The remediation tier evaluated a scrape of the container running again, well after
        // the moment ContainerDown would have fired for a real outage.
        let evaluated_after = started + 5.0;
        let seen_again = format!(
            "stackmedic_container_running{{container=\"{name}\"}} == 1 and on (instance, job, probe, container) timestamp(stackmedic_container_running{{container=\"{name}\"}}) > {evaluated_after}"
        );
        assert!(
            wait_until(Duration::from_secs(60), Duration::from_millis(250), || {
                stack.query(&seen_again).is_some()
                    && stack.rule_groups_evaluated_after("stackmedic-remediation", evaluated_after)
            }),
            "Prometheus did not see {name} running again after the blip"
        );
        let rows = stack.history()["actions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let new: Vec<&Value> = rows
            .iter()
            .filter(|r| r["accepted_at"].as_f64().is_some_and(|t| t >= before))
            .collect();
        assert!(
            new.is_empty() && rows.len() == rows_before,
            "a blip of {down:.2} s was acted on: {new:#?}"
        );
        assert!(
            !stack.firing("ContainerDown", "container", name),
            "ContainerDown fires for a blip: {:#?}",
            stack.prometheus_alerts()
        );
        return Duration::from_secs_f64(down);
    }
    panic!("the Engine never restarted {name} within a second: no blip could be made");
}

#[test]
fn shipped_loop_heals_five_outages_and_pages_the_unfixable_one() {
    ensure_docker();
    let dir = loop_dir("stackmedic-loop-");
    let d = dir.path();
    let name = unique_name("sm-loop-owui");
    let www = d.join("www");
    std::fs::create_dir(d.join("stack")).unwrap();
    let web_port = free_port();
    let web = format!("http://127.0.0.1:{web_port}/");
    let sink = WebhookSink::start();
    let camera_app = AdminApi::start(&[]);
    let closed = format!("127.0.0.1:{}", free_port());
    let ports = Ports::pick();
    let token_file = d.join("stackmedic-remediator.token");

    // The documented values, and nothing else.
    let mut values = LoopValues {
        container: &name,
        web_port,
        closed: &closed,
        access_log: &d.join("access.log"),
        compose_file: &d.join("stack/docker-compose.yml"),
        camera_app: &camera_app.url("").replace("http://", ""),
        sink_port: sink.port(),
        token_file: &token_file,
    }
    .replacements(&ports);
    values.push((
        "replace-with-a-long-random-token",
        unique_name("loop-token"),
    ));
    let set = ExampleSet::copy(&values);
    // Everything the loop talks to is on this machine now: the files it runs and the per-stack
    // files they include.
    let mut files: Vec<String> = [
        "examples/exporter.yml",
        "examples/remediator.yml",
        "examples/prometheus.yml",
        "alerts/alertmanager.example.yml",
    ]
    .map(str::to_owned)
    .into();
    for folder in ["examples/exporter.d", "examples/remediator.d"] {
        for entry in std::fs::read_dir(set.path(folder)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            files.push(format!("{folder}/{name}"));
        }
    }
    for file in &files {
        let text = set.read(file);
        for outside in ["example.org", "example.ts.net", "192.0.2.", "home.arpa"] {
            let active = text
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .any(|l| l.contains(outside));
            assert!(
                !active,
                "{file} still names {outside} after the documented values changed"
            );
        }
    }

    let container = run_watched(&name, &www, web_port);
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            serves(&web)
        }),
        "the watched container does not serve {web}: {}",
        container.logs()
    );
    let mut stack = Stack::start(&set, ports, &token_file);
    let seen = format!("stackmedic_container_running{{container=\"{name}\"}} == 1");
    assert!(
        wait_until(Duration::from_secs(60), Duration::from_millis(500), || {
            stack.query(&seen).is_some()
        }),
        "Prometheus never saw the container running:\n{}",
        stack.describe()
    );
    let subject = format!("container:{name}");

    // ---- Five outages in a row; nobody touches anything. ----
    // Per outage: `docker stop` issued, back, the time to recovery, and the Engine's stop and
    // start of the container after `docker stop` was issued.
    let mut outages: Vec<(f64, f64, Duration, (f64, f64))> = Vec::new();
    for outage in 1..=5 {
        match outage {
            // Right after the remediator recorded the previous restart as verified (healed).
            2 => assert!(
                wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
                    restarts(&stack).iter().any(|r| {
                        r["result"] == "succeeded"
                            && r["started_at"].as_f64().is_some_and(|s| s >= outages[0].0)
                    })
                }),
                "the first outage's restart was never verified: {:#}",
                stack.history()
            ),
            // Right after the container is back, while the restart is still being verified.
            3 => {}
            // From a healthy stack: the previous incident closed, the alert resolved.
            _ => assert!(
                wait_until(Duration::from_secs(90), Duration::from_millis(250), || {
                    settled(&stack, &subject) && !stack.firing("ContainerDown", "container", &name)
                }),
                "outage {outage}: the previous incident did not close: {:#}",
                stack.history()
            ),
        }
        let stopped = Instant::now();
        let stopped_at = unix_now();
        docker(&["stop", "-t", "1", &name]);
        assert!(!running(&name), "docker stop did not stop {name}");
        let back = wait_until(Duration::from_secs(120), Duration::from_millis(50), || {
            running(&name) && serves(&web)
        });
        let mttr = stopped.elapsed();
        // Where the time went, by the Engine's clock: when the container stopped (busybox as
        // PID 1 ignores SIGTERM, so `docker stop -t 1` kills it after a second) and started.
        let engine = stop_and_start(&name).map_or((f64::NAN, f64::NAN), |(f, s)| {
            (f - stopped_at, s - stopped_at)
        });
        assert!(
            back,
            "outage {outage}: the container is not back after 120 s:\n{:#}\n{}",
            stack.history(),
            stack.describe()
        );
        // A generous bound (the benchmark records the figures): far below the grace period.
        assert!(
            mttr < Duration::from_secs(90),
            "outage {outage} took {mttr:?}"
        );
        outages.push((stopped_at, unix_now(), mttr, engine));
    }
    assert!(
        wait_until(Duration::from_secs(90), Duration::from_millis(250), || {
            settled(&stack, &subject)
        }),
        "the last outage's incident did not close: {:#}",
        stack.history()
    );
    // The remediator's own share of each recovery: from storing the job of the outage's alert to
    // the start of the Docker call. A recovery by a retry (its job stored at the failed attempt
    // before, to run after the backoff) has no share of its own to show.
    let rows = restarts(&stack);
    let mut previous_incident = Value::Null;
    for (n, (stopped_at, back_at, mttr, (engine_stop, engine_start))) in outages.iter().enumerate()
    {
        let row = rows.iter().rev().find(|r| {
            r["started_at"]
                .as_f64()
                .is_some_and(|s| s >= *stopped_at && s <= *back_at)
        });
        let row = row.unwrap_or_else(|| {
            panic!(
                "outage {}: no restart started while it lasted: {rows:#?}",
                n + 1
            )
        });
        let times = row["started_at"].as_f64().zip(row["accepted_at"].as_f64());
        // A restart in the previous outage's incident is its retry after the backoff (the
        // outage began while that restart was being verified): its job was stored at the
        // failed verification, so it has no share of its own to show.
        let retry = row["incident_id"] == previous_incident;
        previous_incident = row["incident_id"].clone();
        let share = times
            .filter(|_| !retry)
            .map_or("retry".to_owned(), |(s, a)| {
                format!("{:.1}", (s - a) * 1000.0)
            });
        let (accepted, started) = times.map_or((f64::NAN, f64::NAN), |(s, a)| {
            (a - stopped_at, s - stopped_at)
        });
        println!(
            "loop: outage {} mttr_seconds={:.2} remediator_ms={share} stopped_after_s={engine_stop:.2} accepted_after_s={accepted:.2} started_after_s={started:.2} running_after_s={engine_start:.2} incident={}",
            n + 1,
            mttr.as_secs_f64(),
            row["incident_id"]
        );
    }
    let pages = pages_for(&sink, &name);
    assert!(
        pages.is_empty(),
        "on-call was paged although the remediator fixed every outage: {pages:#?}"
    );
    let history = stack.history();
    assert!(
        !history["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["alertname"] == "ContainerDown" && a["result"] == "denied"),
        "{history:#}"
    );

    // ---- A blip: the container down for about a second, as a deployment or a restart by
    // hand does. Nothing may act on it. ----
    let blip = blip(&stack, &name, &web);
    println!(
        "loop: blip down_seconds={:.2} actions=0",
        blip.as_secs_f64()
    );

    // ---- The unfixable case: the container is gone and compose cannot bring it back. ----
    drop(container);
    assert!(
        wait_until(Duration::from_secs(60), Duration::from_millis(250), || {
            stack.firing("ContainerMissing", "container", &name)
        }),
        "ContainerMissing did not fire: {:#?}",
        stack.prometheus_alerts()
    );
    let mut page = None;
    assert!(
        wait_until(Duration::from_secs(150), Duration::from_millis(250), || {
            page = pages_for(&sink, &name).into_iter().find(|(a, _)| {
                a["labels"]["alertname"] == "StackmedicRemediationFailed" && a["status"] == "firing"
            });
            page.is_some()
        }),
        "no escalation page reached on-call: {:#}\n{}",
        stack.history(),
        stack.describe()
    );
    let (page, _) = page.unwrap();
    assert_eq!(page["receiver"], "oncall-page");
    assert_eq!(page["labels"]["original_alertname"], "ContainerMissing");
    assert_eq!(page["labels"]["remediation_action"], "compose_up");
    let failed: Vec<Value> = stack.history()["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "compose_up" && a["result"] == "failed")
        .cloned()
        .collect();
    assert_eq!(
        failed.len(),
        3,
        "three attempts before the page: {failed:#?}"
    );
    let detail = failed[0]["detail"].as_str().unwrap_or_default();
    let compose_file = d.join("stack/docker-compose.yml");
    assert!(
        detail.contains(&format!(
            "docker compose -f {} up -d",
            compose_file.display()
        )),
        "the failure shows the real argv: {detail}"
    );
    let plugin = !String::from_utf8_lossy(&docker(&["compose", "version"]).stdout).is_empty();
    if !plugin {
        assert!(
            detail.contains("the docker compose plugin is not installed"),
            "the failure names the cause: {detail}"
        );
    }

    // ---- A human fixes it: the page resolves at on-call within a minute. ----
    let fixed = Instant::now();
    let container = run_watched(&name, &www, web_port);
    let mut resolved_after = None;
    wait_until(Duration::from_secs(90), Duration::from_millis(250), || {
        resolved_after = pages_for(&sink, &name)
            .into_iter()
            .find(|(a, _)| {
                a["labels"]["alertname"] == "StackmedicRemediationFailed"
                    && a["status"] == "resolved"
            })
            .map(|(_, at)| at.saturating_duration_since(fixed));
        resolved_after.is_some()
    });
    let resolved_after = resolved_after.unwrap_or_else(|| {
        panic!(
            "the page did not resolve at on-call: {:#}\n{}",
            stack.history(),
            stack.describe()
        )
    });
    println!(
        "loop: human fix -> page resolved at on-call in {:.1} s",
        resolved_after.as_secs_f64()
    );
    assert!(
        resolved_after <= Duration::from_secs(60),
        "the page resolved {resolved_after:?} after the fix"
    );
    let escalations = stack.history()["escalations"].clone();
    assert!(
        escalations
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["state"] == "resolved" && e["subject"] == format!("container:{name}")),
        "{escalations:#}"
    );
    drop(container);
}
