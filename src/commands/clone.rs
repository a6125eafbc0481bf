//! `ldm container clone SRC NEW [-s SNAP]`: copy a container (or one of its
//! snapshots) to a new one with its own `initial-state`. The intent and
//! outcome steps are `container.rs`'s, shared with `create`.

use std::io::Write;
use std::time::Duration;

use crate::cli::ContainerClone;
use crate::commands::container::{begin, finish, forget, rerun_hint};
use crate::commands::op::{self, Progress};
use crate::commands::setup::{self, INITIAL_STATE};
use crate::commands::{gate, Ctx};
use crate::lxd::{Lxd, LxdError};
use crate::model::{validate, Mutation, Op};
use crate::store::Store;
use crate::trust::Need;
use crate::{say, Error};

/// `ldm container clone SRC NEW [-s SNAP]`.
pub fn clone(ctx: &Ctx, args: &ContainerClone, out: &mut dyn Write) -> Result<(), Error> {
    let (source, name) = (args.source.as_str(), args.name.as_str());
    if let Some(snap) = &args.snapshot {
        validate::snapshot_name(snap)?;
    }
    let from = match &args.snapshot {
        Some(snap) => format!("{source}/{snap}"),
        None => source.to_string(),
    };
    let (mut store, _, gated) = gate::load(ctx, &Need::lxd())?;
    let owners = store.owners();
    let (_owner, pending) = op::claim(
        &store,
        Op::Clone {
            source: from.clone(),
        },
    )?;
    let s = begin(&mut store, name, &pending, |p| {
        gated.recheck(p, &Need::lxd())?;
        let src = op::container(p, source)?;
        op::check_free(&owners, source, src)?;
        Ok(Mutation::ContainerAdded {
            name: name.to_string(),
            image: format!("{}:cloned-from-{source}", src.image),
            pending: Some(pending.clone()),
        })
    })?;
    let lxd = ctx.lxd_at(s.remote.as_deref(), args.timeout);
    let src_lxd = format!("{}-{source}", s.project);
    let hint = rerun_hint(name, &pending.op);
    let lxd_name = s.lxd_name.as_str();
    let mut progress = Progress::new(ctx.quiet, 4);
    progress.step(&format!(
        "Copying {src_lxd}{} to {lxd_name}",
        snap_suffix(args)
    ));
    if s.resumed {
        // An instance LXD's current project lacks may be in another one
        // (`lxc project switch`): copying would make a second.
        op::here_or_nowhere(&*lxd, lxd_name)?;
    }
    match lxd.copy(&src_lxd, args.snapshot.as_deref(), lxd_name, &[]) {
        Ok(()) => {}
        Err(LxdError::AlreadyExists { .. }) if s.resumed => {
            progress.note("already copied by the interrupted run; continuing")
        }
        Err(e) => {
            let forgotten = forget(&mut store, &*lxd, lxd_name, name)?;
            let hint = if forgotten { "" } else { hint.as_str() };
            return Err(Error::lxd(format!("copying {src_lxd} to {lxd_name}{hint}"))(e));
        }
    }
    record_copied_mounts(&mut store, &*lxd, source, name, lxd_name)?;
    // Snapshot before the first start: initial-state is the state right
    // after cloning. The copy has none of the source's snapshots.
    progress.step(&format!("Taking snapshot {INITIAL_STATE}"));
    setup::snapshot_initial(&*lxd, lxd_name, s.resumed, &hint)?;
    progress.step(&format!("Starting {lxd_name}"));
    match lxd.start(lxd_name) {
        Ok(()) | Err(LxdError::AlreadyInState { .. }) => {}
        Err(e) => return Err(Error::lxd(format!("starting {lxd_name}{hint}"))(e)),
    }
    progress.step("Waiting for an IPv4 address");
    let ip = setup::wait_ipv4(&*lxd, lxd_name, Duration::from_secs(30))?;
    finish(&mut store, name)?;
    say(out, &format!("Cloned {from} to {name} ({lxd_name})"))?;
    setup::print_access(out, name, ip.as_deref(), &s.user, &s.password)
}

/// LXD copies the source's disk devices (and its `raw.idmap`): the clone
/// has the source's mounts, so the project records them too (those the
/// copy has, and the clone has not recorded yet, for a resumed clone).
fn record_copied_mounts(
    store: &mut Store,
    lxd: &dyn Lxd,
    source: &str,
    name: &str,
    lxd_name: &str,
) -> Result<(), Error> {
    let p = store.read()?;
    let (Some(src), Some(own)) = (p.containers.get(source), p.containers.get(name)) else {
        return Ok(());
    };
    if src.mounts.is_empty() {
        return Ok(());
    }
    let disks = op::instance(lxd, lxd_name)?.disks;
    let add: Vec<Mutation> = src
        .mounts
        .iter()
        .filter(|m| disks.iter().any(|d| d.device == m.device_name()))
        .filter(|m| !own.mounts.iter().any(|o| o.path == m.path))
        .map(|m| Mutation::MountAdded {
            container: name.to_string(),
            mount: m.to_string(),
        })
        .collect();
    if add.is_empty() {
        return Ok(());
    }
    op::record(store, add)
}

fn snap_suffix(args: &ContainerClone) -> String {
    args.snapshot
        .as_ref()
        .map(|s| format!("/{s}"))
        .unwrap_or_default()
}
