//! What a writer does under the lock before it commits (DESIGN.md,
//! "Recovery", "Other writers"): catch up on records other processes
//! appended, or reload; cut a torn tail (keeping its bytes); settle what
//! another writer did (save what a merge drops, fold the merge at once so
//! that later records come after it); upgrade logs of an older format
//! version (1 or 2) by compaction. Appending and
//! what follows a commit are in `append.rs`; `create` in `create.rs`.

// Over 400 lines: the steps a writer takes under the lock follow one another
// on one loaded state; each is a function, their order is the file.

use std::sync::atomic::Ordering;

use super::backup;
use super::cache;
use super::cleanup;
use super::compact::{self, Folded};
use super::error::StoreError;
use super::failpoint;
use super::lineage::Origin;
use super::lock::{self, LockGuard};
use super::log::{self, Tail};
use super::options::{Cut, Notice};
use super::record::{LogId, VERSION};
use super::recover::{self, Loaded};
use super::{LogView, Mark, Store, View};

impl LogView {
    pub(super) fn empty(id: LogId, generation: u64, dev_ino: (u64, u64)) -> LogView {
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
        // A fold of the merge overtaken by another program's save (put
        // back) is retried on the new file a few times.
        let mut overtaken = 0;
        loop {
            let fs = self.opts.fs.clone();
            for n in cleanup::remove_temps(&*fs, &self.paths)? {
                (self.opts.notify)(&n);
            }
            for path in cleanup::remove_old_files(&*fs, &self.paths)? {
                (self.opts.notify)(&Notice::OldFileRemoved { path });
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
            match self.settle(loaded) {
                Ok(view) => {
                    self.view = Some(view);
                    return Ok(());
                }
                Err(StoreError::Overtaken { path, saved }) if overtaken < 3 => {
                    overtaken += 1;
                    (self.opts.notify)(&Notice::YamlOvertaken { path, saved });
                }
                Err(e) => return Err(e),
            }
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

    /// What every load from the files tells the caller: unknown YAML keys,
    /// once per store.
    pub(super) fn loaded(&self, loaded: &Loaded) {
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

    /// Acts on what the load found so that the YAML is ldm's fold of a log
    /// of this build's format version again (DESIGN.md, "Other writers"),
    /// and returns the view. Another writer's YAML needs lxc-dev-manager's
    /// lock (held).
    fn settle(&mut self, loaded: Loaded) -> Result<View, StoreError> {
        let fs = self.opts.fs.clone();
        if let (true, Some(bytes)) = (loaded.origin.needs_fold(), &loaded.extras) {
            // The fold below rewrites it without them: keep the file first.
            let saved = backup::keep_yaml_redacted(&*fs, &self.paths, bytes)?;
            (self.opts.notify)(&Notice::YamlKept {
                path: self.paths.yaml.clone(),
                saved,
            });
        }
        self.keep_dropped_values(&loaded)?;
        let log = loaded
            .log
            .as_ref()
            .filter(|l| l.header.version >= 2)
            .map(|l| LogView {
                id: l.header.id.unwrap_or_default(),
                generation: l.header.generation,
                dev_ino: l.id.dev_ino,
                end: l.scan.end,
                last_len: l.scan.entries.last().map_or(0, |e| e.len),
                last_crc: l.scan.entries.last().map_or(0, |e| e.crc),
            });
        // A log of an older version (1, or 2 with the same layout) is never
        // appended to: this build's records may hold kinds it does not
        // promise, so the first writer compacts it into a fresh pair.
        let older = loaded
            .log
            .as_ref()
            .is_some_and(|l| l.header.version < VERSION);
        let (yaml_seq, log, yaml_id) = match (loaded.origin, log) {
            (Origin::Ours { seq, base_stale }, Some(log))
                if !loaded.damaged_but_folded && !older =>
            {
                if base_stale {
                    self.rewrite_base(&loaded)?;
                }
                (seq, log, loaded.yaml_id)
            }
            (Origin::NoLog, _) => self.start_log(&loaded)?,
            (Origin::Foreign { .. }, Some(log)) if !older => {
                let mark = Mark {
                    generation: log.generation,
                    seq: loaded.last_seq,
                    log: Some(log.id),
                };
                let id = self.fold_over(&loaded, mark, "merge")?;
                failpoint::hit("merge.folded");
                (loaded.last_seq, log, id)
            }
            // A log of an older version (ours, or beside a foreign YAML:
            // the merged state is compacted), or a log whose damage lies
            // among folded records: compact.
            (_, log) => self.compact_loaded(&loaded, log, older)?,
        };
        Ok(View {
            project: loaded.project,
            yaml_id,
            yaml_seq,
            log,
            last_seq: loaded.last_seq,
        })
    }

    /// Keeps ldm's values a merge dropped beside the log, and says so.
    fn keep_dropped_values(&self, loaded: &Loaded) -> Result<(), StoreError> {
        let Some(m) = &loaded.merge else {
            return Ok(());
        };
        let mut fields = m.conflicts.clone();
        if let Some(r) = &m.reverted {
            fields.extend(r.fields.iter().cloned());
        }
        let saved = match fields.is_empty() {
            true => None,
            false => Some(backup::keep_dropped(
                &*self.opts.fs,
                &self.paths,
                &fields,
                &m.records,
            )?),
        };
        self.report_merge(m, saved);
        Ok(())
    }

    /// What a merge with another writer's file did, for the user: the
    /// conflicts it resolved the file's way, what a restored older file
    /// took back, the containers the file no longer has. `saved`: where a
    /// writer kept ldm's values (a reader keeps nothing).
    pub(super) fn report_merge(&self, m: &recover::Merge, saved: Option<std::path::PathBuf>) {
        let path = self.paths.yaml.clone();
        if !m.conflicts.is_empty() {
            (self.opts.notify)(&Notice::Merged {
                path: path.clone(),
                conflicts: m.conflicts.clone(),
                base_gone: m.base_gone,
                saved: saved.clone(),
            });
        }
        if let Some(r) = m.reverted.as_ref().filter(|r| !r.fields.is_empty()) {
            (self.opts.notify)(&Notice::Reverted {
                path: path.clone(),
                file_seq: r.file_seq,
                base_seq: r.base_seq,
                fields: r.fields.clone(),
                saved,
            });
        }
        if !m.gone.is_empty() {
            (self.opts.notify)(&Notice::ContainersGone {
                path,
                names: m.gone.clone(),
            });
        }
    }

    /// Folds `loaded.project` with `mark` over the YAML `loaded` was read
    /// from; another program's save meanwhile is put back and reported as
    /// [`StoreError::Overtaken`] (the caller reloads).
    fn fold_over(
        &self,
        loaded: &Loaded,
        mark: Mark,
        point: &str,
    ) -> Result<super::fs::FileId, StoreError> {
        let fs = &*self.opts.fs;
        match compact::fold(
            fs,
            &self.paths,
            &loaded.project,
            mark,
            Some(loaded.yaml_id),
            point,
        )? {
            Folded::Done(id) => Ok(id),
            Folded::Overtaken { saved } => Err(StoreError::Overtaken {
                path: self.paths.yaml.clone(),
                saved,
            }),
        }
    }

    /// Rewrites a stale base durably, before anything else can happen to
    /// the YAML: a merge against an older base could report (and drop)
    /// ldm's later changes as conflicts.
    fn rewrite_base(&self, loaded: &Loaded) -> Result<(), StoreError> {
        let fs = &*self.opts.fs;
        let Some(base_path) = self.paths.base() else {
            return Ok(());
        };
        let entry = cache::Entry {
            key: loaded.yaml_key,
            stamp: loaded.yaml_stamp,
            seen_ns: loaded.yaml_seen_ns,
            extras: false,
            doc: loaded.doc.clone(),
        };
        compact::write_base(fs, &base_path, &entry)
    }

    /// No log yet: starts one (keeping the identity only if the base
    /// confirms that this YAML is our fold of it) and folds if need be.
    fn start_log(&self, loaded: &Loaded) -> Result<(u64, LogView, super::fs::FileId), StoreError> {
        let fs = &*self.opts.fs;
        let reuse = loaded
            .base_mark
            .filter(|_| loaded.base_matches)
            .and_then(|m| m.log);
        let id = reuse.unwrap_or_else(compact::new_log_id);
        let generation = loaded.doc.mark.map_or(1, |m| m.generation.max(1));
        let last_seq = loaded.last_seq;
        compact::write_empty_log(fs, &self.paths, generation, &id, last_seq, "start")?;
        let log = LogView::empty(id, generation, self.stat_log()?);
        let mut yaml_id = loaded.yaml_id;
        if reuse.is_none() {
            let mark = Mark {
                generation,
                seq: last_seq,
                log: Some(id),
            };
            yaml_id = self.fold_over(loaded, mark, "fold")?;
        }
        Ok((last_seq, log, yaml_id))
    }

    /// Compacts what was loaded into a fresh pair of this build's version:
    /// the same identity for a log that has one (version 2 and later, so
    /// that the YAML still names it), a new one for version 1. `upgrade`:
    /// the log was of an older version; one notice says so.
    fn compact_loaded(
        &self,
        loaded: &Loaded,
        log: Option<LogView>,
        upgrade: bool,
    ) -> Result<(u64, LogView, super::fs::FileId), StoreError> {
        let generation = loaded.log.as_ref().map_or(0, |l| l.header.generation);
        let id = log.map_or_else(compact::new_log_id, |l| l.id);
        let mark = compact::compact(
            &*self.opts.fs,
            &self.paths,
            &loaded.project,
            generation,
            &id,
            loaded.last_seq,
            Some(loaded.yaml_id),
        )?;
        if upgrade {
            (self.opts.notify)(&Notice::Upgraded {
                path: self.paths.log.clone(),
            });
        }
        let log = LogView::empty(id, mark.generation, self.stat_log()?);
        Ok((loaded.last_seq, log, self.stat_yaml()?))
    }

    pub(super) fn stat_yaml(&self) -> Result<super::fs::FileId, StoreError> {
        self.opts
            .fs
            .stat(&self.paths.yaml)
            .map_err(|e| StoreError::io("read", &self.paths.yaml, e))
    }

    pub(super) fn stat_log(&self) -> Result<(u64, u64), StoreError> {
        self.opts
            .fs
            .stat(&self.paths.log)
            .map(|id| id.dev_ino)
            .map_err(|e| StoreError::io("read", &self.paths.log, e))
    }
}
