//! Leftovers a writer removes under the lock before it loads: temp files
//! of commands that died (DESIGN.md, "Files"), and the derived files an
//! older ldm kept in the project folder ("The base and the load cache").
//! A YAML temp that is not ldm's own fold is kept, never removed unseen.

use std::io::ErrorKind;

use super::cache;
use super::error::StoreError;
use super::fs::Fs;
use super::options::Notice;
use super::snapshot::{self, Written};
use super::Paths;

/// Prefixes of the temp files of folds, compactions and `create` (and of
/// the load cache of ldm versions that kept it in the project folder).
pub const TEMP_PREFIXES: [&str; 3] = [
    ".containers.yaml.tmp-",
    ".containers.log.tmp-",
    ".containers.cache.tmp-",
];

/// Removes the derived files an older ldm kept in the project folder
/// (`.containers.folded`, `.containers.cache`): never read any more, since
/// anyone who can write the folder could plant one. Under the lock, as
/// [`remove_temps`]; also the base's leftover temp files, which only the
/// lock holder writes.
pub fn remove_old_files(fs: &dyn Fs, paths: &Paths) -> Result<Vec<std::path::PathBuf>, StoreError> {
    let mut removed = Vec::new();
    for name in cache::OLD_FILES {
        let path = paths.dir.join(name);
        // Absent (the usual case), a folder, or a file ldm may not remove:
        // nothing to do, not ldm's to touch.
        if fs.remove(&path).is_ok() {
            removed.push(path);
        }
    }
    if let Some(state) = paths.derived.as_ref().map(|d| &d.state) {
        let prefix = format!("{}{}-", cache::TMP_PREFIX, cache::BASE_FILE);
        for name in fs.list(state).unwrap_or_default() {
            if name.to_str().is_some_and(|s| s.starts_with(&prefix)) {
                let _ = fs.remove(&state.join(name));
            }
        }
    }
    Ok(removed)
}

/// Removes temp files a dead command left behind, and says so. Only under
/// the lock: the only process that could own one is the lock holder, which
/// is us. Anything else with such a name (a folder) is not ldm's: left
/// alone, and never in the way, since ldm's own temp names are fresh each
/// time. A YAML temp that is not ldm's own fold is another program's save
/// that a fold swapped out just before a crash (DESIGN.md, "Fold"): it is
/// kept as `containers.yaml.edited-TIME`, never removed unseen.
pub fn remove_temps(fs: &dyn Fs, paths: &Paths) -> Result<Vec<Notice>, StoreError> {
    let names = fs
        .list(&paths.dir)
        .map_err(|e| StoreError::io("list", &paths.dir, e))?;
    let mut out = Vec::new();
    for name in names {
        let Some(s) = name.to_str() else { continue };
        if TEMP_PREFIXES.iter().any(|p| s.starts_with(p)) {
            let path = paths.dir.join(s);
            if s.starts_with(TEMP_PREFIXES[0]) {
                if let Some(saved) = keep_if_foreign(fs, paths, &path)? {
                    out.push(Notice::TempKept {
                        path: path.clone(),
                        saved,
                    });
                }
            }
            match fs.remove(&path) {
                Ok(()) => out.push(Notice::TempRemoved { path }),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) if e.kind() == ErrorKind::IsADirectory => {}
                Err(e) => return Err(StoreError::io("remove", &path, e)),
            }
        }
    }
    Ok(out)
}

/// A copy of the YAML temp at `path` if it is not a fold of ldm's (whose
/// mark's checksum holds): another program's save, swapped out.
fn keep_if_foreign(
    fs: &dyn Fs,
    paths: &Paths,
    path: &std::path::Path,
) -> Result<Option<std::path::PathBuf>, StoreError> {
    let Ok(bytes) = fs.read(path) else {
        return Ok(None);
    };
    let ours = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|t| snapshot::decode(t).ok())
        .is_some_and(|d| d.written == Written::ByLdm);
    // An empty or cut temp is a fold that never finished: ldm's.
    if ours || bytes.is_empty() || !bytes.ends_with(b"\n") {
        return Ok(None);
    }
    super::backup::keep_yaml(fs, paths, &bytes).map(Some)
}
