//! Returning freed memory to the system after a phase that frees much of
//! it at once.
//!
//! An allocator keeps freed pages for reuse and returns them later:
//! jemalloc, the `subledger` binary's allocator, after 10 s. A full replay
//! frees tens of MiB of decoded events, hash map entries and replaced map
//! nodes just before it builds the posting indexes, which take fresh pages.
//! Returning the freed pages in between keeps them out of the peak RSS.
//!
//! The library does not know the allocator, so the program that picks it
//! installs the function that returns the pages (`set_return_freed`).
//! Without one, `return_freed` does nothing.

use std::sync::OnceLock;
use std::time::Instant;

static RETURN_FREED: OnceLock<fn()> = OnceLock::new();

/// Installs the function that returns freed pages to the system. Returns
/// `false`, and keeps the first, when one is installed already.
pub fn set_return_freed(return_freed: fn()) -> bool {
    RETURN_FREED.set(return_freed).is_ok()
}

/// Returns the pages that the allocator keeps freed, if a function to do
/// so is installed. `after` names the phase for the debug log.
pub fn return_freed(after: &str) {
    if let Some(return_freed) = RETURN_FREED.get() {
        let started = Instant::now();
        return_freed();
        let elapsed_us = started.elapsed().as_micros() as u64;
        tracing::debug!(after, elapsed_us, "freed memory returned to the system");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::projection::BulkFold;

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    fn count_call() {
        CALLS.fetch_add(1, Ordering::SeqCst);
    }

    fn second_function() {}

    #[test]
    fn installed_function_runs_and_stays_installed() {
        // The only test in this binary that installs one. Replays in other
        // tests may call it too while this one runs, so the counts are
        // lower bounds.
        assert!(set_return_freed(count_call));
        assert!(!set_return_freed(second_function));
        return_freed("a test");
        return_freed("a test");
        assert!(CALLS.load(Ordering::SeqCst) >= 2);

        let before = CALLS.load(Ordering::SeqCst);
        BulkFold::new().finish().expect("an empty fold finishes");
        assert!(CALLS.load(Ordering::SeqCst) >= before + 2, "a bulk fold returns memory twice");
    }
}
