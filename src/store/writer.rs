//! What a writer does under the lock with what it loaded (DESIGN.md,
//! "Recovery", "Fold", "Other writers"): catch up on records other
//! processes appended, or reload; cut a torn tail (keeping its bytes);
//! settle what another writer did (save what a merge drops, fold the merge
//! at once so that later records come after it); upgrade version 1 files;
//! append; fold or compact after the commit.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::backup;
use super::cache::{self, CACHE_FILE, FOLDED_FILE};
use super::compact;
use super::error::StoreError;
use super::failpoint;
use super::fs::Fs;
use super::lineage::Origin;
use super::lock::{self, LockGuard};
use super::log::{self, Tail};
use super::options::{Cut, Notice, Options};
use super::record::LogId;
use super::recover::{self, Loaded};
use super::{LogView, Mark, Paths, Store, View, AUTO_COMPACT_PERCENT};
use crate::model::{Mutation, Project};

impl LogView {
    fn empty(id: LogId, generation: u64, dev_ino: (u64, u64)) -> LogView {
        LogView {
            id,
            generation,
            dev_ino,
            end: super::record::HEADER_LEN as u64,
            last_len: 0,
            last_crc: 0,
        }
    }
}

impl Store {
    /// Under the lock: catch up on records appended since our last look, or
    /// reload and recover if either file was replaced or edited. `go` is
    /// lxc-dev-manager's lock if held; settling another writer's YAML takes
    /// it (waiting at most the lock timeout) and reloads.
    pub(super) fn sync_view(&mut self, go: &mut Option<LockGuard>) -> Result<(), StoreError> {
        if self.view.is_some() && self.catch_up()? {
            return Ok(());
        }
        self.view = None;
        loop {
            let fs = self.opts.fs.clone();
            for path in recover::remove_temps(&*fs, &self.paths)? {
                (self.opts.notify)(&Notice::TempRemoved { path });
            }
            let loaded = recover::load(&*fs, &self.paths)?;
            self.loaded(&loaded);
            if let Some(log) = &loaded.log {
                if let Tail::Torn {
                    offset,
                    dropped,
                    reason,
                } = log.scan.tail
                {
                    self.cut_tail(offset, dropped, reason)?;
                }
            }
            if loaded.origin.needs_fold() && go.is_none() {
                // The YAML may change while we wait for the Go tool: reload.
                *go = Some(lock::acquire_go(
                    &self.paths.dir,
                    self.opts.lock_timeout,
                    self.opts.trust,
                )?);
                continue;
            }
            let view = self.settle(loaded)?;
            self.view = Some(view);
            return Ok(());
        }
    }

    /// Replays what other processes appended since our view; false if the
    /// files changed in a way that needs a reload.
    fn catch_up(&mut self) -> Result<bool, StoreError> {
        let fs = self.opts.fs.clone();
        let Some(view) = &mut self.view else {
            return Ok(false);
        };
        let lv = view.log;
        let same = fs.stat(&self.paths.yaml).ok() == Some(view.yaml_id)
            && fs
                .stat(&self.paths.log)
                .is_ok_and(|now| now.dev_ino == lv.dev_ino && now.len >= lv.end);
        if !same {
            return Ok(false);
        }
        let bytes = fs
            .read_from(&self.paths.log, lv.end - lv.last_len)
            .map_err(|e| StoreError::io("read", &self.paths.log, e))?;
        // Our last record must still be there, unchanged.
        let ours = lv.last_len == 0
            || matches!(super::record::decode_record(&bytes),
                super::record::Decoded::Record { record, len }
                    if record.seq == view.last_seq
                        && len as u64 == lv.last_len
                        && log::crc_at(&bytes) == lv.last_crc);
        if !ours {
            return Ok(false);
        }
        let bytes = &bytes[lv.last_len as usize..];
        if bytes.is_empty() {
            return Ok(true);
        }
        let scan = log::scan(bytes, lv.end, Some(view.last_seq));
        let result = recover::replay(&mut view.project, &scan.entries, &self.paths);
        if let Some(last) = scan.entries.last() {
            view.last_seq = last.seq;
            view.log.last_len = last.len;
            view.log.last_crc = last.crc;
        }
        view.log.end = scan.end;
        if let Err(e) = result {
            self.view = None;
            return Err(e);
        }
        match scan.tail {
            Tail::Clean => Ok(true),
            Tail::Torn {
                offset,
                dropped,
                reason,
            } => {
                self.cut_tail(offset, dropped, reason)?;
                Ok(true)
            }
            Tail::Corrupt { offset, reason, .. } => {
                self.view = None;
                Err(StoreError::Corrupt {
                    path: self.paths.log.clone(),
                    offset,
                    reason,
                })
            }
            Tail::Newer { offset, seq, op } => {
                self.view = None;
                Err(StoreError::NewerRecord {
                    path: self.paths.log.clone(),
                    offset,
                    seq,
                    op,
                })
            }
        }
    }

    /// What every load from the files tells the caller: the state itself
    /// (`Options::on_load`) and, once per store, unknown YAML keys.
    pub(super) fn loaded(&self, loaded: &Loaded) {
        if let Some(f) = &self.opts.on_load {
            f(&loaded.project);
        }
        let keys = loaded.unknown_keys();
        if !keys.is_empty() && !self.warned_unknown.swap(true, Ordering::Relaxed) {
            (self.opts.notify)(&Notice::UnknownKeys {
                path: self.paths.yaml.clone(),
                keys: keys.to_vec(),
            });
        }
    }

    /// Cuts the log at `offset` (under the lock; the writer that left the
    /// tail is dead), after keeping the cut bytes in a file beside it.
    fn cut_tail(&self, offset: u64, dropped: u64, reason: &'static str) -> Result<(), StoreError> {
        let fs = &*self.opts.fs;
        let path = &self.paths.log;
        let bytes = fs
            .read_from(path, offset)
            .map_err(|e| StoreError::io("read", path, e))?;
        let saved = backup::keep(fs, &self.paths, "cut", &bytes)?;
        fs.set_len(path, offset)
            .map_err(|e| StoreError::io("cut the torn tail of", path, e))?;
        fs.sync(path)
            .map_err(|e| StoreError::io("fsync", path, e))?;
        let why = if reason == log::CUT_SHORT {
            Cut::Unfinished
        } else {
            Cut::BadChecksum
        };
        (self.opts.notify)(&Notice::TailCut {
            path: path.clone(),
            offset,
            dropped,
            why,
            saved,
        });
        Ok(())
    }

    /// Acts on what the load found so that the YAML is ldm's fold of a
    /// version 2 log again (DESIGN.md, "Other writers"), and returns the
    /// view. Another writer's YAML needs lxc-dev-manager's lock (held).
    fn settle(&mut self, loaded: Loaded) -> Result<View, StoreError> {
        let fs = self.opts.fs.clone();
        let fs = &*fs;
        let paths = self.paths.clone();
        if let (true, Some(bytes)) = (loaded.origin.needs_fold(), &loaded.extras) {
            // The fold below rewrites it without them: keep the file first.
            let saved = backup::keep_yaml(fs, &paths, bytes)?;
            (self.opts.notify)(&Notice::YamlKept {
                path: paths.yaml.clone(),
                saved,
            });
        }
        let project = &loaded.project;
        let last_seq = loaded.last_seq;
        let log = match &loaded.log {
            Some(l) if l.header.version >= 2 => Some(LogView {
                id: l.header.id.unwrap_or_default(),
                generation: l.header.generation,
                dev_ino: l.id.dev_ino,
                end: l.scan.end,
                last_len: l.scan.entries.last().map_or(0, |e| e.len),
                last_crc: l.scan.entries.last().map_or(0, |e| e.crc),
            }),
            _ => None,
        };
        let (yaml_seq, log, yaml_id) = match (loaded.origin, log) {
            (Origin::Ours { seq, base_stale }, Some(log)) if !loaded.damaged_but_folded => {
                if base_stale {
                    // Durably, before anything else can happen to the YAML:
                    // a merge against an older base could report (and drop)
                    // ldm's later changes as conflicts.
                    let base_path = paths.dir.join(FOLDED_FILE);
                    cache::write(
                        fs,
                        &paths,
                        FOLDED_FILE,
                        &loaded.yaml_key,
                        &loaded.doc,
                        cache::Sync::Data,
                    )
                    .and_then(|()| fs.sync_dir(&paths.dir))
                    .map_err(|e| StoreError::io("write", &base_path, e))?;
                }
                (seq, log, loaded.yaml_id)
            }
            (Origin::NoLog, _) => {
                // Start a log; keep the identity only if the base confirms
                // that this YAML is our fold of it.
                let mark = loaded.doc.mark;
                let reuse = loaded
                    .base
                    .as_ref()
                    .filter(|(k, _)| *k == loaded.yaml_key)
                    .and_then(|(_, d)| d.mark)
                    .and_then(|m| m.log);
                let id = reuse.unwrap_or_else(compact::new_log_id);
                let generation = mark.map_or(1, |m| m.generation.max(1));
                compact::write_empty_log(fs, &paths, generation, &id, last_seq, "start")?;
                let log = LogView::empty(id, generation, self.stat_log()?);
                if reuse.is_none() {
                    let mark = Mark {
                        generation,
                        seq: last_seq,
                        log: Some(id),
                    };
                    compact::fold(fs, &paths, project, mark, "fold")?;
                }
                (last_seq, log, self.stat_yaml()?)
            }
            (Origin::Foreign { .. }, Some(log)) => {
                if let Some(m) = loaded.merge.as_ref().filter(|m| !m.conflicts.is_empty()) {
                    let saved = backup::keep_dropped(fs, &paths, &m.conflicts, &m.records)?;
                    (self.opts.notify)(&Notice::Merged {
                        path: paths.yaml.clone(),
                        conflicts: m.conflicts.clone(),
                        base_gone: m.base_gone,
                        saved: Some(saved),
                    });
                }
                let mark = Mark {
                    generation: log.generation,
                    seq: last_seq,
                    log: Some(log.id),
                };
                compact::fold(fs, &paths, project, mark, "merge")?;
                failpoint::hit("merge.folded");
                (last_seq, log, self.stat_yaml()?)
            }
            // A version 1 log (ours, or beside a foreign YAML): fold into a
            // new version 2 pair with a fresh identity. Or a log whose
            // damage lies among folded records: compact it away.
            (origin, log) => {
                if let (Origin::Foreign { .. }, Some(m)) = (origin, loaded.merge.as_ref()) {
                    if !m.conflicts.is_empty() {
                        let saved = backup::keep_dropped(fs, &paths, &m.conflicts, &m.records)?;
                        (self.opts.notify)(&Notice::Merged {
                            path: paths.yaml.clone(),
                            conflicts: m.conflicts.clone(),
                            base_gone: m.base_gone,
                            saved: Some(saved),
                        });
                    }
                }
                let generation = loaded.log.as_ref().map_or(0, |l| l.header.generation);
                let id = log.map_or_else(compact::new_log_id, |l| l.id);
                let mark = compact::compact(fs, &paths, project, generation, &id, last_seq)?;
                if log.is_none() {
                    (self.opts.notify)(&Notice::Upgraded {
                        path: paths.log.clone(),
                    });
                }
                let log = LogView::empty(id, mark.generation, self.stat_log()?);
                (last_seq, log, self.stat_yaml()?)
            }
        };
        Ok(View {
            project: loaded.project,
            yaml_id,
            yaml_seq,
            log,
            last_seq,
        })
    }

    fn stat_yaml(&self) -> Result<super::fs::FileId, StoreError> {
        self.opts
            .fs
            .stat(&self.paths.yaml)
            .map_err(|e| StoreError::io("read", &self.paths.yaml, e))
    }

    fn stat_log(&self) -> Result<(u64, u64), StoreError> {
        self.opts
            .fs
            .stat(&self.paths.log)
            .map(|id| id.dev_ino)
            .map_err(|e| StoreError::io("read", &self.paths.log, e))
    }

    /// Validates, appends and fdatasyncs `mutations`; on any failure the log
    /// is cut back to its previous length and the view is dropped.
    pub(super) fn append(&mut self, mutations: &[Mutation]) -> Result<(), StoreError> {
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
        // Applied to the view in place: on any failure below the view is
        // dropped (`append`), so a half-applied state is never used.
        for m in mutations {
            view.project.apply(m)?;
        }
        let bytes = log::encode_commit(mutations, view.last_seq + 1).map_err(|e| {
            StoreError::CommitTooLarge {
                len: e.len,
                limit: super::record::MAX_PAYLOAD,
            }
        })?;
        let end = view.log.end;
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
        view.log.end = end + bytes.len() as u64;
        view.log.last_len = bytes.len() as u64;
        view.log.last_crc = log::crc_at(&bytes);
        view.last_seq += 1;
        Ok(())
    }

    /// After a durable commit: fold into `containers.yaml` while it is
    /// small, or compact once the log has grown (DESIGN.md, "Fold"). Needs
    /// lxc-dev-manager's lock (`go`), else it is left for a later command.
    /// Best effort: the commit is acknowledged either way.
    pub(super) fn after_commit(&mut self, go: Option<&LockGuard>) {
        let Some(view) = &self.view else { return };
        let end = view.log.end;
        let yaml_len = view.yaml_id.len;
        let compact_due =
            end >= self.opts.auto_compact_min && end * 100 >= yaml_len * AUTO_COMPACT_PERCENT;
        let fold_due = view.yaml_seq < view.last_seq && yaml_len <= self.opts.fold_max;
        if !compact_due && !fold_due {
            return;
        }
        if go.is_none() {
            if !self.warned_deferred.swap(true, Ordering::Relaxed) {
                (self.opts.notify)(&Notice::FoldDeferred {
                    lock: self.paths.dir.join(lock::GO_LOCK_FILE),
                });
            }
            return;
        }
        let result = if compact_due {
            self.compact_locked().map(drop)
        } else {
            self.fold_now()
        };
        if let Err(e) = result {
            (self.opts.notify)(&Notice::FoldFailed {
                error: e.to_string(),
            });
        }
    }

    /// Folds the state into `containers.yaml` (both locks held).
    fn fold_now(&mut self) -> Result<(), StoreError> {
        let fs = self.opts.fs.clone();
        let paths = self.paths.clone();
        let view = self.view_mut()?;
        let mark = Mark {
            generation: view.log.generation,
            seq: view.last_seq,
            log: Some(view.log.id),
        };
        if let Err(e) = compact::fold(&*fs, &paths, &view.project, mark, "fold") {
            self.view = None;
            return Err(e);
        }
        let yaml_id = self.stat_yaml()?;
        let view = self.view_mut()?;
        view.yaml_id = yaml_id;
        view.yaml_seq = view.last_seq;
        Ok(())
    }

    /// Compacts (both locks held, view in sync).
    pub(super) fn compact_locked(&mut self) -> Result<Mark, StoreError> {
        let fs = self.opts.fs.clone();
        let paths = self.paths.clone();
        let view = self.view_mut()?;
        let (generation, id, last_seq) = (view.log.generation, view.log.id, view.last_seq);
        let mark = match compact::compact(&*fs, &paths, &view.project, generation, &id, last_seq) {
            Ok(mark) => mark,
            Err(e) => {
                self.view = None;
                return Err(e);
            }
        };
        match (self.stat_yaml(), self.stat_log()) {
            (Ok(yaml_id), Ok(dev_ino)) => {
                let view = self.view_mut()?;
                view.yaml_id = yaml_id;
                view.yaml_seq = last_seq;
                view.log = LogView::empty(id, mark.generation, dev_ino);
            }
            _ => self.view = None,
        }
        Ok(mark)
    }
}

/// [`Store::create`]: refuses over an existing project, then writes the
/// YAML and an empty log under both locks; on failure removes what it made.
pub(super) fn create(dir: &Path, project: &Project, opts: &Options) -> Result<(), StoreError> {
    let paths = Paths::in_dir(dir);
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
    refuse(&paths)?;
    let go_path = dir.join(lock::GO_LOCK_FILE);
    let made_locks: Vec<std::path::PathBuf> = [&paths.lock, &go_path]
        .into_iter()
        .filter(|p| std::fs::symlink_metadata(p).is_err())
        .cloned()
        .collect();
    let guards = lock::acquire(&paths.lock, opts.lock_timeout, &opts.holder, opts.trust)
        .and_then(|g| Ok((g, lock::acquire_go(dir, opts.lock_timeout, opts.trust)?)));
    let result = guards.map_err(StoreError::from).and_then(|_guards| {
        refuse(&paths)?;
        for path in recover::remove_temps(fs, &paths)? {
            (opts.notify)(&Notice::TempRemoved { path });
        }
        let id = compact::new_log_id();
        let mark = Mark {
            generation: 1,
            seq: 0,
            log: Some(id),
        };
        let made = compact::fold(fs, &paths, project, mark, "create")
            .and_then(|()| compact::write_empty_log(fs, &paths, 1, &id, 0, "create"));
        if made.is_err() {
            // Whatever was made goes again: a failed create leaves nothing
            // that makes the next one say "already exists".
            let _ = remove_files(fs, &paths);
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
/// order, and makes it durable; the lock files stay.
pub(super) fn remove_files(fs: &dyn Fs, paths: &Paths) -> Result<(), StoreError> {
    let folded = paths.dir.join(FOLDED_FILE);
    let cache = paths.dir.join(CACHE_FILE);
    for path in [&paths.log, &folded, &cache, &paths.yaml] {
        match fs.remove(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("remove", path, e)),
        }
    }
    fs.sync_dir(&paths.dir)
        .map_err(|e| StoreError::io("fsync the folder", &paths.dir, e))
}
