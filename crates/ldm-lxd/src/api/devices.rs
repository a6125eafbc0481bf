//! Devices and config keys of an instance: added and changed with `PATCH`
//! (a merge: what is not named stays), removed with `PUT` of the whole
//! instance as read, under its `ETag` (412: someone changed it meanwhile,
//! read it again).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::request::{status, Body};
use super::Api;
use crate::{Disk, LxdError};

/// How many times a `PUT` is tried again after another writer changed the
/// instance between ldm's read and its write (412).
const ETAG_TRIES: usize = 5;

impl Api {
    pub(super) fn patch(&self, name: &str, body: &Value) -> Result<(), LxdError> {
        let path = self.scoped(&self.instance_path(name));
        self.patiently(name, || {
            self.sync("PATCH", &path, Body::Json(body), None).map(drop)
        })
        .map_err(|e| match status(&e) {
            Some(404) => LxdError::NotFound {
                what: format!("instance {name}"),
            },
            _ => e,
        })
    }

    /// Adds disk device `disk` to `name` (live, if it runs).
    /// (`shift=true` only as asked: no command asks for an idmapped mount,
    /// DESIGN.md "Mounts"; tests add one as an older ldm did.)
    pub(super) fn add_disk_device(&self, name: &str, disk: &Disk) -> Result<(), LxdError> {
        let mut d = BTreeMap::from([
            ("type", "disk".to_string()),
            ("source", disk.source.clone()),
            ("path", disk.path.clone()),
        ]);
        if disk.readonly {
            d.insert("readonly", "true".into());
        }
        if disk.shift {
            d.insert("shift", "true".into());
        }
        self.patch(name, &json!({"devices": {&disk.device: d}}))
    }

    /// Reads the instance and writes it back changed by `change` (which
    /// says whether there was anything to change), under its `ETag`.
    fn rewrite(
        &self,
        name: &str,
        mut change: impl FnMut(&mut Value) -> bool,
    ) -> Result<bool, LxdError> {
        let path = self.scoped(&self.instance_path(name));
        for _ in 0..ETAG_TRIES {
            let (mut inst, etag): (Value, _) =
                self.get_tagged(&path).map_err(|e| match status(&e) {
                    Some(404) => LxdError::NotFound {
                        what: format!("instance {name}"),
                    },
                    _ => e,
                })?;
            if !change(&mut inst) {
                return Ok(false);
            }
            let r = self.patiently(name, || {
                let s = self.start("PUT", &path, Body::Json(&inst), etag.as_deref())?;
                self.finish(s, None)
            });
            match r {
                Ok(_) => return Ok(true),
                Err(e) if status(&e) == Some(412) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(LxdError::Busy {
            what: name.to_string(),
            waited: std::time::Duration::ZERO,
        })
    }

    /// Removes device `device` from `name`.
    pub(super) fn remove_instance_device(&self, name: &str, device: &str) -> Result<(), LxdError> {
        let removed = self.rewrite(name, |inst| {
            inst["devices"]
                .as_object_mut()
                .is_some_and(|d| d.remove(device).is_some())
        })?;
        if removed {
            Ok(())
        } else {
            Err(LxdError::NotFound {
                what: format!("device {device} of {name}"),
            })
        }
    }

    /// Sets config key `key` of `name`; an empty value removes the key.
    pub(super) fn set_instance_config(
        &self,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<(), LxdError> {
        if value.is_empty() {
            self.rewrite(name, |inst| {
                inst["config"]
                    .as_object_mut()
                    .is_some_and(|c| c.remove(key).is_some())
            })?;
            return Ok(());
        }
        self.patch(name, &json!({"config": {key: value}}))
    }
}
