//! The project compared with LXD, for `ldm doctor`: containers or snapshots
//! on one side only, and operations whose owner died half way. Each finding
//! carries the mutations that would record it (`--fix`), the leftovers of
//! ldm's own that `--fix` deletes from LXD (temporary `ldm-publish-*`
//! snapshots of an interrupted `image create`) and, separately, the LXD
//! deletions that only `--fix --force` performs.

use serde::Serialize;

use crate::commands::image::PUBLISH_PREFIX;
use crate::commands::op;
use crate::lxd::Instance;
use crate::model::{validate, Mutation, Op, Project};
use crate::store::Owners;

/// One difference between the project and LXD.
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    /// Container concerned.
    pub container: String,
    /// What is wrong.
    pub message: String,
    /// What `--fix` will do, in words.
    pub fix: String,
    /// Mutations `--fix` commits.
    #[serde(skip)]
    pub mutations: Vec<Mutation>,
    /// LXD instance `--fix --force` deletes instead of adopting, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_with_force: Option<String>,
    /// LXD snapshot (instance, snapshot) `--fix` deletes: a temporary one of
    /// ldm's own, never a user's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_snapshot: Option<(String, String)>,
}

fn drift(container: &str, message: String, fix: &str, mutations: Vec<Mutation>) -> Drift {
    Drift {
        container: container.to_string(),
        message,
        fix: fix.to_string(),
        mutations,
        delete_with_force: None,
        delete_snapshot: None,
    }
}

/// Everything that differs between `project` and `instances` (LXD's full
/// list). Operations whose owner is alive are in progress, not drift.
pub fn compare(owners: &Owners, project: &Project, instances: &[Instance]) -> Vec<Drift> {
    let mut out = Vec::new();
    let find = |name: &str| {
        let full = project.lxd_name(name);
        instances.iter().find(|i| i.name == full)
    };
    for (name, c) in &project.containers {
        let inst = find(name);
        let finished = Mutation::OperationFinished {
            container: name.clone(),
            snapshot: None,
        };
        let removed = Mutation::ContainerRemoved { name: name.clone() };
        if c.pending.as_ref().is_some_and(|p| op::is_alive(owners, p)) {
            continue;
        }
        if let Some(i) = inst {
            out.extend(leftovers(name, i));
        }
        if let Some(p) = &c.pending {
            let what = format!(
                "interrupted {} (pid {} since {})",
                p.op.verb().to_lowercase(),
                p.owner.pid,
                p.started_at
            );
            let mut d = match (&p.op, inst) {
                (_, None) => drift(
                    name,
                    format!("{what}; LXD has no instance"),
                    "forget the container",
                    vec![removed],
                ),
                (Op::Create | Op::Clone { .. }, Some(i)) => {
                    let mut d = drift(
                        name,
                        format!(
                            "{what}; LXD has {} but its setup may be incomplete (or re-run `{}`)",
                            i.name,
                            p.op.command(name, &c.image)
                        ),
                        "adopt it as it is",
                        adopt_snapshots(name, c, i, vec![finished]),
                    );
                    d.delete_with_force = Some(i.name.clone());
                    d
                }
                (Op::Remove, Some(i)) => {
                    let mut d = drift(
                        name,
                        format!("{what}; LXD still has {}", i.name),
                        "keep it (with --force: delete it)",
                        vec![finished],
                    );
                    d.delete_with_force = Some(i.name.clone());
                    d
                }
                (op, Some(i)) if op.restart() && !i.is_running() => drift(
                    name,
                    format!(
                        "{what}; {} was running before and is stopped now (or re-run `{}`)",
                        i.name,
                        op.command(name, &c.image)
                    ),
                    &format!("mark the operation finished; then `ldm up {name}` starts it"),
                    adopt_snapshots(name, c, i, vec![finished]),
                ),
                (_, Some(i)) => drift(
                    name,
                    what,
                    "mark the operation finished",
                    adopt_snapshots(name, c, i, vec![finished]),
                ),
            };
            if d.delete_with_force.is_some() {
                d.fix
                    .push_str("; with --force: delete it from LXD and forget it");
            }
            out.push(d);
            continue;
        }
        let Some(i) = inst else {
            out.push(drift(
                name,
                format!(
                    "recorded, but LXD has no instance {}",
                    project.lxd_name(name)
                ),
                "forget the container",
                vec![removed],
            ));
            continue;
        };
        for (snap, s) in &c.snapshots {
            let in_lxd = i.snapshots.iter().any(|x| &x.name == snap);
            let key = Some(snap.clone());
            match &s.pending {
                Some(p) if op::is_alive(owners, p) => {}
                Some(p) if in_lxd => out.push(drift(
                    name,
                    format!(
                        "snapshot {snap}: interrupted {}",
                        p.op.verb().to_lowercase()
                    ),
                    "mark it finished (LXD has the snapshot)",
                    vec![Mutation::OperationFinished {
                        container: name.clone(),
                        snapshot: key,
                    }],
                )),
                Some(p) => out.push(drift(
                    name,
                    format!(
                        "snapshot {snap}: interrupted {}; LXD has no such snapshot",
                        p.op.verb().to_lowercase()
                    ),
                    "forget the snapshot",
                    vec![Mutation::SnapshotRemoved {
                        container: name.clone(),
                        name: snap.clone(),
                    }],
                )),
                None if !in_lxd => out.push(drift(
                    name,
                    format!("snapshot {snap} is recorded but missing in LXD"),
                    "forget the snapshot",
                    vec![Mutation::SnapshotRemoved {
                        container: name.clone(),
                        name: snap.clone(),
                    }],
                )),
                None => {}
            }
        }
        let extra = adopt_snapshots(name, c, i, Vec::new());
        for m in extra {
            if let Mutation::SnapshotAdded { name: snap, .. } = &m {
                out.push(drift(
                    name,
                    format!("snapshot {snap} is in LXD but not recorded"),
                    "record it",
                    vec![m.clone()],
                ));
            }
        }
    }
    let prefix = format!("{}-", project.project);
    for i in instances {
        let Some(name) = i.name.strip_prefix(&prefix) else {
            continue;
        };
        if project.containers.contains_key(name) {
            continue;
        }
        if validate::container_name(&project.project, name).is_err() {
            continue;
        }
        let image = i.image.clone().unwrap_or_else(|| "unknown".to_string());
        let add = Mutation::ContainerAdded {
            name: name.to_string(),
            image,
            pending: None,
        };
        let c = crate::model::Container::default();
        let mut d = drift(
            name,
            format!(
                "LXD has {} with this project's prefix, but the project does not record it",
                i.name
            ),
            "adopt it (record it and its snapshots)",
            adopt_snapshots(name, &c, i, vec![add]),
        );
        d.delete_with_force = None;
        out.push(d);
    }
    out
}

/// Temporary `ldm-publish-*` snapshots on `i`, left by an `image create`
/// that died before deleting them. Only called when no live operation owns
/// the container, so no running `image create` is using them.
fn leftovers(name: &str, i: &Instance) -> Vec<Drift> {
    i.snapshots
        .iter()
        .filter(|s| s.name.starts_with(PUBLISH_PREFIX))
        .map(|s| {
            let mut d = drift(
                name,
                format!(
                    "snapshot {} is a leftover of an interrupted `ldm image create`",
                    s.name
                ),
                "delete it from LXD",
                Vec::new(),
            );
            d.delete_snapshot = Some((i.name.clone(), s.name.clone()));
            d
        })
        .collect()
}

/// `base` plus a `SnapshotAdded` for every LXD snapshot `c` does not record
/// (ldm's temporary `ldm-publish-*` snapshots are never recorded).
fn adopt_snapshots(
    name: &str,
    c: &crate::model::Container,
    i: &Instance,
    mut base: Vec<Mutation>,
) -> Vec<Mutation> {
    for s in &i.snapshots {
        if !c.snapshots.contains_key(&s.name)
            && !s.name.starts_with(PUBLISH_PREFIX)
            && validate::snapshot_name(&s.name).is_ok()
        {
            base.push(Mutation::SnapshotAdded {
                container: name.to_string(),
                name: s.name.clone(),
                description: "adopted by ldm doctor".to_string(),
                created_at: s.created_at.clone(),
                pending: None,
            });
        }
    }
    base
}
