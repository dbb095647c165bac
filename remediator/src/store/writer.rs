//! The one thread that owns the writing connection, and the thread that makes its commits
//! durable.
//!
//! Operations sent to the writer run in batches inside one transaction (group commit); one that
//! fails is rolled back alone ([`run_batch`]). The connection commits with `synchronous=NORMAL`,
//! which writes the write-ahead log without waiting for the disk; the batch's callers are then
//! handed to the sync thread, which flushes the log (`fdatasync`) and answers them. So a caller is
//! answered only once its batch is on disk, as with `synchronous=FULL`, but the writer runs the
//! next batch while the disk flushes the previous one, and one flush covers every batch committed
//! before it. After a failed flush nothing is confirmed any more (the kernel may have dropped pages
//! a later flush would then not write): every later caller gets an error until the process restarts
//! and SQLite recovers the log. A checkpoint (run by the writer, as SQLite does by default) flushes
//! the log itself before copying it into the database, SQLite's rule for `NORMAL`, so a
//! checkpoint never moves a batch that is not yet on disk.
//!
//! **Invariant:** a caller is answered `Ok` only after its batch's commit returned and a flush
//! of the log that began after that commit succeeded, with no flush failed before.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;

use rusqlite::Connection;

use super::Db;

/// Most operations committed together.
const MAX_BATCH: usize = 512;

/// An operation sent to the store thread.
pub(super) trait Operation: Send {
    /// Runs it inside the batch's transaction; says whether it succeeded (a failed one is
    /// rolled back alone). PostgreSQL may run it again when the transaction has to be retried:
    /// each run replaces the previous one's result.
    fn run(&mut self, db: &dyn Db) -> bool;
    /// What it will do first, for PostgreSQL's writer to do for the whole batch
    /// ([`super::sets`]); SQLite's ignores it.
    fn hint(&self) -> Option<&super::sets::Hint> {
        None
    }
    /// Answers its caller with the commit's result, once the batch is durable.
    fn finish(self: Box<Self>, commit: Result<(), String>);
}

/// A boxed [`Operation`].
pub(super) type Op = Box<dyn Operation>;

/// A committed batch waiting for its flush: its callers, or the commit's error.
struct Committed {
    finishes: Vec<Op>,
    commit: Result<(), String>,
}

/// Starts the sync thread for the database at `path` and runs operations until every sender is
/// gone.
pub(super) fn run(
    mut conn: Connection,
    path: &Path,
    replica: &super::Replica,
    rx: std_mpsc::Receiver<Op>,
) {
    let (to_sync, committed) = std_mpsc::channel::<Committed>();
    let wal = wal_path(path);
    let syncer = std::thread::Builder::new()
        .name("stackmedic-sync".into())
        .spawn(move || sync(&wal, &committed));
    if let Err(e) = syncer {
        tracing::error!(error = %e, "cannot start the sync thread; every commit is answered as failed");
    }
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let commit = run_batch(&mut conn, replica, &mut ops);
        if let Err(e) = &commit {
            tracing::error!(error = %e, "store commit failed");
        }
        let batch = Committed {
            finishes: ops,
            commit,
        };
        if let Err(std_mpsc::SendError(batch)) = to_sync.send(batch) {
            // No sync thread: nothing can be confirmed as on disk.
            for f in batch.finishes {
                f.finish(Err("the store's sync thread stopped".into()));
            }
        }
    }
}

/// Runs `ops` in one transaction and commits it.
///
/// First without savepoints: inside a savepoint SQLite copies every page an operation is the
/// first to change into the statement journal, so that a rollback to it can restore the page,
/// and a savepoint per operation made that a seventh of the writer's time. Operations rarely
/// fail, so when one does, the transaction is rolled back and the batch runs again with a
/// savepoint per operation: a failing one is rolled back alone and the others still commit.
/// (Every operation may run more than once: each run replaces the previous one's result.)
fn run_batch(
    conn: &mut Connection,
    replica: &super::Replica,
    ops: &mut [Op],
) -> Result<(), String> {
    {
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        let db = super::db::Sqlite { conn: &tx, replica };
        if ops.iter_mut().all(|op| op.run(&db)) {
            return tx.commit().map_err(|e| e.to_string());
        }
        // Dropping the transaction rolls it back.
    }
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    let db = super::db::Sqlite { conn: &tx, replica };
    for op in ops.iter_mut() {
        // (Prepared once, as every statement: parsing them was a few per cent of the writer's
        // time.)
        let savepoint = |sql: &str| tx.prepare_cached(sql).and_then(|mut s| s.execute([]));
        let _ = savepoint("SAVEPOINT op");
        if !op.run(&db) {
            let _ = savepoint("ROLLBACK TO op");
        }
        let _ = savepoint("RELEASE op");
    }
    tx.commit().map_err(|e| e.to_string())
}

/// The write-ahead log of the database at `path`.
fn wal_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

/// Flushes the log for every batch committed so far, then answers their callers; runs until
/// the writer is gone.
fn sync(wal: &Path, committed: &std_mpsc::Receiver<Committed>) {
    let mut log: Option<File> = None;
    let mut broken = false;
    while let Ok(first) = committed.recv() {
        let mut batches = vec![first];
        batches.extend(committed.try_iter());
        let flushed = if broken {
            Err("an earlier flush of the store's log to disk failed; restart the remediator".into())
        } else if batches.iter().all(|b| b.commit.is_err()) {
            Ok(())
        } else {
            flush(wal, &mut log)
        };
        if let Err(e) = &flushed {
            broken = true;
            tracing::error!(error = %e, "cannot flush the store's log to disk: nothing is confirmed any more");
        }
        for b in batches {
            let result = match (&b.commit, &flushed) {
                (Err(e), _) | (Ok(()), Err(e)) => Err(e.clone()),
                (Ok(()), Ok(())) => Ok(()),
            };
            for f in b.finishes {
                f.finish(result.clone());
            }
        }
    }
}

/// `fdatasync` of the log, (re)opening it when it is not open yet or the file at its path is
/// another one than the open file.
fn flush(wal: &Path, log: &mut Option<File>) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let current =
        std::fs::metadata(wal).map_err(|e| format!("cannot stat {}: {e}", wal.display()))?;
    let same = log
        .as_ref()
        .and_then(|f| f.metadata().ok())
        .is_some_and(|m| (m.dev(), m.ino()) == (current.dev(), current.ino()));
    if !same {
        *log = Some(File::open(wal).map_err(|e| format!("cannot open {}: {e}", wal.display()))?);
    }
    let Some(f) = log.as_ref() else {
        return Err(format!("cannot open {}", wal.display()));
    };
    f.sync_data()
        .map_err(|e| format!("cannot flush {}: {e}", wal.display()))
}
