//! The project compared with LXD, for `ldm doctor`: containers or snapshots
//! on one side only, and operations whose owner died half way. Each finding
//! carries the mutations that would record it (`--fix`), the leftovers of
//! ldm's own that `--fix` deletes from LXD (temporary `ldm-publish-*`
//! snapshots of an interrupted `image create`) and, separately, the LXD
//! deletions that only `--fix --force` performs.

// Over 400 lines with its tests (about 90): every kind of drift is one
// comparison of the project with LXD, read in one place.

use serde::Serialize;

use crate::commands::image::PUBLISH_PREFIX;
use crate::commands::op;
use crate::lxd::owner::{self, Owner};
use crate::lxd::{Away, Instance};
use crate::model::{validate, Container, Mount, Mutation, Op, Pending, Project};
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
    /// A mount `--fix` puts in LXD or takes out of it (the project's
    /// `mounts:` is what the container should have).
    #[serde(skip)]
    pub mount: Option<MountFix>,
}

/// What `--fix` does to an instance's disk devices.
#[derive(Debug, Clone)]
pub enum MountFix {
    /// Add the recorded mount (replacing a device of its name).
    Add {
        /// Full LXD name.
        lxd_name: String,
        /// The container user, whose ids host files get.
        user: String,
        /// The mount.
        mount: Mount,
    },
    /// Remove a device of ldm's that the project does not record.
    Remove {
        /// Full LXD name.
        lxd_name: String,
        /// Device name.
        device: String,
    },
}

fn drift(container: &str, message: String, fix: &str, mutations: Vec<Mutation>) -> Drift {
    Drift {
        container: container.to_string(),
        message,
        fix: fix.to_string(),
        mutations,
        delete_with_force: None,
        delete_snapshot: None,
        mount: None,
    }
}

/// A recorded container whose instance another LXD project has (the
/// client's current project changed): reported, never forgotten by
/// `--fix`.
fn elsewhere(name: &str, a: &Away) -> Drift {
    drift(
        name,
        format!("recorded, but {}: {}", op::not_where(a), op::away(a)),
        "nothing (it is not forgotten)",
        Vec::new(),
    )
}

/// Everything that differs between `project` and `instances` (LXD's full
/// list). Operations whose owner is alive are in progress, not drift.
/// `away` lists instances of other LXD projects (`Lxd::elsewhere`).
pub fn compare(
    owners: &Owners,
    project: &Project,
    instances: &[Instance],
    away: &[Away],
) -> Vec<Drift> {
    let mut out = Vec::new();
    for (name, c) in &project.containers {
        if c.pending.as_ref().is_some_and(|p| op::is_alive(owners, p)) {
            continue;
        }
        let full = project.lxd_name(name);
        let inst = instances.iter().find(|i| i.name == full);
        if let Some(Instance {
            owner: Owner::Other(theirs),
            ..
        }) = inst
        {
            out.push(drift(
                name,
                format!("recorded, but LXD's {full} {}", theirs.said),
                "leave it alone (it is another checkout's)",
                Vec::new(),
            ));
            continue;
        }
        if let Some(i) = inst {
            out.extend(leftovers(name, i));
        }
        if inst.is_none() {
            if let Some(a) = op::find_away(away, &full) {
                out.push(elsewhere(name, a));
                continue;
            }
        }
        match (&c.pending, inst) {
            (Some(p), _) => out.push(interrupted(name, c, p, inst)),
            (None, None) => out.push(drift(
                name,
                format!("recorded, but LXD has no instance {full}"),
                "forget the container",
                vec![Mutation::ContainerRemoved { name: name.clone() }],
            )),
            (None, Some(i)) => {
                out.extend(snapshots(owners, name, c, i));
                out.extend(mounts(project, name, c, i));
            }
        }
    }
    out.extend(unrecorded(project, instances));
    out
}

/// A container-level operation whose owner died: what LXD has decides
/// whether `--fix` forgets, adopts or only closes it.
fn interrupted(name: &str, c: &Container, p: &Pending, inst: Option<&Instance>) -> Drift {
    let finished = Mutation::OperationFinished {
        container: name.to_string(),
        snapshot: None,
    };
    let what = format!(
        "interrupted {} (pid {} since {})",
        p.op.verb().to_lowercase(),
        p.owner.pid,
        p.started_at
    );
    let mut d = match (&p.op, inst) {
        // Its instance may still have the old name: forgetting the
        // container would lose it. The same command finishes the rename.
        (Op::Rename { from, .. }, None) => drift(
            name,
            format!("{what}; its instance may still be named {from}-{name}"),
            &format!("nothing (run `{}` to finish it)", p.op.command(name)),
            Vec::new(),
        ),
        (_, None) => drift(
            name,
            format!("{what}; LXD has no instance"),
            "forget the container",
            vec![Mutation::ContainerRemoved {
                name: name.to_string(),
            }],
        ),
        (Op::Create | Op::Clone { .. }, Some(i)) => {
            let mut d = drift(
                name,
                format!(
                    "{what}; LXD has {} but its setup may be incomplete (or re-run `{}`)",
                    i.name,
                    p.op.command(name)
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
                op.command(name)
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
    d
}

/// Mounts recorded but not in LXD (or with other values), and devices of
/// ldm's (`ldm-mount-*`) that no recorded mount accounts for. Devices
/// named otherwise are the user's own and left alone.
fn mounts(project: &Project, name: &str, c: &Container, i: &Instance) -> Vec<Drift> {
    let mut out = Vec::new();
    for m in &c.mounts {
        let found = i
            .disks
            .iter()
            .find(|d| d.device == m.device_name() && d.path == m.path && d.readonly == m.readonly);
        // An idmapped device (an older ldm's) lets the container's root act
        // as host root in it: drift, fixed by adding it with raw.idmap.
        let what = match found {
            Some(d) if !d.shift => continue,
            Some(_) => format!(
                "mount {m} of {} is idmapped (shift=true), which lets the container's root act as host root in it",
                i.name
            ),
            None => format!("mount {m} is recorded, but {} has no such device", i.name),
        };
        {
            let mut d = drift(name, what, "add it to LXD (with raw.idmap)", Vec::new());
            d.mount = Some(MountFix::Add {
                lxd_name: i.name.clone(),
                user: project.effective_user(name).0,
                mount: m.clone(),
            });
            out.push(d);
        }
    }
    for d in i
        .disks
        .iter()
        .filter(|d| d.device.starts_with(MOUNT_PREFIX))
    {
        if !c.mounts.iter().any(|m| m.device_name() == d.device) {
            let mut x = drift(
                name,
                format!(
                    "{} has device {} ({} at {}) that the project does not record",
                    i.name, d.device, d.source, d.path
                ),
                "remove it from LXD",
                Vec::new(),
            );
            x.mount = Some(MountFix::Remove {
                lxd_name: i.name.clone(),
                device: d.device.clone(),
            });
            out.push(x);
        }
    }
    out
}

/// Prefix of the disk devices ldm adds for mounts.
const MOUNT_PREFIX: &str = "ldm-mount-";

/// Snapshots on one side only, and snapshot operations whose owner died.
fn snapshots(owners: &Owners, name: &str, c: &Container, i: &Instance) -> Vec<Drift> {
    let mut out = Vec::new();
    let forget = |snap: &str| {
        vec![Mutation::SnapshotRemoved {
            container: name.to_string(),
            name: snap.to_string(),
        }]
    };
    for (snap, s) in &c.snapshots {
        let in_lxd = i.snapshots.iter().any(|x| &x.name == snap);
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
                    container: name.to_string(),
                    snapshot: Some(snap.clone()),
                }],
            )),
            Some(p) => out.push(drift(
                name,
                format!(
                    "snapshot {snap}: interrupted {}; LXD has no such snapshot",
                    p.op.verb().to_lowercase()
                ),
                "forget the snapshot",
                forget(snap),
            )),
            None if !in_lxd => out.push(drift(
                name,
                format!("snapshot {snap} is recorded but missing in LXD"),
                "forget the snapshot",
                forget(snap),
            )),
            None => {}
        }
    }
    for m in adopt_snapshots(name, c, i, Vec::new()) {
        if let Mutation::SnapshotAdded { name: snap, .. } = &m {
            out.push(drift(
                name,
                format!("snapshot {snap} is in LXD but not recorded"),
                "record it",
                vec![m.clone()],
            ));
        }
    }
    out
}

/// Instances named like this project's containers that it does not record.
fn unrecorded(project: &Project, instances: &[Instance]) -> Vec<Drift> {
    instances
        .iter()
        .filter_map(|i| {
            let name = match i.owner {
                // Only what this checkout marked as this project's, by the
                // exact names in its marks: never a prefix guess (project
                // `web` and `web-api`'s `web-api-dev`), never another
                // checkout's.
                Owner::Ours | Owner::Moved { .. } => {
                    let (p, c) = (i.user.get(owner::PROJECT)?, i.user.get(owner::CONTAINER)?);
                    (*p == project.project && i.name == project.lxd_name(c))
                        .then_some(c.as_str())?
                }
                // Nor without marks to read: a client with no checkout (the
                // user has no state folder) adopts nothing rather than guess.
                Owner::Unmarked | Owner::Other(_) | Owner::Unknown => return None,
            };
            if project.containers.contains_key(name)
                || validate::container_name(&project.project, name).is_err()
            {
                return None;
            }
            let add = Mutation::ContainerAdded {
                name: name.to_string(),
                image: i.image.clone().unwrap_or_else(|| "unknown".to_string()),
                pending: None,
            };
            Some(drift(
                name,
                format!(
                    "LXD has {} with this project's prefix, but the project does not record it",
                    i.name
                ),
                "adopt it (record it and its snapshots)",
                adopt_snapshots(name, &Container::default(), i, vec![add]),
            ))
        })
        .collect()
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
    c: &Container,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lxd::double::Served;
    use crate::lxd::Lxd;
    use crate::model::Snapshot;
    use lxd_double::Instance as Seed;

    fn owners() -> (tempfile::TempDir, Owners) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(
            crate::store::Paths::in_dir(dir.path()),
            crate::store::Options::default(),
        );
        let owners = store.owners();
        (dir, owners)
    }

    #[test]
    fn each_difference_is_one_drift_with_the_mutations_that_record_it() {
        let (_dir, owners) = owners();
        let mut p = Project::new("p", vec![]);
        let snap = |d: &str| Snapshot {
            description: d.into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            pending: None,
        };
        let mut a = Container {
            image: "img".into(),
            ..Container::default()
        };
        a.snapshots.insert("gone".into(), snap("recorded only"));
        p.containers.insert("a".into(), a);
        p.containers.insert("missing".into(), Container::default());
        // LXD: a with an unrecorded snapshot and ldm's leftover; an
        // unrecorded p-new; another project's q-x.
        let served = Served::new();
        served
            .seed(
                "p-a",
                Seed::running().snapshot("extra").snapshot("ldm-publish-9"),
            )
            .seed("p-new", Seed::stopped().snapshot("s"))
            .seed("q-x", Seed::running());
        let lxd = served.api();
        // A bare client knows no marks: nothing is adopted by its name.
        let bare = compare(&owners, &p, &lxd.list().unwrap(), &[]);
        assert!(!bare.iter().any(|d| d.container == "new"), "{bare:?}");
        // p-new as this checkout made it, with its marks.
        let listed = || {
            let mut all = lxd.list().unwrap();
            for i in all.iter_mut().filter(|i| i.name == "p-new") {
                i.owner = Owner::Ours;
                i.user.insert(owner::PROJECT.into(), "p".into());
                i.user.insert(owner::CONTAINER.into(), "new".into());
            }
            all
        };
        let drifts = compare(&owners, &p, &listed(), &[]);
        let said: Vec<(&str, &str)> = drifts
            .iter()
            .map(|d| (d.container.as_str(), d.fix.as_str()))
            .collect();
        assert_eq!(
            said,
            [
                ("a", "delete it from LXD"),
                ("a", "forget the snapshot"),
                ("a", "record it"),
                ("missing", "forget the container"),
                ("new", "adopt it (record it and its snapshots)"),
            ]
        );
        assert_eq!(
            drifts[0].delete_snapshot,
            Some(("p-a".to_string(), "ldm-publish-9".to_string()))
        );
        // The adoption records the container and its snapshot, nothing of q.
        assert!(matches!(
            &drifts[4].mutations[..],
            [Mutation::ContainerAdded { name, .. }, Mutation::SnapshotAdded { name: s, .. }]
                if name == "new" && s == "s"
        ));
        // Applied, the mutations leave nothing to report.
        let mut fixed = p.clone();
        for m in drifts.iter().flat_map(|d| d.mutations.clone()) {
            fixed.apply(&m).unwrap();
        }
        let mut instances = listed();
        instances[0].snapshots.retain(|s| s.name != "ldm-publish-9");
        assert!(compare(&owners, &fixed, &instances, &[]).is_empty());
    }
}
