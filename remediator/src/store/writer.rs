//! The one thread that owns the writing connection: operations sent to it run in batches
//! inside one transaction (group commit), each in its own savepoint, and their callers are
//! answered only after the commit.

use std::sync::mpsc as std_mpsc;

use rusqlite::Connection;

/// Most operations committed together.
const MAX_BATCH: usize = 512;

/// Called with the commit's result once the batch is on disk.
pub(super) type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;
/// Runs on the store thread; says whether it succeeded (a failed one is rolled back alone).
pub(super) type Op = Box<dyn FnOnce(&Connection) -> (bool, Finish) + Send>;

/// Runs operations until every sender is gone.
pub(super) fn run(mut conn: Connection, rx: std_mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut finishes = Vec::with_capacity(ops.len());
        let commit = match conn.transaction() {
            Ok(tx) => {
                for op in ops {
                    // A savepoint per operation: a failing one is rolled back alone and the
                    // others of the batch still commit.
                    let _ = tx.execute_batch("SAVEPOINT op");
                    let (ok, finish) = op(&tx);
                    if !ok {
                        let _ = tx.execute_batch("ROLLBACK TO op");
                    }
                    let _ = tx.execute_batch("RELEASE op");
                    finishes.push(finish);
                }
                tx.commit().map_err(|e| e.to_string())
            }
            Err(e) => {
                // Dropping an operation drops its reply channel: its caller sees the store as
                // failed.
                drop(ops);
                Err(e.to_string())
            }
        };
        if let Err(e) = &commit {
            tracing::error!(error = %e, "store commit failed");
        }
        for f in finishes {
            f(commit.clone());
        }
    }
}
