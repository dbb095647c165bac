//! Helpers for the probes that read local files on blocking threads (SRI, backups).

use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// File identity and version: a file with the same key need not be read again. The change time
/// is part of it so that a write followed by restoring the old modification time is noticed too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileKey {
    /// The key of a file's metadata.
    pub(crate) fn of(m: &std::fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }
    }

    /// The modification time, in seconds since the Unix epoch.
    pub(crate) fn modified_secs(&self) -> f64 {
        self.mtime_ns as f64 / 1e9
    }
}

/// Sets a flag when dropped: a run cancelled by the runner's timeout drops its future, and the
/// blocking work it started sees the flag and stops.
pub(crate) struct CancelOnDrop(pub(crate) Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
