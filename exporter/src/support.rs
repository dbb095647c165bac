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

/// Asks the CPU to load the cache line at `p` ahead of its use: for passes over thousands of
/// probes whose data lies all over the heap, which otherwise wait on memory at each probe.
#[inline]
pub fn prefetch<T>(p: *const T) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    // SAFETY: a prefetch is a hint to the cache: it reads and writes no memory the program
    // sees and never faults, whatever the address; SSE, which it needs, is part of every
    // x86-64 CPU (and enabled, by the `cfg` above).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let _ = p;
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
