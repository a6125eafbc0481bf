//! Loading the state from the files, and what recovery finds on the way.
//!
//! [`load`] reads and never writes: readers use it as is. Writers call it
//! under the lock and then act on what it found ([`super::Store`]): cut a
//! torn tail (keeping its bytes), fold a merge, finish an upgrade, remove
//! temp files. Damage in the middle of the log and records of a newer ldm
//! are errors, and nothing is touched (DESIGN.md, "Recovery").

// Over 400 lines: `load` is one pass over the files whose findings feed each
// other (tail, lineage, merge, upgrade); its tests are in recover_tests.rs.

use std::io::ErrorKind;

use super::cache::{Key, Stamp};
use super::error::StoreError;
use super::fs::{FileId, Fs};
use super::lineage::{self, LogInfo, Origin};
use super::log::{self, Entry, Scan, Tail};
use super::read_yaml;
use super::record::{self, Header};
use super::snapshot::{self, Doc, Mark, Written};
use super::Paths;
use ldm_model::merge::{self, Conflict};
use ldm_model::Project;

/// A `containers.yaml` larger than this is refused before it is read (by
/// `stat`, so a huge file is never loaded): the YAML parser's own limit.
pub const YAML_MAX_BYTES: u64 = ldm_yaml::MAX_BYTES as u64;
/// A `containers.log` larger than this is refused before it is read: the
/// log is compacted once it reaches the YAML's size.
pub const LOG_MAX_BYTES: u64 = 256 << 20;

/// The log as found on disk.
#[derive(Debug)]
pub struct LogFound {
    /// Its header.
    pub header: Header,
    /// Identity when read.
    pub id: FileId,
    /// Its records (payloads decoded after the base) and how they end.
    pub scan: Scan,
    /// Its seq range, for [`lineage::classify`].
    pub info: LogInfo,
}

/// What merging another writer's YAML found.
#[derive(Debug, Clone, PartialEq)]
pub struct Merge {
    /// Fields both sides changed (the file's value kept), or, without a
    /// base, every change of ldm's that the file overrides.
    pub conflicts: Vec<Conflict>,
    /// No usable base: the file won wholesale.
    pub base_gone: bool,
    /// ldm's records after the base, which the merge weighed against the
    /// file; kept beside the log when anything of them was dropped.
    pub records: Vec<Entry>,
    /// The file is an older fold of ldm's own, of this log, put back (a
    /// `git checkout`, a backup): what it takes back.
    pub reverted: Option<Reverted>,
    /// Containers ldm had recorded that the result no longer has (the file
    /// removed them); LXD may still have them.
    pub gone: Vec<String>,
}

/// What a restored older fold of `containers.yaml` takes back.
#[derive(Debug, Clone, PartialEq)]
pub struct Reverted {
    /// The last record the restored file holds.
    pub file_seq: u64,
    /// The last record ldm had folded (the base's).
    pub base_seq: u64,
    /// Each field whose value the file took back: `kept` the file's (older)
    /// value, `dropped` ldm's later one. Fields both changed since the base
    /// are conflicts, listed there instead.
    pub fields: Vec<Conflict>,
}

/// Everything read from the files.
#[derive(Debug)]
pub struct Loaded {
    /// The state: the YAML (merged with ldm's records where another writer
    /// changed it) plus every complete record after it.
    pub project: Project,
    /// Identity of `containers.yaml` when read.
    pub yaml_id: FileId,
    /// Key of its bytes.
    pub yaml_key: Key,
    /// The YAML file as seen, for a derived file made from this load.
    pub yaml_stamp: Stamp,
    /// When the YAML was seen ([`Fs::now_ns`], taken before it was read).
    pub yaml_seen_ns: i128,
    /// The YAML as parsed (or as the base or cache had it parsed). Its
    /// `project` is emptied (moved into `project`) when the YAML is ldm's
    /// current fold, parsed from the base: nothing needs it twice then.
    pub doc: Doc,
    /// The base file: what ldm last folded, when a merge needs it.
    pub base: Option<Doc>,
    /// The base's mark, if there is a base.
    pub base_mark: Option<Mark>,
    /// The base is these very bytes (its key is the YAML's).
    pub base_matches: bool,
    /// No derived file vouched for the YAML by its times (its bytes were
    /// hashed, or parsed): a reader writes the load cache.
    pub cache_due: bool,
    /// Where the state comes from.
    pub origin: Origin,
    /// The log, if there is one.
    pub log: Option<LogFound>,
    /// Sequence number of the last record in the state.
    pub last_seq: u64,
    /// Set when another writer's YAML was merged.
    pub merge: Option<Merge>,
    /// True when the YAML's bytes had to be parsed (neither the base nor the
    /// cache had them): a reader caches the parse.
    pub parsed: bool,
    /// The log has damage, but only among records the YAML holds: a writer
    /// replaces the log before appending to it.
    pub damaged_but_folded: bool,
    /// The YAML's bytes, when it holds what a rewrite drops (keys ldm does
    /// not know, or comments of its own), so that a writer can keep them.
    pub extras: Option<Vec<u8>>,
}

impl Loaded {
    /// Keys of the YAML ldm ignores (dotted paths), dropped at the next fold.
    pub fn unknown_keys(&self) -> &[String] {
        &self.doc.unknown
    }
}

/// Reads the YAML, the base and the log, and builds the state. A torn tail
/// is left in `log.scan.tail` for the caller; damage is an error.
pub fn load(fs: &dyn Fs, paths: &Paths) -> Result<Loaded, StoreError> {
    let yaml = read_yaml::read_yaml(fs, paths)?;
    let log = read_log(fs, paths, &yaml.doc)?;
    let origin = lineage::classify(
        &yaml.doc,
        yaml.base_matches,
        yaml.base_mark,
        log.as_ref().map(|(l, _)| &l.info),
    );
    // The base's state is needed only to merge another writer's file.
    let base = match (origin, paths.base()) {
        (
            Origin::Foreign {
                base_seq: Some(_), ..
            },
            Some(path),
        ) => yaml.base.and_then(|b| b.decode(fs, &path)),
        _ => None,
    };
    // The YAML's own state is needed beside the result only to merge it,
    // to cache it, or to rewrite a stale base; else it moves.
    let keep_doc = yaml.cache_due
        || !matches!(
            origin,
            Origin::Ours {
                base_stale: false,
                ..
            }
        );
    let mut doc = yaml.doc;
    let project = if keep_doc {
        doc.project.clone()
    } else {
        std::mem::take(&mut doc.project)
    };
    let mut loaded = Loaded {
        project,
        yaml_id: yaml.stamp.id,
        yaml_key: yaml.key,
        yaml_stamp: yaml.stamp,
        yaml_seen_ns: yaml.seen_ns,
        doc,
        base,
        base_mark: yaml.base_mark.flatten(),
        base_matches: yaml.base_matches,
        cache_due: yaml.cache_due,
        origin,
        log: None,
        last_seq: 0,
        merge: None,
        parsed: yaml.parsed,
        damaged_but_folded: false,
        extras: yaml.extras,
    };
    let Some((mut log, log_bytes)) = log else {
        loaded.last_seq = loaded.doc.mark.map_or(0, |m| m.seq);
        return Ok(loaded);
    };
    let after = folded_up_to(origin, &loaded.doc, &log);
    loaded.damaged_but_folded = scan_records(&mut log, &log_bytes, origin, after, paths)?;
    let records: Vec<Entry> = log
        .scan
        .entries
        .iter()
        .filter(|e| e.seq > after)
        .cloned()
        .collect();
    loaded.last_seq = log
        .scan
        .entries
        .last()
        .map_or(log.info.prev_seq, |e| e.seq)
        .max(after.min(log.info.last_seq));
    apply_records(&mut loaded, records, log.header.id, paths)?;
    loaded.log = Some(log);
    Ok(loaded)
}

/// The last record the state's starting point holds already: records up to
/// it are skipped (not even decoded), those after it applied.
fn folded_up_to(origin: Origin, doc: &Doc, log: &LogFound) -> u64 {
    match origin {
        Origin::NoLog => u64::MAX,
        Origin::Ours { seq, .. } => seq,
        Origin::Legacy { seq, log_folded } => {
            if log_folded {
                u64::MAX
            } else {
                seq
            }
        }
        Origin::Foreign {
            base_seq: Some(b), ..
        } => b,
        Origin::Foreign { base_seq: None, .. } => dropped_from(doc, log),
    }
}

/// Scans the log's records, decoding those after `after`; refuses damage
/// before a record the state needs and a newer ldm's record. Returns true
/// when the only damage lies among folded records.
fn scan_records(
    log: &mut LogFound,
    bytes: &[u8],
    origin: Origin,
    after: u64,
    paths: &Paths,
) -> Result<bool, StoreError> {
    let body = &bytes[log.header.len()..];
    let base_at = log.header.len() as u64;
    log.scan = log::scan_after(body, base_at, log.header.prev_seq, Some(after));
    if let Tail::Corrupt { offset, .. } = log.scan.tail {
        // Damage among records the YAML holds already (every valid record
        // after it is folded too) does not matter: a writer compacts it
        // away. Damage before a record the state needs is refused.
        let from = (offset - base_at) as usize;
        let folded = matches!(origin, Origin::Ours { .. } | Origin::Legacy { .. })
            && log::max_valid_seq(&body[from..]).is_none_or(|s| s <= after);
        if folded {
            log.scan.tail = Tail::Clean;
            return Ok(true);
        }
    }
    match &log.scan.tail {
        Tail::Corrupt { offset, reason, .. } => Err(StoreError::Corrupt {
            path: paths.log.clone(),
            offset: *offset,
            reason: reason.clone(),
        }),
        Tail::Newer { offset, seq, op } => Err(StoreError::NewerRecord {
            path: paths.log.clone(),
            offset: *offset,
            seq: *seq,
            op: op.clone(),
        }),
        Tail::Clean | Tail::Torn { .. } => Ok(false),
    }
}

/// Builds the state from its starting point and ldm's `records` after it:
/// replayed onto ldm's own fold, or merged with another writer's file.
fn apply_records(
    loaded: &mut Loaded,
    records: Vec<Entry>,
    log_id: Option<record::LogId>,
    paths: &Paths,
) -> Result<(), StoreError> {
    match loaded.origin {
        Origin::NoLog | Origin::Ours { .. } | Origin::Legacy { .. } => {
            return replay(&mut loaded.project, &records, paths);
        }
        Origin::Foreign {
            base_seq: Some(base_seq),
            writer,
        } => {
            let Some(base) = &loaded.base else {
                return Err(StoreError::Unstable {
                    path: paths.dir.clone(),
                });
            };
            let mut ours = base.project.clone();
            replay(&mut ours, &records, paths)?;
            let (project, conflicts) =
                merge::merge(&base.project, &ours, &loaded.doc.project, writer);
            // ldm's own file of this log, older than its last fold (the
            // base, never durable ahead of the YAML): put back by someone.
            // Its values win as any later write's do; the acknowledged
            // changes that takes back are said, never silent (issue 25,
            // item 5). A fold at the base's seq takes back no record of
            // ldm's (only what a merge took from another program), and is
            // merged as any edit: a crash between a merge fold's swap and its
            // base leaves such a pair too, the newer file in place.
            let reverted = match loaded.doc.mark {
                Some(m)
                    if loaded.doc.written == Written::ByLdm
                        && m.log.is_some()
                        && m.log == log_id
                        && m.seq < base_seq =>
                {
                    let fields: Vec<Conflict> = merge::differences(&ours, &project)
                        .into_iter()
                        .filter(|d| !conflicts.iter().any(|c| c.field == d.field))
                        .collect();
                    Some(Reverted {
                        file_seq: m.seq,
                        base_seq,
                        fields,
                    })
                }
                _ => None,
            };
            let gone = gone_containers(&ours, &project);
            loaded.project = project;
            loaded.merge = Some(Merge {
                conflicts,
                base_gone: false,
                records,
                reverted,
                gone,
            });
        }
        Origin::Foreign { base_seq: None, .. } => {
            // No base: the file wins; list what ldm's records would change.
            let mut ours = loaded.doc.project.clone();
            for e in &records {
                for m in &e.mutations {
                    let _ = ours.apply(m);
                }
            }
            let conflicts = merge::differences(&ours, &loaded.doc.project);
            let gone = gone_containers(&ours, &loaded.doc.project);
            loaded.merge = Some(Merge {
                conflicts,
                base_gone: true,
                records,
                reverted: None,
                gone,
            });
        }
    }
    // Each side was valid; check the combination all the same.
    snapshot::validated(paths, &loaded.project)
}

/// Containers `ours` has and `result` does not.
fn gone_containers(ours: &Project, result: &Project) -> Vec<String> {
    ours.containers
        .keys()
        .filter(|name| !result.containers.contains_key(*name))
        .cloned()
        .collect()
}

/// Without a base, the records that may hold changes the file lacks: all
/// of the log, but those a mark of this log says the file holds already.
fn dropped_from(doc: &Doc, log: &LogFound) -> u64 {
    match doc.mark {
        Some(m) if m.log.is_some() && m.log == log.header.id => m.seq.max(log.info.prev_seq),
        _ => log.info.prev_seq,
    }
}

/// Reads the log, its header and its frames (no payloads yet).
fn read_log(
    fs: &dyn Fs,
    paths: &Paths,
    doc: &Doc,
) -> Result<Option<(LogFound, Vec<u8>)>, StoreError> {
    let id = match fs.stat(&paths.log) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("read", &paths.log, e)),
        Ok(id) => id,
    };
    within(&paths.log, id.len, LOG_MAX_BYTES)?;
    let bytes = fs
        .read(&paths.log)
        .map_err(|e| StoreError::io("read", &paths.log, e))?;
    let header = record::decode_header(&bytes).map_err(|error| StoreError::BadHeader {
        path: paths.log.clone(),
        error,
    })?;
    let body = &bytes[header.len()..];
    let scan = log::scan_after(body, header.len() as u64, header.prev_seq, Some(u64::MAX));
    // Version 1 logs start after the YAML's mark; their first record says.
    let prev_seq = header.prev_seq.unwrap_or_else(|| {
        scan.entries
            .first()
            .map_or(doc.mark.map_or(0, |m| m.seq), |e| e.seq.saturating_sub(1))
    });
    let mut last_seq = scan.entries.last().map_or(prev_seq, |e| e.seq);
    if let Tail::Corrupt { offset, .. } = scan.tail {
        // Records past damage count for the range: a repair's fold names them.
        let from = (offset as usize).saturating_sub(header.len());
        last_seq = last_seq.max(log::max_valid_seq(&body[from..]).unwrap_or(0));
    }
    let found = LogFound {
        header,
        id,
        scan,
        info: LogInfo {
            header,
            prev_seq,
            last_seq,
        },
    };
    Ok(Some((found, bytes)))
}

/// Applies the records to `project`; a record that does not apply is
/// reported with its sequence number and offset.
pub fn replay(project: &mut Project, entries: &[Entry], paths: &Paths) -> Result<(), StoreError> {
    for e in entries {
        for m in &e.mutations {
            project.apply(m).map_err(|error| StoreError::Replay {
                path: paths.log.clone(),
                seq: e.seq,
                offset: e.offset,
                error,
            })?;
        }
    }
    Ok(())
}

/// Refuses a file of `len` bytes over `limit` before it is read.
pub(super) fn within(path: &std::path::Path, len: u64, limit: u64) -> Result<(), StoreError> {
    if len > limit {
        return Err(StoreError::TooBig {
            path: path.to_path_buf(),
            len,
            limit,
        });
    }
    Ok(())
}

pub(super) fn not_found_or_io(e: std::io::Error, paths: &Paths) -> StoreError {
    if e.kind() == ErrorKind::NotFound {
        StoreError::NotAProject {
            start: paths.dir.clone(),
        }
    } else {
        StoreError::io("read", &paths.yaml, e)
    }
}

#[cfg(test)]
#[path = "recover_tests.rs"]
mod tests;
