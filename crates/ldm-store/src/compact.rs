//! Folding and compaction: writing the state into `containers.yaml`, and
//! replacing the log once it has grown. Also the atomic file replacement
//! both use.
//!
//! A **fold** (DESIGN.md, "Fold"), each step a crash point:
//! 1. write `.containers.yaml.tmp-PID-SALT` (mark: this log, last seq),
//!    fdatasync;
//! 2. swap it with `containers.yaml` (`renameat2(RENAME_EXCHANGE)`) and
//!    look at what came out: the file ldm loaded is removed; a file another
//!    program saved meanwhile is put back and kept as a copy (nothing of
//!    it is overwritten unseen), and the fold is left for the next command;
//! 3. fsync the project folder: the new YAML is durable before any base
//!    names it;
//! 4. write the base (the checkout's state folder) by temp, fdatasync,
//!    rename, and fsync its folder.
//!
//! The log is not touched: records up to the mark's seq are simply skipped
//! by the next load. A crash before 2 leaves the old YAML; after 2 the new
//! one, which says by its own checksum that it is ldm's fold (so a base left
//! stale by a crash before 4 is rewritten, never trusted). The base is never
//! durably ahead of the YAML (step 3), so an older fold in place of the YAML
//! can only be one put back on purpose.
//!
//! A **compaction** is a fold with the generation bumped, then a new empty
//! log of the same identity starting after the last seq: temp, fdatasync,
//! rename, folder fsync. A crash between the two leaves a YAML that already
//! holds every record of the old log, which the next load skips.

use std::path::{Path, PathBuf};

use super::backup;
use super::cache::{self, Entry, Key, Stamp};
use super::error::StoreError;
use super::failpoint;
use super::fs::{FileId, Fs};
use super::record::{self, LogId};
use super::snapshot::{self, Doc, Mark, Written};
use super::Paths;
use ldm_model::Project;

/// Writes `bytes` to `tmp`, fdatasyncs it and renames it to `target`;
/// no folder fsync. `point` names the fail points (`{point}.written` etc.).
fn write_and_rename(
    fs: &dyn Fs,
    tmp: &Path,
    target: &Path,
    bytes: &[u8],
    point: &str,
) -> Result<(), StoreError> {
    write_synced(fs, tmp, bytes, point)?;
    fs.rename(tmp, target).map_err(|e| {
        let _ = fs.remove(tmp);
        StoreError::io("rename into place", tmp, e)
    })?;
    failpoint::hit(&format!("{point}.renamed"));
    Ok(())
}

/// Writes `bytes` to the new file `tmp` and fdatasyncs it.
fn write_synced(fs: &dyn Fs, tmp: &Path, bytes: &[u8], point: &str) -> Result<(), StoreError> {
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
pub fn temp_paths(paths: &Paths) -> (PathBuf, PathBuf) {
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

/// What a fold did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Folded {
    /// The new YAML is in place (this file) and the base describes it.
    Done(FileId),
    /// Another program saved `containers.yaml` after ldm loaded it and
    /// before the fold's swap: its file was put back and a copy kept in
    /// `saved`; ldm's state is in the log only, the next load merges it.
    Overtaken {
        /// The copy of the other program's file.
        saved: PathBuf,
    },
}

/// Steps 1 to 4 of a fold: `project` as `containers.yaml` with `mark`, and
/// its base. `loaded` is the YAML file the state was loaded from (`None`
/// when there is none: `create`); a save by another program that replaced
/// it meanwhile is never overwritten ([`Folded::Overtaken`]). `point`
/// prefixes the fail points (`fold`, `compact`, `create`, `merge`).
pub fn fold(
    fs: &dyn Fs,
    paths: &Paths,
    project: &Project,
    mark: Mark,
    loaded: Option<FileId>,
    point: &str,
) -> Result<Folded, StoreError> {
    let text = snapshot::encode(project, mark).map_err(|e| StoreError::Yaml {
        path: paths.yaml.clone(),
        line: None,
        column: None,
        message: e.message,
    })?;
    let (tmp, _) = temp_paths(paths);
    let yaml_point = format!("{point}.yaml");
    write_synced(fs, &tmp, text.as_bytes(), &yaml_point)?;
    let swapped = swap_in(fs, paths, &tmp, loaded);
    let _ = fs.remove(&tmp);
    let swapped = swapped?;
    failpoint::hit(&format!("{yaml_point}.renamed"));
    sync_dir(fs, &paths.dir, &yaml_point)?;
    if let Some(saved) = swapped {
        return Ok(Folded::Overtaken { saved });
    }
    let yaml_id = fs
        .stat(&paths.yaml)
        .map_err(|e| StoreError::io("read", &paths.yaml, e))?;
    if let Some(base_path) = paths.base() {
        let entry = Entry {
            key: Key::of(text.as_bytes()),
            stamp: Stamp::of(fs, yaml_id),
            seen_ns: fs.now_ns(),
            extras: false,
            doc: Doc {
                project: project.clone(),
                mark: Some(mark),
                written: Written::ByLdm,
                unknown: Vec::new(),
            },
        };
        write_base(fs, &base_path, &entry)?;
    }
    failpoint::hit(&format!("{point}.base.renamed"));
    Ok(Folded::Done(yaml_id))
}

/// Writes the base durably: temp, fdatasync, rename, fsync of its folder.
/// Without the last, a power loss could keep no base at all (its name was
/// never durable), and a merge with another writer's file would then list
/// every change of ldm's in the log as dropped.
pub fn write_base(fs: &dyn Fs, path: &Path, entry: &Entry) -> Result<(), StoreError> {
    cache::write(fs, path, entry, cache::Sync::Data)
        .map_err(|e| StoreError::io("write", path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs.sync_dir(dir)
        .map_err(|e| StoreError::io("fsync the folder", dir, e))
}

/// Puts the synced temp `tmp` in place of `containers.yaml`. `None` when
/// it is in; `Some(copy)` when another program had saved the YAML since
/// `loaded` was read: that save is put back and copied to `copy`.
fn swap_in(
    fs: &dyn Fs,
    paths: &Paths,
    tmp: &Path,
    loaded: Option<FileId>,
) -> Result<Option<PathBuf>, StoreError> {
    let yaml = &paths.yaml;
    let rename = || {
        fs.rename(tmp, yaml)
            .map_err(|e| StoreError::io("rename into place", tmp, e))
    };
    let Some(loaded) = loaded else {
        rename()?;
        return Ok(None);
    };
    let ours = fs.stat(tmp).map_err(|e| StoreError::io("read", tmp, e))?;
    match fs.exchange(tmp, yaml) {
        Ok(()) => {}
        // Removed meanwhile: nothing to overwrite.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            rename()?;
            return Ok(None);
        }
        // No swap here (some file systems): look, then rename. A save in
        // between these two calls is the one window left.
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
            return match fs.stat(yaml) {
                Ok(now) if !now.same_content(&loaded) => {
                    let theirs = fs.read(yaml).map_err(|e| StoreError::io("read", yaml, e))?;
                    Ok(Some(backup::keep_yaml(fs, paths, &theirs)?))
                }
                _ => rename().map(|()| None),
            };
        }
        Err(e) => return Err(StoreError::io("swap into place", tmp, e)),
    }
    // `tmp` now holds what was at `containers.yaml`.
    let out = fs.stat(tmp).map_err(|e| StoreError::io("read", tmp, e))?;
    if out.same_content(&loaded) {
        return Ok(None);
    }
    let theirs = fs.read(tmp).map_err(|e| StoreError::io("read", tmp, e))?;
    let saved = backup::keep_yaml(fs, paths, &theirs)?;
    fs.exchange(tmp, yaml)
        .map_err(|e| StoreError::io("put back", yaml, e))?;
    // `tmp` holds ours again, unless a third save came in between.
    let back = fs.stat(tmp).map_err(|e| StoreError::io("read", tmp, e))?;
    if back.dev_ino != ours.dev_ino {
        let third = fs.read(tmp).map_err(|e| StoreError::io("read", tmp, e))?;
        backup::keep_yaml(fs, paths, &third)?;
    }
    Ok(Some(saved))
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
/// `generation + 1` over the YAML `loaded`, then start an empty log after
/// it. Returns the new mark. A fold overtaken by another program's save
/// leaves the log as it is ([`StoreError::Overtaken`]).
pub fn compact(
    fs: &dyn Fs,
    paths: &Paths,
    project: &Project,
    generation: u64,
    id: &LogId,
    last_seq: u64,
    loaded: Option<FileId>,
) -> Result<Mark, StoreError> {
    let mark = Mark {
        generation: generation.saturating_add(1),
        seq: last_seq,
        log: Some(*id),
    };
    if let Folded::Overtaken { saved } = fold(fs, paths, project, mark, loaded, "compact")? {
        return Err(StoreError::Overtaken {
            path: paths.yaml.clone(),
            saved,
        });
    }
    write_empty_log(fs, paths, mark.generation, id, last_seq, "compact")?;
    failpoint::hit("compact.done");
    Ok(mark)
}

/// A fresh random log identity.
pub fn new_log_id() -> LogId {
    let mut id = [0u8; record::LOG_ID_LEN];
    if ldm_sys::random_bytes(&mut id).is_err() {
        // Without the kernel's randomness, time and pid still tell two
        // logs apart; the identity is not a secret.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        id[..16].copy_from_slice(&(t ^ (u128::from(std::process::id()) << 96)).to_le_bytes());
    }
    id
}
