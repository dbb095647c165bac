//! The incident model through the store API, step by step as the pipeline drives it: an
//! attempt counts when it starts (so after a crash a decided job runs once and a started one is
//! verified), failed attempts are retried at their stored time with backoff and then escalate,
//! alerts of an open incident join it, a new outage after a heal supersedes it, a flapping
//! subject escalates without acting and a new outage joins its page, and incidents end when
//! their alerts resolve.

mod common;

use common::{accept, attempt, decide, escalated, new_job, policy, NOW};
use stackmedic_remediator::incident::{Decision, Why};
use stackmedic_remediator::open_store;
use stackmedic_remediator::store::{Batch, Outcome, OverviewLimits, Store};
use stackmedic_remediator::vocab::{CloseReason, IncidentState};

const START: &str = "2026-11-22T10:00:00Z";
/// A start after NOW (2027-01-15T08:00:00Z).
const LATER: &str = "2027-01-15T09:00:00Z";

async fn results(store: &Store) -> Vec<(Option<i64>, String)> {
    let o = store
        .overview(
            OverviewLimits {
                actions: 1000,
                before: None,
                closed_incidents: 10,
                escalations: 10,
            },
            NOW,
        )
        .await
        .unwrap();
    let mut r: Vec<(Option<i64>, String)> = o
        .actions
        .into_iter()
        .map(|a| (a.job_id, a.result))
        .collect();
    r.reverse();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_counts_when_it_starts_so_a_crash_loses_no_decided_job() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = {
        let store = open_store(dir.path()).unwrap();
        let p = policy(3);
        let a = accept(&store, new_job("a", START), NOW).await;
        let mut b = new_job("b", START);
        b.subject = "t/other".into();
        let b = accept(&store, b, NOW).await;
        assert!(matches!(
            decide(&store, &a, p, NOW).await,
            Decision::Act { attempt: 1, .. }
        ));
        let d = store
            .decide(
                stackmedic_remediator::store::DecideInput {
                    job: b.clone(),
                    subject: "t/other".into(),
                    selection: b.new.selection.clone(),
                    cond: common::cond(p),
                },
                NOW,
            )
            .await
            .unwrap();
        assert!(matches!(d, Decision::Act { attempt: 1, .. }), "{d:?}");
        // a's action starts; b is decided but waits for the global limit when the process dies.
        assert!(matches!(
            store
                .start(a.clone(), common::cond(common::policy(3)), NOW + 1.0)
                .await
                .unwrap(),
            stackmedic_remediator::store::Start::Started {
                attempt: 1,
                max_attempts: 3
            }
        ));
        (a, b)
    };
    let store = open_store(dir.path()).unwrap();
    let resumed = store.resume().await.unwrap();
    let ids: Vec<(i64, bool)> = resumed
        .jobs
        .iter()
        .map(|j| (j.id, j.started_at.is_some()))
        .collect();
    assert_eq!(
        ids,
        vec![(a.id, true), (b.id, false)],
        "a is verified, b runs"
    );
    // b is decided again: still its incident's first attempt, never skipped.
    let d = store
        .decide(
            stackmedic_remediator::store::DecideInput {
                job: resumed.jobs[1].clone(),
                subject: "t/other".into(),
                selection: b.new.selection.clone(),
                cond: common::cond(policy(3)),
            },
            NOW + 2.0,
        )
        .await
        .unwrap();
    assert!(matches!(d, Decision::Act { attempt: 1, .. }), "{d:?}");
    // a finishes by verification only: its attempt was counted once.
    let f = store
        .finish(
            stackmedic_remediator::store::FinishInput {
                job: resumed.jobs[0].clone(),
                outcome: Outcome::Succeeded,
                detail: "verified".into(),
                duration: 0.5,
                cond: common::cond(policy(3)),
            },
            NOW + 3.0,
        )
        .await
        .unwrap();
    assert_eq!(f.state, Some(IncidentState::Healed));
    let rows = results(&store).await;
    assert_eq!(
        rows,
        vec![(Some(a.id), "succeeded".to_string())],
        "{rows:?}"
    );
    let o = store
        .overview(
            OverviewLimits {
                actions: 10,
                before: None,
                closed_incidents: 0,
                escalations: 0,
            },
            NOW + 3.0,
        )
        .await
        .unwrap();
    let inc = o.incidents.iter().find(|i| i.subject == "t/ghost").unwrap();
    assert_eq!((inc.state, inc.attempts), (IncidentState::Healed, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_retried_at_their_stored_time_then_escalated() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    let p = policy(3);
    let job = accept(&store, new_job("f", START), NOW).await;
    assert!(matches!(
        decide(&store, &job, p, NOW).await,
        Decision::Act { attempt: 1, .. }
    ));
    let f = attempt(&store, &job, Outcome::Failed, p, NOW).await;
    assert_eq!(f.state, Some(IncidentState::Waiting));
    let retry = f.retry.expect("a next attempt is stored");
    assert!(retry.retry);
    assert_eq!(retry.new.not_before, NOW + 10.0);
    // A re-send of the same alert is a duplicate; another alert of the subject joins.
    let again = store
        .accept(
            Batch {
                jobs: vec![new_job("f", START)],
                ..Batch::default()
            },
            NOW + 1.0,
        )
        .await
        .unwrap();
    assert_eq!((again.queued.len(), again.duplicates), (0, 1));
    let other = accept(&store, new_job("g", START), NOW + 2.0).await;
    match decide(&store, &other, p, NOW + 2.0).await {
        Decision::Joined {
            state,
            next_attempt_at,
            ..
        } => {
            assert_eq!(
                (state, next_attempt_at),
                (IncidentState::Waiting, Some(NOW + 10.0))
            );
        }
        d => panic!("{d:?}"),
    }
    // The stored next attempt runs at its time: attempt 2, backoff doubled.
    assert!(matches!(
        decide(&store, &retry, p, NOW + 10.0).await,
        Decision::Act { attempt: 2, .. }
    ));
    let f = attempt(&store, &retry, Outcome::Failed, p, NOW + 11.0).await;
    let retry = f.retry.unwrap();
    assert_eq!(retry.new.not_before, NOW + 31.0);
    assert!(matches!(
        decide(&store, &retry, p, NOW + 31.0).await,
        Decision::Act { attempt: 3, .. }
    ));
    let f = attempt(&store, &retry, Outcome::Failed, p, NOW + 32.0).await;
    assert_eq!(f.state, Some(IncidentState::Escalated));
    assert!(f.retry.is_none());
    assert_eq!(store.due_escalations(NOW + 32.0).await.unwrap().len(), 1);
    let rows: Vec<String> = results(&store).await.into_iter().map(|(_, r)| r).collect();
    assert_eq!(
        rows,
        ["failed", "joined", "failed", "failed", "escalated"],
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolve_ends_a_waiting_incident_at_its_next_attempt_unless_the_alert_fires_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    let p = policy(3);
    let job = accept(&store, new_job("w", START), NOW).await;
    decide(&store, &job, p, NOW).await;
    let retry = attempt(&store, &job, Outcome::Failed, p, NOW)
        .await
        .retry
        .unwrap();
    // The alert resolves while the next attempt waits (a crash loop's alert does, for a moment,
    // after each restart): the incident stays, its attempt stored.
    let r = store
        .accept(
            Batch {
                resolved: vec![common::resolved("w", START)],
                ..Batch::default()
            },
            NOW + 5.0,
        )
        .await
        .unwrap()
        .resolution;
    assert!(r.cancelled.is_empty() && r.closed.is_empty(), "{r:?}");
    // No alert fired again by the attempt's time: the outage ended, nothing is executed.
    assert!(matches!(
        decide(&store, &retry, p, NOW + 10.0).await,
        Decision::Cancelled { .. }
    ));
    let rows: Vec<String> = results(&store).await.into_iter().map(|(_, r)| r).collect();
    assert_eq!(rows, ["failed", "cancelled", "resolved"], "{rows:?}");

    // The same, but the alert fires again (a new occurrence) before the attempt's time: it joins
    // the incident, and the attempt runs, as attempt 2 of the same incident.
    let job = accept(&store, new_job("x", START), NOW + 20.0).await;
    decide(&store, &job, p, NOW + 20.0).await;
    let retry = attempt(&store, &job, Outcome::Failed, p, NOW + 20.0)
        .await
        .retry
        .unwrap();
    store
        .accept(
            Batch {
                resolved: vec![common::resolved("x", START)],
                ..Batch::default()
            },
            NOW + 21.0,
        )
        .await
        .unwrap();
    let again = accept(&store, new_job("x", LATER), NOW + 22.0).await;
    assert!(matches!(
        decide(&store, &again, p, NOW + 22.0).await,
        Decision::Joined {
            state: IncidentState::Waiting,
            ..
        }
    ));
    assert!(matches!(
        decide(&store, &retry, p, NOW + 30.0).await,
        Decision::Act { attempt: 2, .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healed_incidents_join_slow_alerts_supersede_on_a_new_outage_and_flapping_escalates() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    let p = policy(3);
    // Outage 1: healed.
    let one = accept(&store, new_job("o1", START), NOW).await;
    decide(&store, &one, p, NOW).await;
    assert_eq!(
        attempt(&store, &one, Outcome::Succeeded, p, NOW)
            .await
            .state,
        Some(IncidentState::Healed)
    );
    // A slower alert of the same outage (it started before the heal) joins.
    let slow = accept(&store, new_job("slow", START), NOW + 1.0).await;
    assert!(matches!(
        decide(&store, &slow, p, NOW + 1.0).await,
        Decision::Joined {
            state: IncidentState::Healed,
            ..
        }
    ));
    // Outage 2 began after the heal: a new incident acts; the healed one is superseded.
    let two = accept(&store, new_job("o2", LATER), NOW + 2.0).await;
    assert!(matches!(
        decide(&store, &two, p, NOW + 2.0).await,
        Decision::Act { attempt: 1, .. }
    ));
    attempt(&store, &two, Outcome::Succeeded, p, NOW + 3.0).await;
    // Outage 3: two incidents healed within the window: flapping, escalated without acting.
    let three = accept(&store, new_job("o3", "2027-01-15T10:00:00Z"), NOW + 4.0).await;
    let d = decide(&store, &three, p, NOW + 4.0).await;
    assert!(
        matches!(
            d,
            Decision::Escalated {
                why: Why::Flapping { healed: 2 },
                ..
            }
        ),
        "{d:?}"
    );
    assert_eq!(store.due_escalations(NOW + 4.0).await.unwrap().len(), 1);
    // A new outage while escalated joins the page: no action, the page lists both alerts.
    let four = accept(&store, new_job("o4", "2027-01-15T11:00:00Z"), NOW + 5.0).await;
    assert!(matches!(
        decide(&store, &four, p, NOW + 5.0).await,
        Decision::JoinedEscalated { .. }
    ));
    let due = store.due_escalations(NOW + 5.0).await.unwrap();
    assert_eq!(due.len(), 1, "still one page");
    let alerts = due[0].payload[0]["annotations"]["alerts"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        alerts.contains("2027-01-15T10:00:00Z") && alerts.contains("2027-01-15T11:00:00Z"),
        "{alerts}"
    );
    // Alerts of the incident resolve one by one: the page stays active while one fires.
    for (fp, start) in [
        ("o3", "2027-01-15T10:00:00Z"),
        ("o1", START),
        ("slow", START),
        ("o2", LATER),
    ] {
        let r = store
            .accept(
                Batch {
                    resolved: vec![common::resolved(fp, start)],
                    ..Batch::default()
                },
                NOW + 6.0,
            )
            .await
            .unwrap()
            .resolution;
        assert!(
            r.closed.is_empty() && r.escalations_resolving == 0,
            "{fp}: {r:?}"
        );
    }
    // The last one resolves: the incident closes and its page resolves.
    let r = store
        .accept(
            Batch {
                resolved: vec![common::resolved("o4", "2027-01-15T11:00:00Z")],
                ..Batch::default()
            },
            NOW + 7.0,
        )
        .await
        .unwrap()
        .resolution;
    assert_eq!((r.closed.len(), r.escalations_resolving), (1, 1));
    let rows: Vec<String> = results(&store).await.into_iter().map(|(_, r)| r).collect();
    assert_eq!(
        rows,
        [
            "succeeded",
            "joined",
            "resolved",
            "succeeded",
            "resolved",
            "escalated",
            "skipped_flapping",
            "skipped_escalated",
            "resolved"
        ],
        "{rows:?}"
    );
    let o = store
        .overview(
            OverviewLimits {
                actions: 10,
                before: None,
                closed_incidents: 10,
                escalations: 10,
            },
            NOW + 8.0,
        )
        .await
        .unwrap();
    let reasons: Vec<Option<CloseReason>> =
        o.recent_incidents.iter().map(|i| i.close_reason).collect();
    assert_eq!(
        reasons,
        [
            Some(CloseReason::AlertResolved),
            Some(CloseReason::Superseded),
            Some(CloseReason::Superseded)
        ]
    );
    assert!(o.incidents.is_empty(), "{o:#?}");
    assert_eq!(
        o.recent_incidents[0].alerts.len(),
        5,
        "the outages' alerts moved to the new incident"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_found_late_escalates_its_incident_and_keeps_its_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    let p = policy(3);
    let job = accept(&store, new_job("x", START), NOW).await;
    decide(&store, &job, p, NOW).await;
    let retry = attempt(&store, &job, Outcome::Failed, p, NOW)
        .await
        .retry
        .unwrap();
    let resumed = store.resume().await.unwrap();
    assert_eq!(resumed.jobs.len(), 1);
    // Found longer than resume_max_age (900 s) after it was due: not run blindly, paged.
    let d = decide(&store, &resumed.jobs[0], p, retry.new.not_before + 901.0).await;
    assert!(
        matches!(d, Decision::Escalated { why: Why::Late, .. }),
        "{d:?}"
    );
    assert_eq!(store.due_escalations(NOW + 1000.0).await.unwrap().len(), 1);
    // Alertmanager sends the alert again: a duplicate; the incident keeps its attempt.
    let again = store
        .accept(
            Batch {
                jobs: vec![new_job("x", START)],
                ..Batch::default()
            },
            NOW + 1000.0,
        )
        .await
        .unwrap();
    assert_eq!((again.queued.len(), again.duplicates), (0, 1));
    let o = store
        .overview(
            OverviewLimits {
                actions: 10,
                before: None,
                closed_incidents: 10,
                escalations: 10,
            },
            NOW + 1000.0,
        )
        .await
        .unwrap();
    let i = &o.incidents[0];
    assert_eq!(
        (i.state, i.attempts, i.page_active),
        (IncidentState::Escalated, 1, true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_one_open_incident_per_subject() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    escalated(&store, "e1", START, NOW).await;
    let second = accept(&store, new_job("e2", START), NOW + 1.0).await;
    assert!(matches!(
        decide(&store, &second, policy(1), NOW + 1.0).await,
        Decision::JoinedEscalated { .. }
    ));
    let o = store
        .overview(
            OverviewLimits {
                actions: 10,
                before: None,
                closed_incidents: 10,
                escalations: 10,
            },
            NOW + 2.0,
        )
        .await
        .unwrap();
    assert_eq!(o.incidents.len(), 1, "{o:#?}");
    let i = &o.incidents[0];
    assert_eq!(
        (i.state, i.attempts, i.max_attempts, i.page_active),
        (IncidentState::Escalated, 1, 1, true)
    );
    assert_eq!(i.alerts.len(), 2);
    assert_eq!(i.flapping.count, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heal_verified_after_its_alert_resolved_counts_for_flapping() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    let p = policy(3);
    // Twice: the action starts, its alert resolves while the outcome is verified (the subject
    // is back, so the alert goes), then the verification passes: healed and closed.
    for (fp, start, t) in [("r1", START, NOW), ("r2", LATER, NOW + 10.0)] {
        let job = accept(&store, new_job(fp, start), t).await;
        decide(&store, &job, p, t).await;
        let s = store
            .start(job.clone(), common::cond(common::policy(3)), t)
            .await
            .unwrap();
        assert!(
            matches!(s, stackmedic_remediator::store::Start::Started { .. }),
            "{s:?}"
        );
        let closed = store
            .accept(
                Batch {
                    resolved: vec![common::resolved(fp, start)],
                    ..Batch::default()
                },
                t + 1.0,
            )
            .await
            .unwrap()
            .resolution
            .closed;
        assert!(
            closed.is_empty(),
            "the attempt in progress decides; the resolve does not close the incident"
        );
        store
            .finish(
                stackmedic_remediator::store::FinishInput {
                    job: job.clone(),
                    outcome: Outcome::Succeeded,
                    detail: "verified".into(),
                    duration: 1.0,
                    cond: common::cond(p),
                },
                t + 5.0,
            )
            .await
            .unwrap();
    }
    // The next outage: two heals within the window make the subject flapping.
    let three = accept(&store, new_job("r3", "2027-01-15T10:00:00Z"), NOW + 20.0).await;
    let d = decide(&store, &three, p, NOW + 20.0).await;
    assert!(
        matches!(
            d,
            Decision::Escalated {
                why: Why::Flapping { healed: 2 },
                ..
            }
        ),
        "{d:?}"
    );
}
