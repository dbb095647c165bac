//! Small helpers that every part of the exporter uses, written once.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks a mutex, taking over a poisoned one: the data behind the exporter's mutexes (caches,
/// counters, connections) stays usable after a panic elsewhere, and a probe must not panic
/// because another one did.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The first `max` characters of `s` (not bytes, so a multi-byte character is never split).
#[must_use]
pub fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// An error with its whole cause chain (written once, in `stackmedic-common`).
pub use stackmedic_common::errors::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_by_characters() {
        assert_eq!(truncate("äöü", 2), "äö");
        assert_eq!(truncate("ab", 5), "ab");
    }
}
