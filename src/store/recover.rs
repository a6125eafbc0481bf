//! Loading the state from both files, and what recovery does about the tail.
//!
//! [`load`] reads and never writes: readers use it as is. Writers call it
//! under the lock and then act on what it found ([`super::Store`]): cut a
//! torn tail, finish an interrupted compaction, remove temp files. Damage in
//! the middle is returned as an error and nothing is touched (DESIGN.md,
//! "Recovery").

use std::io::ErrorKind;

use super::cache;
use super::error::StoreError;
use super::fs::{FileId, Fs};
use super::log::{self, Scan, Tail};
use super::record;
use super::snapshot::{self, Mark};
use super::Paths;
use crate::model::Project;

/// The log as found on disk.
#[derive(Debug)]
pub struct LogFound {
    /// Generation in its header.
    pub generation: u64,
    /// Identity when read.
    pub id: FileId,
    /// Its records and how they end.
    pub scan: Scan,
    /// True when the log is the previous generation of `containers.yaml`:
    /// a compaction renamed the new YAML in and died before replacing the log.
    pub folded: bool,
}

/// Everything read from the two files.
#[derive(Debug)]
pub struct Loaded {
    /// The state: snapshot plus every complete record after it.
    pub project: Project,
    /// The snapshot's mark; `None` if another tool wrote the file.
    pub mark: Option<Mark>,
    /// Identity of `containers.yaml` when read.
    pub yaml_id: FileId,
    /// The log, if there is one.
    pub log: Option<LogFound>,
    /// Sequence number of the last record in the state.
    pub last_seq: u64,
    /// Set when the YAML had to be parsed, so that a writer can cache it.
    pub cache_miss: Option<CacheMiss>,
    /// Keys of the YAML ldm ignores (dotted paths), dropped at the next
    /// compaction.
    pub unknown_keys: Vec<String>,
}

/// A parsed `containers.yaml` that the load cache did not have.
#[derive(Debug)]
pub struct CacheMiss {
    /// The exact bytes parsed.
    pub yaml: Vec<u8>,
    /// What they parse to (before the log is applied).
    pub project: Project,
    /// Their mark.
    pub mark: Option<Mark>,
}

/// Reads the snapshot and the log and replays the log onto the snapshot.
/// A torn tail is left in `log.scan.tail` for the caller; damage is an error.
pub fn load(fs: &dyn Fs, paths: &Paths) -> Result<Loaded, StoreError> {
    let yaml_id = fs
        .stat(&paths.yaml)
        .map_err(|e| not_found_or_io(e, paths, "read"))?;
    let bytes = fs
        .read(&paths.yaml)
        .map_err(|e| not_found_or_io(e, paths, "read"))?;
    let unknown_keys;
    let (mut project, mark, cache_miss) = match cache::read(fs, paths, &bytes) {
        Some(cached) => {
            // Made from these very bytes by an ldm whose rules may differ.
            validated(paths, &cached.project)?;
            unknown_keys = cached.unknown;
            (cached.project, cached.mark, None)
        }
        None => {
            let (project, mark, unknown) = parse_yaml_with_unknown(paths, &bytes)?;
            unknown_keys = unknown;
            let miss = CacheMiss {
                yaml: bytes,
                project: project.clone(),
                mark,
            };
            (project, mark, Some(miss))
        }
    };
    let mut last_seq = mark.map_or(0, |m| m.seq);

    let log = match fs.read(&paths.log) {
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(StoreError::io("read", &paths.log, e)),
        Ok(bytes) => {
            let id = fs
                .stat(&paths.log)
                .map_err(|e| StoreError::io("read", &paths.log, e))?;
            let header = record::decode_header(&bytes).map_err(|error| StoreError::BadHeader {
                path: paths.log.clone(),
                error,
            })?;
            let folded = match mark {
                Some(m) if header.generation == m.generation => false,
                Some(m) if header.generation + 1 == m.generation => true,
                Some(m) => {
                    return Err(StoreError::GenerationMismatch {
                        yaml: paths.yaml.clone(),
                        yaml_gen: m.generation,
                        log: paths.log.clone(),
                        log_gen: header.generation,
                    })
                }
                None => false,
            };
            let expect = if folded { None } else { mark.map(|m| m.seq) };
            let scan = log::scan(&bytes[record::HEADER_LEN..], log::FIRST_RECORD, expect);
            // A folded log is the previous generation: compaction (or a
            // repair, which may have dropped damaged records) put everything
            // it keeps into the YAML under the lock, so its content no longer
            // matters, damaged or not. The next writer replaces it.
            if !folded {
                if let Tail::Corrupt { offset, reason, .. } = &scan.tail {
                    return Err(StoreError::Corrupt {
                        path: paths.log.clone(),
                        offset: *offset,
                        reason: reason.clone(),
                    });
                }
                replay(&mut project, &scan, paths)?;
                if let Some(e) = scan.entries.last() {
                    last_seq = e.seq;
                }
            }
            Some(LogFound {
                generation: header.generation,
                id,
                scan,
                folded,
            })
        }
    };
    Ok(Loaded {
        project,
        mark,
        yaml_id,
        log,
        last_seq,
        cache_miss,
        unknown_keys,
    })
}

/// Applies the scanned records to `project`; a record that does not apply is
/// reported with its sequence number and offset.
pub fn replay(project: &mut Project, scan: &Scan, paths: &Paths) -> Result<(), StoreError> {
    for e in &scan.entries {
        for m in &e.mutations {
            project.apply(m).map_err(|error| StoreError::Replay {
                path: paths.log.clone(),
                seq: e.seq,
                offset: e.offset,
                error,
            })?;
        }
    }

    Ok(())
}

/// Parses and validates the bytes of `containers.yaml`.
pub fn parse_yaml(paths: &Paths, bytes: &[u8]) -> Result<(Project, Option<Mark>), StoreError> {
    parse_yaml_with_unknown(paths, bytes).map(|(project, mark, _)| (project, mark))
}

/// [`parse_yaml`], plus the keys ldm does not know (see [`snapshot::decode_with_unknown`]).
pub fn parse_yaml_with_unknown(
    paths: &Paths,
    bytes: &[u8],
) -> Result<(Project, Option<Mark>, Vec<String>), StoreError> {
    let text = std::str::from_utf8(bytes).map_err(|e| StoreError::Yaml {
        path: paths.yaml.clone(),
        line: None,
        column: None,
        message: format!(
            "the file is not UTF-8 text (bad byte at offset {})",
            e.valid_up_to()
        ),
    })?;
    let (project, mark, unknown) =
        snapshot::decode_with_unknown(text).map_err(|e| StoreError::Yaml {
            path: paths.yaml.clone(),
            line: e.line,
            column: e.column,
            message: e.message,
        })?;
    validated(paths, &project)?;
    Ok((project, mark, unknown))
}

/// Checks the values of a loaded `containers.yaml`; errors name the key.
fn validated(paths: &Paths, project: &Project) -> Result<(), StoreError> {
    project
        .validate()
        .map_err(|(key, error)| StoreError::Invalid {
            path: paths.yaml.clone(),
            key,
            error,
        })
}

fn not_found_or_io(e: std::io::Error, paths: &Paths, action: &'static str) -> StoreError {
    if e.kind() == ErrorKind::NotFound {
        StoreError::NotAProject {
            start: paths.dir.clone(),
        }
    } else {
        StoreError::io(action, &paths.yaml, e)
    }
}

/// Prefixes of the temp files compaction and `create` write.
pub const TEMP_PREFIXES: [&str; 3] = [
    ".containers.yaml.tmp-",
    ".containers.log.tmp-",
    cache::CACHE_TMP_PREFIX,
];

/// Removes temp files a dead compaction left behind. Only under the lock:
/// the only process that could own one is the lock holder, which is us.
pub fn remove_temps(fs: &dyn Fs, paths: &Paths) -> Result<Vec<std::path::PathBuf>, StoreError> {
    let names = fs
        .list(&paths.dir)
        .map_err(|e| StoreError::io("list", &paths.dir, e))?;
    let mut removed = Vec::new();
    for name in names {
        let Some(s) = name.to_str() else { continue };
        if TEMP_PREFIXES.iter().any(|p| s.starts_with(p)) {
            let path = paths.dir.join(s);
            match fs.remove(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", &path, e)),
            }
        }
    }
    Ok(removed)
}
