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

/// An error with its whole cause chain, `outer: inner: innermost`, so that the operating
/// system's reason (permission denied, no such file) reaches the message; a cause whose text the
/// message already holds is not repeated.
#[must_use]
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_by_characters() {
        assert_eq!(truncate("äöü", 2), "äö");
        assert_eq!(truncate("ab", 5), "ab");
    }

    #[test]
    fn error_chains_name_every_cause_once() {
        let io = std::io::Error::from_raw_os_error(13);
        let outer = std::io::Error::other(io);
        // The wrapper's text is its cause's, so it appears once.
        assert_eq!(error_chain(&outer), "Permission denied (os error 13)");
        let e: Box<dyn std::error::Error> = "client error (Connect)".into();
        assert_eq!(error_chain(e.as_ref()), "client error (Connect)");
    }
}
