//! Mutations: the payload of one log record, and how each changes a [`Project`].
//!
//! The JSON shape of every variant is part of the on-disk format (DESIGN.md,
//! "Payloads"): rename nothing, only add variants.

// Over 400 lines with its tests (about 180): every mutation's apply rule and
// its frozen JSON shape, part of the log format.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{validate, Container, Mount, Pending, Project, Snapshot, User, ValidationError};

/// One semantic change to a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Mutation {
    /// A container was recorded.
    ContainerAdded {
        /// Container name (without project prefix).
        name: String,
        /// Image it comes from.
        image: String,
        /// The operation creating it, if LXD steps are still to run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pending: Option<Pending>,
    },
    /// A container was forgotten.
    ContainerRemoved {
        /// Container name.
        name: String,
    },
    /// A snapshot was recorded.
    SnapshotAdded {
        /// Container name.
        container: String,
        /// Snapshot name.
        name: String,
        /// Free text.
        description: String,
        /// RFC 3339, UTC.
        created_at: String,
        /// The operation creating it, if the LXD snapshot is still to be taken.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pending: Option<Pending>,
    },
    /// A snapshot was forgotten.
    SnapshotRemoved {
        /// Container name.
        container: String,
        /// Snapshot name.
        name: String,
    },
    /// Ports of the defaults (no container) or of one container; empty unsets.
    PortsSet {
        /// `None` for `defaults`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        container: Option<String>,
        /// The new list.
        ports: Vec<u16>,
    },
    /// User name of the defaults or of one container; `None` unsets.
    UserNameSet {
        /// `None` for `defaults`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        container: Option<String>,
        /// The new name.
        name: Option<String>,
    },
    /// A long operation starts on an existing container or snapshot
    /// (replacing an interrupted one, if any: the command checked that its
    /// owner is gone).
    OperationStarted {
        /// Container name.
        container: String,
        /// Snapshot name, for snapshot operations.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<String>,
        /// The operation.
        pending: Pending,
    },
    /// The long operation on a container or snapshot ended.
    OperationFinished {
        /// Container name.
        container: String,
        /// Snapshot name, for snapshot operations.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<String>,
    },
    /// The LXD remote of the project; `None` for the local LXD.
    RemoteSet {
        /// Remote name.
        remote: Option<String>,
    },
    /// Password of the defaults or of one container; `None` unsets.
    UserPasswordSet {
        /// `None` for `defaults`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        container: Option<String>,
        /// The new password.
        password: Option<String>,
    },
    /// A host folder was mounted in a container (or is being: the record
    /// comes before the LXD device, so that a crash leaves it visible).
    MountAdded {
        /// Container name.
        container: String,
        /// The mount, as `HOST:CONTAINER[:ro]`: text, checked by `apply`
        /// (decoding must give back whatever was encoded).
        mount: String,
    },
    /// The mount at `path` was removed from a container.
    MountRemoved {
        /// Container name.
        container: String,
        /// Its path inside the container.
        path: String,
    },
    /// The project got a new name (`ldm project rename`), so its
    /// containers' LXD names change with it (their instances are renamed
    /// by `rename` operations recorded in the same commit).
    ProjectRenamed {
        /// The new name.
        name: String,
    },
}

impl Mutation {
    /// Every kind (`op` name) with the log format version that introduced
    /// it. Part of the format: a new kind needs a new log version (the
    /// reader refuses a kind it does not know as "written by a newer ldm"),
    /// and `tests::kinds_and_shapes_are_frozen` fails until both are done.
    pub const KINDS: &'static [(&'static str, u32)] = &[
        ("container_added", 1),
        ("container_removed", 1),
        ("snapshot_added", 1),
        ("snapshot_removed", 1),
        ("ports_set", 1),
        ("user_name_set", 1),
        ("operation_started", 1),
        ("operation_finished", 1),
        // Shipped in version 1 logs before the rule above existed.
        ("remote_set", 1),
        ("user_password_set", 1),
        ("mount_added", 2),
        ("mount_removed", 2),
        ("project_renamed", 4),
    ];

    /// The `op` name of this mutation, as written in the log.
    pub fn kind(&self) -> &'static str {
        match self {
            Mutation::ContainerAdded { .. } => "container_added",
            Mutation::ContainerRemoved { .. } => "container_removed",
            Mutation::SnapshotAdded { .. } => "snapshot_added",
            Mutation::SnapshotRemoved { .. } => "snapshot_removed",
            Mutation::PortsSet { .. } => "ports_set",
            Mutation::UserNameSet { .. } => "user_name_set",
            Mutation::OperationStarted { .. } => "operation_started",
            Mutation::OperationFinished { .. } => "operation_finished",
            Mutation::RemoteSet { .. } => "remote_set",
            Mutation::UserPasswordSet { .. } => "user_password_set",
            Mutation::MountAdded { .. } => "mount_added",
            Mutation::MountRemoved { .. } => "mount_removed",
            Mutation::ProjectRenamed { .. } => "project_renamed",
        }
    }
}

/// Why a mutation does not apply to the current state.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// Adding a container whose name is taken.
    #[error("container {0:?} already exists in this project")]
    ContainerExists(String),
    /// Referring to a container that is not recorded.
    #[error("container {0:?} is not in this project (see `ldm list`)")]
    ContainerMissing(String),
    /// Adding a snapshot whose name is taken.
    #[error("container {container:?} already has a snapshot {name:?}")]
    SnapshotExists {
        /// Container name.
        container: String,
        /// Snapshot name.
        name: String,
    },
    /// Removing a snapshot that is not recorded.
    #[error("container {container:?} has no snapshot {name:?}")]
    SnapshotMissing {
        /// Container name.
        container: String,
        /// Snapshot name.
        name: String,
    },
    /// Mounting at a path a mount of the container uses already.
    #[error("container {container:?} has a mount at {path} already")]
    MountExists {
        /// Container name.
        container: String,
        /// The path inside the container.
        path: String,
    },
    /// Removing a mount that is not recorded.
    #[error("container {container:?} has no mount at {path}")]
    MountMissing {
        /// Container name.
        container: String,
        /// The path inside the container.
        path: String,
    },
    /// A value in the mutation breaks a validation rule.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

impl Project {
    /// Applies `m` if it is valid against the current state; on error the
    /// project is unchanged.
    pub fn apply(&mut self, m: &Mutation) -> Result<(), ApplyError> {
        match m {
            Mutation::ContainerAdded {
                name,
                image,
                pending,
            } => {
                validate::container_name(&self.project, name)?;
                validate::image(image)?;
                if self.containers.contains_key(name) {
                    return Err(ApplyError::ContainerExists(name.clone()));
                }
                self.containers.insert(
                    name.clone(),
                    Container {
                        image: image.clone(),
                        pending: pending.clone(),
                        ..Container::default()
                    },
                );
            }
            Mutation::ContainerRemoved { name } => {
                if self.containers.remove(name).is_none() {
                    return Err(ApplyError::ContainerMissing(name.clone()));
                }
            }
            Mutation::SnapshotAdded {
                container,
                name,
                description,
                created_at,
                pending,
            } => {
                validate::snapshot_name(name)?;
                let c = self.container_mut(container)?;
                if c.snapshots.contains_key(name) {
                    return Err(ApplyError::SnapshotExists {
                        container: container.clone(),
                        name: name.clone(),
                    });
                }
                c.snapshots.insert(
                    name.clone(),
                    Snapshot {
                        description: description.clone(),
                        created_at: created_at.clone(),
                        pending: pending.clone(),
                    },
                );
            }
            Mutation::SnapshotRemoved { container, name } => {
                let c = self.container_mut(container)?;
                if c.snapshots.remove(name).is_none() {
                    return Err(ApplyError::SnapshotMissing {
                        container: container.clone(),
                        name: name.clone(),
                    });
                }
            }
            Mutation::PortsSet { container, ports } => {
                validate::ports_list(ports)?;
                match container {
                    Some(c) => self.container_mut(c)?.ports = ports.clone(),
                    None => self.defaults.ports = ports.clone(),
                }
            }
            Mutation::OperationStarted {
                container,
                snapshot,
                pending,
            } => *self.pending_slot(container, snapshot.as_deref())? = Some(pending.clone()),
            Mutation::OperationFinished {
                container,
                snapshot,
            } => *self.pending_slot(container, snapshot.as_deref())? = None,
            Mutation::RemoteSet { remote } => {
                if let Some(r) = remote {
                    validate::remote(r)?;
                }
                self.remote = remote.clone();
            }
            Mutation::UserNameSet { container, name } => {
                if let Some(n) = name {
                    validate::user_name(n)?;
                }
                self.set_user_field(container, |u| u.name = name.clone())?;
            }
            Mutation::UserPasswordSet {
                container,
                password,
            } => {
                if let Some(p) = password {
                    validate::password(p)?;
                }
                self.set_user_field(container, |u| u.password = password.clone())?;
            }
            Mutation::MountAdded { container, mount } => {
                let mount = Mount::parse(mount)?;
                let c = self.container_mut(container)?;
                if c.mounts.iter().any(|m| m.path == mount.path) {
                    return Err(ApplyError::MountExists {
                        container: container.clone(),
                        path: mount.path.clone(),
                    });
                }
                c.mounts.push(mount);
            }
            Mutation::ProjectRenamed { name } => {
                validate::project_name(name)?;
                for c in self.containers.keys() {
                    validate::container_name(name, c)?;
                }
                self.project = name.clone();
            }
            Mutation::MountRemoved { container, path } => {
                let c = self.container_mut(container)?;
                let before = c.mounts.len();
                c.mounts.retain(|m| &m.path != path);
                if c.mounts.len() == before {
                    return Err(ApplyError::MountMissing {
                        container: container.clone(),
                        path: path.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    fn container_mut(&mut self, name: &str) -> Result<&mut Container, ApplyError> {
        self.containers
            .get_mut(name)
            .ok_or_else(|| ApplyError::ContainerMissing(name.to_string()))
    }

    fn pending_slot(
        &mut self,
        container: &str,
        snapshot: Option<&str>,
    ) -> Result<&mut Option<Pending>, ApplyError> {
        let c = self.container_mut(container)?;
        match snapshot {
            None => Ok(&mut c.pending),
            Some(s) => c
                .snapshots
                .get_mut(s)
                .map(|snap| &mut snap.pending)
                .ok_or_else(|| ApplyError::SnapshotMissing {
                    container: container.to_string(),
                    name: s.to_string(),
                }),
        }
    }

    fn set_user_field(
        &mut self,
        container: &Option<String>,
        set: impl FnOnce(&mut User),
    ) -> Result<(), ApplyError> {
        let slot = match container {
            Some(c) => &mut self.container_mut(c)?.user,
            None => &mut self.defaults.user,
        };
        let mut user = slot.take().unwrap_or_default();
        set(&mut user);
        *slot = (!user.is_empty()).then_some(user);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_json_shape_is_stable() {
        let m = Mutation::ContainerAdded {
            name: "dev".into(),
            image: "ubuntu:24.04".into(),
            pending: None,
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"op":"container_added","name":"dev","image":"ubuntu:24.04"}"#
        );
        let p = Mutation::PortsSet {
            container: None,
            ports: vec![3000],
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"op":"ports_set","ports":[3000]}"#
        );
    }

    /// One example of every kind, with every optional field set, and its
    /// exact JSON. Adding a variant breaks the exhaustive match in `kind`;
    /// adding it here without a new entry in `KINDS` (and so a new log
    /// version) breaks this test.
    #[test]
    fn kinds_and_shapes_are_frozen() {
        use crate::{Op, Owner, Pending};
        let pending = Pending {
            op: Op::Create,
            owner: Owner {
                pid: 7,
                slot: 9,
                ..Default::default()
            },
            started_at: "2026-01-15T10:30:00Z".into(),
            setup: None,
        };
        let c = || Some("dev".to_string());
        let frozen: Vec<(Mutation, &str)> = vec![
            (
                Mutation::ContainerAdded {
                    name: "dev".into(),
                    image: "img".into(),
                    pending: Some(pending.clone()),
                },
                r#"{"op":"container_added","name":"dev","image":"img","pending":{"op":{"kind":"create"},"owner":{"pid":7,"slot":9},"started_at":"2026-01-15T10:30:00Z"}}"#,
            ),
            (
                Mutation::ContainerRemoved { name: "dev".into() },
                r#"{"op":"container_removed","name":"dev"}"#,
            ),
            (
                Mutation::SnapshotAdded {
                    container: "dev".into(),
                    name: "s".into(),
                    description: "d".into(),
                    created_at: "t".into(),
                    pending: None,
                },
                r#"{"op":"snapshot_added","container":"dev","name":"s","description":"d","created_at":"t"}"#,
            ),
            (
                Mutation::SnapshotRemoved {
                    container: "dev".into(),
                    name: "s".into(),
                },
                r#"{"op":"snapshot_removed","container":"dev","name":"s"}"#,
            ),
            (
                Mutation::PortsSet {
                    container: c(),
                    ports: vec![1, 2],
                },
                r#"{"op":"ports_set","container":"dev","ports":[1,2]}"#,
            ),
            (
                Mutation::UserNameSet {
                    container: c(),
                    name: Some("ann".into()),
                },
                r#"{"op":"user_name_set","container":"dev","name":"ann"}"#,
            ),
            (
                Mutation::OperationStarted {
                    container: "dev".into(),
                    snapshot: Some("s".into()),
                    pending: pending.clone(),
                },
                r#"{"op":"operation_started","container":"dev","snapshot":"s","pending":{"op":{"kind":"create"},"owner":{"pid":7,"slot":9},"started_at":"2026-01-15T10:30:00Z"}}"#,
            ),
            (
                Mutation::OperationFinished {
                    container: "dev".into(),
                    snapshot: Some("s".into()),
                },
                r#"{"op":"operation_finished","container":"dev","snapshot":"s"}"#,
            ),
            (
                Mutation::RemoteSet {
                    remote: Some("r".into()),
                },
                r#"{"op":"remote_set","remote":"r"}"#,
            ),
            (
                Mutation::UserPasswordSet {
                    container: c(),
                    password: None,
                },
                r#"{"op":"user_password_set","container":"dev","password":null}"#,
            ),
            (
                Mutation::MountAdded {
                    container: "dev".into(),
                    mount: ".:/home/dev/p:ro".into(),
                },
                r#"{"op":"mount_added","container":"dev","mount":".:/home/dev/p:ro"}"#,
            ),
            (
                Mutation::MountRemoved {
                    container: "dev".into(),
                    path: "/home/dev/p".into(),
                },
                r#"{"op":"mount_removed","container":"dev","path":"/home/dev/p"}"#,
            ),
            (
                Mutation::ProjectRenamed { name: "q".into() },
                r#"{"op":"project_renamed","name":"q"}"#,
            ),
        ];
        let kinds: Vec<&str> = frozen.iter().map(|(m, _)| m.kind()).collect();
        let listed: Vec<&str> = Mutation::KINDS.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds, listed,
            "every kind has one frozen example, in KINDS order"
        );
        for (m, json) in &frozen {
            assert_eq!(
                serde_json::to_string(m).unwrap(),
                *json,
                "shape of {}",
                m.kind()
            );
            assert_eq!(&serde_json::from_str::<Mutation>(json).unwrap(), m);
        }
        // That no kind is newer than the log format: ldm-store's record.rs.
    }

    #[test]
    fn failed_apply_leaves_state_unchanged() {
        let mut p = Project::new("p", vec![]);
        let before = p.clone();
        let r = p.apply(&Mutation::SnapshotAdded {
            container: "nope".into(),
            name: "s".into(),
            description: String::new(),
            created_at: String::new(),
            pending: None,
        });
        assert_eq!(r, Err(ApplyError::ContainerMissing("nope".into())));
        assert_eq!(p, before);
    }

    #[test]
    fn unsetting_both_user_fields_removes_the_user() {
        let mut p = Project::new("p", vec![]);
        p.apply(&Mutation::UserNameSet {
            container: None,
            name: Some("ann".into()),
        })
        .unwrap();
        assert!(p.defaults.user.is_some());
        p.apply(&Mutation::UserNameSet {
            container: None,
            name: None,
        })
        .unwrap();
        assert_eq!(p.defaults.user, None);
    }
}
