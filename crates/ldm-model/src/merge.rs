//! Three-way merge of project states: what ldm last folded into
//! `containers.yaml` (the base), what ldm's log made of it since (ours), and
//! the file as another writer left it (theirs). No I/O.
//!
//! The rule is per field (DESIGN.md, "Other writers"): a field only one side
//! changed takes that side's value; a field both changed to different values
//! takes the file's (the later write) and yields a [`Conflict`] naming the
//! field and the value dropped, so that nothing is lost silently. Containers
//! and snapshots are fields too: removed on one side and changed on the
//! other is a conflict, resolved the file's way.
//!
//! lxc-dev-manager drops the keys it does not know when it rewrites the
//! file (`remote`, `mounts`, `setup`, `security`, the `pending` operations, the `ldm:`
//! mark). In a file
//! without the mark, the absence of those keys is not a change: they are
//! taken as the base had them ([`Writer::KeyDropping`]).

// Over 400 lines with its tests (about 140): one three-way merge, key by key.

use std::collections::BTreeMap;
use std::fmt::Debug;

use serde::Serialize;

use super::{Container, Project, Snapshot, User};

/// A field both sides changed: the file's value was kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// Dotted path of the field (`defaults.ports`, `containers.dev`).
    pub field: String,
    /// The value kept (the file's), as JSON; `null` when the file removed it.
    pub kept: serde_json::Value,
    /// The value dropped (ldm's), as JSON; `null` when ldm removed it.
    pub dropped: serde_json::Value,
}

/// Who wrote the file being merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// A person or a program that keeps every key (the `ldm:` mark is there).
    KeepsKeys,
    /// A program that drops keys it does not know, as lxc-dev-manager does
    /// (the `ldm:` mark is gone): ldm-only keys it lacks are not changes.
    KeyDropping,
}

/// Merges `ours` and `theirs`, both descended from `base`.
pub fn merge(
    base: &Project,
    ours: &Project,
    theirs: &Project,
    writer: Writer,
) -> (Project, Vec<Conflict>) {
    let theirs = match writer {
        Writer::KeepsKeys => theirs.clone(),
        Writer::KeyDropping => with_ldm_keys_of(base, theirs),
    };
    let mut m = Merger::default();
    let out = m.project(Some(base), ours, &theirs);
    (out, m.conflicts)
}

/// For a file whose base is gone: the file wins, and every field where
/// ldm's state `ours` differs from it is listed as dropped.
pub fn differences(ours: &Project, theirs: &Project) -> Vec<Conflict> {
    let mut m = Merger {
        conflicts: Vec::new(),
        unbased: true,
    };
    m.project(None, ours, theirs);
    m.conflicts
}

/// `theirs` with the keys a key-dropping writer cannot have kept taken
/// from `base`: the project's remote and LXD project, mounts and setup steps, and each
/// operation under way.
fn with_ldm_keys_of(base: &Project, theirs: &Project) -> Project {
    let mut t = theirs.clone();
    if t.remote.is_none() {
        t.remote = base.remote.clone();
    }
    if t.lxd_project.is_none() {
        t.lxd_project = base.lxd_project.clone();
    }
    if t.defaults.mounts.is_none() {
        t.defaults.mounts = base.defaults.mounts.clone();
    }
    if t.defaults.setup.is_empty() {
        t.defaults.setup = base.defaults.setup.clone();
    }
    if t.defaults.security.is_empty() {
        t.defaults.security = base.defaults.security;
    }
    for (name, c) in &mut t.containers {
        let Some(b) = base.containers.get(name) else {
            continue;
        };
        if c.pending.is_none() {
            c.pending = b.pending.clone();
        }
        if c.mounts.is_empty() {
            c.mounts = b.mounts.clone();
        }
        if c.setup.is_none() {
            c.setup = b.setup.clone();
        }
        if c.security.is_empty() {
            c.security = b.security;
        }
        for (snap, s) in &mut c.snapshots {
            if s.pending.is_none() {
                s.pending = b.snapshots.get(snap).and_then(|bs| bs.pending.clone());
            }
        }
    }
    t
}

#[derive(Default)]
struct Merger {
    conflicts: Vec<Conflict>,
    /// No base at all: whatever ldm has that the file lacks is dropped.
    unbased: bool,
}

fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

impl Merger {
    fn project(&mut self, base: Option<&Project>, ours: &Project, theirs: &Project) -> Project {
        let empty = BTreeMap::new();
        Project {
            project: self.pick(
                "project",
                base.map(|b| &b.project),
                &ours.project,
                &theirs.project,
            ),
            remote: self.pick(
                "remote",
                base.map(|b| &b.remote),
                &ours.remote,
                &theirs.remote,
            ),
            lxd_project: self.pick(
                "lxd_project",
                base.map(|b| &b.lxd_project),
                &ours.lxd_project,
                &theirs.lxd_project,
            ),
            defaults: super::Defaults {
                ports: self.pick(
                    "defaults.ports",
                    base.map(|b| &b.defaults.ports),
                    &ours.defaults.ports,
                    &theirs.defaults.ports,
                ),
                user: self.user(
                    "defaults.user",
                    base.map(|b| &b.defaults.user),
                    &ours.defaults.user,
                    &theirs.defaults.user,
                ),
                mounts: self.pick(
                    "defaults.mounts",
                    base.map(|b| &b.defaults.mounts),
                    &ours.defaults.mounts,
                    &theirs.defaults.mounts,
                ),
                setup: self.pick(
                    "defaults.setup",
                    base.map(|b| &b.defaults.setup),
                    &ours.defaults.setup,
                    &theirs.defaults.setup,
                ),
                security: self.pick(
                    "defaults.security",
                    base.map(|b| &b.defaults.security),
                    &ours.defaults.security,
                    &theirs.defaults.security,
                ),
            },
            containers: self.map(
                "containers",
                base.map_or(&empty, |b| &b.containers),
                &ours.containers,
                &theirs.containers,
                Merger::container,
            ),
        }
    }

    /// One value: `base` is `None` when the thing holding it is new on both
    /// sides (then any difference is a conflict).
    fn pick<T: PartialEq + Clone + Serialize>(
        &mut self,
        field: &str,
        base: Option<&T>,
        ours: &T,
        theirs: &T,
    ) -> T {
        if ours == theirs || base == Some(ours) {
            return theirs.clone();
        }
        if base == Some(theirs) {
            return ours.clone();
        }
        self.conflicts.push(Conflict {
            field: field.to_string(),
            kept: json(theirs),
            dropped: json(ours),
        });
        theirs.clone()
    }

    /// A user block: its two fields merge on their own.
    fn user(
        &mut self,
        field: &str,
        base: Option<&Option<User>>,
        ours: &Option<User>,
        theirs: &Option<User>,
    ) -> Option<User> {
        let empty = User::default();
        let b = base.map(|u| u.as_ref().unwrap_or(&empty));
        let o = ours.as_ref().unwrap_or(&empty);
        let t = theirs.as_ref().unwrap_or(&empty);
        let user = User {
            name: self.pick(
                &format!("{field}.name"),
                b.map(|u| &u.name),
                &o.name,
                &t.name,
            ),
            password: self.pick(
                &format!("{field}.password"),
                b.map(|u| &u.password),
                &o.password,
                &t.password,
            ),
        };
        (user != empty).then_some(user)
    }

    /// A map of named things (containers, snapshots): presence is a field,
    /// and things present on both sides merge field by field.
    fn map<V: PartialEq + Clone + Serialize>(
        &mut self,
        field: &str,
        base: &BTreeMap<String, V>,
        ours: &BTreeMap<String, V>,
        theirs: &BTreeMap<String, V>,
        each: fn(&mut Merger, &str, Option<&V>, &V, &V) -> V,
    ) -> BTreeMap<String, V> {
        let mut out = BTreeMap::new();
        let keys: std::collections::BTreeSet<&String> = base
            .keys()
            .chain(ours.keys())
            .chain(theirs.keys())
            .collect();
        for key in keys {
            let path = format!("{field}.{key}");
            match (base.get(key), ours.get(key), theirs.get(key)) {
                (_, None, None) => {}
                (b, Some(o), Some(t)) => {
                    out.insert(key.clone(), each(self, &path, b, o, t));
                }
                // The file removed it: fine unless ldm changed it meanwhile.
                (Some(b), Some(o), None) => {
                    if o != b {
                        self.conflicts.push(Conflict {
                            field: path,
                            kept: serde_json::Value::Null,
                            dropped: json(o),
                        });
                    }
                }
                // ldm removed it: fine unless the file changed it meanwhile.
                (Some(b), None, Some(t)) => {
                    if t != b {
                        self.conflicts.push(Conflict {
                            field: path,
                            kept: json(t),
                            dropped: serde_json::Value::Null,
                        });
                        out.insert(key.clone(), t.clone());
                    }
                }
                (None, Some(o), None) if self.unbased => self.conflicts.push(Conflict {
                    field: path,
                    kept: serde_json::Value::Null,
                    dropped: json(o),
                }),
                (None, Some(v), None) | (None, None, Some(v)) => {
                    out.insert(key.clone(), v.clone());
                }
            }
        }
        out
    }

    fn container(
        &mut self,
        field: &str,
        b: Option<&Container>,
        o: &Container,
        t: &Container,
    ) -> Container {
        Container {
            image: self.pick(
                &format!("{field}.image"),
                b.map(|b| &b.image),
                &o.image,
                &t.image,
            ),
            ports: self.pick(
                &format!("{field}.ports"),
                b.map(|b| &b.ports),
                &o.ports,
                &t.ports,
            ),
            mounts: self.pick(
                &format!("{field}.mounts"),
                b.map(|b| &b.mounts),
                &o.mounts,
                &t.mounts,
            ),
            setup: self.pick(
                &format!("{field}.setup"),
                b.map(|b| &b.setup),
                &o.setup,
                &t.setup,
            ),
            security: self.pick(
                &format!("{field}.security"),
                b.map(|b| &b.security),
                &o.security,
                &t.security,
            ),
            user: self.user(
                &format!("{field}.user"),
                b.map(|b| &b.user),
                &o.user,
                &t.user,
            ),
            snapshots: self.map(
                &format!("{field}.snapshots"),
                b.map_or(&BTreeMap::new(), |b| &b.snapshots),
                &o.snapshots,
                &t.snapshots,
                Merger::snapshot,
            ),
            pending: self.pick(
                &format!("{field}.pending"),
                b.map(|b| &b.pending),
                &o.pending,
                &t.pending,
            ),
        }
    }

    fn snapshot(
        &mut self,
        field: &str,
        b: Option<&Snapshot>,
        o: &Snapshot,
        t: &Snapshot,
    ) -> Snapshot {
        Snapshot {
            description: self.pick(
                &format!("{field}.description"),
                b.map(|b| &b.description),
                &o.description,
                &t.description,
            ),
            created_at: self.pick(
                &format!("{field}.created_at"),
                b.map(|b| &b.created_at),
                &o.created_at,
                &t.created_at,
            ),
            pending: self.pick(
                &format!("{field}.pending"),
                b.map(|b| &b.pending),
                &o.pending,
                &t.pending,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Op, Owner, Pending};

    fn project(ports: &[u16]) -> Project {
        Project::new("p", ports.to_vec())
    }

    fn with_container(mut p: Project, name: &str, snaps: &[(&str, &str)]) -> Project {
        let mut c = Container {
            image: "img".into(),
            ..Default::default()
        };
        for (s, d) in snaps {
            c.snapshots.insert(
                s.to_string(),
                Snapshot {
                    description: d.to_string(),
                    created_at: "t".into(),
                    pending: None,
                },
            );
        }
        p.containers.insert(name.into(), c);
        p
    }

    #[test]
    fn one_sided_changes_are_kept_from_either_side() {
        let base = project(&[1]);
        let mut ours = base.clone();
        ours.remote = Some("r".into());
        let theirs = project(&[2]);
        let (m, c) = merge(&base, &ours, &theirs, Writer::KeepsKeys);
        assert!(c.is_empty(), "{c:?}");
        assert_eq!(m.defaults.ports, vec![2]);
        assert_eq!(m.remote.as_deref(), Some("r"));
    }

    #[test]
    fn a_field_both_changed_takes_the_files_value_and_names_the_dropped_one() {
        let (m, c) = merge(
            &project(&[1]),
            &project(&[3000]),
            &project(&[4000]),
            Writer::KeepsKeys,
        );
        assert_eq!(m.defaults.ports, vec![4000]);
        assert_eq!(
            c,
            vec![Conflict {
                field: "defaults.ports".into(),
                kept: serde_json::json!([4000]),
                dropped: serde_json::json!([3000]),
            }]
        );
    }

    #[test]
    fn a_snapshot_ldm_deleted_and_the_file_recreated_is_kept_and_reported() {
        let base = with_container(project(&[]), "dev", &[("x", "old")]);
        let ours = with_container(project(&[]), "dev", &[]);
        let theirs = with_container(project(&[]), "dev", &[("x", "new one")]);
        let (m, c) = merge(&base, &ours, &theirs, Writer::KeyDropping);
        assert_eq!(m.containers["dev"].snapshots["x"].description, "new one");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].field, "containers.dev.snapshots.x");
        assert_eq!(c[0].dropped, serde_json::Value::Null);
    }

    #[test]
    fn a_key_dropping_writer_does_not_remove_ldm_only_keys() {
        let mut base = with_container(project(&[]), "dev", &[]);
        base.remote = Some("team".into());
        base.containers.get_mut("dev").unwrap().pending = Some(Pending {
            op: Op::Create,
            owner: Owner {
                pid: 1,
                slot: 2,
                ..Default::default()
            },
            started_at: "t".into(),
            setup: None,
        });
        let mut theirs = base.clone();
        theirs.remote = None;
        theirs.containers.get_mut("dev").unwrap().pending = None;
        theirs.defaults.ports = vec![9];
        let (m, c) = merge(&base, &base, &theirs, Writer::KeyDropping);
        assert!(c.is_empty());
        assert_eq!(m.remote.as_deref(), Some("team"));
        assert!(m.containers["dev"].pending.is_some());
        assert_eq!(m.defaults.ports, vec![9]);
        // A person who removes them (keeping the mark) does remove them.
        let (m, _) = merge(&base, &base, &theirs, Writer::KeepsKeys);
        assert_eq!(m.remote, None);
    }

    #[test]
    fn a_container_the_file_removed_while_ldm_changed_it_is_removed_and_reported() {
        let base = with_container(project(&[]), "dev", &[]);
        let ours = with_container(project(&[]), "dev", &[("s", "")]);
        let (m, c) = merge(&base, &ours, &project(&[]), Writer::KeepsKeys);
        assert!(m.containers.is_empty());
        assert_eq!(c[0].field, "containers.dev");
        assert_eq!(c[0].kept, serde_json::Value::Null);
    }

    #[test]
    fn without_a_base_the_file_wins_and_every_difference_is_listed() {
        let theirs = with_container(project(&[1]), "a", &[]);
        let ours = with_container(with_container(project(&[2]), "a", &[("s", "")]), "b", &[]);
        let fields: Vec<String> = differences(&ours, &theirs)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            ["defaults.ports", "containers.a.snapshots.s", "containers.b"]
        );
        assert!(differences(&theirs, &theirs).is_empty());
    }

    #[test]
    fn both_sides_adding_the_same_container_differently_merges_its_fields() {
        let base = project(&[]);
        let ours = with_container(project(&[]), "dev", &[("a", "")]);
        let mut theirs = with_container(project(&[]), "dev", &[("b", "")]);
        theirs.containers.get_mut("dev").unwrap().image = "other".into();
        let (m, c) = merge(&base, &ours, &theirs, Writer::KeepsKeys);
        let dev = &m.containers["dev"];
        assert_eq!(dev.image, "other");
        assert_eq!(dev.snapshots.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].field, "containers.dev.image");
    }
}
