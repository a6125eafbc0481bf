//! Folding and compaction: writing the state into `containers.yaml`, and
//! replacing the log once it has grown. Also the atomic file replacement
//! both use.
//!
//! A **fold** (DESIGN.md, "Fold"), each step a crash point:
//! 1. write `.containers.yaml.tmp-PID-SALT` (mark: this log, last seq), fdatasync;
//! 2. rename it over `containers.yaml`;
//! 3. write the base `.containers.folded` (what was just folded) by temp,
//!    fdatasync and rename, and remove a stale `.containers.cache`;
//! 4. fsync the folder.
//!
//! The log is not touched: records up to the mark's seq are simply skipped
//! by the next load. A crash before 2 leaves the old YAML; after 2 the new
//! one, which says by its own checksum that it is ldm's fold (so a base left
//! stale by a crash before 3 is rewritten, never trusted).
//!
//! A **compaction** is a fold with the generation bumped, then a new empty
//! log of the same identity starting after the last seq: temp, fdatasync,
//! rename, folder fsync. A crash between the two leaves a YAML that already
//! holds every record of the old log, which the next load skips.

use std::path::Path;

use super::cache::{self, Key, CACHE_FILE, FOLDED_FILE};
use super::error::StoreError;
use super::failpoint;
use super::fs::Fs;
use super::record::{self, LogId};
use super::snapshot::{self, Doc, Mark, Written};
use super::Paths;
use crate::model::Project;

/// Writes `bytes` to `tmp`, fdatasyncs it and renames it to `target`;
/// no folder fsync. `point` names the fail points (`{point}.written` etc.).
fn write_and_rename(
    fs: &dyn Fs,
    tmp: &Path,
    target: &Path,
    bytes: &[u8],
    point: &str,
) -> Result<(), StoreError> {
    let cleanup = |err: StoreError| {
        let _ = fs.remove(tmp);
        err
    };
    fs.write_new(tmp, bytes)
        .map_err(|e| cleanup(StoreError::io("write", tmp, e)))?;
    failpoint::hit(&format!("{point}.written"));
    fs.sync(tmp)
        .map_err(|e| cleanup(StoreError::io("fsync", tmp, e)))?;
    failpoint::hit(&format!("{point}.synced"));
    fs.rename(tmp, target)
        .map_err(|e| cleanup(StoreError::io("rename into place", tmp, e)))?;
    failpoint::hit(&format!("{point}.renamed"));
    Ok(())
}

fn sync_dir(fs: &dyn Fs, dir: &Path, point: &str) -> Result<(), StoreError> {
    fs.sync_dir(dir)
        .map_err(|e| StoreError::io("fsync the folder", dir, e))?;
    failpoint::hit(&format!("{point}.dir-synced"));
    Ok(())
}

/// Fresh temp file names (`.containers.yaml.tmp-PID-SALT`, and the log's):
/// the pid says whose, the random salt keeps a name someone took (a folder
/// named `.containers.yaml.tmp-1234`) from ever being ours.
pub fn temp_paths(paths: &Paths) -> (std::path::PathBuf, std::path::PathBuf) {
    let tail = temp_tail();
    (
        paths.dir.join(format!(".containers.yaml.tmp-{tail}")),
        paths.dir.join(format!(".containers.log.tmp-{tail}")),
    )
}

/// `PID-SALT` for a temp file name: 8 random hex digits after the pid.
pub fn temp_tail() -> String {
    let salt = new_log_id();
    format!(
        "{}-{}",
        std::process::id(),
        super::snapshot::hex(&salt[..4])
    )
}

/// Steps 1 to 4 of a fold: `project` as `containers.yaml` with `mark`, and
/// its base. `point` prefixes the fail points (`fold`, `compact`, `create`).
pub fn fold(
    fs: &dyn Fs,
    paths: &Paths,
    project: &Project,
    mark: Mark,
    point: &str,
) -> Result<(), StoreError> {
    let text = snapshot::encode(project, mark).map_err(|e| StoreError::Yaml {
        path: paths.yaml.clone(),
        line: None,
        column: None,
        message: e.message,
    })?;
    let (tmp, _) = temp_paths(paths);
    let yaml_point = format!("{point}.yaml");
    write_and_rename(fs, &tmp, &paths.yaml, text.as_bytes(), &yaml_point)?;
    let base = Doc {
        project: project.clone(),
        mark: Some(mark),
        written: Written::ByLdm,
        unknown: Vec::new(),
    };
    let key = Key::of(text.as_bytes());
    let base_path = paths.dir.join(FOLDED_FILE);
    cache::write(fs, paths, FOLDED_FILE, &key, &base, cache::Sync::Data)
        .map_err(|e| StoreError::io("write", &base_path, e))?;
    cache::remove(fs, paths, CACHE_FILE);
    failpoint::hit(&format!("{point}.base.renamed"));
    sync_dir(fs, &paths.dir, &yaml_point)
}

/// Replaces the log with an empty one: `generation`, identity `id`, first
/// record `prev_seq + 1`.
pub fn write_empty_log(
    fs: &dyn Fs,
    paths: &Paths,
    generation: u64,
    id: &LogId,
    prev_seq: u64,
    point: &str,
) -> Result<(), StoreError> {
    let (_, tmp) = temp_paths(paths);
    let log_point = format!("{point}.log");
    let header = record::encode_header(generation, id, prev_seq);
    write_and_rename(fs, &tmp, &paths.log, &header, &log_point)?;
    sync_dir(fs, &paths.dir, &log_point)
}

/// A compaction: fold `project` (records up to `last_seq`) as generation
/// `generation + 1`, then start an empty log after it. Returns the new mark.
pub fn compact(
    fs: &dyn Fs,
    paths: &Paths,
    project: &Project,
    generation: u64,
    id: &LogId,
    last_seq: u64,
) -> Result<Mark, StoreError> {
    let mark = Mark {
        generation: generation.saturating_add(1),
        seq: last_seq,
        log: Some(*id),
    };
    fold(fs, paths, project, mark, "compact")?;
    write_empty_log(fs, paths, mark.generation, id, last_seq, "compact")?;
    failpoint::hit("compact.done");
    Ok(mark)
}

/// A fresh random log identity.
pub fn new_log_id() -> LogId {
    let mut id = [0u8; record::LOG_ID_LEN];
    // SAFETY: getrandom writes at most id.len() bytes into id.
    let n = unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0) };
    if n != id.len() as isize {
        // Without the kernel's randomness, time and pid still tell two
        // logs apart; the identity is not a secret.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        id[..16].copy_from_slice(&(t ^ (u128::from(std::process::id()) << 96)).to_le_bytes());
    }
    id
}
