//! `ldm container snapshot create|list|delete`. Snapshot operations put
//! their intent on the snapshot entry, not the container, so snapshots of
//! different names on one container can be taken in parallel.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use crate::cli::DEFAULT_WAIT;
use crate::commands::op::{self};
use crate::commands::setup::INITIAL_STATE;
use crate::commands::{gate, table, Ctx};
use crate::lxd::LxdError;
use crate::model::{validate, Container, Mutation, Op, Pending, Project};
use crate::store::Owners;
use crate::trust::Need;
use crate::{say, Error};

/// Refuses if a live container-level operation runs on `name`, or an
/// interrupted one left it unfinished.
fn container_ready<'a>(
    owners: &Owners,
    p: &'a Project,
    name: &str,
) -> Result<&'a Container, Error> {
    let c = op::container(p, name)?;
    if let Some(pending) = &c.pending {
        if op::is_alive(owners, pending) {
            return Err(op::busy(name, format!("{} it", op::doing(pending))));
        }
        return Err(op::interrupted(name, pending, " first"));
    }
    Ok(c)
}

/// The intent of a snapshot create: a new snapshot entry, or the take-over
/// of an interrupted create of the same snapshot.
fn intent(
    owners: &Owners,
    c: &Container,
    container: &str,
    snap: &str,
    description: &str,
    pending: &Pending,
) -> Result<Mutation, Error> {
    let Some(s) = c.snapshots.get(snap) else {
        return Ok(Mutation::SnapshotAdded {
            container: container.to_string(),
            name: snap.to_string(),
            description: description.to_string(),
            created_at: op::now(),
            pending: Some(pending.clone()),
        });
    };
    match &s.pending {
        Some(old) if op::is_alive(owners, old) => Err(op::busy(
            container,
            format!("pid {} is taking snapshot {snap}", old.owner.pid),
        )),
        Some(old) if matches!(old.op, Op::SnapshotCreate { .. }) => {
            Ok(Mutation::OperationStarted {
                container: container.to_string(),
                snapshot: Some(snap.to_string()),
                pending: pending.clone(),
            })
        }
        _ => Err(Error::Conflict {
            what: format!("container {container} already has a snapshot {snap}"),
            next: format!("see `ldm container snapshot list {container}`"),
        }),
    }
}

/// `ldm container snapshot create C NAME [-d DESC]`.
pub fn create(
    ctx: &Ctx,
    container: &str,
    snap: &str,
    description: &str,
    wait: Duration,
    out: &mut dyn Write,
) -> Result<(), Error> {
    validate::snapshot_name(snap)?;
    let (mut store, _, gated) = gate::load(ctx, &Need::lxd())?;
    let owners = store.owners();
    let (_owner, pending) = op::claim(
        &store,
        Op::SnapshotCreate {
            snapshot: snap.to_string(),
        },
    )?;
    let (lxd_name, remote, resumed) = store.commit(|p| {
        gated.recheck(p, &Need::lxd())?;
        let c = container_ready(&owners, p, container)?;
        let m = intent(&owners, c, container, snap, description, &pending)?;
        let resumed = matches!(m, Mutation::OperationStarted { .. });
        Ok::<_, Error>((vec![m], (p.lxd_name(container), p.remote.clone(), resumed)))
    })?;
    let lxd = ctx.lxd_at(remote.as_deref(), wait);
    if resumed {
        // Its "not found" below would undo the intent: not when the
        // container (and maybe the snapshot) is in another LXD project.
        op::here_or_nowhere(&*lxd, &lxd_name)?;
    }
    if !ctx.quiet {
        eprintln!("Taking snapshot {snap} of {lxd_name}...");
    }
    match lxd.snapshot(&lxd_name, snap) {
        Ok(()) => {}
        Err(LxdError::AlreadyExists { .. }) if resumed => {}
        Err(e) => {
            // LXD made nothing (or made it under a name we do not own): undo the intent.
            op::record(
                &mut store,
                vec![Mutation::SnapshotRemoved {
                    container: container.to_string(),
                    name: snap.to_string(),
                }],
            )?;
            return Err(match e {
                LxdError::AlreadyExists { .. } => Error::Conflict {
                    what: format!("LXD already has a snapshot {snap} of {lxd_name} that the project does not record"),
                    next: "see `ldm doctor`".into(),
                },
                LxdError::NotFound { .. } => op::missing(&*lxd, &lxd_name),
                e => Error::lxd(format!("snapshotting {lxd_name}"))(e),
            });
        }
    }
    op::record(
        &mut store,
        vec![Mutation::OperationFinished {
            container: container.to_string(),
            snapshot: Some(snap.to_string()),
        }],
    )?;
    say(out, &format!("Created snapshot {snap} of {container}"))
}

/// `ldm container snapshot delete C NAME`.
pub fn delete(
    ctx: &Ctx,
    container: &str,
    snap: &str,
    wait: Duration,
    out: &mut dyn Write,
) -> Result<(), Error> {
    if snap == INITIAL_STATE {
        return Err(Error::Usage(format!(
            "{INITIAL_STATE} is what `ldm container reset` restores and cannot be deleted; to start over, run `ldm remove {container}` and create it again"
        )));
    }
    // LXD's "no such snapshot" is taken as deleted already: not when the
    // container is in another LXD project, where the snapshot still is.
    let (mut store, project, gated) = gate::load(ctx, &Need::lxd())?;
    if project.containers.contains_key(container) {
        let lxd_name = project.lxd_name(container);
        let lxd = ctx.lxd(&project, wait);
        op::here_or_nowhere(&*lxd, &lxd_name)?;
    }
    let owners = store.owners();
    let (_owner, pending) = op::claim(
        &store,
        Op::SnapshotDelete {
            snapshot: snap.to_string(),
        },
    )?;
    let (lxd_name, remote, recorded) = store.commit(|p| {
        gated.recheck(p, &Need::lxd())?;
        let c = container_ready(&owners, p, container)?;
        let mut m = Vec::new();
        if let Some(s) = c.snapshots.get(snap) {
            if let Some(old) = &s.pending {
                if op::is_alive(&owners, old) {
                    return Err(op::busy(
                        container,
                        format!("pid {} is working on snapshot {snap}", old.owner.pid),
                    ));
                }
            }
            m.push(Mutation::OperationStarted {
                container: container.to_string(),
                snapshot: Some(snap.to_string()),
                pending: pending.clone(),
            });
        }
        let recorded = !m.is_empty();
        Ok::<_, Error>((m, (p.lxd_name(container), p.remote.clone(), recorded)))
    })?;
    let lxd = ctx.lxd_at(remote.as_deref(), wait);
    match lxd.delete_snapshot(&lxd_name, snap) {
        Ok(()) => {}
        Err(LxdError::NotFound { .. }) if recorded => {}
        Err(LxdError::NotFound { .. }) => {
            return Err(Error::NotFound {
                what: format!("{container} has no snapshot {snap}"),
                next: format!("see `ldm container snapshot list {container}`"),
            })
        }
        Err(e) => return Err(Error::lxd(format!("deleting snapshot {snap} of {lxd_name}; the project shows it as interrupted: run the command again"))(e)),
    }
    if recorded {
        op::record(
            &mut store,
            vec![Mutation::SnapshotRemoved {
                container: container.to_string(),
                name: snap.to_string(),
            }],
        )?;
    }
    say(out, &format!("Deleted snapshot {snap} of {container}"))
}

/// One row of `snapshot list --json`.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    created_at: String,
    description: String,
    /// LXD has it.
    in_lxd: bool,
    /// The project records it.
    recorded: bool,
    /// `SNAPSHOTTING (interrupted)` and the like, if an operation is pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<String>,
}

/// `ldm container snapshot list C [--json]`: LXD's snapshots with the
/// project's descriptions; snapshots on one side only are flagged.
pub fn list(ctx: &Ctx, container: &str, json: bool, out: &mut dyn Write) -> Result<(), Error> {
    let (store, project, _) = gate::load(ctx, &Need::nothing())?;
    let c = op::container(&project, container)?;
    let lxd = ctx.lxd(&project, DEFAULT_WAIT);
    let lxd_name = project.lxd_name(container);
    let in_lxd = lxd.snapshots(&lxd_name).map_err(|e| match e {
        LxdError::NotFound { .. } => op::missing(&*lxd, &lxd_name),
        e => Error::lxd(format!("listing snapshots of {lxd_name}"))(e),
    })?;
    let mut rows: Vec<Row> = in_lxd
        .iter()
        .map(|s| {
            let rec = c.snapshots.get(&s.name);
            Row {
                name: s.name.clone(),
                created_at: rec.map_or_else(|| s.created_at.clone(), |r| r.created_at.clone()),
                description: rec.map(|r| r.description.clone()).unwrap_or_default(),
                in_lxd: true,
                recorded: rec.is_some(),
                pending: rec
                    .and_then(|r| r.pending.as_ref())
                    .map(|p| op::describe(&store.owners(), p)),
            }
        })
        .collect();
    for (name, rec) in &c.snapshots {
        if !in_lxd.iter().any(|s| &s.name == name) {
            rows.push(Row {
                name: name.clone(),
                created_at: rec.created_at.clone(),
                description: rec.description.clone(),
                in_lxd: false,
                recorded: true,
                pending: rec
                    .pending
                    .as_ref()
                    .map(|p| op::describe(&store.owners(), p)),
            });
        }
    }
    rows.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.name.cmp(&b.name)));
    if json {
        return say(
            out,
            &serde_json::to_string_pretty(&rows).unwrap_or_default(),
        );
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let note = match (&r.pending, r.in_lxd, r.recorded) {
                (Some(p), _, _) => p.clone(),
                (None, false, _) => "missing in LXD (see ldm doctor)".into(),
                (None, _, false) => "not recorded (see ldm doctor)".into(),
                _ => String::new(),
            };
            vec![
                r.name.clone(),
                r.created_at.clone(),
                r.description.clone(),
                note,
            ]
        })
        .collect();
    table::print(out, &["NAME", "CREATED", "DESCRIPTION", "NOTE"], &cells)
}
