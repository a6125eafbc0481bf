//! `ldm doctor [--json] [--repair]` and `ldm compact`: store maintenance.

use std::io::Write;

use serde::Serialize;

use crate::cli::Doctor;
use crate::commands::Ctx;
use crate::store::repair::{Finding, RepairReport, Severity};
use crate::{say, Error};

/// `ldm compact`: folds the log into `containers.yaml` now.
pub fn compact(ctx: &Ctx, out: &mut dyn Write) -> Result<(), Error> {
    let mut store = ctx.store()?;
    let mark = store.compact()?;
    say(
        out,
        &format!(
            "Compacted {} (generation {}, {} records folded in all)",
            store.paths().yaml.display(),
            mark.generation,
            mark.seq
        ),
    )
}

#[derive(Serialize)]
struct Report<'a> {
    project_dir: String,
    healthy: bool,
    findings: &'a [Finding],
    #[serde(skip_serializing_if = "Option::is_none")]
    repair: Option<&'a RepairReport>,
}

/// `ldm doctor`: prints what it finds; exits 2 if damage remains.
pub fn run(ctx: &Ctx, args: &Doctor, out: &mut dyn Write) -> Result<(), Error> {
    let mut store = ctx.store()?;
    let repair = if args.repair {
        Some(store.repair()?)
    } else {
        None
    };
    let findings = store.inspect();
    let healthy = findings.iter().all(|f| f.severity != Severity::Damage);
    if args.json {
        let report = Report {
            project_dir: store.paths().dir.display().to_string(),
            healthy,
            findings: &findings,
            repair: repair.as_ref(),
        };
        say(
            out,
            &serde_json::to_string_pretty(&report).unwrap_or_default(),
        )?;
    } else {
        if let Some(r) = &repair {
            print_repair(r, out)?;
        }
        for f in &findings {
            let tag = match f.severity {
                Severity::Ok => "ok",
                Severity::Warning => "warning",
                Severity::Damage => "DAMAGE",
            };
            say(
                out,
                &format!("{tag:>7}  {}: {}", f.file.display(), f.message),
            )?;
            if let Some(h) = &f.hint {
                say(out, &format!("         fix: {h}"))?;
            }
        }
    }
    if healthy {
        Ok(())
    } else {
        Err(Error::Unhealthy(
            "the project store is damaged (see above); run `ldm doctor --repair`".into(),
        ))
    }
}

fn print_repair(r: &RepairReport, out: &mut dyn Write) -> Result<(), Error> {
    let Some(backup) = &r.backup else {
        return say(out, "repair: the log is healthy; nothing to do");
    };
    say(
        out,
        &format!("repair: saved the damaged log as {}", backup.display()),
    )?;
    for (offset, len, why) in &r.dropped_bytes {
        say(
            out,
            &format!("repair: dropped {len} bytes at byte {offset} ({why})"),
        )?;
    }
    for (seq, why) in &r.dropped_records {
        say(out, &format!("repair: dropped record {seq}: {why}"))?;
    }
    say(
        out,
        &format!(
            "repair: kept {} records, folded into containers.yaml",
            r.kept
        ),
    )
}
