//! How a [`super::Store`] behaves ([`Options`]) and what it tells its caller
//! on the way ([`Notice`]): the store never prints by itself, the caller
//! decides (the CLI prints one stderr line per notice line).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::fs::{Fs, OsFs, Trust};
use super::{AUTO_COMPACT_MIN_BYTES, DEFAULT_LOCK_TIMEOUT, FOLD_MAX_BYTES};
use ldm_model::merge::Conflict;

/// Why recovery cut the end of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The last record stops before its length says it ends: a write that
    /// never completed (its command was killed before it said "done").
    Unfinished,
    /// The last record is complete but its checksum fails: a torn write, or
    /// damage to a change that was reported done.
    BadChecksum,
}

/// Something recovery or a fold did that the user should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The end of the log was cut off; its bytes are kept in `saved`.
    TailCut {
        /// The log.
        path: PathBuf,
        /// New length of the log.
        offset: u64,
        /// Bytes cut.
        dropped: u64,
        /// What was wrong with them.
        why: Cut,
        /// Where the cut bytes are.
        saved: PathBuf,
    },
    /// A temp file from a dead process was removed.
    TempRemoved {
        /// The file.
        path: PathBuf,
    },
    /// A YAML temp file that was not ldm's own fold (another program's
    /// save, swapped out by a fold a crash interrupted) was kept in `saved`.
    TempKept {
        /// The temp file.
        path: PathBuf,
        /// The copy.
        saved: PathBuf,
    },
    /// Writing `containers.yaml` after a successful commit failed.
    FoldFailed {
        /// Why.
        error: String,
    },
    /// lxc-dev-manager holds its lock: `containers.yaml` is written later.
    FoldDeferred {
        /// Its lock file.
        lock: PathBuf,
    },
    /// `containers.yaml` has keys ldm does not know; they are ignored, and
    /// dropped when the file is next rewritten (as the Go tool does).
    UnknownKeys {
        /// The YAML.
        path: PathBuf,
        /// Dotted paths of the keys, e.g. `containers.dev.usr`.
        keys: Vec<String>,
    },
    /// Another writer's `containers.yaml` was merged with ldm's changes and
    /// some of ldm's were dropped (the file's values kept).
    Merged {
        /// The YAML.
        path: PathBuf,
        /// Each field whose ldm value was dropped.
        conflicts: Vec<Conflict>,
        /// There was no base to merge with: the file won wholesale.
        base_gone: bool,
        /// Where the dropped values are kept; `None` for a reader, which
        /// writes nothing (the next writer saves them).
        saved: Option<PathBuf>,
    },
    /// ldm rewrote a `containers.yaml` that held keys it does not know or
    /// comments; the file as it was is kept in `saved`.
    YamlKept {
        /// The YAML.
        path: PathBuf,
        /// The copy.
        saved: PathBuf,
    },
    /// A log of an older format version was rewritten (compacted) in the
    /// version this build writes, [`super::record::VERSION`].
    Upgraded {
        /// The log.
        path: PathBuf,
    },
    /// `containers.yaml` is an older fold of ldm's own, put back (a `git
    /// checkout`, a backup): as the later write its values win, and these
    /// fields go back to them.
    Reverted {
        /// The YAML.
        path: PathBuf,
        /// The last record the restored file holds.
        file_seq: u64,
        /// The last record ldm had folded into the file.
        base_seq: u64,
        /// Each field taken back: `kept` the file's value, `dropped` ldm's.
        fields: Vec<Conflict>,
        /// Where ldm's values are kept; `None` for a reader.
        saved: Option<PathBuf>,
    },
    /// Containers ldm had recorded that `containers.yaml` no longer has:
    /// the project forgets them, though LXD may still have their instances
    /// (the command says what to run; the store knows no LXD).
    ContainersGone {
        /// The YAML.
        path: PathBuf,
        /// Their names.
        names: Vec<String>,
    },
    /// Another program saved `containers.yaml` while ldm folded into it:
    /// that save was put back (it stands, and the next command merges
    /// ldm's changes into it), and a copy kept in `saved`.
    YamlOvertaken {
        /// The YAML.
        path: PathBuf,
        /// The copy.
        saved: PathBuf,
    },
    /// The user's state or cache folder cannot be used: ldm works without
    /// its base and its load cache (said once per process).
    NoUserState {
        /// Why.
        why: String,
    },
    /// A derived file an older ldm kept in the project folder was removed:
    /// ldm keeps it in the user's own folders now.
    OldFileRemoved {
        /// The file.
        path: PathBuf,
    },
}

/// A value for a one-line message: passwords hidden, long values cut.
fn shown(field: &str, v: &serde_json::Value) -> String {
    if field.ends_with(".password") && !v.is_null() {
        return "(a password)".to_string();
    }
    let text = v.to_string();
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    } else {
        text
    }
}

impl Notice {
    /// The notice as lines: the first says what happened, each further one
    /// is a field (`Merged`, `Reverted`). A printer escapes each line as a
    /// one-line value, so a line break in a key or value from the file
    /// (`"x\nldm: ..."`) never starts a line of its own.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Notice::Merged {
                path,
                conflicts,
                base_gone,
                saved,
            } => {
                let kept_where = match saved {
                    Some(p) => format!("ldm's values are kept in {}", p.display()),
                    None => "the next ldm command that writes keeps this outcome and saves ldm's values beside the log".to_string(),
                };
                let head = if *base_gone {
                    format!(
                        "{}: changed by another program, and ldm has no copy of what it last wrote there (its base, kept in your state folder, is missing or from another log), so the file's values win; {kept_where}:",
                        path.display(),
                    )
                } else {
                    format!(
                        "{}: changed by another program while ldm changed the same {}; the file's values win, {kept_where}:",
                        path.display(),
                        if conflicts.len() == 1 { "field" } else { "fields" }
                    )
                };
                let mut out = vec![head];
                for c in conflicts {
                    let kept = if c.kept.is_null() {
                        "removed it".to_string()
                    } else {
                        format!("has {}", shown(&c.field, &c.kept))
                    };
                    let dropped = if c.dropped.is_null() {
                        "ldm's removal".to_string()
                    } else {
                        format!("ldm's {}", shown(&c.field, &c.dropped))
                    };
                    out.push(format!(
                        "  `{}`: the file {kept}; dropped {dropped}",
                        c.field
                    ));
                }
                out
            }
            Notice::Reverted {
                path,
                file_seq,
                base_seq,
                fields,
                saved,
            } => {
                let kept_where = match saved {
                    Some(p) => format!("ldm's values are kept in {}", p.display()),
                    None => "the next ldm command that writes keeps ldm's values beside the log"
                        .to_string(),
                };
                let mut out = vec![format!(
                    "{}: an older copy of this project's file was put back (it holds ldm's changes up to record {file_seq}; ldm had written up to record {base_seq}); as the later write it stands, which takes back {} {}; {kept_where}:",
                    path.display(),
                    fields.len(),
                    if fields.len() == 1 { "value" } else { "values" }
                )];
                for c in fields {
                    let back = if c.kept.is_null() {
                        "removed".to_string()
                    } else {
                        format!("back to {}", shown(&c.field, &c.kept))
                    };
                    let was = if c.dropped.is_null() {
                        "absent".to_string()
                    } else {
                        shown(&c.field, &c.dropped)
                    };
                    out.push(format!("  `{}`: {back} (was {was})", c.field));
                }
                out
            }
            other => vec![other.to_string()],
        }
    }
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::TailCut { path, offset, dropped, why, saved } => {
                let what = match why {
                    Cut::Unfinished => "an unfinished last record (a command killed while writing it; it never said it was done)",
                    Cut::BadChecksum => "a last record whose checksum fails (a write torn by a crash, or damage to a change reported done)",
                };
                write!(
                    f,
                    "recovered {}: cut {dropped} bytes at byte {offset}, {what}; the bytes are kept in {}",
                    path.display(),
                    saved.display()
                )
            }
            Notice::TempRemoved { path } => {
                write!(f, "removed {} left by an interrupted command", path.display())
            }
            Notice::TempKept { path, saved } => write!(
                f,
                "{} was another program's save of containers.yaml, swapped out by an ldm command interrupted while it wrote the file; it is kept in {} (copy back what you need: ldm merges it)",
                path.display(),
                saved.display()
            ),
            Notice::FoldFailed { error } => write!(
                f,
                "warning: the change was saved in containers.log, but writing containers.yaml failed: {error}; the next ldm command tries again (or run `ldm compact`)"
            ),
            Notice::FoldDeferred { lock } => write!(
                f,
                "note: lxc-dev-manager is changing this project ({} is locked); the change is saved in containers.log and reaches containers.yaml with the next ldm command",
                lock.display()
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
            Notice::Merged { .. } | Notice::Reverted { .. } => f.write_str(&self.lines().join("\n")),
            Notice::YamlKept { path, saved } => write!(
                f,
                "{} had comments or keys ldm does not keep; ldm rewrote it, and the file as it was is kept in {}",
                path.display(),
                saved.display()
            ),
            Notice::Upgraded { path } => write!(
                f,
                "upgraded {} to log format version {} (an older ldm cannot read it and says so)",
                path.display(),
                super::record::VERSION
            ),
            Notice::ContainersGone { path, names } => write!(
                f,
                "{}: no longer has {} {} that ldm had recorded; the project forgets {}",
                path.display(),
                if names.len() == 1 { "container" } else { "containers" },
                names.join(", "),
                if names.len() == 1 { "it" } else { "them" }
            ),
            Notice::YamlOvertaken { path, saved } => write!(
                f,
                "{} was saved by another program while ldm was writing its changes into it; that save stands (ldm put it back, and the next ldm command merges its own changes, which are safe in containers.log, into it), and a copy is kept in {}",
                path.display(),
                saved.display()
            ),
            Notice::NoUserState { why } => write!(
                f,
                "note: {why}; ldm works without its base and load cache (kept there, never in the project folder): reads parse containers.yaml each time, and when another program changes the file ldm lists every change of its own that the file overrides instead of merging"
            ),
            Notice::OldFileRemoved { path } => write!(
                f,
                "removed {}, which an older ldm kept in the project folder (ldm keeps it in your own folders now, where a cloned repository or a container cannot plant one)",
                path.display()
            ),
        }
    }
}

/// How a store behaves; [`Options::default`] is what the CLI uses.
#[derive(Clone)]
pub struct Options {
    /// Bound on each lock wait (ldm's own, and lxc-dev-manager's).
    pub lock_timeout: Duration,
    /// What this process is doing, written into the lock file for waiters:
    /// the command, never its argument values.
    pub holder: String,
    /// Auto-compaction size floor in bytes (`u64::MAX` disables it).
    pub auto_compact_min: u64,
    /// `containers.yaml` is rewritten after each commit while it is at most
    /// this big (0 disables it; bigger projects fold at compaction).
    pub fold_max: u64,
    /// Whose files the project may hold.
    pub trust: Trust,
    /// Where notices go.
    pub notify: Arc<dyn Fn(&Notice) + Send + Sync>,
    /// The file system.
    pub fs: Arc<dyn Fs>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            holder: "ldm".to_string(),
            auto_compact_min: AUTO_COMPACT_MIN_BYTES,
            fold_max: FOLD_MAX_BYTES,
            trust: Trust::Mine,
            notify: Arc::new(|n| eprintln!("ldm: {n}")),
            fs: Arc::new(OsFs::strict()),
        }
    }
}

impl Options {
    /// These options with `trust` for every file, the store's and the locks'.
    pub fn trusting(mut self, trust: Trust) -> Options {
        self.trust = trust;
        self.fs = Arc::new(OsFs::with_trust(trust));
        self
    }
}
