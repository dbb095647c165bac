//! The escalation outbox's lifecycle through the store API: an escalated incident's escalation
//! is posted, re-posted every interval while the incident is escalated, switched to resolving
//! when its alert resolves or reconciliation finds it gone (a firing post racing the
//! resolution does not undo it), ended by a delivered resolving post (audited), and resumed
//! after a restart.

mod common;

use common::{escalated, NOW};
use stackmedic_remediator::open_store;
use stackmedic_remediator::store::{ActiveAlert, Batch, OverviewLimits, PostResult};
use stackmedic_remediator::vocab::{EscalationState, IncidentState};

const START: &str = "2026-11-22T10:00:00Z";

fn limits() -> OverviewLimits {
    OverviewLimits {
        actions: 50,
        before: None,
        closed_incidents: 10,
        escalations: 10,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reposted_while_active_then_resolved_by_the_alerts_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    escalated(&store, "f1", START, NOW).await;

    let due = store.due_escalations(NOW).await.unwrap();
    assert_eq!(due.len(), 1);
    let id = due[0].id;
    assert!(due[0].first && !due[0].resolving);
    store
        .escalation_posted(
            id,
            false,
            PostResult::Firing {
                next_post_at: NOW + 60.0,
            },
            NOW,
        )
        .await
        .unwrap();
    assert!(store.due_escalations(NOW + 30.0).await.unwrap().is_empty());
    assert_eq!(store.next_escalation_at().await.unwrap(), Some(NOW + 60.0));
    // Due again after the interval: a re-post, not a first delivery.
    let due = store.due_escalations(NOW + 61.0).await.unwrap();
    assert_eq!(due.len(), 1);
    assert!(!due[0].first && !due[0].resolving);
    let g = store.gauges(NOW + 61.0).await.unwrap();
    assert_eq!((g.escalations_pending, g.escalations_active), (0, 1));
    assert!(
        g.incidents.contains(&(IncidentState::Escalated, 1)),
        "{g:?}"
    );

    // The original alert resolves: the incident closes and the resolving post is due at once.
    let batch = Batch {
        resolved: vec![common::resolved("f1", START)],
        ..Batch::default()
    };
    let accepted = store.accept(batch, NOW + 62.0).await.unwrap();
    assert_eq!(accepted.resolution.escalations_resolving, 1);
    assert_eq!(accepted.resolution.closed.len(), 1);
    // The re-post taken before the resolve ends now; it must not push the resolution back.
    store
        .escalation_posted(
            id,
            false,
            PostResult::Firing {
                next_post_at: NOW + 122.0,
            },
            NOW + 62.5,
        )
        .await
        .unwrap();
    let due = store.due_escalations(NOW + 63.0).await.unwrap();
    assert_eq!(due.len(), 1, "the resolution must still be due");
    assert!(due[0].resolving);
    assert_eq!(due[0].resolve_reason.as_deref(), Some("the alert resolved"));
    // A failed resolving post is retried.
    store
        .escalation_posted(
            id,
            true,
            PostResult::Failed {
                error: "connection refused".into(),
                retry_at: NOW + 64.0,
            },
            NOW + 63.0,
        )
        .await
        .unwrap();
    assert!(store.due_escalations(NOW + 63.5).await.unwrap().is_empty());
    let g = store.gauges(NOW + 63.5).await.unwrap();
    assert_eq!((g.escalations_pending, g.escalations_active), (1, 0));
    let due = store.due_escalations(NOW + 64.0).await.unwrap();
    assert!(due.len() == 1 && due[0].resolving);
    assert!(store
        .escalation_posted(id, true, PostResult::Resolved, NOW + 64.0)
        .await
        .unwrap());
    assert!(store
        .due_escalations(NOW + 9999.0)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.next_escalation_at().await.unwrap(), None);

    let o = store.overview(limits(), NOW + 65.0).await.unwrap();
    let resolved: Vec<_> = o
        .actions
        .iter()
        .filter(|a| a.result == "escalation_resolved")
        .collect();
    assert_eq!(resolved.len(), 1, "{o:#?}");
    assert_eq!(resolved[0].rule, "r");
    assert_eq!(resolved[0].alertname, "GhostDown");
    assert!(resolved[0].detail.contains("the alert resolved"));
    let e = &o.escalations[0];
    assert_eq!(e.state, EscalationState::Resolved, "{o:#?}");
    assert_eq!((e.posts, e.tries), (3, 4), "{o:#?}");
    assert_eq!(e.subject, "t/ghost");
    assert!(o.incidents.is_empty(), "{o:#?}");
    assert_eq!(o.recent_incidents[0].state, IncidentState::Resolved);
    // Resolved escalations and closed incidents are pruned with the history.
    assert!(store.prune(NOW + 100.0).await.unwrap() >= 2);
    let o = store.overview(limits(), NOW + 101.0).await.unwrap();
    assert!(
        o.escalations.is_empty() && o.recent_incidents.is_empty(),
        "{o:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_after_a_restart_and_resolved_by_reconciliation() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_store(dir.path()).unwrap();
        escalated(&store, "f2", START, NOW).await;
        let id = store.due_escalations(NOW).await.unwrap()[0].id;
        store
            .escalation_posted(
                id,
                false,
                PostResult::Firing {
                    next_post_at: NOW + 60.0,
                },
                NOW,
            )
            .await
            .unwrap();
    }
    // A new process on the same database: the active escalation is posted again at once.
    let store = open_store(dir.path()).unwrap();
    assert_eq!(store.resume_escalations(NOW + 10.0).await.unwrap(), 1);
    let due = store.due_escalations(NOW + 10.0).await.unwrap();
    assert!(due.len() == 1 && !due[0].resolving && !due[0].first);
    // Alertmanager still lists the alert (at millisecond precision): nothing changes.
    let listed = vec![ActiveAlert {
        fingerprint: "f2".into(),
        starts_at: Some(1_795_341_600.000_4),
    }];
    let r = store
        .reconcile(listed, NOW + 20.0, NOW + 20.0)
        .await
        .unwrap();
    assert_eq!((r.occurrences, r.escalations_resolving), (0, 0));
    // Another occurrence of the same fingerprint (a later start) does not keep this one.
    let listed = vec![ActiveAlert {
        fingerprint: "f2".into(),
        starts_at: Some(1_795_341_660.0),
    }];
    let r = store
        .reconcile(listed, NOW + 30.0, NOW + 30.0)
        .await
        .unwrap();
    assert_eq!(
        (r.occurrences, r.closed.len(), r.escalations_resolving),
        (1, 1, 1)
    );
    let due = store.due_escalations(NOW + 30.0).await.unwrap();
    assert!(due.len() == 1 && due[0].resolving);
    assert_eq!(
        due[0].resolve_reason.as_deref(),
        Some("reconciled: the alert is no longer active in Alertmanager")
    );
}
