//! The shipped Alertmanager inhibitions against a real Alertmanager (`alerts/alertmanager.example.yml`
//! with only its documented values changed): with every inhibition's source and target alerts
//! active together, each target is muted for on-call, while every remediation alert — each also
//! matching some source's labels — stays active, reaches the remediator's webhook, and so does
//! its resolve.
//!
//! The remediator's, the pager's and the ticket system's webhooks point at the tests' own
//! fixture, a receiver that records what it gets (the routing and inhibiting under test are
//! Alertmanager's own).

use std::time::Duration;

use serde_json::{json, Value};
use stackmedic_tests::alertmanager::Alertmanager;
use stackmedic_tests::examples::ExampleSet;
use stackmedic_tests::remediator::{rfc3339, unix_now};
use stackmedic_tests::wait_until;
use stackmedic_tests::webhook_sink::WebhookSink;

/// (alertname, status) of the alerts delivered on `path`.
fn delivered(sink: &WebhookSink, path: &str) -> Vec<(String, String)> {
    sink.alerts(path)
        .into_iter()
        .map(|(a, _)| {
            (
                a["labels"]["alertname"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                a["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn alert(labels: &[(&str, &str)], ends_at: Option<f64>) -> Value {
    let mut l: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    l.insert("instance".into(), json!("host:8790"));
    l.insert("job".into(), json!("stackmedic-exporter"));
    // Starting now: Alertmanager flushes a group at once, without its group_wait, when its alert
    // started longer than group_wait ago, and then races its inhibitor's view of the sources.
    // A resolve (ends_at given) starts before it ends: Alertmanager refuses an alert whose
    // start is after its end, and "now" read here is later than the caller's end time.
    let now = unix_now();
    let starts = ends_at.map_or(now, |t| now.min(t - 1.0));
    let mut a = json!({"labels": l, "startsAt": rfc3339(starts)});
    if let Some(t) = ends_at {
        a["endsAt"] = json!(rfc3339(t));
    }
    a
}

/// The remediation tier, as alerts/stackmedic.rules.yml labels it.
const REMEDIATION: &[&[(&str, &str)]] = &[
    &[
        ("alertname", "ContainerDown"),
        ("severity", "info"),
        ("remediation", "container_restart"),
        ("probe", "containers"),
        ("container", "owui"),
    ],
    &[
        ("alertname", "ContainerMissing"),
        ("severity", "info"),
        ("remediation", "compose_up"),
        ("probe", "containers"),
        ("container", "cloudflared"),
    ],
    &[
        ("alertname", "ContainerUnhealthy"),
        ("severity", "info"),
        ("remediation", "container_restart"),
        ("probe", "containers"),
        ("container", "leitstand"),
        ("status", "unhealthy"),
    ],
    &[
        ("alertname", "HlsPlaylistStale"),
        ("severity", "info"),
        ("remediation", "stream_restart"),
        ("probe", "cam-entrance"),
        ("stream", "cam-entrance"),
    ],
    &[
        ("alertname", "PlcAdsNoRoute"),
        ("severity", "info"),
        ("remediation", "ads_route_add"),
        ("probe", "plc-line1"),
        ("plc", "plc-line1"),
    ],
    &[
        ("alertname", "StreamUnhealthy"),
        ("severity", "info"),
        ("remediation", "stream_restart"),
        ("probe", "camera-streams"),
        ("stream", "cam-yard"),
    ],
    &[
        ("alertname", "RingWebrtcStuck"),
        ("severity", "info"),
        ("remediation", "webrtc_restart"),
        ("probe", "camera-streams"),
        ("camera", "front-door"),
    ],
    &[
        ("alertname", "CameraDaemonUnhealthy"),
        ("severity", "info"),
        ("remediation", "daemon_restart"),
        ("probe", "camera-system"),
    ],
];

/// Sources of the inhibitions besides ContainerDown (a remediation alert itself).
const SOURCES: &[&[(&str, &str)]] = &[
    &[
        ("alertname", "DockerEngineDown"),
        ("severity", "page"),
        ("probe", "containers"),
    ],
    &[
        ("alertname", "EdgeUpstreamDown"),
        ("severity", "page"),
        ("probe", "backend-edge"),
    ],
    &[
        ("alertname", "StackmedicRemediationFailed"),
        ("severity", "page"),
        ("original_alertname", "ContainerDown"),
        ("remediation", "container_restart"),
        ("remediation_target", "owui"),
        ("probe", "containers"),
        ("container", "owui"),
    ],
];

/// Targets, each muted by one of the shipped inhibitions.
const TARGETS: &[&[(&str, &str)]] = &[
    // ContainerDown explains the exporter's readiness alerts.
    &[
        ("alertname", "EndpointDown"),
        ("severity", "page"),
        ("probe", "backend-ready"),
    ],
    // The edge's 52x explains the same probe failing.
    &[
        ("alertname", "EndpointDown"),
        ("severity", "page"),
        ("probe", "backend-edge"),
    ],
    // The engine down, and the escalation, explain the paging tier's container alert.
    &[
        ("alertname", "ContainerDownPersistent"),
        ("severity", "page"),
        ("probe", "containers"),
        ("container", "owui"),
    ],
    &[
        ("alertname", "ContainerRestarting"),
        ("severity", "ticket"),
        ("probe", "containers"),
        ("container", "owui"),
    ],
    // A specific page on a probe says more than "probe failing".
    &[
        ("alertname", "StackmedicProbeFailing"),
        ("severity", "warning"),
        ("probe", "containers"),
        ("kind", "docker"),
    ],
];

#[test]
fn shipped_inhibitions_mute_targets_but_nothing_the_remediator_needs() {
    let sink = WebhookSink::start();
    let port = sink.port();
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "inhibition-test-token\n").unwrap();
    let set = ExampleSet::copy(&[
        ("127.0.0.1:8791", format!("127.0.0.1:{port}")),
        ("127.0.0.1:9095", format!("127.0.0.1:{port}")),
        (
            "/etc/prometheus/stackmedic-remediator.token",
            token.path().display().to_string(),
        ),
    ]);
    let am = Alertmanager::start(&set.read("alerts/alertmanager.example.yml"));

    let all: Vec<Value> = REMEDIATION
        .iter()
        .chain(SOURCES)
        .chain(TARGETS)
        .map(|l| alert(l, None))
        .collect();
    am.post_alerts(&json!(all)).unwrap();

    let state_of = |labels: &[(&str, &str)]| -> Option<(String, usize)> {
        am.alerts().ok()?.as_array()?.iter().find_map(|a| {
            labels.iter().all(|(k, v)| a["labels"][*k] == *v).then(|| {
                (
                    a["status"]["state"].as_str().unwrap_or_default().to_owned(),
                    a["status"]["inhibitedBy"].as_array().map_or(0, Vec::len),
                )
            })
        })
    };
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
            TARGETS
                .iter()
                .all(|t| state_of(t).is_some_and(|(s, by)| s == "suppressed" && by > 0))
        }),
        "not every target is inhibited: {:#}",
        am.alerts().unwrap_or_default()
    );
    for r in REMEDIATION {
        let state = state_of(r);
        assert_eq!(
            state.as_ref().map(|(s, by)| (s.as_str(), *by)),
            Some(("active", 0)),
            "a remediation alert is muted: {r:?}"
        );
    }
    // Every remediation alert reaches the remediator's webhook at once (group_wait 0s).
    assert!(
        wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
            let d = delivered(&sink, "/webhook");
            REMEDIATION
                .iter()
                .all(|r| d.contains(&(r[0].1.to_owned(), "firing".to_owned())))
        }),
        "remediation alerts did not reach the remediator: {:?}",
        delivered(&sink, "/webhook")
    );
    // Past the paging route's group_wait (30 s): the muted targets never reached on-call or
    // the tickets, while the escalation did.
    std::thread::sleep(Duration::from_secs(40));
    let pages = delivered(&sink, "/page");
    let tickets = delivered(&sink, "/ticket");
    for t in TARGETS {
        let name = t[0].1;
        assert!(
            !pages.iter().chain(&tickets).any(|(n, _)| n == name),
            "{name} was delivered although inhibited: pages {pages:?} tickets {tickets:?}\n{:?}",
            am.alerts()
                .unwrap_or_default()
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|a| format!(
                    "{} {} {} {}",
                    a["labels"]["alertname"], a["status"]["state"], a["startsAt"], a["endsAt"]
                ))
                .collect::<Vec<_>>()
        );
    }
    assert!(
        pages
            .iter()
            .any(|(n, _)| n == "StackmedicRemediationFailed"),
        "{pages:?}"
    );
    assert!(
        !delivered(&sink, "/webhook")
            .iter()
            .any(|(n, _)| n == "StackmedicRemediationFailed"),
        "the escalation went back to the remediator"
    );

    // Their resolves reach the remediator too, with every source still active.
    let resolved: Vec<Value> = REMEDIATION
        .iter()
        .map(|l| alert(l, Some(unix_now())))
        .collect();
    am.post_alerts(&json!(resolved)).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            let d = delivered(&sink, "/webhook");
            REMEDIATION
                .iter()
                .all(|r| d.contains(&(r[0].1.to_owned(), "resolved".to_owned())))
        }),
        "resolves did not reach the remediator: {:?}",
        delivered(&sink, "/webhook")
    );
}

/// One remediable alert's subjects: its labels as the remediation tier yields them for the
/// subject the remediator escalated and for another subject of the same kind (`None` where
/// the kind has one subject only), the name of its `...Persistent` twin and the twin's severity.
struct Cause {
    alert: &'static [(&'static str, &'static str)],
    other: Option<&'static [(&'static str, &'static str)]>,
    twin: &'static str,
    twin_severity: &'static str,
}

/// Every remediable alert of the shipped set with a `...Persistent` twin. Two subjects of one
/// probe where the kind allows it (containers of one docker probe, streams and Ring cameras of
/// the app's one json probe), so that only the subject label tells them apart.
const CAUSES: &[Cause] = &[
    Cause {
        alert: &[
            ("alertname", "ContainerDown"),
            ("remediation", "container_restart"),
            ("probe", "owui-containers"),
            ("container", "owui"),
        ],
        other: Some(&[
            ("alertname", "ContainerDown"),
            ("remediation", "container_restart"),
            ("probe", "owui-containers"),
            ("container", "owui-pipelines"),
        ]),
        twin: "ContainerDownPersistent",
        twin_severity: "page",
    },
    Cause {
        alert: &[
            ("alertname", "ContainerMissing"),
            ("remediation", "compose_up"),
            ("probe", "owui-containers"),
            ("container", "owui"),
        ],
        other: Some(&[
            ("alertname", "ContainerMissing"),
            ("remediation", "compose_up"),
            ("probe", "owui-containers"),
            ("container", "owui-pipelines"),
        ]),
        twin: "ContainerMissingPersistent",
        twin_severity: "page",
    },
    Cause {
        alert: &[
            ("alertname", "ContainerUnhealthy"),
            ("remediation", "container_restart"),
            ("probe", "owui-containers"),
            ("container", "owui"),
            ("status", "unhealthy"),
        ],
        other: Some(&[
            ("alertname", "ContainerUnhealthy"),
            ("remediation", "container_restart"),
            ("probe", "owui-containers"),
            ("container", "owui-pipelines"),
            ("status", "unhealthy"),
        ]),
        twin: "ContainerUnhealthyPersistent",
        twin_severity: "ticket",
    },
    Cause {
        alert: &[
            ("alertname", "HlsPlaylistStale"),
            ("remediation", "stream_restart"),
            ("probe", "cam-entrance"),
            ("stream", "cam-entrance"),
        ],
        other: Some(&[
            ("alertname", "HlsPlaylistStale"),
            ("remediation", "stream_restart"),
            ("probe", "cam-yard"),
            ("stream", "cam-yard"),
        ]),
        twin: "HlsPlaylistStalePersistent",
        twin_severity: "ticket",
    },
    Cause {
        alert: &[
            ("alertname", "StreamUnhealthy"),
            ("remediation", "stream_restart"),
            ("probe", "camera-streams"),
            ("element", "cam-entrance"),
            ("field", "healthy"),
            ("stream", "cam-entrance"),
        ],
        other: Some(&[
            ("alertname", "StreamUnhealthy"),
            ("remediation", "stream_restart"),
            ("probe", "camera-streams"),
            ("element", "cam-yard"),
            ("field", "healthy"),
            ("stream", "cam-yard"),
        ]),
        twin: "StreamUnhealthyPersistent",
        twin_severity: "ticket",
    },
    Cause {
        alert: &[
            ("alertname", "RingWebrtcStuck"),
            ("remediation", "webrtc_restart"),
            ("probe", "camera-streams"),
            ("element", "front-door"),
            ("field", "webrtc_connecting"),
            ("camera", "front-door"),
        ],
        other: Some(&[
            ("alertname", "RingWebrtcStuck"),
            ("remediation", "webrtc_restart"),
            ("probe", "camera-streams"),
            ("element", "garage"),
            ("field", "webrtc_connecting"),
            ("camera", "garage"),
        ]),
        twin: "RingWebrtcStuckPersistent",
        twin_severity: "ticket",
    },
    Cause {
        alert: &[
            ("alertname", "PlcAdsNoRoute"),
            ("remediation", "ads_route_add"),
            ("probe", "plc-line1"),
            ("plc", "plc-line1"),
        ],
        other: Some(&[
            ("alertname", "PlcAdsNoRoute"),
            ("remediation", "ads_route_add"),
            ("probe", "plc-line2"),
            ("plc", "plc-line2"),
        ]),
        twin: "PlcAdsNoRoutePersistent",
        twin_severity: "page",
    },
    Cause {
        alert: &[
            ("alertname", "CameraDaemonUnhealthy"),
            ("remediation", "daemon_restart"),
            ("probe", "camera-system"),
            ("field", "daemon_healthy"),
        ],
        other: None,
        twin: "CameraDaemonUnhealthyPersistent",
        twin_severity: "ticket",
    },
];

/// The `...Persistent` twin of a remediation alert: the same series, its own name and
/// severity, no `remediation` label.
fn twin(cause: &Cause, labels: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = labels
        .iter()
        .filter(|(k, _)| *k != "remediation" && *k != "alertname")
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    out.push(("alertname".into(), cause.twin.into()));
    out.push(("severity".into(), cause.twin_severity.into()));
    out
}

/// The escalation the remediator posts when it gives up on an alert with `labels`
/// (remediator/src/escalation.rs): the alert's labels, its name moved to `original_alertname`,
/// severity page, the rule, target and action, and the example's `escalation.labels`.
fn escalation(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = labels
        .iter()
        .filter(|(k, _)| *k != "alertname")
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let original = labels.iter().find(|(k, _)| *k == "alertname").unwrap().1;
    let action = labels.iter().find(|(k, _)| *k == "remediation").unwrap().1;
    out.extend([
        ("alertname".into(), "StackmedicRemediationFailed".into()),
        ("severity".into(), "page".into()),
        ("original_alertname".into(), original.into()),
        ("remediation_rule".into(), "the-rule".into()),
        ("remediation_target".into(), "the-target".into()),
        ("remediation_action".into(), action.into()),
        ("team".into(), "ops".into()),
    ]);
    out
}

fn owned_alert(labels: &[(String, String)]) -> Value {
    let borrowed: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    alert(&borrowed, None)
}

/// One page per cause: while the remediator's escalation of a subject fires, the
/// `...Persistent` twin of the same subject is muted and never reaches on-call or the tickets,
/// while the twin of another subject of the same kind (same probe where the kind allows) still
/// does.
#[test]
fn an_escalation_mutes_its_subjects_persistent_twin_and_no_other() {
    let sink = WebhookSink::start();
    let port = sink.port();
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "inhibition-test-token\n").unwrap();
    let set = ExampleSet::copy(&[
        ("127.0.0.1:8791", format!("127.0.0.1:{port}")),
        ("127.0.0.1:9095", format!("127.0.0.1:{port}")),
        (
            "/etc/prometheus/stackmedic-remediator.token",
            token.path().display().to_string(),
        ),
    ]);
    let am = Alertmanager::start(&set.read("alerts/alertmanager.example.yml"));

    let mut posted = Vec::new();
    let mut muted = Vec::new();
    let mut paging = Vec::new();
    for cause in CAUSES {
        posted.push(owned_alert(&escalation(cause.alert)));
        let own = twin(cause, cause.alert);
        posted.push(owned_alert(&own));
        muted.push(own);
        if let Some(other) = cause.other {
            let theirs = twin(cause, other);
            posted.push(owned_alert(&theirs));
            paging.push(theirs);
        }
    }
    am.post_alerts(&json!(posted)).unwrap();

    let state_of = |labels: &[(String, String)]| -> Option<(String, usize)> {
        am.alerts().ok()?.as_array()?.iter().find_map(|a| {
            labels.iter().all(|(k, v)| a["labels"][k] == *v).then(|| {
                (
                    a["status"]["state"].as_str().unwrap_or_default().to_owned(),
                    a["status"]["inhibitedBy"].as_array().map_or(0, Vec::len),
                )
            })
        })
    };
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
            muted
                .iter()
                .all(|t| state_of(t).is_some_and(|(s, by)| s == "suppressed" && by > 0))
        }),
        "not every escalated subject's twin is muted: {:#}",
        am.alerts().unwrap_or_default()
    );
    for other in &paging {
        assert_eq!(
            state_of(other),
            Some(("active".to_owned(), 0)),
            "another subject's twin is muted: {other:?}"
        );
    }

    // Past the paging and ticket routes' group_wait (30 s): each escalation paged, no muted twin
    // reached anyone, every other subject's twin did.
    let seen = |labels: &[(String, String)], path: &str| {
        sink.alerts(path)
            .iter()
            .any(|(a, _)| labels.iter().all(|(k, v)| a["labels"][k] == *v))
    };
    assert!(
        wait_until(Duration::from_secs(60), Duration::from_millis(250), || {
            paging
                .iter()
                .all(|t| seen(t, "/page") || seen(t, "/ticket"))
        }),
        "another subject's twin did not reach on-call or the tickets: pages {:?} tickets {:?}",
        delivered(&sink, "/page"),
        delivered(&sink, "/ticket")
    );
    for t in &muted {
        assert!(
            !seen(t, "/page") && !seen(t, "/ticket"),
            "{t:?} reached a human although its subject's escalation fires"
        );
    }
    let escalations = sink
        .alerts("/page")
        .iter()
        .filter(|(a, _)| a["labels"]["alertname"] == "StackmedicRemediationFailed")
        .count();
    assert_eq!(escalations, CAUSES.len(), "{:?}", delivered(&sink, "/page"));
}
