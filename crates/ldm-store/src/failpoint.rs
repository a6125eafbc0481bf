//! Named crash points for tests of the real binary.
//!
//! When the environment variable `LDM_FAILPOINT` equals a point's name, the
//! process aborts there: no destructors, no flushing, like a crash. Used by
//! `tests/crash.rs` to stop compaction between each write, fsync and rename
//! (DESIGN.md lists the points). Unset, it costs one cached comparison.

use std::sync::OnceLock;

static TARGET: OnceLock<Option<String>> = OnceLock::new();

/// Aborts the process if `LDM_FAILPOINT` names this point.
pub fn hit(name: &str) {
    let target = TARGET.get_or_init(|| std::env::var("LDM_FAILPOINT").ok());
    if target.as_deref() == Some(name) {
        std::process::abort();
    }
}
