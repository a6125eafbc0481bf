//! `ldm doctor`: inspect the files read-only, and repair a damaged log.
//!
//! Inspection never writes; it judges through the same [`recover::load`]
//! every command uses, so that it never calls healthy what a command
//! refuses, and each hint names a command that can fix what it found.
//! Repair is narrow and explicit (DESIGN.md, "Repair"): it copies the log to
//! `containers.log.broken-TIME` first, keeps every record that has a valid
//! checksum and still applies, folds them into a new `containers.yaml`
//! generation, and reports each byte range and record it dropped. A record
//! of a newer ldm is dropped only with `--force`. It never edits a YAML by
//! guesswork: a YAML that does not parse must be fixed by hand.

// Over 400 lines: inspection and repair share every judgment (through
// `recover::load`); apart they could drift, and `doctor` must never call
// healthy what a command refuses.

use std::io::ErrorKind;
use std::path::PathBuf;

use serde::Serialize;

use super::backup;
use super::cache;
use super::cleanup;
use super::compact;
use super::error::StoreError;
use super::fs::Fs;
use super::lineage::{self, LogInfo, Origin};
use super::log::{self, Tail};
use super::record::{self, HeaderError};
use super::recover::{self, Loaded};
use super::snapshot::{self, Doc, Written};
use super::Paths;
use ldm_model::{merge, Project};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// All is well.
    Ok,
    /// Harmless; the next writing command deals with it.
    Warning,
    /// ldm refuses to write until it is fixed.
    Damage,
}

/// One line of the doctor's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// The file concerned.
    pub file: PathBuf,
    /// What was found.
    pub message: String,
    /// What to run about it, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

fn finding(
    severity: Severity,
    file: &std::path::Path,
    message: String,
    hint: Option<&str>,
) -> Finding {
    Finding {
        severity,
        file: file.to_path_buf(),
        message,
        hint: hint.map(str::to_string),
    }
}

const REPAIR: &str = "ldm doctor --repair";

/// Checks the files and the folder; writes nothing.
pub fn inspect(fs: &dyn Fs, paths: &Paths) -> Vec<Finding> {
    let mut out = Vec::new();
    match recover::load(fs, paths) {
        Ok(loaded) => describe(paths, &loaded, &mut out),
        Err(e) => out.push(damage(paths, &e)),
    }
    if let Ok(names) = fs.list(&paths.dir) {
        for name in names {
            let Some(s) = name.to_str() else { continue };
            if cleanup::TEMP_PREFIXES.iter().any(|p| s.starts_with(p)) {
                let path = paths.dir.join(s);
                // What writers do with it (cleanup::remove_temps).
                let folder = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
                out.push(if folder {
                    finding(
                        Severity::Ok,
                        &path,
                        "a folder with the name of an ldm temp file: not ldm's, so ldm leaves it alone (it is never in ldm's way)".into(),
                        None,
                    )
                } else {
                    finding(
                        Severity::Warning,
                        &path,
                        "temp file of an interrupted command; the next writing command removes it"
                            .into(),
                        None,
                    )
                });
            }
        }
    }
    out
}

/// The finding for an error a load returned, with a hint that works.
fn damage(paths: &Paths, e: &StoreError) -> Finding {
    let (file, hint) = match e {
        StoreError::Corrupt { path, .. } | StoreError::Replay { path, .. } => (path, Some(REPAIR)),
        StoreError::BadHeader {
            path,
            error: HeaderError::UnknownVersion { .. },
        } => (path, Some("upgrade ldm")),
        StoreError::BadHeader { path, .. } => (path, Some(REPAIR)),
        StoreError::NewerRecord { path, .. } => (
            path,
            Some("upgrade ldm (or, to drop it and every record after it: ldm doctor --repair --force)"),
        ),
        StoreError::Yaml { path, .. }
        | StoreError::Invalid { path, .. }
        | StoreError::NoProjectKey { path, .. } => (path, Some("fix containers.yaml by hand")),
        StoreError::Untrusted { path, .. } | StoreError::TooBig { path, .. } => (path, None),
        _ => (&paths.yaml, None),
    };
    // The finding names the file already.
    let text = e.to_string();
    let prefix = format!("{}: ", file.display());
    let message = text.strip_prefix(&prefix).unwrap_or(&text).to_string();
    finding(Severity::Damage, file, message, hint)
}

fn describe(paths: &Paths, loaded: &Loaded, out: &mut Vec<Finding>) {
    let p = &loaded.project;
    let who = match (loaded.origin, &loaded.merge) {
        (Origin::Ours { seq, .. }, _) => format!("ldm's fold of the log up to record {seq}"),
        (Origin::NoLog, _) => "no log yet; the next writing command starts one".into(),
        (Origin::Legacy { .. }, _) => {
            "written by an ldm before log format version 2; the next writing command upgrades both files".into()
        }
        (Origin::Foreign { .. }, Some(m)) if !m.conflicts.is_empty() => format!(
            "changed by another program or by hand since ldm's last fold, and {} field(s) were changed by ldm too: the file's values win and ldm's are kept beside the log when the next writing command merges it",
            m.conflicts.len()
        ),
        (Origin::Foreign { .. }, _) => match loaded.doc.written {
            Written::NoMark => "rewritten by another program (no `ldm:` mark, laid out as lxc-dev-manager writes it); the next writing command merges it with ldm's records".into(),
            Written::MarkRemoved => "edited since ldm's last fold, its `ldm:` mark deleted; the next writing command merges it with ldm's records".into(),
            _ => "edited since ldm's last fold; the next writing command merges it with ldm's records".into(),
        },
    };
    let conflicting = loaded
        .merge
        .as_ref()
        .is_some_and(|m| !m.conflicts.is_empty());
    out.push(finding(
        if conflicting {
            Severity::Warning
        } else {
            Severity::Ok
        },
        &paths.yaml,
        format!(
            "project {:?}, {} containers; {who}",
            p.project,
            p.containers.len()
        ),
        None,
    ));
    match &loaded.log {
        None => out.push(finding(
            Severity::Ok,
            &paths.log,
            "absent (no change since the project was created or upgraded)".into(),
            None,
        )),
        Some(log) => {
            let n = log.scan.entries.len();
            let tail = match log.scan.tail {
                Tail::Torn { offset, dropped, .. } => Some(format!(
                    "then {dropped} bytes of an unfinished record at byte {offset}; the next writing command cuts them and keeps them in containers.log.cut-TIME"
                )),
                _ if loaded.damaged_but_folded => Some(
                    "then damage among records containers.yaml holds already; the next writing command replaces the log".into(),
                ),
                _ => None,
            };
            out.push(finding(
                if tail.is_some() {
                    Severity::Warning
                } else {
                    Severity::Ok
                },
                &paths.log,
                format!(
                    "format version {}, generation {}, {n} records up to {}, {}{}",
                    log.header.version,
                    log.header.generation,
                    loaded.last_seq,
                    tail.as_deref().unwrap_or("clean end"),
                    if log.header.version < record::VERSION {
                        format!(
                            "; the next writing command upgrades it to format version {}",
                            record::VERSION
                        )
                    } else {
                        String::new()
                    }
                ),
                None,
            ));
        }
    }
}

/// What a repair did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepairReport {
    /// The copy of the damaged log, if one was needed.
    pub backup: Option<PathBuf>,
    /// Records kept and folded into `containers.yaml`.
    pub kept: usize,
    /// Byte ranges dropped: (offset, length, reason).
    pub dropped_bytes: Vec<(u64, u64, String)>,
    /// Records with a valid checksum dropped: (seq, reason).
    pub dropped_records: Vec<(u64, String)>,
    /// Where changes a merge with another writer's YAML dropped are kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_changes: Option<PathBuf>,
}

/// Repairs the log of `paths`; the caller holds both locks. `force` also
/// drops records (or a header) of a newer ldm.
pub fn repair(fs: &dyn Fs, paths: &Paths, force: bool) -> Result<RepairReport, StoreError> {
    let yaml_id = fs
        .stat(&paths.yaml)
        .map_err(|e| StoreError::io("read", &paths.yaml, e))?;
    let yaml = fs
        .read(&paths.yaml)
        .map_err(|e| StoreError::io("read", &paths.yaml, e))?;
    let doc = snapshot::parse_yaml(paths, &yaml)?;
    let bytes = match fs.read(&paths.log) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(RepairReport::default()),
        Err(e) => return Err(StoreError::io("read", &paths.log, e)),
        Ok(b) => b,
    };
    match recover::load(fs, paths) {
        Ok(l)
            if l.log.as_ref().is_none_or(|f| f.scan.tail == Tail::Clean)
                && !l.damaged_but_folded =>
        {
            return Ok(RepairReport::default())
        }
        // A newer ldm's data is not damage: keep it unless told otherwise.
        Err(e @ StoreError::NewerRecord { .. }) if !force => return Err(e),
        Err(
            e @ StoreError::BadHeader {
                error: HeaderError::UnknownVersion { .. },
                ..
            },
        ) if !force => return Err(e),
        _ => {}
    }
    let mut report = RepairReport::default();
    let (start, header) = match record::decode_header(&bytes) {
        Ok(h) => (h.len(), Some(h)),
        Err(e) => {
            let first = log::next_valid(&bytes, 0, None).unwrap_or(bytes.len());
            report
                .dropped_bytes
                .push((0, first as u64, format!("bad header: {e}")));
            (first, None)
        }
    };
    let max_seq = log::max_valid_seq(&bytes[start..]).unwrap_or(0);
    let info = header.map(|h| {
        let prev_seq = h.prev_seq.unwrap_or_else(|| doc.mark.map_or(0, |m| m.seq));
        LogInfo {
            header: h,
            prev_seq,
            last_seq: max_seq.max(prev_seq),
        }
    });
    let key = cache::Key::of(&yaml);
    let base_path = paths.base();
    let base = base_path.as_ref().and_then(|p| cache::read(fs, p));
    let base_matches = base.as_ref().is_some_and(|b| b.key == key);
    let base_mark = base.as_ref().map(|b| b.mark);
    let base = base.zip(base_path).and_then(|(b, p)| b.decode(fs, &p));
    let origin = lineage::classify(&doc, base_matches, base_mark, info.as_ref());
    // The state the records apply to, and the last record it holds.
    let (mut project, skip) =
        starting_point(header.is_some(), origin, &doc, base.as_ref(), info.as_ref());
    let ours_from = project.clone();
    let kept_entries = keep_records(&bytes, start, skip, &mut project, &mut report);
    // Another writer's YAML: merge as a load would, keeping what it drops.
    if let (Some(_), Origin::Foreign { base_seq, writer }) = (header, origin) {
        let (merged, conflicts) = match base_seq {
            Some(_) => merge::merge(&ours_from, &project, &doc.project, writer),
            None => (
                doc.project.clone(),
                merge::differences(&project, &doc.project),
            ),
        };
        if !conflicts.is_empty() {
            report.dropped_changes =
                Some(backup::keep_dropped(fs, paths, &conflicts, &kept_entries)?);
        }
        project = merged;
    }
    report.backup = Some(backup::keep(fs, paths, "broken", &bytes)?);
    // The new YAML's mark is past every valid record of the old log, so a
    // crash before the log is replaced leaves a readable pair.
    let last = max_seq
        .max(doc.mark.map_or(0, |m| m.seq))
        .max(info.map_or(0, |i| i.prev_seq));
    let id = header
        .and_then(|h| h.id)
        .unwrap_or_else(compact::new_log_id);
    let generation = header.map_or(0, |h| h.generation);
    compact::compact(fs, paths, &project, generation, &id, last, Some(yaml_id))?;
    Ok(report)
}

/// Walks the log from `start`, applying every record with a valid checksum
/// after `skip` to `project` (each all or nothing: a record is one commit),
/// resyncing past damage; notes in `report` what it keeps and drops.
/// Returns the records it kept.
fn keep_records(
    bytes: &[u8],
    start: usize,
    skip: u64,
    project: &mut Project,
    report: &mut RepairReport,
) -> Vec<log::Entry> {
    let mut kept_entries = Vec::new();
    // One resync search for the whole walk: damage met many times must not
    // rebuild it each time (DESIGN.md, "Recovery").
    let resync = log::Resync::new(bytes);
    let mut pos = start;
    while pos < bytes.len() {
        let scan = log::scan_from(&resync, pos, 0, None, None);
        for e in &scan.entries {
            if e.seq <= skip {
                continue;
            }
            // A record is one commit: keep all of it or none of it.
            let mut next = project.clone();
            match e.mutations.iter().try_for_each(|m| next.apply(m)) {
                Ok(()) => {
                    *project = next;
                    report.kept += 1;
                    kept_entries.push(e.clone());
                }
                Err(err) => report.dropped_records.push((e.seq, err.to_string())),
            }
        }
        match scan.tail {
            Tail::Clean => break,
            Tail::Torn {
                offset,
                dropped,
                reason,
            } => {
                report
                    .dropped_bytes
                    .push((offset, dropped, reason.to_string()));
                break;
            }
            Tail::Newer { offset, seq, op } => {
                // Only with --force (checked above); drop this record alone.
                report.dropped_records.push((
                    seq,
                    format!("a change of kind `{op}` from a newer ldm (--force)"),
                ));
                let len = match record::decode_record(&bytes[offset as usize..]) {
                    record::Decoded::Record { len, .. } => len,
                    _ => 1,
                };
                pos = offset as usize + len;
            }
            Tail::Corrupt {
                offset,
                next_valid,
                reason,
            } => {
                let next = next_valid.unwrap_or(bytes.len() as u64);
                report.dropped_bytes.push((offset, next - offset, reason));
                pos = next as usize;
            }
        }
    }
    kept_entries
}

/// The state a repair applies the log's records to, and the last record it
/// holds already: as a load would start (DESIGN.md, "Lineage").
fn starting_point(
    header_ok: bool,
    origin: Origin,
    doc: &Doc,
    base: Option<&Doc>,
    info: Option<&LogInfo>,
) -> (Project, u64) {
    let yaml = || doc.project.clone();
    let from_log_start = info.map_or(0, |i| i.prev_seq);
    if !header_ok {
        // No readable header: the records after it continue the YAML's mark.
        return (yaml(), doc.mark.map_or(0, |m| m.seq));
    }
    match origin {
        Origin::Ours { seq, .. }
        | Origin::Legacy {
            seq,
            log_folded: false,
        } => (yaml(), seq),
        Origin::Legacy {
            log_folded: true, ..
        }
        | Origin::NoLog => (yaml(), u64::MAX),
        Origin::Foreign {
            base_seq: Some(b), ..
        } => match base {
            Some(d) => (d.project.clone(), b),
            None => (yaml(), from_log_start),
        },
        Origin::Foreign { base_seq: None, .. } => (yaml(), from_log_start),
    }
}
