//! What the web interface reads stays bounded and off the writer thread: a denial repeated for
//! one subject is one audit row with its count, the history comes in pages (a row limit, a text
//! budget and a cursor), an incident lists only its latest alerts, and a read answers while
//! the writer thread is busy. An action's detail (a cleanup's listing of every file it removed)
//! is kept whole in its audit row up to its own, larger bound, and cut on its incident. The
//! schema of the first incident-model release is migrated.

mod common;

use std::time::Duration;

use common::{accept, escalated, new_job, policy, NOW};
use stackmedic_remediator::action::ActionKind;
use stackmedic_remediator::incident::Decision;
use stackmedic_remediator::limits;
use stackmedic_remediator::open_store;
use stackmedic_remediator::store::views::{ALERTS_SHOWN, PAGE_TEXT_BYTES};
use stackmedic_remediator::store::{
    Batch, DecideInput, Denial, FinishInput, Outcome, Overview, OverviewLimits, Start, Store,
};

fn denial(reason: &str, fingerprint: &str) -> Denial {
    Denial {
        rule: "r".into(),
        action: ActionKind::ContainerRestart,
        target: "t".into(),
        alertname: "AppDown".into(),
        fingerprint: fingerprint.into(),
        reason: reason.into(),
    }
}

async fn deny(store: &Store, denials: Vec<Denial>, now: f64) {
    store
        .accept(
            Batch {
                denials,
                ..Batch::default()
            },
            now,
        )
        .await
        .unwrap();
}

async fn page(store: &Store, actions: usize, before: Option<i64>) -> Overview {
    store
        .overview(
            OverviewLimits {
                actions,
                before,
                closed_incidents: 10,
                escalations: 10,
            },
            NOW + 100.0,
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_denials_for_one_subject_are_one_row_with_a_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    let same = "label container=\"evil\" is not allowed";
    deny(&store, vec![denial(same, "f1"), denial(same, "f2")], NOW).await;
    deny(&store, vec![denial("another reason", "f3")], NOW + 1.0).await;
    deny(&store, vec![denial(same, "f4")], NOW + 2.0).await;

    let o = page(&store, 100, None).await;
    let rows: Vec<(&str, i64)> = o
        .actions
        .iter()
        .map(|a| (a.detail.as_str(), a.count))
        .collect();
    // The repeated one moved to the top with its latest time and fingerprint.
    assert_eq!(rows, [(same, 3), ("another reason", 1)], "{o:#?}");
    let top = &o.actions[0];
    assert_eq!((top.time, top.first_time), (NOW + 2.0, Some(NOW)));
    assert_eq!(top.fingerprint, "f4");
    assert_eq!(o.actions[1].first_time, None);

    // Another subject, rule or reason is its own row.
    let mut other = denial(same, "f5");
    other.rule = "r2".into();
    deny(&store, vec![other], NOW + 3.0).await;
    assert_eq!(page(&store, 100, None).await.actions.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_end_at_their_limit_or_text_budget_and_chain_by_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    for i in 0..25 {
        deny(&store, vec![denial(&format!("reason {i}"), "f")], NOW).await;
    }
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let o = page(&store, 10, before).await;
        assert!(o.actions.len() <= 10);
        seen.extend(o.actions.iter().map(|a| a.detail.clone()));
        match o.next_before {
            Some(b) => {
                assert_eq!(Some(b), o.actions.last().map(|a| a.id));
                before = Some(b);
            }
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("reason {i}")).collect();
    assert_eq!(seen, expected, "every row once, newest first");

    // Reasons of 1 MiB are stored cut; a page of the largest limit stops at the text budget.
    let huge = "x".repeat(1 << 20);
    for i in 0..400 {
        deny(&store, vec![denial(&format!("{i} {huge}"), "f")], NOW).await;
    }
    let o = page(&store, 1000, None).await;
    let text: usize = o.actions.iter().map(|a| a.detail.len()).sum();
    assert!(o.actions[0].detail.len() < limits::VALUE_BYTES + 32);
    assert!(
        o.actions[0].detail.ends_with("bytes)"),
        "{}",
        &o.actions[0].detail[1000..]
    );
    assert!(text <= PAGE_TEXT_BYTES, "{text}");
    assert!(o.actions.len() > 100, "{}", o.actions.len());
    assert!(o.next_before.is_some());
}

/// Accepts a job on its own subject, starts it and finishes it with `detail`.
async fn finish_with(store: &Store, subject: &str, detail: String) {
    let mut new = new_job(subject, "2026-11-22T10:00:00Z");
    new.subject = subject.into();
    let job = accept(store, new, NOW).await;
    let d = store
        .decide(
            DecideInput {
                job: job.clone(),
                subject: subject.into(),
                selection: job.new.selection.clone(),
                cond: common::cond(policy(3)),
            },
            NOW,
        )
        .await
        .unwrap();
    assert!(matches!(d, Decision::Act { .. }), "{d:?}");
    let s = store
        .start(job.clone(), common::cond(common::policy(3)), NOW + 1.0)
        .await
        .unwrap();
    assert!(matches!(s, Start::Started { .. }), "{s:?}");
    store
        .finish(
            FinishInput {
                job,
                outcome: Outcome::Succeeded,
                detail,
                duration: 1.0,
                cond: common::cond(policy(3)),
            },
            NOW + 2.0,
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actions_detail_is_kept_whole_in_its_audit_row_up_to_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    // A listing as a cleanup writes it: far beyond a value's bound, within the detail's.
    let listing: String = (0..600)
        .map(|i| format!("cam/seg-{i:04}.ts (1048576 B, 2026-11-20T10:00:00Z)"))
        .collect::<Vec<_>>()
        .join(", ");
    assert!(listing.len() > 20 * limits::VALUE_BYTES && listing.len() < limits::DETAIL_BYTES);
    finish_with(&store, "t/listing", format!("removed 600 files: {listing}")).await;
    finish_with(&store, "t/huge", "y".repeat(1 << 20)).await;

    let o = page(&store, 100, None).await;
    let detail = |subject: &str| {
        o.actions
            .iter()
            .find(|a| a.subject == subject && a.result == "succeeded")
            .unwrap_or_else(|| panic!("no row of {subject}: {:?}", o.actions))
            .detail
            .clone()
    };
    let whole = detail("t/listing");
    assert!(whole.ends_with(&listing), "the listing was cut");
    assert!(whole.contains("cam/seg-0599.ts (1048576 B, "));
    let huge = detail("t/huge");
    assert!(
        huge.len() < limits::DETAIL_BYTES + 32 && huge.ends_with("bytes)"),
        "{} bytes, ends {:?}",
        huge.len(),
        &huge[huge.len() - 20..]
    );
    // The incident shows the start of it, as long as a value.
    let incident = o
        .incidents
        .iter()
        .chain(&o.recent_incidents)
        .find(|i| i.subject == "t/listing")
        .unwrap_or_else(|| panic!("{:?}", o.incidents));
    assert!(
        incident.detail.len() < limits::VALUE_BYTES + 64,
        "{}",
        incident.detail.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_lists_its_latest_alerts_and_counts_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    escalated(&store, "first", "2026-11-22T10:00:00Z", NOW).await;
    // Further outages of the escalated subject join its incident.
    for i in 0..30 {
        let job = accept(
            &store,
            new_job(&format!("more{i}"), "2026-11-22T10:00:00Z"),
            NOW,
        )
        .await;
        common::decide(&store, &job, common::policy(1), NOW).await;
    }
    let o = page(&store, 10, None).await;
    let incident = &o.incidents[0];
    assert_eq!(incident.alerts_total, 31, "{incident:#?}");
    assert_eq!(incident.alerts.len(), ALERTS_SHOWN);
    let escalation = &o.escalations[0];
    let alerts = escalation.alerts.as_deref().unwrap_or_default();
    assert!(
        alerts.starts_with(&format!("{} earlier alert(s); ", 31 - ALERTS_SHOWN)),
        "{alerts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_answer_while_the_writer_thread_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    deny(&store, vec![denial("committed before", "f")], NOW).await;
    // The writer thread is held inside an operation until the reads are done.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (entered, inside) = tokio::sync::oneshot::channel::<()>();
    let busy = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .run(move |_| {
                    let _ = entered.send(());
                    let _ = held.recv();
                    Ok(())
                })
                .await
        })
    };
    inside.await.unwrap();
    let read = async {
        let o = page(&store, 10, None).await;
        let g = store.gauges(NOW).await.unwrap();
        let (active, _) = store.escalation_overview(5).await.unwrap();
        (o, g, active)
    };
    let (o, g, active) = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the reads waited for the writer thread");
    assert_eq!(o.actions[0].detail, "committed before");
    assert_eq!((g.due_jobs, active.len()), (0, 0));
    release.send(()).unwrap();
    busy.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_schema_version_2_gains_denial_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(stackmedic_remediator::DATABASE_FILE);
    {
        let store = open_store(dir.path()).unwrap();
        deny(&store, vec![denial("old denial", "f")], NOW).await;
    }
    // Back to the first incident-model schema: no counts.
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "DROP INDEX audit_denials; ALTER TABLE audit DROP COLUMN count; \
             ALTER TABLE audit DROP COLUMN first_at; PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let store = open_store(dir.path()).unwrap();
    deny(&store, vec![denial("old denial", "g")], NOW + 5.0).await;
    let o = page(&store, 10, None).await;
    assert_eq!(o.actions.len(), 1, "{o:#?}");
    assert_eq!(
        (o.actions[0].count, o.actions[0].first_time),
        (2, Some(NOW))
    );
    drop(store);
    let c = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, stackmedic_remediator::store::schema::VERSION);
}
