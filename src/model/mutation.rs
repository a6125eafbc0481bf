//! Mutations: the payload of one log record, and how each changes a [`Project`].
//!
//! The JSON shape of every variant is part of the on-disk format (DESIGN.md,
//! "Payloads"): rename nothing, only add variants.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{validate, Container, Pending, Project, Snapshot, User, ValidationError};

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
