//! Snapshots: list, take, restore, delete. "Not found" is a 404 (of the
//! instance, or of the snapshot asked for afterwards); "already exists" is
//! a snapshot of that name older than the operation that failed to take it.

use std::cell::RefCell;

use serde_json::json;

use super::request::{encode, status, Body};
use super::types::SnapshotObj;
use super::Api;
use crate::{LxdError, SnapshotInfo};

impl Api {
    fn snapshot_path(&self, name: &str, snap: &str) -> String {
        format!("{}/snapshots/{}", self.instance_path(name), encode(snap))
    }

    /// The snapshot, `None` if the server has no such snapshot (or instance).
    fn snapshot_obj(&self, name: &str, snap: &str) -> Result<Option<SnapshotObj>, LxdError> {
        match self.get(&self.scoped(&self.snapshot_path(name, snap))) {
            Ok(s) => Ok(Some(s)),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Snapshots of `name`.
    pub(super) fn snapshot_list(&self, name: &str) -> Result<Vec<SnapshotInfo>, LxdError> {
        let path = self.scoped(&format!(
            "{}/snapshots?recursion=1",
            self.instance_path(name)
        ));
        let list: Vec<SnapshotObj> = self.get(&path).map_err(|e| match status(&e) {
            Some(404) => LxdError::NotFound {
                what: format!("instance {name}"),
            },
            _ => e,
        })?;
        Ok(list
            .into_iter()
            .map(|s| SnapshotInfo {
                name: s.name.rsplit('/').next().unwrap_or(&s.name).to_string(),
                created_at: s.created_at,
            })
            .collect())
    }

    /// Takes snapshot `snap` of `name`.
    pub(super) fn take_snapshot(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        let path = self.scoped(&format!("{}/snapshots", self.instance_path(name)));
        let body = json!({"name": snap});
        let failed = RefCell::new(None);
        let e = match self.patiently(name, || self.create(&path, &body, None, &failed)) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if status(&e) == Some(404) {
            return Err(LxdError::NotFound {
                what: format!("instance {name}"),
            });
        }
        let Some(op) = failed.take() else {
            return Err(e);
        };
        match self.snapshot_obj(name, snap)? {
            Some(s) if super::time::before(&s.created_at, &op.created_at) => {
                Err(LxdError::AlreadyExists {
                    what: format!("snapshot {name}/{snap}"),
                })
            }
            _ => Err(e),
        }
    }

    /// Restores `name` to `snap`.
    pub(super) fn restore_snapshot(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        let path = self.scoped(&self.instance_path(name));
        let body = json!({"restore": snap});
        let e = match self.patiently(name, || self.run_op("PUT", &path, Body::Json(&body))) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if !matches!(
            e,
            LxdError::Refused { .. } | LxdError::OperationFailed { .. }
        ) {
            return Err(e);
        }
        // Which one is missing, if any: the server says by its answers.
        if status(&e) == Some(404) || self.object(name)?.is_none() {
            return Err(LxdError::NotFound {
                what: format!("instance {name}"),
            });
        }
        match self.snapshot_obj(name, snap)? {
            None => Err(LxdError::NotFound {
                what: format!("snapshot {name}/{snap}"),
            }),
            Some(_) => Err(e),
        }
    }

    /// Deletes snapshot `snap` of `name`.
    pub(super) fn remove_snapshot(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        let path = self.scoped(&self.snapshot_path(name, snap));
        self.patiently(name, || self.run_op("DELETE", &path, Body::Empty))
            .map(drop)
            .map_err(|e| match status(&e) {
                Some(404) => LxdError::NotFound {
                    what: format!("snapshot {name}/{snap}"),
                },
                _ => e,
            })
    }
}
