//! `ldm project rename NEW`: a new project name, and the project's own
//! instances renamed in LXD with it (`OLD-NAME` → `NEW-NAME`), so that a
//! second checkout that wants the same names can take names of its own
//! (DESIGN.md, "Ownership"). A long operation ("Long operations"): one
//! intent commit records the new name (`project_renamed`) and a `rename`
//! operation on every container whose instance is to be renamed; each
//! container's LXD steps (stop if running, rename, marks, start again) end
//! with its own `operation_finished`, so a rename killed half way shows
//! `RENAMING (interrupted)` on the containers not done, and running the
//! same command again finishes them.

use std::io::Write;
use std::path::Path;

use crate::cli::ProjectRename;
use crate::commands::op::{self, Progress};
use crate::commands::{gate, Ctx};
use crate::lxd::owner::{Owner, PROJECT};
use crate::lxd::{Instance, Lxd, LxdError};
use crate::model::{validate, Mutation, Op, Pending, Project};
use crate::trust::Need;
use crate::{say, Error};

/// What one container's instance needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// `from-NAME` is this checkout's: rename it (stopping it first if it
    /// runs, starting it again after when `restart`).
    Rename { running: bool, restart: bool },
    /// An interrupted run renamed it already: its marks, and a start if it
    /// was running before.
    Finish { running: bool, restart: bool },
    /// Nothing in LXD to rename: none, or another checkout's instance of
    /// the old name (a copy of the folder renames itself away from it).
    Nothing(Option<String>),
    /// Renamed by the interrupted run this one finishes.
    Done,
}

/// `ldm project rename NEW`.
pub fn rename(ctx: &Ctx, args: &ProjectRename, out: &mut dyn Write) -> Result<(), Error> {
    let to = args.name.as_str();
    validate::project_name(to)?;
    let (mut store, project, gated) = gate::load(ctx, &Need::lxd())?;
    let dir = store.paths().dir.clone();
    let from = from_name(&project, to)?;
    let resuming = project.project == to;
    if resuming && from == to {
        return say(out, &format!("The project is named {to} already"));
    }
    let probe = Op::Rename {
        from: from.clone(),
        to: to.to_string(),
        restart: false,
    };
    let owners = store.owners();
    for (name, c) in &project.containers {
        op::may_begin(&owners, name, c, &probe)?;
    }

    // One read of LXD, classified by the marks as the old name's checkout.
    set_project(ctx, &dir, &from);
    let reader = ctx.lxd(&project, args.wait.timeout);
    let instances = reader
        .list()
        .map_err(Error::lxd("listing LXD's instances"))?;
    let mut plan = Vec::new();
    let mut absent = Vec::new();
    for (name, c) in &project.containers {
        // Finishing a rename: a container without its operation is done
        // (the intent gave one to every container with an instance).
        if resuming && c.pending.is_none() {
            plan.push((name.clone(), Step::Done, false));
            continue;
        }
        let was = c.pending.as_ref().is_some_and(|p| p.op.restart());
        let step = step(&instances, &from, to, name, was, c.pending.is_some())?;
        if step == Step::Nothing(None) {
            absent.push(format!("{from}-{name}"));
        }
        // A container with an operation (an interrupted rename) gets one
        // again, which its end clears, even with nothing left in LXD.
        let started = !matches!(step, Step::Nothing(_) | Step::Done) || c.pending.is_some();
        plan.push((name.clone(), step, started));
    }
    op::none_away(&*reader, &absent, "renamed")?;

    // The intent: the new name, and an operation on each container whose
    // instance has work left. Nothing in LXD has changed yet.
    let (_owner, pending) = op::claim(&store, probe.clone())?;
    let begun = store.commit(|p| {
        gated.recheck(p, &Need::lxd())?;
        if p.project != project.project {
            return Err(Error::Conflict {
                what: format!("the project was renamed to {} meanwhile", p.project),
                next: "run the command again".into(),
            });
        }
        let mut m = Vec::new();
        if p.project != to {
            m.push(Mutation::ProjectRenamed {
                name: to.to_string(),
            });
        }
        for (name, step, started) in &plan {
            let c = op::container(p, name)?;
            op::may_begin(&owners, name, c, &probe)?;
            if !started {
                continue;
            }
            let restart = match step {
                Step::Rename { restart, .. } | Step::Finish { restart, .. } => *restart,
                Step::Nothing(_) | Step::Done => false,
            };
            m.push(Mutation::OperationStarted {
                container: name.clone(),
                snapshot: None,
                pending: with_restart(&pending, restart),
            });
        }
        Ok((m, p.remote.clone()))
    })?;

    // The new name's client: what it renames gets this name's marks.
    set_project(ctx, &dir, to);
    let lxd = ctx.lxd_at(begun.as_deref(), args.wait.timeout);
    let work = plan.iter().filter(|(_, _, started)| *started).count();
    let mut progress = Progress::new(ctx.quiet, work);
    let mut lines = Vec::new();
    for (name, step, started) in &plan {
        let (old, new) = (format!("{from}-{name}"), format!("{to}-{name}"));
        if let Step::Nothing(Some(t)) = step {
            lines.push(format!("left LXD's {old} alone: it {t}"));
        }
        if !started {
            continue;
        }
        match step {
            Step::Nothing(_) | Step::Done => {
                progress.step(&format!("{name}: nothing to rename in LXD"))
            }
            Step::Rename { running, restart } => {
                progress.step(&format!("Renaming {old} to {new}"));
                move_one(&*lxd, &old, &new, *running, *restart)
                    .map_err(|e| unfinished(e, &old, &new, to))?;
                lines.push(format!("{old} is now {new}"));
            }
            Step::Finish { running, restart } => {
                progress.step(&format!("Finishing the rename of {old} to {new}"));
                finish_one(&*lxd, &instances, &new, to, name, *running, *restart)
                    .map_err(|e| unfinished(e, &old, &new, to))?;
                lines.push(format!("{old} is now {new}"));
            }
        }
        op::record(
            &mut store,
            vec![Mutation::OperationFinished {
                container: name.clone(),
                snapshot: None,
            }],
        )?;
    }
    for l in &lines {
        if !ctx.quiet {
            eprintln!("{l}");
        }
    }
    say(out, &format!("Renamed project {from} to {to}"))
}

/// The name the project's instances have now: the project's own, or the
/// old name an interrupted rename to `to` recorded. Refuses while a rename
/// to another name is unfinished.
fn from_name(project: &Project, to: &str) -> Result<String, Error> {
    let mut from = project.project.clone();
    for (name, c) in &project.containers {
        if let Some(Pending {
            op: Op::Rename { from: f, to: t, .. },
            ..
        }) = &c.pending
        {
            if t != to {
                return Err(Error::Conflict {
                    what: format!(
                        "container {name} has an interrupted rename of the project from {f} to {t}"
                    ),
                    next: format!(
                        "run `{}` to finish it first",
                        c.pending
                            .as_ref()
                            .map(|p| p.op.command(name))
                            .unwrap_or_default()
                    ),
                });
            }
            from = f.clone();
        }
    }
    Ok(from)
}

/// What container `name` needs, from one listing of LXD. `was_running`:
/// an interrupted rename recorded that it ran; `pending`: it has one.
fn step(
    instances: &[Instance],
    from: &str,
    to: &str,
    name: &str,
    was_running: bool,
    pending: bool,
) -> Result<Step, Error> {
    let (old, new) = (format!("{from}-{name}"), format!("{to}-{name}"));
    let find = |n: &str| instances.iter().find(|i| i.name == n);
    let taken = |i: &Instance| -> Error {
        let whose = match &i.owner {
            Owner::Other(t) => format!(" ({})", t.said),
            _ => String::new(),
        };
        Error::Conflict {
            what: format!("LXD already has an instance named {new}{whose}"),
            next: format!("choose another name, or remove {new} first; nothing was renamed"),
        }
    };
    match (find(&old), find(&new)) {
        (Some(o), _) if !o.owner.is_mine() => {
            if let Some(n) = find(&new) {
                return Err(taken(n));
            }
            let Owner::Other(t) = &o.owner else {
                unreachable!("is_mine is false only for Other")
            };
            Ok(Step::Nothing(Some(t.said.clone())))
        }
        (Some(_), Some(n)) => Err(taken(n)),
        (Some(o), None) => Ok(Step::Rename {
            running: o.is_running(),
            restart: o.is_running() || was_running,
        }),
        (None, Some(n)) if pending && n.owner.is_mine() => Ok(Step::Finish {
            running: n.is_running(),
            restart: was_running,
        }),
        (None, Some(n)) => Err(taken(n)),
        (None, None) => Ok(Step::Nothing(None)),
    }
}

/// Stops `old` if it runs, renames it to `new` (which marks it), and
/// starts it again if it ran.
fn move_one(
    lxd: &dyn Lxd,
    old: &str,
    new: &str,
    running: bool,
    restart: bool,
) -> Result<(), LxdError> {
    if running {
        match lxd.stop(old) {
            Ok(()) | Err(LxdError::AlreadyInState { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    lxd.rename(old, new)?;
    if restart {
        match lxd.start(new) {
            Ok(()) | Err(LxdError::AlreadyInState { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// An interrupted run renamed `new` already: its project marks (when they
/// still name the old project) and a start if it was running.
fn finish_one(
    lxd: &dyn Lxd,
    instances: &[Instance],
    new: &str,
    to: &str,
    name: &str,
    running: bool,
    restart: bool,
) -> Result<(), LxdError> {
    let marked = instances
        .iter()
        .find(|i| i.name == new)
        .and_then(|i| i.user.get(PROJECT))
        .is_some_and(|p| p == to);
    if !marked {
        lxd.set_configs(new, &[(PROJECT, to), (crate::lxd::owner::CONTAINER, name)])?;
    }
    if restart && !running {
        match lxd.start(new) {
            Ok(()) | Err(LxdError::AlreadyInState { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A container's step failed: the rename stays recorded as interrupted,
/// and the same command finishes it.
fn unfinished(e: LxdError, old: &str, new: &str, to: &str) -> Error {
    let doing = format!(
        "renaming {old} to {new} (the project is named {to} now; run `ldm project rename {}` again to finish the rename)",
        crate::model::quote(to)
    );
    Error::lxd(doing)(e)
}

/// `pending` with its operation's `restart` set as given.
fn with_restart(pending: &Pending, restart: bool) -> Pending {
    let mut p = pending.clone();
    if restart {
        p.op = p.op.clone().with_restart();
    }
    p
}

/// Makes the clients made from now on mark and classify as checkout of
/// project `name` (the trust check set the name it loaded).
fn set_project(ctx: &Ctx, dir: &Path, name: &str) {
    *ctx.project_at.lock().unwrap_or_else(|e| e.into_inner()) =
        Some((dir.to_path_buf(), name.to_string()));
}
