//! `ldm container reset`, `remove` and `project delete` (`up` and `down`
//! are `updown.rs`).

use std::io::Write;

use crate::cli::{ContainerReset, Force, Remove};
use crate::commands::op::{self, Progress};
use crate::commands::{gate, table, text, Ctx};
use crate::lxd::owner::Owner;
use crate::lxd::{Instance, Lxd, LxdError};
use crate::model::{validate, Mutation, Op, Pending};
use crate::store::Store;
use crate::trust::Need;
use crate::{say, Error};

/// `ldm container reset NAME [SNAP]`: stop if running, restore, start again
/// if it was running.
pub fn reset(ctx: &Ctx, args: &ContainerReset, out: &mut dyn Write) -> Result<(), Error> {
    let (name, snap) = (args.name.as_str(), args.snapshot.as_str());
    validate::snapshot_name(snap)?;
    let (mut store, _, gated) = gate::load(ctx, &Need::lxd())?;
    let (_owner, mut pending) = op::claim(
        &store,
        Op::Reset {
            snapshot: snap.to_string(),
            restart: false,
        },
    )?;
    let begun = op::begin(&mut store, name, &pending, |p| {
        gated.recheck(p, &Need::lxd())?;
        Ok(Vec::new())
    })?;
    let lxd = ctx.lxd_at(begun.remote.as_deref(), args.wait.timeout);
    // An interrupted reset may have stopped it already: its intent says so.
    let restart = begun.old.is_some_and(|o| o.op.restart());
    let target = Target {
        name,
        lxd_name: &begun.lxd_name,
        snap,
        restart,
    };
    let result = restore(ctx, &*lxd, &mut store, &mut pending, &target);
    // LXD holds the outcome either way; the operation is over.
    op::record(
        &mut store,
        vec![Mutation::OperationFinished {
            container: name.to_string(),
            snapshot: None,
        }],
    )?;
    let running = result?;
    say(
        out,
        &format!(
            "Reset {name} to {snap} ({})",
            if running { "running" } else { "stopped" }
        ),
    )
}

/// What `reset` restores: the container, its snapshot, and whether an
/// interrupted run left it stopped while it had been running.
struct Target<'a> {
    name: &'a str,
    lxd_name: &'a str,
    snap: &'a str,
    restart: bool,
}

fn restore(
    ctx: &Ctx,
    lxd: &dyn Lxd,
    store: &mut Store,
    pending: &mut Pending,
    t: &Target,
) -> Result<bool, Error> {
    let (name, lxd_name, snap) = (t.name, t.lxd_name, t.snap);
    let inst = op::instance(lxd, lxd_name)?;
    // Checked before stopping: a missing snapshot must not leave it stopped.
    if !inst.snapshots.iter().any(|s| s.name == snap) {
        return Err(Error::NotFound {
            what: format!("{name} has no snapshot {snap:?}"),
            next: format!("see `ldm container snapshot list {name}`"),
        });
    }
    let running = inst.is_running();
    let was_running = running || t.restart;
    if was_running {
        op::mark_restart(store, name, pending)?;
    }
    let mut progress = Progress::new(
        ctx.quiet,
        1 + usize::from(running) + usize::from(was_running),
    );
    if running {
        progress.step(&format!("Stopping {lxd_name}"));
        match lxd.stop(lxd_name) {
            Ok(()) | Err(LxdError::AlreadyInState { .. }) => {}
            Err(e) => return Err(Error::lxd(format!("stopping {lxd_name}"))(e)),
        }
    }
    progress.step(&format!("Restoring {lxd_name} to {snap}"));
    lxd.restore(lxd_name, snap)
        .map_err(Error::lxd(format!("restoring {lxd_name} to {snap}")))?;
    if was_running {
        progress.step(&format!("Starting {lxd_name}"));
        lxd.start(lxd_name)
            .map_err(Error::lxd(format!("starting {lxd_name}")))?;
    }
    Ok(was_running)
}

/// `ldm remove NAME [-f]`: from LXD and from the project; either may be
/// missing already.
pub fn remove(ctx: &Ctx, args: &Remove, out: &mut dyn Write) -> Result<(), Error> {
    let name = args.name.as_str();
    let (mut store, project, _) = gate::load(ctx, &Need::lxd())?;
    let lxd = ctx.lxd(&project, args.wait.timeout);
    let lxd_name = project.lxd_name(name);
    let recorded = project.containers.get(name);
    if let Some(c) = recorded {
        op::check_free(&store.owners(), name, c)?;
    }
    let inst = lxd
        .instance(&lxd_name)
        .map_err(Error::lxd(format!("reading the state of {lxd_name}")))?;
    if recorded.is_some() {
        op::not_away(&*lxd, &lxd_name, inst.is_some())?;
    }
    if !args.force && !confirm_remove(inst.as_ref(), &project, name, recorded.is_some())? {
        return say(out, "Cancelled");
    }
    let owner = match recorded {
        Some(_) => {
            let (guard, pending) = op::claim(&store, Op::Remove)?;
            op::begin(&mut store, name, &pending, |_| Ok(Vec::new()))?;
            Some(guard)
        }
        None => None,
    };
    match lxd.delete(&lxd_name) {
        Ok(()) => {}
        Err(LxdError::NotFound { .. }) if owner.is_some() => {}
        Err(LxdError::NotFound { .. }) => return Err(op::not_found(&project, name)),
        Err(e) => return Err(Error::lxd(format!("deleting {lxd_name}; the project shows it as interrupted: run `ldm remove {name}` again"))(e)),
    }
    if owner.is_some() {
        op::record(
            &mut store,
            vec![Mutation::ContainerRemoved {
                name: name.to_string(),
            }],
        )?;
    }
    say(out, &format!("Removed {name}"))
}

/// Shows what `remove` would delete (`inst`: LXD's view) and asks; false
/// if the user declined.
fn confirm_remove(
    inst: Option<&Instance>,
    project: &crate::model::Project,
    name: &str,
    recorded: bool,
) -> Result<bool, Error> {
    let lxd_name = project.lxd_name(name);
    let state = match (inst, recorded) {
        (None, false) => return Err(op::not_found(project, name)),
        (None, true) => "not in LXD".to_string(),
        (Some(i), _) => format!(
            "{}{}",
            i.status.to_uppercase(),
            i.ipv4
                .as_ref()
                .map(|ip| format!(", {ip}"))
                .unwrap_or_default()
        ),
    };
    let what = if recorded {
        ""
    } else {
        " (not recorded in this project)"
    };
    eprintln!("{name} ({lxd_name}): {}{what}", text::escape(&state));
    op::confirm(&format!("Remove container {name}?"), false, "--force")
}

/// `ldm project delete [-f]`: every container from LXD, then the files.
pub fn delete_project(ctx: &Ctx, args: &Force, out: &mut dyn Write) -> Result<(), Error> {
    let force = args.force;
    let (mut store, project, _) = gate::load(ctx, &Need::lxd())?;
    let lxd = ctx.lxd(&project, args.wait.timeout);
    let instances = lxd
        .statuses()
        .map_err(Error::lxd("listing LXD instances"))?;
    let status = |n: &str| {
        let full = project.lxd_name(n);
        instances
            .iter()
            .find(|i| i.name == full)
            .map_or("NOT FOUND".to_string(), |i| match i.owner {
                Owner::Other(_) => "ANOTHER CHECKOUT'S".to_string(),
                _ => i.status.to_uppercase(),
            })
    };
    let rows: Vec<Vec<String>> = project
        .containers
        .keys()
        .map(|n| vec![n.clone(), project.lxd_name(n), status(n)])
        .collect();
    let missing: Vec<String> = rows
        .iter()
        .filter(|r| r[2] == "NOT FOUND")
        .map(|r| r[1].clone())
        .collect();
    // Forgetting them is right only if no other LXD project has them.
    op::none_away(&*lxd, &missing, "removed")?;
    // Shown so a person can confirm; with -f -q nobody is asked.
    let nobody_asked = force && ctx.quiet;
    if !rows.is_empty() && !nobody_asked {
        table::print(
            &mut std::io::stderr(),
            &["NAME", "LXD NAME", "STATUS"],
            &rows,
        )?;
    }
    let question = format!(
        "Delete project {} with its {} containers and {}?",
        project.project,
        rows.len(),
        store.paths().yaml.display()
    );
    if !op::confirm(&question, force, "--force")? {
        return say(out, "Cancelled");
    }
    let (_owner, pending) = op::claim(&store, Op::Remove)?;
    let owners = store.owners();
    let names: Vec<String> = store.commit(|p| {
        let mut m = Vec::new();
        for (n, c) in &p.containers {
            op::check_free(&owners, n, c)?;
            m.push(Mutation::OperationStarted {
                container: n.clone(),
                snapshot: None,
                pending: pending.clone(),
            });
        }
        Ok::<_, Error>((m, p.containers.keys().cloned().collect()))
    })?;
    let mut progress = Progress::new(ctx.quiet, names.len());
    for n in &names {
        let full = project.lxd_name(n);
        progress.step(&format!("Deleting {full}"));
        match lxd.delete(&full) {
            Ok(()) | Err(LxdError::NotFound { .. }) => {}
            // Another checkout's instance of the same name is not this
            // project's to delete: left as it is, only forgotten here.
            Err(e @ LxdError::NotOurs { .. }) => {
                eprintln!("ldm: left alone: {}", text::escape(&e.to_string()));
            }
            Err(e) => {
                return Err(Error::lxd(format!(
                    "deleting {full}; run `ldm project delete` again to finish"
                ))(e))
            }
        }
        op::record(
            &mut store,
            vec![Mutation::ContainerRemoved { name: n.clone() }],
        )?;
    }
    store.destroy()?;
    say(out, &format!("Deleted project {}", project.project))
}
