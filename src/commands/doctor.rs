//! `ldm doctor [--json] [--repair]` and `ldm compact`: store maintenance.

// Over 400 lines by a few: the report, its --fix (drift, mounts) and
// `compact` share one walk of the store and of LXD.

use std::io::Write;

use serde::Serialize;

use crate::cli::{Doctor, DEFAULT_WAIT};
use crate::commands::drift::{self, Drift, MountFix};
use crate::commands::gate::{self, Gated};
use crate::commands::mounts::{self, Attached};
use crate::commands::sources::{self, Judged};
use crate::commands::style::Color;
use crate::commands::{op, text, Ctx};
use crate::lxd::{Away, Instance, Lxd, LxdError};
use crate::model::Project;
use crate::store::Store;
use crate::store::{Finding, RepairReport, Severity};
use crate::trust::Need;
use crate::{say, Error};

/// `ldm compact`: folds the log into `containers.yaml` now.
pub fn compact(ctx: &Ctx, out: &mut dyn Write) -> Result<(), Error> {
    let mut store = ctx.store()?;
    if let Ok(project) = store.read() {
        gate::check(ctx, &store, &project, &Need::nothing())?;
    }
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
    /// Differences with LXD (after `--fix`, what is left).
    drift: &'a [Drift],
    /// Why LXD was not compared, if it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    lxd_unchecked: Option<String>,
    /// Fixes applied by `--fix`.
    fixed: &'a [Drift],
}

/// What `doctor` found and did, for printing.
struct Found {
    repair: Option<RepairReport>,
    findings: Vec<Finding>,
    healthy: bool,
    drifts: Vec<Drift>,
    fixed: Vec<Drift>,
    lxd_unchecked: Option<String>,
}

/// `ldm doctor`: prints what it finds; exits 2 if damage remains, 1 if the
/// project and LXD differ.
pub fn run(ctx: &Ctx, args: &Doctor, out: &mut dyn Write) -> Result<(), Error> {
    if args.force && !args.fix && !args.repair {
        return Err(Error::Usage(
            "--force goes with --fix (delete from LXD) or --repair (drop a newer ldm's records)"
                .into(),
        ));
    }
    let mut store = ctx.store()?;
    let found = examine(ctx, &mut store, args)?;
    if args.json {
        let report = Report {
            project_dir: store.paths().dir.display().to_string(),
            healthy: found.healthy,
            findings: &found.findings,
            repair: found.repair.as_ref(),
            drift: &found.drifts,
            lxd_unchecked: found.lxd_unchecked.clone(),
            fixed: &found.fixed,
        };
        say(
            out,
            &serde_json::to_string_pretty(&report).unwrap_or_default(),
        )?;
    } else {
        print_report(ctx, &found, out)?;
    }
    if !found.healthy {
        return Err(Error::Unhealthy(
            "the project store is damaged; each finding above names its file and the fix".into(),
        ));
    }
    if !found.drifts.is_empty() {
        return Err(Error::Drift(
            "the project and LXD differ (see above); run `ldm doctor --fix`".into(),
        ));
    }
    Ok(())
}

/// Repairs if asked, checks the files, and, when they are healthy,
/// compares the project with LXD (fixing if asked).
fn examine(ctx: &Ctx, store: &mut Store, args: &Doctor) -> Result<Found, Error> {
    let repair = if args.repair {
        Some(store.repair(args.force)?)
    } else {
        None
    };
    let findings = store.inspect();
    let healthy = findings.iter().all(|f| f.severity != Severity::Damage);
    let mut found = Found {
        repair,
        findings,
        healthy,
        drifts: Vec::new(),
        fixed: Vec::new(),
        lxd_unchecked: None,
    };
    if !healthy {
        return Ok(found);
    }
    let project = store.read()?;
    let need = if args.fix {
        Need::fix()
    } else {
        Need::nothing()
    };
    let gated = gate::check(ctx, store, &project, &need)?;
    let lxd = ctx.lxd(&project, DEFAULT_WAIT);
    match lxd.list() {
        Err(e) => {
            found.lxd_unchecked = Some(format!(
                "cannot list LXD instances, so only the files were checked: {e}"
            ))
        }
        Ok(mut instances) => {
            let away = away(&*lxd, &project, &instances, args.fix)?;
            found.drifts = drift::compare(&store.owners(), &project, &instances, &away);
            if args.fix && !found.drifts.is_empty() {
                found.fixed = fix(
                    store,
                    &gated,
                    &*lxd,
                    args.force,
                    &mut instances,
                    &away,
                    &found.drifts,
                )?;
                found.drifts = drift::compare(&store.owners(), &store.read()?, &instances, &away);
            }
        }
    }
    Ok(found)
}

/// The human report: one line per finding, fix and drift; values from the
/// files and from LXD shown escaped.
fn print_report(ctx: &Ctx, found: &Found, out: &mut dyn Write) -> Result<(), Error> {
    let line = |out: &mut dyn Write, text: String| say(out, &text::escape_lines(&text));
    if let Some(r) = &found.repair {
        print_repair(r, out)?;
    }
    for f in &found.findings {
        let tag = match f.severity {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Damage => "DAMAGE",
        };
        line(
            out,
            format!("{tag:>7}  {}: {}", f.file.display(), f.message),
        )?;
        if let Some(h) = &f.hint {
            line(out, format!("         fix: {h}"))?;
        }
    }
    for d in &found.fixed {
        line(
            out,
            format!("  fixed  {}: {} -> {}", d.container, d.message, d.fix),
        )?;
    }
    for d in &found.drifts {
        let tag = ctx.style.paint("  DRIFT", Some(Color::Red));
        let rest = text::escape_lines(&format!("{}: {}", d.container, d.message));
        say(out, &format!("{tag}  {rest}"))?;
        line(
            out,
            format!("         fix: `ldm doctor --fix` will {}", d.fix),
        )?;
    }
    if let Some(why) = &found.lxd_unchecked {
        line(out, format!("warning  {why}"))?;
    } else if found.healthy && found.drifts.is_empty() {
        say(out, "     ok  the project and LXD agree")?;
    }
    Ok(())
}

/// Applies `drifts`: LXD deletions first (ldm's own temporary snapshots
/// always, instances only with `force`), then the records, recomputed
/// against the state under the lock so that changes made meanwhile by other
/// commands are respected.
fn fix(
    store: &mut Store,
    gated: &Gated,
    lxd: &dyn Lxd,
    force: bool,
    instances: &mut Vec<Instance>,
    away: &[Away],
    drifts: &[Drift],
) -> Result<Vec<Drift>, Error> {
    if force {
        for name in drifts.iter().filter_map(|d| d.delete_with_force.as_ref()) {
            eprintln!("Deleting {name} from LXD (--force)");
            match lxd.delete(name) {
                Ok(()) | Err(LxdError::NotFound { .. }) => instances.retain(|i| &i.name != name),
                Err(e) => return Err(Error::lxd(format!("deleting {name}"))(e)),
            }
        }
    }
    let mut deleted = Vec::new();
    for d in drifts.iter().filter(|d| d.delete_snapshot.is_some()) {
        let Some((inst, snap)) = &d.delete_snapshot else {
            continue;
        };
        eprintln!("Deleting the temporary snapshot {inst}/{snap} from LXD");
        match lxd.delete_snapshot(inst, snap) {
            Ok(()) | Err(LxdError::NotFound { .. }) => {
                for i in instances.iter_mut().filter(|i| &i.name == inst) {
                    i.snapshots.retain(|s| &s.name != snap);
                }
                deleted.push(d.clone());
            }
            Err(e) => return Err(Error::lxd(format!("deleting {inst}/{snap}"))(e)),
        }
    }
    for d in drifts.iter().filter(|d| d.mount.is_some()) {
        if let Some(m) = &d.mount {
            if fix_mount(store, gated, lxd, m, instances)? {
                deleted.push(d.clone());
            }
        }
    }
    let owners = store.owners();
    // Adopting thousands of snapshots is more than one record can hold;
    // each adoption stands alone, so it may take several.
    let applied = store.commit_in_parts(|p| {
        let now = drift::compare(&owners, p, instances, away);
        let mutations = now.iter().flat_map(|d| d.mutations.clone()).collect();
        Ok::<_, Error>((mutations, now))
    })?;
    deleted.extend(applied);
    Ok(deleted)
}

/// The instances of other LXD projects when a recorded container has none
/// in the current one (asked only then): `--fix` must not forget a
/// container the client's project switch hid. If LXD will not say (a
/// restricted client), a report goes on with a note, and `--fix` stops.
fn away(
    lxd: &dyn Lxd,
    project: &Project,
    instances: &[Instance],
    fix: bool,
) -> Result<Vec<Away>, Error> {
    let missing = project.containers.keys().any(|name| {
        let full = project.lxd_name(name);
        !instances.iter().any(|i| i.name == full)
    });
    if !missing {
        return Ok(Vec::new());
    }
    match lxd.elsewhere() {
        Ok(other) => Ok(other),
        Err(e) if fix => Err(Error::lxd(
            "looking in other LXD projects for the containers LXD lacks, before --fix forgets them",
        )(e)),
        Err(e) => {
            op::note_unchecked(&e);
            Ok(Vec::new())
        }
    }
}

/// Puts a recorded mount into LXD, or takes an unrecorded device of ldm's
/// out, and updates `instances` to match. False when a refused source was
/// left out (said on stderr).
fn fix_mount(
    store: &Store,
    gated: &Gated,
    lxd: &dyn Lxd,
    fix: &MountFix,
    instances: &mut [Instance],
) -> Result<bool, Error> {
    match fix {
        MountFix::Remove { lxd_name, device } => {
            eprintln!("Removing device {device} from {lxd_name}");
            mounts::remove(lxd, lxd_name, device)?;
        }
        MountFix::Add {
            lxd_name,
            user,
            mount,
        } => {
            let source = match sources::judge(&store.paths().dir, mount, false, &gated.forced)? {
                Judged::Refused { why, .. } => {
                    eprintln!(
                        "Not mounting {} in {lxd_name}: {}; mount it yourself with `ldm mount ... --force` if you mean it, or `ldm umount` it",
                        text::escape(&mount.to_string()),
                        text::escape(&why)
                    );
                    return Ok(false);
                }
                j => j.path().to_path_buf(),
            };
            eprintln!("Mounting {mount} in {lxd_name}");
            let ids = mounts::user_ids(lxd, lxd_name, user)?;
            let resolved = [(mount.clone(), source)];
            let target = mounts::Target {
                lxd_name,
                host: mounts::host_ids(&store.paths().dir),
                user: ids,
                mounts: &resolved,
                replace_own: false,
            };
            let progress = crate::commands::op::Progress::new(false, 0);
            match mounts::attach(lxd, &target, DEFAULT_WAIT, &progress)? {
                Attached::Done { .. } => {}
                Attached::NeedsRoot { command } => {
                    return Err(Error::NeedsRoot {
                        what: format!("cannot mount {mount} in {lxd_name}: mapping your uid into it needs /etc/subuid and /etc/subgid to allow it"),
                        command,
                    })
                }
                Attached::Root(why) => {
                    return Err(Error::Refused(format!(
                        "cannot mount {mount} in {lxd_name}: {why}"
                    )))
                }
                Attached::Remote { remote } => {
                    return Err(Error::Refused(format!(
                        "cannot mount {mount} in {lxd_name}: {}",
                        mounts::remote_words(&remote)
                    )))
                }
            }
        }
    }
    // Read back what LXD has now.
    let name = match fix {
        MountFix::Add { lxd_name, .. } | MountFix::Remove { lxd_name, .. } => lxd_name,
    };
    if let Some(now) = lxd
        .instance(name)
        .map_err(Error::lxd(format!("reading the state of {name}")))?
    {
        for i in instances.iter_mut().filter(|i| &i.name == name) {
            *i = now.clone();
        }
    }
    Ok(true)
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
    if let Some(p) = &r.dropped_changes {
        say(
            out,
            &format!(
                "repair: changes of ldm's that containers.yaml overrides are kept in {}",
                p.display()
            ),
        )?;
    }
    say(
        out,
        &format!(
            "repair: kept {} records, folded into containers.yaml",
            r.kept
        ),
    )
}
