//! Read-only connections for what the web interface reads (the page, `GET /api/actions`, the
//! gauges of `/metrics`), so a read never waits for the writer thread and never delays a
//! webhook's commit: in WAL mode readers and the writer do not block each other. Each read runs
//! on a blocking thread inside one read transaction (a consistent snapshot); at most
//! [`READERS`] run at once, further ones wait their turn without holding memory.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use super::StoreError;

/// Read-only connections, hence reads running at once.
pub const READERS: usize = 2;

/// The pool of read-only connections.
pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl Readers {
    /// Opens [`READERS`] read-only connections to the database the writer prepared.
    pub(super) fn open(path: &Path) -> Result<Readers, StoreError> {
        let idle = (0..READERS)
            .map(|_| connect(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Readers {
            path: path.to_owned(),
            idle: Mutex::new(idle),
            permits: Semaphore::new(READERS),
        })
    }

    /// Runs `f` on a read-only connection, inside one read transaction, on a blocking thread.
    pub(super) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn super::Db) -> Result<T, StoreError> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError("the readers are closed".into()))?;
        let conn = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        // A connection lost with a panicking read is replaced.
        let conn = match conn {
            Some(c) => c,
            None => connect(&self.path)?,
        };
        let (conn, out) = tokio::task::spawn_blocking(move || {
            let out = snapshot(&conn, f);
            (conn, out)
        })
        .await
        .map_err(|e| StoreError(format!("a read failed: {e}")))?;
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        out
    }
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")?;
    c.set_prepared_statement_cache_capacity(super::STATEMENT_CACHE);
    Ok(c)
}

fn snapshot<T>(
    c: &Connection,
    f: impl FnOnce(&dyn super::Db) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = c.unchecked_transaction()?;
    let out = f(&*tx);
    // Nothing was written: ending the transaction only releases the snapshot.
    let _ = tx.rollback();
    out
}
