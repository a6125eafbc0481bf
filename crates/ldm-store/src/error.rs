//! Errors of the store. Each names the file, what is wrong, and what to run.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use super::fs::Refusal;
use super::lock::LockError;
use super::record::HeaderError;
use ldm_model::{ApplyError, ValidationError};

/// Everything that can go wrong opening, reading or writing a project store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// No `containers.yaml` here or in any parent folder.
    #[error("no containers.yaml in {start} or any parent folder; run `ldm create` to start a project here, or pass -C DIR")]
    NotAProject {
        /// Where the search started.
        start: PathBuf,
    },
    /// `ldm create` in a folder that already has a project.
    #[error("{path} already exists; this folder already has a project (see `ldm list`)")]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A log without its `containers.yaml`.
    #[error("{path} is left from an earlier project whose containers.yaml is gone; move it away (`mv {path} {path}.old`) and run the command again")]
    OrphanLog {
        /// The log file.
        path: PathBuf,
    },
    /// A file operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What ldm was doing, as a verb phrase.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The project lock could not be taken.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// `containers.yaml` does not parse.
    #[error("{path}{at}: {message}; fix the file by hand (ldm never overwrites a file it cannot read)", at = at(*line, *column))]
    Yaml {
        /// The file.
        path: PathBuf,
        /// 1-based line, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// `containers.yaml` parses but holds a value ldm refuses.
    #[error("{path}: {key}: {error}; fix the file by hand")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted key of the bad value.
        key: String,
        /// What is wrong.
        error: ValidationError,
    },
    /// The log header is not one this ldm can read.
    #[error("{path}: {}", bad_header(.error))]
    BadHeader {
        /// The log file.
        path: PathBuf,
        /// What is wrong.
        error: HeaderError,
    },
    /// Damage before the end of the log.
    #[error("{path}: damaged record at byte {offset} ({reason}) with valid records after it; nothing was changed. Run `ldm doctor` to inspect, `ldm doctor --repair` to keep every valid record (a backup is kept)")]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// Offset of the damage.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A logged mutation does not apply to `containers.yaml` (a hand edit removed what it needs).
    #[error("{path}: record {seq} at byte {offset} does not apply to containers.yaml: {error}. Was containers.yaml edited by hand? Undo the edit, or run `ldm doctor`")]
    Replay {
        /// The log file.
        path: PathBuf,
        /// Sequence number of the record.
        seq: u64,
        /// Its offset.
        offset: u64,
        /// Why it does not apply.
        error: ApplyError,
    },
    /// The mutation a command asked for is not valid now.
    #[error(transparent)]
    Rejected(#[from] ApplyError),
    /// `containers.yaml` has no `project:` key (lxc-dev-manager files from
    /// before project prefixes).
    #[error("{path} has no `project:` key (lxc-dev-manager wrote files without one before it used project prefixes); nothing was changed. Add a first line `project: NAME`: ldm names each container's LXD instance NAME-CONTAINER{}, so containers created without a prefix are not found under their old LXD names", example.as_ref().map(|c| format!(" (e.g. NAME-{c})")).unwrap_or_default())]
    NoProjectKey {
        /// The file.
        path: PathBuf,
        /// A container of the file, for the example.
        example: Option<String>,
    },
    /// A project file larger than ldm reads.
    #[error("{path} is {len} bytes, over ldm's limit of {} MiB for this file; is it the right file? Nothing was changed", limit >> 20)]
    TooBig {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// A project file ldm must not use: a link, a FIFO, someone else's.
    #[error("{path}: {why}")]
    Untrusted {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        why: String,
    },
    /// A `containers.yaml` found by searching parent folders belongs to
    /// another user.
    #[error("{path} belongs to {owner}, not to you ({me}); ldm does not use a project another user can change (it holds the passwords and commands of your containers). If you trust it, run ldm with `-C {dir}`, or add the folder to LDM_SAFE_DIRS (e.g. `export LDM_SAFE_DIRS={dir}`); or start your own project with `ldm create`", dir = path.parent().map(|d| d.display().to_string()).unwrap_or_default())]
    NotOwned {
        /// The file.
        path: PathBuf,
        /// Its owner, `name (uid N)`.
        owner: String,
        /// This user, `name (uid N)`.
        me: String,
    },
    /// A record of a kind this ldm does not know: written by a newer ldm.
    #[error("{path}: record {seq} at byte {offset} is a change of kind `{op}`, written by a newer ldm; upgrade ldm to use this project (nothing was changed; `ldm doctor --repair --force` would drop it and every record after it)")]
    NewerRecord {
        /// The log file.
        path: PathBuf,
        /// Offset of the record.
        offset: u64,
        /// Its sequence number.
        seq: u64,
        /// The unknown kind.
        op: String,
    },
    /// One commit's record would exceed the record size limit.
    #[error("this change is {len} bytes, over the {limit}-byte limit of one record of containers.log; nothing was written. Make the change in smaller steps")]
    CommitTooLarge {
        /// Payload size.
        len: usize,
        /// The limit.
        limit: u32,
    },
    /// Another program saved `containers.yaml` while ldm was writing it:
    /// that save was put back, never overwritten.
    #[error("{path} was saved by another program while ldm was writing it; ldm put that save back (a copy is in {saved}) and changed nothing else. Run the command again: ldm merges its own changes into the file")]
    Overtaken {
        /// The YAML.
        path: PathBuf,
        /// The copy of the other program's file.
        saved: PathBuf,
    },
    /// The files kept changing under a reader.
    #[error("{path} kept changing while being read; try again")]
    Unstable {
        /// The project folder.
        path: PathBuf,
    },
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

impl StoreError {
    /// Shorthand for an I/O error with its context; a refusal of
    /// [`super::fs::open_checked`] becomes [`StoreError::Untrusted`].
    pub fn io(action: &'static str, path: &std::path::Path, source: io::Error) -> StoreError {
        if let Some(r) = Refusal::of(&source) {
            return StoreError::Untrusted {
                path: path.to_path_buf(),
                why: r.why.clone(),
            };
        }
        StoreError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// True for damage of the log, a record or header of a newer ldm, or a
    /// lock not released in time (exit code 2); false for what the user
    /// fixes (exit code 1), a `containers.yaml` that does not parse or holds
    /// a bad value included: it is fixed by hand, not repaired.
    pub fn is_damage(&self) -> bool {
        !matches!(
            self,
            StoreError::NotAProject { .. }
                | StoreError::AlreadyExists { .. }
                | StoreError::OrphanLog { .. }
                | StoreError::Rejected(_)
                | StoreError::NoProjectKey { .. }
                | StoreError::Yaml { .. }
                | StoreError::Invalid { .. }
                | StoreError::TooBig { .. }
                | StoreError::Untrusted { .. }
                | StoreError::NotOwned { .. }
                | StoreError::CommitTooLarge { .. }
                | StoreError::Overtaken { .. }
                | StoreError::Lock(LockError::Refused { .. })
        )
    }
}

/// A bad header's message: a newer ldm's log wants an upgrade (repair would
/// drop its data, and refuses to without `--force`); any other is damage.
fn bad_header(error: &HeaderError) -> String {
    match error {
        HeaderError::UnknownVersion { .. } => format!(
            "{error}; nothing was changed (`ldm doctor --repair --force` would drop what this ldm cannot read, keeping a backup)"
        ),
        _ => format!(
            "bad header: {error}; run `ldm doctor` to inspect, `ldm doctor --repair` to rebuild it"
        ),
    }
}
