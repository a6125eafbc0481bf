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
use ldm_model::merge::Conflict;

/// Writes `bytes` to a fresh `containers.log.KIND-TIME` and makes it durable.
pub fn keep(fs: &dyn Fs, paths: &Paths, kind: &str, bytes: &[u8]) -> Result<PathBuf, StoreError> {
    keep_as(fs, paths, "containers.log", kind, bytes)
}

/// Keeps the bytes of a `containers.yaml` another writer made as
/// `containers.yaml.edited-TIME`, exactly: a save ldm displaced (a crash,
/// a save racing a fold) may have no other copy.
pub fn keep_yaml(fs: &dyn Fs, paths: &Paths, bytes: &[u8]) -> Result<PathBuf, StoreError> {
    keep_as(fs, paths, "containers.yaml", "edited", bytes)
}

/// Keeps another writer's `containers.yaml` before ldm rewrites it without
/// its comments and unknown keys, its values merged into the rewrite:
/// `containers.yaml.edited-TIME`, every byte but the values of its
/// `password` keys ([`ldm_yaml::redact`]). The copy is in the project
/// folder, which containers read, and would outlive the password
/// (review-trust finding 6); the password itself is in the rewrite.
pub fn keep_yaml_redacted(fs: &dyn Fs, paths: &Paths, bytes: &[u8]) -> Result<PathBuf, StoreError> {
    let text = String::from_utf8_lossy(bytes);
    let kept = ldm_yaml::redact::passwords(&text);
    let bytes = match (&text, &kept) {
        (std::borrow::Cow::Borrowed(_), std::borrow::Cow::Borrowed(_)) => bytes,
        _ => kept.as_bytes(),
    };
    keep_as(fs, paths, "containers.yaml", "edited", bytes)
}

/// `v` with the string value of every `password` key hidden.
fn hide_passwords(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "password" && x.is_string() {
                    *x = HIDDEN.into();
                } else {
                    hide_passwords(x);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(hide_passwords),
        _ => {}
    }
}

/// What a password becomes in a kept copy.
const HIDDEN: &str = "(a password: removed from this copy)";

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
struct DroppedFile {
    what: &'static str,
    saved_at: String,
    /// The fields whose value the file's replaced ldm's (passwords hidden).
    fields: Vec<Conflict>,
    /// ldm's records the merge weighed against the file (passwords hidden).
    records: Vec<DroppedRecord>,
}

#[derive(Serialize)]
struct DroppedRecord {
    seq: u64,
    mutations: serde_json::Value,
}

/// Keeps the changes of ldm's that a merge dropped, as JSON a person can
/// read and re-apply by hand (`ldm config set ...`).
pub fn keep_dropped(
    fs: &dyn Fs,
    paths: &Paths,
    fields: &[Conflict],
    records: &[Entry],
) -> Result<PathBuf, StoreError> {
    // Passwords are hidden: the file is in the project folder and outlives
    // them (review-trust finding 6); a dropped one is set again by hand.
    let fields = fields
        .iter()
        .cloned()
        .map(|mut c| {
            if c.field == "password" || c.field.ends_with(".password") {
                for v in [&mut c.kept, &mut c.dropped] {
                    if v.is_string() {
                        *v = HIDDEN.into();
                    }
                }
            }
            hide_passwords(&mut c.kept);
            hide_passwords(&mut c.dropped);
            c
        })
        .collect();
    let file = DroppedFile {
        what: "changes made by ldm that a later edit of containers.yaml by another program or a person overrode; the file's values were kept (passwords are not kept here: set them again with `ldm config set`)",
        saved_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        fields,
        records: records
            .iter()
            .map(|e| {
                let mut mutations = serde_json::to_value(&e.mutations).unwrap_or_default();
                hide_passwords(&mut mutations);
                DroppedRecord {
                    seq: e.seq,
                    mutations,
                }
            })
            .collect(),
    };
    let mut text = serde_json::to_vec_pretty(&file).unwrap_or_default();
    text.push(b'\n');
    keep(fs, paths, "dropped", &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review-trust finding 6: a password in a conflict, whole or inside
    /// a container's value, and in a record is hidden in `.dropped`.
    #[test]
    fn passwords_are_hidden_in_the_dropped_copy() {
        let mut v = serde_json::json!({
            "user": {"name": "ann", "password": "OLD-1"},
            "ops": [{"op": "user_password_set", "password": "OLD-2"}, {"password": null}],
        });
        hide_passwords(&mut v);
        let text = v.to_string();
        assert!(!text.contains("OLD-") && text.contains("\"ann\""), "{text}");
        assert_eq!(v["ops"][1]["password"], serde_json::Value::Null);
    }
}
