//! How a [`super::Store`] behaves ([`Options`]) and what it tells its caller
//! on the way ([`Notice`]): recovery never prints by itself, the caller
//! decides (the CLI prints one stderr line per notice).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::fs::{Fs, OsFs};
use super::{AUTO_COMPACT_MIN_BYTES, DEFAULT_LOCK_TIMEOUT};
use crate::model::Project;

/// Something recovery did that the user should hear about (one stderr line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A torn tail was cut off the log.
    TornTailTruncated {
        /// The log.
        path: PathBuf,
        /// New length of the log.
        offset: u64,
        /// Bytes dropped.
        dropped: u64,
        /// What was wrong with them.
        reason: &'static str,
    },
    /// An interrupted compaction was finished.
    CompactionFinished {
        /// The log that was replaced.
        path: PathBuf,
    },
    /// A temp file from a dead process was removed.
    TempRemoved {
        /// The file.
        path: PathBuf,
    },
    /// Automatic compaction failed after a successful commit.
    CompactionFailed {
        /// Why.
        error: String,
    },
    /// `containers.yaml` has keys ldm does not know; they are ignored, and
    /// dropped when the file is next rewritten (as the Go tool does).
    UnknownKeys {
        /// The YAML.
        path: PathBuf,
        /// Dotted paths of the keys, e.g. `containers.dev.usr`.
        keys: Vec<String>,
    },
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::TornTailTruncated { path, offset, dropped, reason } => write!(
                f,
                "recovered {}: dropped {dropped} bytes of an unfinished record at byte {offset} ({reason}); it was never acknowledged",
                path.display()
            ),
            Notice::CompactionFinished { path } => {
                write!(f, "finished an interrupted compaction of {}", path.display())
            }
            Notice::TempRemoved { path } => {
                write!(f, "removed {} left by an interrupted command", path.display())
            }
            Notice::CompactionFailed { error } => write!(
                f,
                "warning: the change was saved, but automatic compaction failed: {error}; run `ldm compact` later"
            ),
            Notice::UnknownKeys { path, keys } => {
                let list: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
                write!(
                    f,
                    "warning: {}: ignoring unknown key{} {}; ldm drops unknown keys when it next rewrites the file, as lxc-dev-manager does (README, \"Settings\", lists the keys)",
                    path.display(),
                    if keys.len() == 1 { "" } else { "s" },
                    list.join(", ")
                )
            }
        }
    }
}

/// See [`Options::on_load`].
pub type OnLoad = Arc<dyn Fn(&Project) + Send + Sync>;

/// How a store behaves; [`Options::default`] is what the CLI uses.
#[derive(Clone)]
pub struct Options {
    /// Bound on the lock wait.
    pub lock_timeout: Duration,
    /// What this process is doing, written into the lock file for waiters.
    pub holder: String,
    /// Auto-compaction size floor in bytes (`u64::MAX` disables it).
    pub auto_compact_min: u64,
    /// Where notices go.
    pub notify: Arc<dyn Fn(&Notice) + Send + Sync>,
    /// Called with each state the store loads from the files, so that a
    /// caller can reuse what it needs (the CLI takes the `remote:` key for
    /// its LXD client instead of loading the project a second time).
    pub on_load: Option<OnLoad>,
    /// The file system.
    pub fs: Arc<dyn Fs>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            holder: "ldm".to_string(),
            auto_compact_min: AUTO_COMPACT_MIN_BYTES,
            notify: Arc::new(|n| eprintln!("ldm: {n}")),
            on_load: None,
            fs: Arc::new(OsFs),
        }
    }
}
