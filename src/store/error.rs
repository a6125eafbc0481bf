//! Errors of the store. Each names the file, what is wrong, and what to run.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use super::lock::LockError;
use super::record::HeaderError;
use crate::model::{ApplyError, ValidationError};

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
    #[error("{path}: bad header: {error}; run `ldm doctor` to inspect, `ldm doctor --repair` to rebuild it")]
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
    /// `containers.yaml` and `containers.log` are from different compactions.
    #[error("{yaml} (generation {yaml_gen}) and {log} (generation {log_gen}) do not belong together; was one restored from a backup? Run `ldm doctor` to inspect")]
    GenerationMismatch {
        /// The snapshot file.
        yaml: PathBuf,
        /// Its generation.
        yaml_gen: u64,
        /// The log file.
        log: PathBuf,
        /// Its generation.
        log_gen: u64,
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
    /// Shorthand for an I/O error with its context.
    pub fn io(action: &'static str, path: &std::path::Path, source: io::Error) -> StoreError {
        StoreError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// True for damage or a lock timeout (exit code 2); false for user errors.
    pub fn is_damage(&self) -> bool {
        !matches!(
            self,
            StoreError::NotAProject { .. }
                | StoreError::AlreadyExists { .. }
                | StoreError::OrphanLog { .. }
                | StoreError::Rejected(_)
        )
    }
}
