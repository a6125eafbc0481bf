//! Files beside the log that keep what ldm takes out of the store, so that
//! nothing is ever lost silently (DESIGN.md, "Bytes ldm cuts"):
//!
//! - `containers.log.broken-TIME`: the whole log, before `doctor --repair`;
//! - `containers.log.cut-TIME`: the tail recovery cut off the log;
//! - `containers.log.dropped-TIME`: ldm's changes a merge with another
//!   writer's `containers.yaml` dropped (the fields and their values, and
//!   the records they came from);
//! - `containers.yaml.edited-TIME`: another writer's `containers.yaml` with
//!   comments or keys ldm does not know, as it was before ldm rewrote it.
//!
//! Each is a new file (a `-N` suffix if the name is taken, so no earlier
//! one is overwritten), fdatasynced and its name made durable by a folder
//! fsync before the caller removes anything from the store.

use std::path::PathBuf;

use serde::Serialize;

use super::error::StoreError;
use super::fs::Fs;
use super::log::Entry;
use super::Paths;
use crate::model::merge::Conflict;
use crate::model::Mutation;

/// Writes `bytes` to a fresh `containers.log.KIND-TIME` and makes it durable.
pub fn keep(fs: &dyn Fs, paths: &Paths, kind: &str, bytes: &[u8]) -> Result<PathBuf, StoreError> {
    keep_as(fs, paths, "containers.log", kind, bytes)
}

/// Keeps the bytes of a `containers.yaml` another writer made, before ldm
/// rewrites it without its comments and unknown keys:
/// `containers.yaml.edited-TIME`.
pub fn keep_yaml(fs: &dyn Fs, paths: &Paths, bytes: &[u8]) -> Result<PathBuf, StoreError> {
    keep_as(fs, paths, "containers.yaml", "edited", bytes)
}

fn keep_as(
    fs: &dyn Fs,
    paths: &Paths,
    file: &str,
    kind: &str,
    bytes: &[u8],
) -> Result<PathBuf, StoreError> {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
    let mut path = paths.dir.join(format!("{file}.{kind}-{stamp}"));
    let mut n = 1;
    while fs.stat(&path).is_ok() {
        n += 1;
        path = paths.dir.join(format!("{file}.{kind}-{stamp}-{n}"));
    }
    fs.write_new(&path, bytes)
        .map_err(|e| StoreError::io("write", &path, e))?;
    fs.sync(&path)
        .map_err(|e| StoreError::io("fsync", &path, e))?;
    fs.sync_dir(&paths.dir)
        .map_err(|e| StoreError::io("fsync the folder", &paths.dir, e))?;
    Ok(path)
}

#[derive(Serialize)]
struct DroppedFile<'a> {
    what: &'static str,
    saved_at: String,
    /// The fields whose value the file's replaced ldm's.
    fields: &'a [Conflict],
    /// ldm's records the merge weighed against the file.
    records: Vec<DroppedRecord<'a>>,
}

#[derive(Serialize)]
struct DroppedRecord<'a> {
    seq: u64,
    mutations: &'a [Mutation],
}

/// Keeps the changes of ldm's that a merge dropped, as JSON a person can
/// read and re-apply by hand (`ldm config set ...`).
pub fn keep_dropped(
    fs: &dyn Fs,
    paths: &Paths,
    fields: &[Conflict],
    records: &[Entry],
) -> Result<PathBuf, StoreError> {
    let file = DroppedFile {
        what: "changes made by ldm that a later edit of containers.yaml by another program or a person overrode; the file's values were kept",
        saved_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        fields,
        records: records
            .iter()
            .map(|e| DroppedRecord {
                seq: e.seq,
                mutations: &e.mutations,
            })
            .collect(),
    };
    let mut text = serde_json::to_vec_pretty(&file).unwrap_or_default();
    text.push(b'\n');
    keep(fs, paths, "dropped", &text)
}
