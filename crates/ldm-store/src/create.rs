//! `ldm create` and `ldm project delete` at the file level: refuse over an
//! existing project, write the YAML and an empty log under both locks,
//! remove what a failed create made; remove a project's files in a
//! crash-safe order (DESIGN.md, "Lock protocol").

use super::cache::OLD_FILES;
use super::cleanup;
use super::compact;
use super::error::StoreError;
use super::fs::Fs;
use super::lock;
use super::options::Options;
use super::{Mark, Paths};
use ldm_model::Project;

/// [`Store::create`]: refuses over an existing project, then writes the
/// YAML and an empty log under both locks; on failure removes what it made.
pub(super) fn create(paths: &Paths, project: &Project, opts: &Options) -> Result<(), StoreError> {
    let dir = paths.dir.as_path();
    let fs = &*opts.fs;
    let refuse = |paths: &Paths| {
        if fs.stat(&paths.yaml).is_ok() {
            return Err(StoreError::AlreadyExists {
                path: paths.yaml.clone(),
            });
        }
        if fs.stat(&paths.log).is_ok() {
            return Err(StoreError::OrphanLog {
                path: paths.log.clone(),
            });
        }
        Ok(())
    };
    // Checked before taking the locks too, so that a refusal leaves the
    // folder as it was (taking a lock creates its file); and again under
    // them, for a create racing this one.
    refuse(paths)?;
    let go_path = dir.join(lock::GO_LOCK_FILE);
    let made_locks: Vec<std::path::PathBuf> = [&paths.lock, &go_path]
        .into_iter()
        .filter(|p| std::fs::symlink_metadata(p).is_err())
        .cloned()
        .collect();
    let guards = lock::acquire(&paths.lock, opts.lock_timeout, &opts.holder, opts.trust)
        .and_then(|g| Ok((g, lock::acquire_go(dir, opts.lock_timeout, opts.trust)?)));
    let result = guards.map_err(StoreError::from).and_then(|_guards| {
        refuse(paths)?;
        for n in cleanup::remove_temps(fs, paths)? {
            (opts.notify)(&n);
        }
        let id = compact::new_log_id();
        let mark = Mark {
            generation: 1,
            seq: 0,
            log: Some(id),
        };
        let made = compact::fold(fs, paths, project, mark, None, "create")
            .and_then(|_| compact::write_empty_log(fs, paths, 1, &id, 0, "create"));
        if made.is_err() {
            // Whatever was made goes again: a failed create leaves nothing
            // that makes the next one say "already exists".
            let _ = remove_files(fs, paths);
        }
        made
    });
    if result.is_err() {
        for p in &made_locks {
            // Safe even if another create waits on it: the waiter finds its
            // file gone from the path and starts over (lock.rs).
            let _ = std::fs::remove_file(p);
        }
    }
    result
}

/// Removes the log, the base, the cache and `containers.yaml`, in that
/// order, and makes it durable; the lock files stay. (A base left by a
/// crash in between names a log that is gone: never used again.)
pub(super) fn remove_files(fs: &dyn Fs, paths: &Paths) -> Result<(), StoreError> {
    let old = OLD_FILES.map(|name| paths.dir.join(name));
    let derived = [paths.base(), paths.cache()];
    let all = std::iter::once(&paths.log)
        .chain(derived.iter().flatten())
        .chain(&old)
        .chain(std::iter::once(&paths.yaml));
    for path in all {
        match fs.remove(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("remove", path, e)),
        }
    }
    fs.sync_dir(&paths.dir)
        .map_err(|e| StoreError::io("fsync the folder", &paths.dir, e))
}
