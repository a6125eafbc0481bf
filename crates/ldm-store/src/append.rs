//! A commit's append, and what follows a command's commits (DESIGN.md,
//! "Append", "Fold", "Compaction"): validate, write one record, fdatasync,
//! roll back on failure; once the command is done, fold into
//! `containers.yaml` while it is small, or compact once the log has grown.

use std::sync::atomic::Ordering;

use super::compact::{self, Folded};
use super::error::StoreError;
use super::failpoint;
use super::lock::{self, LockGuard};
use super::log;
use super::options::Notice;
use super::{LogView, Mark, Store, AUTO_COMPACT_PERCENT};
use ldm_model::Mutation;

impl Store {
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
        let seq = view
            .last_seq
            .checked_add(1)
            .filter(|s| *s <= super::record::MAX_SEQ)
            .ok_or_else(|| StoreError::Corrupt {
                path: path.clone(),
                offset: view.log.end,
                reason: format!(
                    "the last sequence number, {}, leaves no room for another record",
                    view.last_seq
                ),
            })?;
        let bytes = log::encode_commit(mutations, seq).map_err(|e| StoreError::CommitTooLarge {
            len: e.len,
            limit: super::record::MAX_PAYLOAD,
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
        view.last_seq = seq;
        Ok(())
    }

    /// Once a command's commits are done (its last one, or this store's
    /// drop): fold into `containers.yaml` while it is small, or compact once
    /// the log has grown (DESIGN.md, "Fold"). One fold per command, after
    /// its last commit, instead of one per commit: a command's intent and
    /// outcome reach the file together. Takes the locks again (milliseconds,
    /// as a commit); needs lxc-dev-manager's lock, else it is left for a
    /// later command. Best effort: the commits are acknowledged either way.
    pub fn finish(&mut self) {
        if !std::mem::take(&mut self.owed) || self.view.is_none() {
            return;
        }
        let result = self.lock().and_then(|_guard| {
            let mut go = self.try_go()?;
            self.sync_view(&mut go)?;
            self.fold_if_due(go.as_ref())
        });
        if let Err(e) = result {
            (self.opts.notify)(&Notice::FoldFailed {
                error: e.to_string(),
            });
        }
    }

    /// Under ldm's lock, view in sync: the fold or compaction, if due.
    fn fold_if_due(&mut self, go: Option<&LockGuard>) -> Result<(), StoreError> {
        let Some(view) = &self.view else {
            return Ok(());
        };
        let end = view.log.end;
        let yaml_len = view.yaml_id.len;
        let compact_due =
            end >= self.opts.auto_compact_min && end * 100 >= yaml_len * AUTO_COMPACT_PERCENT;
        let fold_due = view.yaml_seq < view.last_seq && yaml_len <= self.opts.fold_max;
        if !compact_due && !fold_due {
            return Ok(());
        }
        if go.is_none() {
            if !self.warned_deferred.swap(true, Ordering::Relaxed) {
                (self.opts.notify)(&Notice::FoldDeferred {
                    lock: self.paths.dir.join(lock::GO_LOCK_FILE),
                });
            }
            return Ok(());
        }
        if compact_due {
            self.compact_locked().map(drop)
        } else {
            self.fold_now()
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
        let loaded = Some(view.yaml_id);
        match compact::fold(&*fs, &paths, &view.project, mark, loaded, "fold") {
            Ok(Folded::Done(yaml_id)) => {
                let view = self.view_mut()?;
                view.yaml_id = yaml_id;
                view.yaml_seq = view.last_seq;
                Ok(())
            }
            Ok(Folded::Overtaken { saved }) => {
                self.view = None;
                (self.opts.notify)(&Notice::YamlOvertaken {
                    path: paths.yaml.clone(),
                    saved,
                });
                Ok(())
            }
            Err(e) => {
                self.view = None;
                Err(e)
            }
        }
    }

    /// Compacts (both locks held, view in sync).
    pub(super) fn compact_locked(&mut self) -> Result<Mark, StoreError> {
        let fs = self.opts.fs.clone();
        let paths = self.paths.clone();
        let view = self.view_mut()?;
        let (generation, id, last_seq) = (view.log.generation, view.log.id, view.last_seq);
        let loaded = Some(view.yaml_id);
        let mark = match compact::compact(
            &*fs,
            &paths,
            &view.project,
            generation,
            &id,
            last_seq,
            loaded,
        ) {
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
        // A compaction is how a changed password leaves no copy behind
        // (issue 22): the load cache, written by an earlier read, may still
        // hold the old state. The next read makes a new one.
        if let Some(cache) = paths.cache() {
            match fs.remove(&cache) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", &cache, e)),
            }
        }
        Ok(mark)
    }
}

/// `mutations` cut into runs whose record stays well under the record
/// limit (half of it: a mutation's JSON in an array costs its length plus a
/// comma), for [`Store::commit_in_parts`].
pub(super) fn parts(mutations: &[Mutation]) -> Vec<&[Mutation]> {
    let budget = super::record::MAX_PAYLOAD as usize / 2;
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, m) in mutations.iter().enumerate() {
        let len = serde_json::to_vec(m).map_or(0, |v| v.len()) + 1;
        if i > start && size + len > budget {
            out.push(&mutations[start..i]);
            (start, size) = (i, 0);
        }
        size += len;
    }
    if start < mutations.len() {
        out.push(&mutations[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Options, Paths, Store, StoreError};

    fn adopt(n: usize) -> Vec<Mutation> {
        let mut ms = vec![Mutation::ContainerAdded {
            name: "dev".into(),
            image: "img".into(),
            pending: None,
        }];
        ms.extend((0..n).map(|i| Mutation::SnapshotAdded {
            container: "dev".into(),
            name: format!("snap-{i}"),
            description: "adopted by ldm doctor, with a long enough description".into(),
            created_at: "2026-01-15T10:30:00Z".into(),
            pending: None,
        }));
        ms
    }

    #[test]
    fn a_change_over_the_record_limit_goes_in_whole_parts_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let project = ldm_model::Project::new("p", vec![]);
        let opts = Options {
            fold_max: 0,
            auto_compact_min: u64::MAX,
            ..Options::default()
        };
        let mut store = Store::create(dir.path(), &project, opts.clone()).unwrap();
        let ms = adopt(9_000);
        // One record would be over the limit: refused, nothing written.
        let e = store
            .commit(|_| Ok::<_, StoreError>((ms.clone(), ())))
            .unwrap_err();
        assert!(matches!(e, StoreError::CommitTooLarge { .. }), "{e:?}");
        store
            .commit_in_parts(|_| Ok::<_, StoreError>((ms.clone(), ())))
            .unwrap();
        let parts = parts(&ms);
        assert!(parts.len() >= 2, "{}", parts.len());
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), ms.len());
        let read = Store::open(Paths::in_dir(dir.path()), opts).read().unwrap();
        assert_eq!(read.containers["dev"].snapshots.len(), 9_000);
    }
}
