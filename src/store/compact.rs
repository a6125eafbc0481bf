//! Compaction: fold the log into a new `containers.yaml`, then start a new
//! log generation. Also the atomic file replacement both steps use.
//!
//! Order (DESIGN.md, "Compaction"), each step a crash point:
//! 1. write `.containers.yaml.tmp-PID`, fdatasync it;
//! 2. rename it over `containers.yaml`, fsync the folder: the new YAML (mark
//!    generation G+1) is durable before anything touches the old log;
//! 3. write `.containers.log.tmp-PID` holding only a generation G+1 header,
//!    fdatasync, rename over `containers.log`, fsync the folder.
//!
//! A crash before 2 leaves the old pair; between 2 and 3 a G+1 YAML with a
//! G log, which [`super::recover::load`] reads as "folded" and the next
//! writer finishes; after 3 the new pair. No record is lost or applied twice.

use std::path::Path;

use super::cache;
use super::error::StoreError;
use super::failpoint;
use super::fs::Fs;
use super::log;
use super::snapshot::{self, Mark};
use super::Paths;
use crate::model::Project;

/// Writes `bytes` to `tmp`, syncs it, renames it to `target` and syncs the
/// folder. `point` names the fail points (`{point}.written` etc.).
pub fn replace(
    fs: &dyn Fs,
    dir: &Path,
    tmp: &Path,
    target: &Path,
    bytes: &[u8],
    point: &str,
) -> Result<(), StoreError> {
    fs.write_new(tmp, bytes)
        .map_err(|e| cleanup(fs, tmp, StoreError::io("write", tmp, e)))?;
    failpoint::hit(&format!("{point}.written"));
    fs.sync(tmp)
        .map_err(|e| cleanup(fs, tmp, StoreError::io("fsync", tmp, e)))?;
    failpoint::hit(&format!("{point}.synced"));
    fs.rename(tmp, target)
        .map_err(|e| cleanup(fs, tmp, StoreError::io("rename into place", tmp, e)))?;
    failpoint::hit(&format!("{point}.renamed"));
    fs.sync_dir(dir)
        .map_err(|e| StoreError::io("fsync the folder", dir, e))?;
    failpoint::hit(&format!("{point}.dir-synced"));
    Ok(())
}

fn cleanup(fs: &dyn Fs, tmp: &Path, err: StoreError) -> StoreError {
    let _ = fs.remove(tmp);
    err
}

/// Temp file names for this process.
pub fn temp_paths(paths: &Paths) -> (std::path::PathBuf, std::path::PathBuf) {
    let pid = std::process::id();
    (
        paths.dir.join(format!(".containers.yaml.tmp-{pid}")),
        paths.dir.join(format!(".containers.log.tmp-{pid}")),
    )
}

/// Writes `project` as the new snapshot with `mark`.
pub fn write_snapshot(
    fs: &dyn Fs,
    paths: &Paths,
    project: &Project,
    mark: Mark,
) -> Result<(), StoreError> {
    let text = snapshot::encode(project, mark).map_err(|e| StoreError::Yaml {
        path: paths.yaml.clone(),
        line: None,
        column: None,
        message: e.message,
    })?;
    let (tmp, _) = temp_paths(paths);
    replace(
        fs,
        &paths.dir,
        &tmp,
        &paths.yaml,
        text.as_bytes(),
        "compact.yaml",
    )?;
    cache::write(fs, paths, text.as_bytes(), project, Some(mark), &[]);
    Ok(())
}

/// Replaces the log with an empty one of `generation`.
pub fn write_empty_log(fs: &dyn Fs, paths: &Paths, generation: u64) -> Result<(), StoreError> {
    let (_, tmp) = temp_paths(paths);
    replace(
        fs,
        &paths.dir,
        &tmp,
        &paths.log,
        &log::new_file(generation),
        "compact.log",
    )
}

/// Runs steps 1 to 3 for a state whose log is `log_gen` and whose last
/// record is `last_seq`; returns the new mark.
pub fn compact(
    fs: &dyn Fs,
    paths: &Paths,
    project: &Project,
    mark: Option<Mark>,
    log_gen: Option<u64>,
    last_seq: u64,
) -> Result<Mark, StoreError> {
    let current = mark.map_or(0, |m| m.generation).max(log_gen.unwrap_or(0));
    let new = Mark {
        generation: current + 1,
        seq: last_seq,
    };
    write_snapshot(fs, paths, project, new)?;
    write_empty_log(fs, paths, new.generation)?;
    failpoint::hit("compact.done");
    Ok(new)
}
