//! Operations that meet in one batch give what they would give one after the other, on both
//! engines. On PostgreSQL the writer accepts a batch's new alerts in one statement, reads
//! ahead for its decisions in one, and writes their ends in one (`store/sets.rs`); these tests
//! make operations meet in one batch by holding the writer busy first, and check the outcome
//! against the order they were sent in.

#[macro_use]
mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::{cond, new_job, policy, resolved, Ctx, NOW};
use stackmedic_remediator::incident::Decision;
use stackmedic_remediator::store::db::Value;
use stackmedic_remediator::store::{Batch, DecideInput, Job, Store};

/// How to connect to the store's PostgreSQL as the test.
fn config(ctx: &Ctx) -> postgres::Config {
    let pg = ctx.pg.as_ref().expect("PostgreSQL");
    let mut config: postgres::Config = pg.client_url().parse().unwrap();
    config.password(pg.password());
    config
}

/// Runs `blocker` and then `ops` (a future that sends its operations, in order, when first
/// polled) so that every operation of `ops` is in one batch. On PostgreSQL a connection of the
/// test's own locks the jobs table, `blocker`'s operation waits for it (so its writer is held),
/// `ops` are sent, and the lock is let go. On SQLite, whose writer runs operations as they
/// are, one after the other.
async fn in_one_batch<B, T>(
    ctx: &Ctx,
    blocker: impl Future<Output = B>,
    ops: impl Future<Output = T>,
) -> (B, T) {
    if ctx.pg.is_none() {
        let b = blocker.await;
        return (b, ops.await);
    }
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder_config = config(ctx);
    let holder = std::thread::spawn(move || {
        let mut client = holder_config.connect(postgres::NoTls).unwrap();
        let mut tx = client.transaction().unwrap();
        tx.batch_execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
            .unwrap();
        locked_tx.send(()).unwrap();
        release_rx.recv().unwrap();
        tx.commit().unwrap();
    });
    locked_rx.recv().unwrap();
    // (A blocking client is made and dropped off the runtime's threads.)
    let watcher_config = config(ctx);
    let mut watcher =
        tokio::task::block_in_place(|| watcher_config.connect(postgres::NoTls).unwrap());
    let held = async {
        // The blocker's writer waits for the lock: whatever is sent now waits behind it.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let waiting: i64 = tokio::task::block_in_place(|| {
                watcher
                    .query_one(
                        "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'jobs'::regclass",
                        &[],
                    )
                    .unwrap()
                    .get(0)
            });
            if waiting > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the store's writer never waited for the lock on the jobs table"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (t, ()) = tokio::join!(ops, async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            release_tx.send(()).unwrap();
        });
        (t, watcher)
    };
    let (b, (t, watcher)) = tokio::join!(blocker, held);
    tokio::task::block_in_place(|| {
        drop(watcher);
        holder.join().unwrap();
    });
    (b, t)
}

fn batch(jobs: Vec<stackmedic_remediator::store::NewJob>) -> Batch {
    Batch {
        jobs,
        ..Batch::default()
    }
}

async fn new_alerts_accepted_together_as_one_after_the_other(ctx: &Ctx) {
    let store = ctx.open();
    // An occurrence whose resolve came first: its firing is a duplicate.
    store
        .accept(
            Batch {
                resolved: vec![resolved("early", "2027-01-15T07:00:00Z")],
                ..Batch::default()
            },
            NOW,
        )
        .await
        .unwrap();
    let t = "2027-01-15T07:00:00Z";
    let (warm, accepted) = in_one_batch(
        ctx,
        store.accept(batch(vec![new_job("warm", t)]), NOW),
        futures_util::future::join_all([
            store.accept(batch(vec![new_job("a", t)]), NOW),
            // The same occurrence again, from another webhook: the first one sent has it.
            store.accept(batch(vec![new_job("a", t)]), NOW + 1.0),
            store.accept(batch(vec![new_job("b", t), new_job("b", t)]), NOW + 2.0),
            store.accept(batch(vec![new_job("early", t), new_job("c", t)]), NOW + 3.0),
        ]),
    )
    .await;
    assert_eq!(warm.unwrap().queued.len(), 1);
    let accepted: Vec<_> = accepted.into_iter().map(Result::unwrap).collect();
    let got: Vec<(Vec<&str>, usize)> = accepted
        .iter()
        .map(|a| {
            (
                a.queued
                    .iter()
                    .map(|j| j.new.fingerprint.as_str())
                    .collect(),
                a.duplicates,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![(vec!["a"], 0), (vec![], 1), (vec!["b"], 1), (vec!["c"], 1)]
    );
    // What was returned is what is stored: each job under its id, as the first sender gave it.
    let returned: Vec<&Job> = accepted.iter().flat_map(|a| &a.queued).collect();
    let stored = store
        .read(|c| {
            c.query(
                "SELECT id, fingerprint, accepted_at, due_at, labels, state, owner FROM jobs \
                 WHERE fingerprint != 'warm' ORDER BY id",
                &[],
            )
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 3, "{stored:?}");
    for (row, job) in stored.iter().zip(&returned) {
        assert_eq!(row.get::<i64>(0).unwrap(), job.id);
        assert_eq!(row.get::<String>(1).unwrap(), job.new.fingerprint);
        assert_eq!(row.get::<f64>(2).unwrap(), job.accepted_at);
        assert_eq!(row.get::<f64>(3).unwrap(), job.due_at);
        assert_eq!(
            row.get::<String>(4).unwrap(),
            r#"{"alertname":"GhostDown"}"#
        );
        assert_eq!(row.get::<String>(5).unwrap(), "queued");
        assert_eq!(
            row.get::<String>(6).unwrap(),
            store.replica.instance,
            "the job is its replica's"
        );
    }
    assert_eq!(returned[0].accepted_at, NOW);
    assert_eq!(returned[2].accepted_at, NOW + 3.0);
    // Each occurrence stored once, the early-resolved one as it was.
    let occurrences = store
        .read(|c| {
            c.query(
                "SELECT fingerprint, first_seen FROM occurrences ORDER BY fingerprint",
                &[],
            )
        })
        .await
        .unwrap();
    let occurrences: Vec<(String, Option<f64>)> = occurrences
        .iter()
        .map(|r| (r.get(0).unwrap(), r.get(1).unwrap()))
        .collect();
    assert_eq!(
        occurrences,
        vec![
            ("a".to_string(), Some(NOW)),
            ("b".to_string(), Some(NOW + 2.0)),
            ("c".to_string(), Some(NOW + 3.0)),
            ("warm".to_string(), Some(NOW)),
        ]
    );
}

fn input(job: &Job, dry_run: bool) -> DecideInput {
    let mut cond = cond(policy(3));
    cond.dry_run = dry_run;
    DecideInput {
        job: job.clone(),
        subject: "t/ghost".into(),
        selection: job.new.selection.clone(),
        cond,
    }
}

async fn jobs(store: &Store, names: &[&str]) -> Vec<Job> {
    let mut out = Vec::new();
    for name in names {
        out.push(common::accept(store, new_job(name, "2027-01-15T07:00:00Z"), NOW).await);
    }
    out
}

/// The blocker of the decisions' writer: a read of the jobs table.
async fn count_jobs(store: &Store) -> i64 {
    store
        .run(|c| c.query("SELECT count(*) FROM jobs", &[])?[0].get(0))
        .await
        .unwrap()
}

async fn dry_runs_decided_together_as_one_after_the_other(ctx: &Ctx) {
    let store = ctx.open();
    let j = jobs(&store, &["d1", "d2", "d3"]).await;
    let (_, decided) = in_one_batch(
        ctx,
        count_jobs(&store),
        futures_util::future::join_all([
            store.decide(input(&j[0], true), NOW),
            store.decide(input(&j[1], true), NOW),
            // The same job decided twice: the second finds it decided.
            store.decide(input(&j[0], true), NOW),
            store.decide(input(&j[2], true), NOW),
        ]),
    )
    .await;
    let decided: Vec<Decision> = decided.into_iter().map(Result::unwrap).collect();
    assert!(
        matches!(
            decided[..],
            [
                Decision::DryRun,
                Decision::DryRun,
                Decision::Gone,
                Decision::DryRun
            ]
        ),
        "{decided:?}"
    );
    // Each job ended once, under its canonical subject, with one audit row.
    let rows = store
        .read(|c| {
            c.query(
                "SELECT j.fingerprint, j.state, j.result, j.subject, \
                 (SELECT count(*) FROM audit a WHERE a.job_id = j.id AND a.result = 'dry_run') \
                 FROM jobs j ORDER BY j.id",
                &[],
            )
        })
        .await
        .unwrap();
    let rows: Vec<(String, String, String, String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.get(0).unwrap(),
                r.get(1).unwrap(),
                r.get(2).unwrap(),
                r.get(3).unwrap(),
                r.get(4).unwrap(),
            )
        })
        .collect();
    let want = |f: &str| {
        (
            f.to_string(),
            "done".to_string(),
            "dry_run".to_string(),
            "t/ghost".to_string(),
            1,
        )
    };
    assert_eq!(rows, vec![want("d1"), want("d2"), want("d3")]);
}

async fn a_decision_sees_the_incident_an_earlier_one_of_its_batch_opened(ctx: &Ctx) {
    let store = ctx.open();
    let j = jobs(&store, &["e1", "e2", "e3"]).await;
    // In this order: the first opens an incident on the subject; the dry runs after it in the
    // same batch find it open and join it (what was read ahead before it opened is not used).
    let (_, decided) = in_one_batch(
        ctx,
        count_jobs(&store),
        futures_util::future::join_all([
            store.decide(input(&j[0], false), NOW),
            store.decide(input(&j[1], true), NOW),
            store.decide(input(&j[2], true), NOW),
        ]),
    )
    .await;
    let decided: Vec<Decision> = decided.into_iter().map(Result::unwrap).collect();
    let Decision::Act { incident, .. } = decided[0] else {
        panic!("{decided:?}");
    };
    for d in &decided[1..] {
        assert!(
            matches!(d, Decision::Joined { incident: i, .. } if *i == incident),
            "{decided:?}"
        );
    }
    let open = store
        .read(|c| {
            c.query(
                "SELECT count(*) FROM incidents WHERE closed_at IS NULL",
                &[],
            )?[0]
                .get::<i64>(0)
        })
        .await
        .unwrap();
    assert_eq!(open, 1);
}

async fn a_write_sent_without_waiting_fails_its_own_operation_only(ctx: &Ctx) {
    let store = ctx.open();
    store
        .run(|c| {
            c.exec(
                "INSERT INTO subjects (subject, reset_at) VALUES ('taken', 0)",
                &[],
            )
        })
        .await
        .unwrap();
    let ops = (0..12u32).map(|i| {
        let store = store.clone();
        async move {
            store
                .run(move |c| {
                    let subject = if i % 4 == 1 {
                        "taken".to_string()
                    } else {
                        format!("s{i}")
                    };
                    // Its error comes after the operation returned, on PostgreSQL.
                    c.exec_later(
                        "INSERT INTO subjects (subject, reset_at) VALUES (?1, ?2)",
                        &[Value::Text(subject), Value::Real(f64::from(i))],
                    )?;
                    Ok(i)
                })
                .await
        }
    });
    let (_, results) =
        in_one_batch(ctx, count_jobs(&store), futures_util::future::join_all(ops)).await;
    let failed: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_err())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failed, vec![1, 5, 9], "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        // PostgreSQL's words, SQLite's.
        assert!(
            r.0.contains("duplicate key") || r.0.contains("UNIQUE constraint failed"),
            "{r}"
        );
    }
    let stored: i64 = store
        .read(|c| c.query("SELECT count(*) FROM subjects WHERE subject LIKE 's%'", &[])?[0].get(0))
        .await
        .unwrap();
    assert_eq!(stored, 9);
}

on_both_engines!(
    new_alerts_accepted_together_as_one_after_the_other,
    dry_runs_decided_together_as_one_after_the_other,
    a_decision_sees_the_incident_an_earlier_one_of_its_batch_opened,
    a_write_sent_without_waiting_fails_its_own_operation_only,
);
