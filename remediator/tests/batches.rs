//! The store's batches on both engines: operations sent at once share a commit, and one that
//! fails part-way (after a write of its own) is answered with its error while every other is
//! committed, and nothing of the failing one is.

#[macro_use]
mod common;

use common::Ctx;
use stackmedic_remediator::store::db::Value;
use stackmedic_remediator::store::StoreError;

async fn a_failing_operation_does_not_take_its_batch_with_it(ctx: &Ctx) {
    let store = ctx.open();
    let mut tasks = Vec::new();
    for i in 0..40u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .run(move |c| {
                    c.exec(
                        "INSERT INTO subjects (subject, reset_at) VALUES (?1, ?2)",
                        &[Value::Text(format!("s{i}")), Value::Real(f64::from(i))],
                    )?;
                    if i % 7 == 3 {
                        return Err(StoreError(format!("operation {i} fails on its own")));
                    }
                    Ok(i)
                })
                .await
        }));
    }
    let mut failed = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(n) => assert_eq!(n as usize, i),
            Err(e) => {
                assert!(e.0.contains("fails on its own"), "{e}");
                failed.push(i);
            }
        }
    }
    assert_eq!(failed, vec![3, 10, 17, 24, 31, 38]);
    let stored: Vec<String> = store
        .run(|c| {
            c.query("SELECT subject FROM subjects ORDER BY reset_at", &[])?
                .iter()
                .map(|r| r.get::<String>(0))
                .collect()
        })
        .await
        .unwrap();
    let want: Vec<String> = (0..40)
        .filter(|i| i % 7 != 3)
        .map(|i| format!("s{i}"))
        .collect();
    assert_eq!(stored, want);
}

on_both_engines!(a_failing_operation_does_not_take_its_batch_with_it);
