//! `ldm doctor`: inspect both files read-only, and repair a damaged log.
//!
//! Inspection never writes. Repair is narrow and explicit (DESIGN.md,
//! "Repair"): it copies the log to `containers.log.broken-TIME` first, keeps
//! every record that has a valid checksum and still applies, folds them into
//! a new `containers.yaml` generation, and reports each byte range and
//! record it dropped. It never edits `containers.yaml` by guesswork: a YAML
//! that does not parse must be fixed by hand.

use std::io::ErrorKind;
use std::path::PathBuf;

use serde::Serialize;

use super::compact;
use super::error::StoreError;
use super::fs::Fs;
use super::log::{self, Tail};
use super::record::{self, HEADER_LEN};
use super::recover;
use super::Paths;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// All is well.
    Ok,
    /// Harmless; the next writing command deals with it.
    Warning,
    /// ldm refuses to write until it is repaired.
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

/// Checks both files and the folder; writes nothing.
pub fn inspect(fs: &dyn Fs, paths: &Paths) -> Vec<Finding> {
    let mut out = Vec::new();
    let yaml_state = match fs.read(&paths.yaml) {
        Err(e) => {
            out.push(finding(
                Severity::Damage,
                &paths.yaml,
                format!("cannot read: {e}"),
                None,
            ));
            None
        }
        Ok(bytes) => match recover::parse_yaml(paths, &bytes) {
            Err(e) => {
                out.push(finding(
                    Severity::Damage,
                    &paths.yaml,
                    e.to_string(),
                    Some("fix containers.yaml by hand"),
                ));
                None
            }
            Ok((project, mark)) => {
                let gen = match mark {
                    Some(m) => format!("generation {}, records up to {}", m.generation, m.seq),
                    None => "no `ldm:` mark (written by another tool); the log applies on top"
                        .to_string(),
                };
                out.push(finding(
                    Severity::Ok,
                    &paths.yaml,
                    format!(
                        "project {:?}, {} containers folded into this file, {gen}",
                        project.project,
                        project.containers.len()
                    ),
                    None,
                ));
                Some((project, mark))
            }
        },
    };
    match fs.read(&paths.log) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            out.push(finding(
                Severity::Ok,
                &paths.log,
                "absent (no change since the project was created or compacted)".into(),
                None,
            ));
        }
        Err(e) => out.push(finding(
            Severity::Damage,
            &paths.log,
            format!("cannot read: {e}"),
            None,
        )),
        Ok(bytes) => inspect_log(paths, &bytes, yaml_state, &mut out),
    }
    if let Ok(names) = fs.list(&paths.dir) {
        for name in names {
            let Some(s) = name.to_str() else { continue };
            if recover::TEMP_PREFIXES.iter().any(|p| s.starts_with(p)) {
                out.push(finding(
                    Severity::Warning,
                    &paths.dir.join(s),
                    "temp file of an interrupted compaction; the next writing command removes it"
                        .into(),
                    None,
                ));
            }
        }
    }
    out
}

fn inspect_log(
    paths: &Paths,
    bytes: &[u8],
    yaml: Option<(crate::model::Project, Option<super::Mark>)>,
    out: &mut Vec<Finding>,
) {
    let header = match record::decode_header(bytes) {
        Ok(h) => h,
        Err(e) => {
            out.push(finding(
                Severity::Damage,
                &paths.log,
                format!("bad header: {e}"),
                Some(REPAIR),
            ));
            return;
        }
    };
    let mark = yaml.as_ref().and_then(|(_, m)| *m);
    let folded = match mark {
        Some(m) if m.generation == header.generation => false,
        Some(m) if m.generation == header.generation + 1 => {
            out.push(finding(
                Severity::Warning,
                &paths.log,
                format!("generation {} is already folded into containers.yaml (an interrupted compaction); the next writing command replaces it", header.generation),
                None,
            ));
            true
        }
        Some(m) => {
            out.push(finding(
                Severity::Damage,
                &paths.log,
                format!("generation {} does not belong to containers.yaml (generation {}); was one of them restored from a backup?", header.generation, m.generation),
                Some("restore the matching pair of files, or move containers.log away to keep only containers.yaml"),
            ));
            return;
        }
        None => false,
    };
    if folded {
        // Its content is in containers.yaml already (see recover::load).
        return;
    }
    let expect = mark.map(|m| m.seq);
    let scan = log::scan(&bytes[HEADER_LEN..], log::FIRST_RECORD, expect);
    match &scan.tail {
        Tail::Clean => out.push(finding(
            Severity::Ok,
            &paths.log,
            format!("generation {}, {} records, {} bytes, clean end", header.generation, scan.entries.len(), bytes.len()),
            None,
        )),
        Tail::Torn { offset, dropped, reason } => out.push(finding(
            Severity::Warning,
            &paths.log,
            format!("{} records, then an unfinished record at byte {offset} ({dropped} bytes, {reason}); the next writing command drops it", scan.entries.len()),
            None,
        )),
        Tail::Corrupt { offset, next_valid, reason } => out.push(finding(
            Severity::Damage,
            &paths.log,
            format!(
                "{} good records, then damage at byte {offset} ({reason}){}",
                scan.entries.len(),
                next_valid.map(|n| format!("; valid records resume at byte {n}")).unwrap_or_default()
            ),
            Some(REPAIR),
        )),
    }
    if let Some((mut project, _)) = yaml {
        if let Err(e) = recover::replay(&mut project, &scan, paths) {
            out.push(finding(
                Severity::Damage,
                &paths.log,
                e.to_string(),
                Some(REPAIR),
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
    /// Records with a valid checksum dropped because they no longer apply: (seq, reason).
    pub dropped_records: Vec<(u64, String)>,
}

/// Repairs the log of `paths`; the caller holds the lock.
pub fn repair(fs: &dyn Fs, paths: &Paths) -> Result<RepairReport, StoreError> {
    let yaml = fs
        .read(&paths.yaml)
        .map_err(|e| StoreError::io("read", &paths.yaml, e))?;
    let (mut project, mark) = recover::parse_yaml(paths, &yaml)?;
    let bytes = match fs.read(&paths.log) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(RepairReport::default()),
        Err(e) => return Err(StoreError::io("read", &paths.log, e)),
        Ok(b) => b,
    };
    if recover::load(fs, paths)
        .is_ok_and(|l| l.log.as_ref().is_none_or(|f| f.scan.tail == Tail::Clean))
    {
        return Ok(RepairReport::default());
    }
    let mut report = RepairReport::default();
    let (start, header_gen) = match record::decode_header(&bytes) {
        Ok(h) => (HEADER_LEN, Some(h.generation)),
        Err(record::HeaderError::UnknownVersion { found }) => {
            return Err(StoreError::BadHeader {
                path: paths.log.clone(),
                error: record::HeaderError::UnknownVersion { found },
            })
        }
        Err(e) => {
            let first = log::next_valid(&bytes, 0, None).unwrap_or(bytes.len());
            report
                .dropped_bytes
                .push((0, first as u64, format!("bad header: {e}")));
            (first, None)
        }
    };
    if let (Some(m), Some(g)) = (mark, header_gen) {
        if g != m.generation && g + 1 != m.generation {
            return Err(StoreError::GenerationMismatch {
                yaml: paths.yaml.clone(),
                yaml_gen: m.generation,
                log: paths.log.clone(),
                log_gen: g,
            });
        }
    }
    let folded = matches!((mark, header_gen), (Some(m), Some(g)) if g + 1 == m.generation);
    let mut last_seq = mark.map_or(0, |m| m.seq);
    let mut pos = start;
    while pos < bytes.len() {
        let scan = log::scan(&bytes[pos..], pos as u64, None);
        for e in &scan.entries {
            if folded && e.seq <= mark.map_or(0, |m| m.seq) {
                continue;
            }
            // A record is one commit: keep all of it or none of it. One
            // mutation applies atomically by itself; only several need a copy.
            let applied = if let [one] = e.mutations.as_slice() {
                project.apply(one)
            } else {
                let mut next = project.clone();
                let r = e.mutations.iter().try_for_each(|m| next.apply(m));
                if r.is_ok() {
                    project = next;
                }
                r
            };
            match applied {
                Ok(()) => {
                    report.kept += 1;
                    last_seq = last_seq.max(e.seq);
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
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
    // Never overwrite the backup of an earlier repair (same second or not).
    let mut backup = paths.dir.join(format!("containers.log.broken-{stamp}"));
    let mut n = 1;
    while fs.stat(&backup).is_ok() {
        n += 1;
        backup = paths.dir.join(format!("containers.log.broken-{stamp}-{n}"));
    }
    fs.write_new(&backup, &bytes)
        .map_err(|e| StoreError::io("write", &backup, e))?;
    fs.sync(&backup)
        .map_err(|e| StoreError::io("fsync", &backup, e))?;
    fs.sync_dir(&paths.dir)
        .map_err(|e| StoreError::io("fsync the folder", &paths.dir, e))?;
    report.backup = Some(backup);
    compact::compact(fs, paths, &project, mark, header_gen, last_seq)?;
    Ok(report)
}
