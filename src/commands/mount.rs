//! `ldm mount`, `ldm umount` and `ldm container setup`: operations on a
//! live container with an intent and an outcome like the others (DESIGN.md,
//! "Long operations", "Mounts"). `mount` records the mount and its intent
//! in one commit, adds the LXD disk device, then records the outcome;
//! `umount` records its intent, removes the device, then records the
//! removal. A crash between leaves the container shown as MOUNTING or
//! UNMOUNTING (interrupted); running the command again finishes it, and
//! `doctor` compares mounts with LXD's devices.

use std::io::Write;

use crate::cli::{MountArgs, SetupArgs, UmountArgs};
use crate::commands::mounts::{self, Attached};
use crate::commands::op::{self, Progress};
use crate::commands::sources::{self, Judged};
use crate::commands::steps;
use crate::commands::{gate, text, Ctx};
use crate::model::{Mount, Mutation, Op, Project};
use crate::trust::{Item, Need};
use crate::{say, Error};

fn finished(name: &str) -> Mutation {
    Mutation::OperationFinished {
        container: name.to_string(),
        snapshot: None,
    }
}

/// Refuses a project whose containers are on a remote LXD.
fn local_only(project: &Project) -> Result<(), Error> {
    match &project.remote {
        Some(remote) => Err(Error::Refused(format!(
            "the project's LXD is the remote {remote}: host folders are not on that server, so they cannot be mounted; copy files with `ldm mv`"
        ))),
        None => Ok(()),
    }
}

/// `ldm mount NAME HOST:CONTAINER [--ro]`.
pub fn mount(ctx: &Ctx, args: &MountArgs, out: &mut dyn Write) -> Result<(), Error> {
    let name = args.name.as_str();
    let text = match (args.ro, args.mount.ends_with(":ro")) {
        (true, false) => format!("{}:ro", args.mount),
        _ => args.mount.clone(),
    };
    let m = Mount::parse(&text)?;
    let mut store = ctx.store()?;
    let project = store.read()?;
    let gated = gate::check(ctx, &store, &project, &Need::lxd())?;
    local_only(&project)?;
    let op = Op::Mount {
        mount: m.to_string(),
    };
    op::may_begin(&store.owners(), name, op::container(&project, name)?, &op)?;
    let judged = sources::source(&store.paths().dir, &m, args.force)?;
    let source = judged.path().to_path_buf();
    let lxd = ctx.lxd(&project, args.wait.timeout);
    let inst = op::instance(&*lxd, &project.lxd_name(name))?;
    if !inst.is_running() {
        return Err(Error::NotRunning {
            name: name.to_string(),
            status: inst.status.to_lowercase(),
        });
    }
    let (_owner, pending) = op::claim(&store, op)?;
    let b = op::begin(&mut store, name, &pending, |p| {
        gated.recheck(p, &Need::lxd())?;
        let c = op::container(p, name)?;
        if c.mounts.contains(&m) {
            return Ok(Vec::new());
        }
        if let Some(other) = c.mounts.iter().find(|x| x.path == m.path) {
            return Err(Error::Conflict {
                what: format!(
                    "container {name} has a mount at {} already ({other})",
                    m.path
                ),
                next: format!("remove it first with `ldm umount {name} {}`", m.path),
            });
        }
        Ok(vec![Mutation::MountAdded {
            container: name.to_string(),
            mount: m.to_string(),
        }])
    })?;
    // Typed by the user, so allowed as typed: a re-create mounts it again.
    let dir = &store.paths().dir;
    let canon = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
    if !source.starts_with(&canon) {
        let forced = match judged {
            Judged::Forced { .. } => vec![source.clone()],
            _ => Vec::new(),
        };
        let item = Item::Mount {
            source: source.clone(),
            readonly: m.readonly,
        };
        gate::allow_typed(ctx, dir, vec![item], forced)?;
    }
    let progress = Progress::new(ctx.quiet, 0);
    let user = mounts::user_ids(&*lxd, &b.lxd_name, &b.user)?;
    let resolved = [(m.clone(), source)];
    let target = mounts::Target {
        lxd_name: &b.lxd_name,
        host: mounts::host_ids(&store.paths().dir),
        user,
        mounts: &resolved,
        replace_own: false,
    };
    let undo = || {
        vec![
            Mutation::MountRemoved {
                container: name.to_string(),
                path: m.path.clone(),
            },
            finished(name),
        ]
    };
    match mounts::attach(&*lxd, &target, args.wait.timeout, &progress) {
        Ok(Attached::Done { how, restarted }) => {
            op::record(&mut store, vec![finished(name)])?;
            let again = if restarted {
                "; it was restarted to apply the id mapping"
            } else {
                ""
            };
            say(
                out,
                &format!("Mounted {} at {} in {name} ({how}){again}", m.host, m.path),
            )
        }
        Ok(Attached::NeedsRoot { command }) => {
            // Nothing changed in LXD: the mount is not recorded either.
            op::record(&mut store, undo())?;
            Err(Error::NeedsRoot {
                what: format!(
                    "cannot mount {} in {name}: ldm maps your uid to the container user (raw.idmap; never an idmapped mount, which would let the container's root act as host root in it), and that needs /etc/subuid and /etc/subgid to allow it",
                    m.host
                ),
                command,
            })
        }
        Ok(Attached::Root(why)) => {
            op::record(&mut store, undo())?;
            Err(Error::Refused(format!(
                "cannot mount {} in {name}: {why}",
                m.host
            )))
        }
        Ok(Attached::Remote { remote }) => {
            op::record(&mut store, undo())?;
            Err(Error::Refused(format!(
                "cannot mount {} in {name}: {}",
                m.host,
                mounts::remote_words(&remote)
            )))
        }
        Err(e) => {
            // Undo the record only when LXD says the device is not there:
            // if ldm cannot ask, the device may be in, and the mount stays
            // recorded as interrupted for a re-run or `ldm umount` to end.
            match lxd.instance(&b.lxd_name) {
                Ok(inst) => {
                    let has = inst
                        .is_some_and(|i| i.disks.iter().any(|d| d.device == m.device_name()));
                    if !has && b.old.is_none() {
                        op::record(&mut store, undo())?;
                    }
                }
                Err(ask) => eprintln!(
                    "note: could not ask LXD whether {} has the device now ({ask}); the mount stays recorded as interrupted: run `ldm mount {name} {}` again to finish it, or `ldm umount {name} {}`",
                    b.lxd_name,
                    text::escape(&m.to_string()),
                    text::escape(&m.path)
                ),
            }
            Err(e)
        }
    }
}

/// `ldm umount NAME CONTAINER_PATH`.
pub fn umount(ctx: &Ctx, args: &UmountArgs, out: &mut dyn Write) -> Result<(), Error> {
    let (name, path) = (args.name.as_str(), args.path.as_str());
    let mut store = ctx.store()?;
    let project = store.read()?;
    gate::check(ctx, &store, &project, &Need::lxd())?;
    let c = op::container(&project, name)?;
    let Some(m) = c.mounts.iter().find(|m| m.path == path).cloned() else {
        let known: Vec<String> = c.mounts.iter().map(|m| m.path.clone()).collect();
        return Err(Error::NotFound {
            what: format!("container {name} has no mount at {path}"),
            next: if known.is_empty() {
                "it has no mounts (see `ldm list`)".into()
            } else {
                format!("its mounts are at {}", known.join(", "))
            },
        });
    };
    let lxd = ctx.lxd(&project, args.wait.timeout);
    // LXD's "no such device" is taken as removed already: not when the
    // container is in another LXD project, where the device still is.
    let lxd_name = project.lxd_name(name);
    op::here_or_nowhere(&*lxd, &lxd_name)?;
    let (_owner, pending) = op::claim(
        &store,
        Op::Umount {
            path: path.to_string(),
        },
    )?;
    let b = op::begin(&mut store, name, &pending, |_| Ok(Vec::new()))?;
    mounts::remove(&*lxd, &b.lxd_name, &m.device_name())?;
    op::record(
        &mut store,
        vec![
            Mutation::MountRemoved {
                container: name.to_string(),
                path: path.to_string(),
            },
            finished(name),
        ],
    )?;
    let left = b.mounts.len() - 1;
    let note = if left == 0 {
        ""
    } else {
        " (its other mounts stay)"
    };
    say(out, &format!("Unmounted {} from {name}{note}", m.path))
}

/// `ldm container setup NAME`: every setup step again, in a running container.
pub fn setup(ctx: &Ctx, args: &SetupArgs, out: &mut dyn Write) -> Result<(), Error> {
    let name = args.name.as_str();
    let mut store = ctx.store()?;
    let project = store.read()?;
    gate::check(ctx, &store, &project, &Need::setup(name))?;
    op::may_begin(
        &store.owners(),
        name,
        op::container(&project, name)?,
        &Op::Setup,
    )?;
    let steps_to_run = project.effective_setup(name).to_vec();
    if steps_to_run.is_empty() {
        return say(
            out,
            &format!("{name} has no setup steps (add `setup:` under defaults or under the container in containers.yaml)"),
        );
    }
    let lxd = ctx.lxd(&project, args.wait.timeout);
    let inst = op::instance(&*lxd, &project.lxd_name(name))?;
    if !inst.is_running() {
        return Err(Error::NotRunning {
            name: name.to_string(),
            status: inst.status.to_lowercase(),
        });
    }
    let (_owner, mut pending) = op::claim(&store, Op::Setup)?;
    let b = op::begin(&mut store, name, &pending, |_| Ok(Vec::new()))?;
    let workdir = steps::workdir(&b.mounts);
    let run = steps::Run {
        name,
        timeout: ctx.step_timeout,
        lxd_name: &b.lxd_name,
        user: &b.user,
        workdir: &workdir,
        quiet: ctx.quiet,
        hint: format!("; fix the step and run `ldm container setup {name}` again"),
    };
    steps::run(&*lxd, &mut store, &mut pending, &steps_to_run, &run)?;
    op::record(&mut store, vec![finished(name)])?;
    say(
        out,
        &format!("Ran {} setup step(s) in {name}", steps_to_run.len()),
    )
}
