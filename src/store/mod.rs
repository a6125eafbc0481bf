//! The project store: `containers.yaml` (the compacted state) plus
//! `containers.log` (checksummed mutation records after it), guarded by
//! `containers.lock`. DESIGN.md is the specification; this module doc is the
//! map.
//!
//! Lifecycle of a writing command:
//!
//! ```text
//! Store::open(dir) ── commit(|project| mutations) ──────────────────────────┐
//!   lock (bounded wait) → recover (first time: temps, torn tail, folded log) │
//!   → catch up on records other processes appended → validate → append      │
//!   → fdatasync → maybe compact → unlock                    ← ms, never LXD ┘
//! ```
//!
//! Readers call [`Store::read`]: no lock, no writes; they retry if a
//! compaction swapped the files between their two reads, so they never see
//! two generations mixed.
//!
//! Files: `record.rs` (framing), `log.rs` (scanning), `snapshot.rs` (YAML
//! document), `cache.rs` (load cache), `lock.rs` (store lock), `owner.rs`
//! (operation owners), `recover.rs` (load and tail policy), `compact.rs`,
//! `repair.rs` (`doctor`), `paths.rs`, `options.rs` (options and notices),
//! `fs.rs` (the I/O seam), `failpoint.rs` (test hooks).

mod cache;
mod compact;
mod error;
pub mod failpoint;
pub mod fs;
pub mod lock;
pub mod log;
mod options;
pub mod owner;
mod paths;
pub mod record;
pub mod recover;
pub mod repair;
pub mod snapshot;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use error::StoreError;
pub use fs::{Fs, OsFs};
pub use options::{Notice, Options};
pub use paths::Paths;
pub use snapshot::Mark;

use crate::model::{Mutation, Project};
use fs::FileId;
use log::Tail;

/// Name of the snapshot file.
pub const YAML_FILE: &str = "containers.yaml";
/// Name of the log file.
pub const LOG_FILE: &str = "containers.log";
/// Name of the lock file.
pub const LOCK_FILE: &str = "containers.lock";

/// Default bound on the lock wait.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// Auto-compaction runs once the log is at least this big...
pub const AUTO_COMPACT_MIN_BYTES: u64 = 64 * 1024;
/// ...and at least this many percent of the size of `containers.yaml`.
pub const AUTO_COMPACT_PERCENT: u64 = 100;

/// What this process knows of the files, to catch up instead of reloading.
#[derive(Debug)]
struct View {
    project: Project,
    mark: Option<Mark>,
    yaml_id: FileId,
    /// The log as last seen; `None` if absent.
    log: Option<LogView>,
    last_seq: u64,
}

/// What this process knows of the log file.
#[derive(Debug, Clone, Copy)]
struct LogView {
    generation: u64,
    /// Device and inode: a replaced log has new ones.
    dev_ino: (u64, u64),
    /// Offset just past the last valid record.
    end: u64,
    /// Length and checksum of that record (0 if none), re-checked on
    /// catch-up so that a log rewritten in place (same inode, e.g. `cp
    /// backup containers.log`) is reloaded, not trusted.
    last_len: u64,
    last_crc: u32,
}

impl LogView {
    fn empty(generation: u64, dev_ino: (u64, u64)) -> LogView {
        LogView {
            generation,
            dev_ino,
            end: log::FIRST_RECORD,
            last_len: 0,
            last_crc: 0,
        }
    }
}

/// A handle on one project's store. Holds no lock between calls.
pub struct Store {
    paths: Paths,
    opts: Options,
    view: Option<View>,
    /// Unknown YAML keys are reported once per process, not once per load.
    warned_unknown: AtomicBool,
}

impl Store {
    /// Opens the project at `paths`; reads nothing yet.
    pub fn open(paths: Paths, opts: Options) -> Store {
        Store {
            paths,
            opts,
            view: None,
            warned_unknown: AtomicBool::new(false),
        }
    }

    /// Creates a new project in `dir`: `containers.yaml` with `project`
    /// and an empty log. Refuses if a project is already there.
    pub fn create(dir: &Path, project: &Project, opts: Options) -> Result<Store, StoreError> {
        let paths = Paths::in_dir(dir);
        let fs = opts.fs.clone();
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
        // Checked before taking the lock too, so that a refusal leaves the
        // folder as it was (taking the lock creates containers.lock); and
        // again under the lock, for a create racing this one.
        refuse(&paths)?;
        let _guard = lock::acquire(&paths.lock, opts.lock_timeout, &opts.holder)?;
        refuse(&paths)?;
        for path in recover::remove_temps(&*fs, &paths)? {
            (opts.notify)(&Notice::TempRemoved { path });
        }
        let mark = Mark {
            generation: 1,
            seq: 0,
        };
        compact::write_snapshot(&*fs, &paths, project, mark)?;
        compact::write_empty_log(&*fs, &paths, 1)?;
        Ok(Store::open(paths, opts))
    }

    /// The project's files.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// Reads the current state without locking or writing anything. A torn
    /// tail (perhaps an append in progress) is ignored; damage is an error.
    pub fn read(&self) -> Result<Project, StoreError> {
        let fs = &*self.opts.fs;
        for _ in 0..50 {
            let before = fs.stat(&self.paths.yaml).ok();
            match recover::load(fs, &self.paths) {
                Ok(loaded) if before == Some(loaded.yaml_id) => {
                    self.loaded(&loaded);
                    return Ok(loaded.project);
                }
                // The YAML changed while we read: a compaction swapped the files.
                Ok(_) => {}
                // A log newer than the YAML is only transient if the YAML was
                // replaced meanwhile; otherwise the pair really is mismatched
                // (a restored backup) and the user must hear that.
                Err(e @ StoreError::GenerationMismatch { .. }) => {
                    if fs.stat(&self.paths.yaml).ok() == before {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Err(StoreError::Unstable {
            path: self.paths.dir.clone(),
        })
    }

    /// Under the lock: brings the state up to date, lets `f` look at it and
    /// choose mutations, applies and appends them, and returns after the
    /// fdatasync. `f`'s error aborts with nothing written.
    pub fn commit<T, E>(
        &mut self,
        f: impl FnOnce(&Project) -> Result<(Vec<Mutation>, T), E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let _guard = self.lock()?;
        self.sync_view()?;
        let view = self.view_mut()?;
        let (mutations, out) = f(&view.project)?;
        if mutations.is_empty() {
            return Ok(out);
        }
        self.append(&mutations)?;
        self.maybe_compact();
        Ok(out)
    }

    /// Compacts now, under the lock (`ldm compact`). Returns the new mark.
    pub fn compact(&mut self) -> Result<Mark, StoreError> {
        let _guard = self.lock()?;
        self.sync_view()?;
        self.compact_locked()
    }

    /// Takes the lock and recovers, changing nothing else; for `doctor`.
    pub fn recover(&mut self) -> Result<Project, StoreError> {
        let _guard = self.lock()?;
        self.sync_view()?;
        Ok(self.view_mut()?.project.clone())
    }

    /// Under the lock: backs up and rebuilds a damaged log (`ldm doctor --repair`).
    pub fn repair(&mut self) -> Result<repair::RepairReport, StoreError> {
        let _guard = self.lock()?;
        self.view = None;
        for path in recover::remove_temps(&*self.opts.fs, &self.paths)? {
            (self.opts.notify)(&Notice::TempRemoved { path });
        }
        repair::repair(&*self.opts.fs, &self.paths)
    }

    /// Under the lock: deletes the project's files (`ldm project delete`).
    /// Compacts first, so that a crash between the removals leaves either a
    /// consistent project or nothing: the log goes first (empty after the
    /// compaction), then `containers.yaml`; the lock file stays.
    pub fn destroy(&mut self) -> Result<(), StoreError> {
        let _guard = self.lock()?;
        self.sync_view()?;
        self.compact_locked()?;
        let fs = self.opts.fs.clone();
        // The lock file stays: removing it while held would let a waiter on
        // the old file and a newcomer on a new one both "hold" the lock.
        let cache = self.paths.dir.join(cache::CACHE_FILE);
        for path in [&self.paths.log, &self.paths.yaml, &cache] {
            match fs.remove(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", path, e)),
            }
        }
        fs.sync_dir(&self.paths.dir)
            .map_err(|e| StoreError::io("fsync the folder", &self.paths.dir, e))?;
        self.view = None;
        Ok(())
    }

    /// Read-only health check of both files (`ldm doctor`).
    pub fn inspect(&self) -> Vec<repair::Finding> {
        repair::inspect(&*self.opts.fs, &self.paths)
    }

    fn lock(&self) -> Result<lock::LockGuard, StoreError> {
        Ok(lock::acquire(
            &self.paths.lock,
            self.opts.lock_timeout,
            &self.opts.holder,
        )?)
    }

    fn view_mut(&mut self) -> Result<&mut View, StoreError> {
        // sync_view always leaves a view; this only guards the invariant.
        self.view.as_mut().ok_or_else(|| StoreError::Unstable {
            path: self.paths.dir.clone(),
        })
    }

    /// Under the lock: catch up on records appended since our last look, or
    /// reload and recover if either file was replaced or edited.
    fn sync_view(&mut self) -> Result<(), StoreError> {
        let fs = self.opts.fs.clone();
        if let Some(view) = &mut self.view {
            let yaml_now = fs.stat(&self.paths.yaml).ok();
            let log_now = fs.stat(&self.paths.log).ok();
            let same = yaml_now == Some(view.yaml_id)
                && match (view.log, log_now) {
                    (Some(l), Some(now)) => now.dev_ino == l.dev_ino && now.len >= l.end,
                    (None, None) => true,
                    _ => false,
                };
            if same {
                let Some(lv) = view.log else {
                    return Ok(());
                };
                let bytes = fs
                    .read_from(&self.paths.log, lv.end - lv.last_len)
                    .map_err(|e| StoreError::io("read", &self.paths.log, e))?;
                // Our last record must still be there, unchanged.
                let ours = lv.last_len == 0
                    || matches!(record::decode_record(&bytes),
                        record::Decoded::Record { record, len }
                            if record.seq == view.last_seq
                                && len as u64 == lv.last_len
                                && log::crc_at(&bytes) == lv.last_crc);
                if !ours {
                    self.view = None;
                    return self.full_recover();
                }
                let bytes = &bytes[lv.last_len as usize..];
                if bytes.is_empty() {
                    return Ok(());
                }
                let end = lv.end;
                let scan = log::scan(bytes, end, Some(view.last_seq));
                if let Err(e) = recover::replay(&mut view.project, &scan, &self.paths) {
                    self.view = None;
                    return Err(e);
                }
                if let Some(last) = scan.entries.last() {
                    view.last_seq = last.seq;
                }
                if let Some(log) = &mut view.log {
                    log.end = scan.end;
                    if let Some(last) = scan.entries.last() {
                        log.last_len = last.len;
                        log.last_crc = last.crc;
                    }
                }
                return self.handle_tail(&scan.tail);
            }
            self.view = None;
        }
        self.full_recover()
    }

    /// What every load from the files tells the caller: the state itself
    /// (`Options::on_load`) and, once per store, unknown YAML keys.
    fn loaded(&self, loaded: &recover::Loaded) {
        if let Some(f) = &self.opts.on_load {
            f(&loaded.project);
        }
        let keys = &loaded.unknown_keys;
        if !keys.is_empty() && !self.warned_unknown.swap(true, Ordering::Relaxed) {
            (self.opts.notify)(&Notice::UnknownKeys {
                path: self.paths.yaml.clone(),
                keys: keys.to_vec(),
            });
        }
    }

    fn full_recover(&mut self) -> Result<(), StoreError> {
        let fs = self.opts.fs.clone();
        for path in recover::remove_temps(&*fs, &self.paths)? {
            (self.opts.notify)(&Notice::TempRemoved { path });
        }
        let mut loaded = recover::load(&*fs, &self.paths)?;
        self.loaded(&loaded);
        if let Some(miss) = loaded.cache_miss.take() {
            cache::write(
                &*fs,
                &self.paths,
                &miss.yaml,
                &miss.project,
                miss.mark,
                &loaded.unknown_keys,
            );
        }
        let mut log = None;
        let mut tail = Tail::Clean;
        if let Some(found) = &loaded.log {
            if found.folded {
                let generation = loaded.mark.map_or(found.generation + 1, |m| m.generation);
                compact::write_empty_log(&*fs, &self.paths, generation)?;
                (self.opts.notify)(&Notice::CompactionFinished {
                    path: self.paths.log.clone(),
                });
                let id = fs
                    .stat(&self.paths.log)
                    .map_err(|e| StoreError::io("read", &self.paths.log, e))?;
                log = Some(LogView::empty(generation, id.dev_ino));
            } else {
                log = Some(LogView {
                    generation: found.generation,
                    dev_ino: found.id.dev_ino,
                    end: found.scan.end,
                    last_len: found.scan.entries.last().map_or(0, |e| e.len),
                    last_crc: found.scan.entries.last().map_or(0, |e| e.crc),
                });
                tail = found.scan.tail.clone();
            }
        }
        self.view = Some(View {
            project: loaded.project,
            mark: loaded.mark,
            yaml_id: loaded.yaml_id,
            log,
            last_seq: loaded.last_seq,
        });
        self.handle_tail(&tail)
    }

    /// Cuts a torn tail (under the lock; the writer that left it is dead).
    fn handle_tail(&mut self, tail: &Tail) -> Result<(), StoreError> {
        match tail {
            Tail::Clean => Ok(()),
            Tail::Corrupt { offset, reason, .. } => {
                self.view = None;
                Err(StoreError::Corrupt {
                    path: self.paths.log.clone(),
                    offset: *offset,
                    reason: reason.clone(),
                })
            }
            Tail::Torn {
                offset,
                dropped,
                reason,
            } => {
                let fs = &*self.opts.fs;
                let path = &self.paths.log;
                fs.set_len(path, *offset)
                    .map_err(|e| StoreError::io("truncate the torn tail of", path, e))?;
                fs.sync(path)
                    .map_err(|e| StoreError::io("fsync", path, e))?;
                (self.opts.notify)(&Notice::TornTailTruncated {
                    path: path.clone(),
                    offset: *offset,
                    dropped: *dropped,
                    reason,
                });
                Ok(())
            }
        }
    }

    /// Validates, appends and fdatasyncs `mutations`; on any failure the log
    /// is cut back to its previous length and the view is dropped.
    fn append(&mut self, mutations: &[Mutation]) -> Result<(), StoreError> {
        let result = self.try_append(mutations);
        if result.is_err() {
            self.view = None;
        }
        result
    }

    fn try_append(&mut self, mutations: &[Mutation]) -> Result<(), StoreError> {
        let fs = self.opts.fs.clone();
        let path = self.paths.log.clone();
        let view = self.view_mut()?;
        for m in mutations {
            view.project.apply(m)?;
        }
        if view.log.is_none() {
            let generation = view.mark.map_or(1, |m| m.generation);
            compact::write_empty_log(&*fs, &self.paths, generation)?;
            let id = fs
                .stat(&path)
                .map_err(|e| StoreError::io("read", &path, e))?;
            let view = self.view_mut()?;
            view.log = Some(LogView::empty(generation, id.dev_ino));
        }
        let view = self.view_mut()?;
        let Some(LogView { end, .. }) = view.log else {
            return Ok(());
        };
        let bytes = log::encode_commit(mutations, view.last_seq + 1);
        let rollback = |e: std::io::Error, action| {
            // Leave the log as it was: a partial record must not stay behind
            // a later, acknowledged one.
            let _ = fs.set_len(&path, end).and_then(|()| fs.sync(&path));
            StoreError::io(action, &path, e)
        };
        fs.append(&path, &bytes)
            .map_err(|e| rollback(e, "append to"))?;
        failpoint::hit("append.written");
        fs.sync(&path).map_err(|e| rollback(e, "fdatasync"))?;
        failpoint::hit("append.synced");
        if let Some(log) = &mut view.log {
            log.end = end + bytes.len() as u64;
            log.last_len = bytes.len() as u64;
            log.last_crc = log::crc_at(&bytes);
        }
        view.last_seq += 1;
        Ok(())
    }

    fn maybe_compact(&mut self) {
        let Some(view) = &self.view else { return };
        let Some(LogView { end, .. }) = view.log else {
            return;
        };
        let floor = self.opts.auto_compact_min;
        if end >= floor && end * 100 >= view.yaml_id.len * AUTO_COMPACT_PERCENT {
            if let Err(e) = self.compact_locked() {
                (self.opts.notify)(&Notice::CompactionFailed {
                    error: e.to_string(),
                });
            }
        }
    }

    fn compact_locked(&mut self) -> Result<Mark, StoreError> {
        let fs = self.opts.fs.clone();
        let paths = self.paths.clone();
        let view = self.view_mut()?;
        let result = compact::compact(
            &*fs,
            &paths,
            &view.project,
            view.mark,
            view.log.map(|l| l.generation),
            view.last_seq,
        );
        let mark = match result {
            Ok(mark) => mark,
            Err(e) => {
                self.view = None;
                return Err(e);
            }
        };
        let yaml_id = fs.stat(&self.paths.yaml);
        let log_id = fs.stat(&self.paths.log);
        match (yaml_id, log_id) {
            (Ok(y), Ok(l)) => {
                let view = self.view_mut()?;
                view.mark = Some(mark);
                view.yaml_id = y;
                view.log = Some(LogView::empty(mark.generation, l.dev_ino));
            }
            _ => self.view = None,
        }
        Ok(mark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Mutation;
    use std::os::unix::fs::FileExt;

    fn ports(p: u16) -> Mutation {
        Mutation::PortsSet {
            container: None,
            ports: vec![p],
        }
    }

    #[test]
    fn a_log_rewritten_in_place_is_reloaded_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            auto_compact_min: u64::MAX,
            ..Options::default()
        };
        let mut a = Store::create(dir.path(), &Project::new("p", vec![]), opts.clone()).unwrap();
        a.commit(|_| Ok::<_, StoreError>((vec![ports(1)], ())))
            .unwrap();
        a.commit(|_| Ok::<_, StoreError>((vec![ports(2)], ())))
            .unwrap();
        // Same inode, same length, same last seq; a different last record.
        let log_path = dir.path().join(LOG_FILE);
        let bytes = std::fs::read(&log_path).unwrap();
        let first_two = bytes.len() - log::encode_commit(&[ports(2)], 2).len();
        let mut other = bytes[..first_two].to_vec();
        other.extend(log::encode_commit(&[ports(3)], 2));
        assert_eq!(other.len(), bytes.len());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log_path)
            .unwrap()
            .write_all_at(&other, 0)
            .unwrap();
        let seen = a
            .commit(|p| Ok::<_, StoreError>((vec![], p.defaults.ports.clone())))
            .unwrap();
        assert_eq!(seen, vec![3]);
    }
}
