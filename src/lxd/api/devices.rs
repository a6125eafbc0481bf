//! Devices and config keys of an instance: added and changed with `PATCH`
//! (a merge: what is not named stays), removed with `PUT` of the whole
//! instance as read, under its `ETag` (412: someone changed it meanwhile,
//! read it again).
//!
//! "Cannot shift ids" ([`LxdError::NoShift`]) is decided as LXD's own
//! container driver decides it, from `GET /1.0`: idmapped mounts need the
//! kernel's (`kernel_features.idmapped_mounts`) and liblxc's
//! (`lxc_features.idmapped_mounts_v2`); shiftfs is the older way. A server
//! that claims both can still refuse a given file system (LXD 5.0.2 on this
//! machine's ext4 does, where Incus 6.0.4 maps it): when a `shift=true`
//! device is refused, ldm adds a probe of the same source without `shift`
//! (device [`PROBE`], read-only, at [`PROBE_PATH`] in the container); if
//! the server takes that one, the ids were what it could not do: the probe
//! is removed again and the answer is `NoShift`. Otherwise the refusal
//! stands. The probe has a name and a place of its own, so an ldm killed
//! between adding and removing it leaves no device a later run could take
//! for the mount; being `ldm-mount-*`, `ldm doctor` names it and removes
//! it with `--fix`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::request::{status, Body};
use super::Api;
use crate::lxd::{Disk, Lxd, LxdError};

/// The probe device's name (`ldm-mount-*`: a device of ldm's).
pub const PROBE: &str = "ldm-mount-shift-probe";
/// Where the probe shows in the container (`/run`: gone at reboot).
pub const PROBE_PATH: &str = "/run/ldm-shift-probe";

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
    pub(super) fn add_disk_device(&self, name: &str, disk: &Disk) -> Result<(), LxdError> {
        let dev = |name: &str, path: &str, readonly: bool, shift: bool| {
            let mut d = BTreeMap::from([
                ("type", "disk".to_string()),
                ("source", disk.source.clone()),
                ("path", path.to_string()),
            ]);
            if readonly {
                d.insert("readonly", "true".into());
            }
            if shift {
                d.insert("shift", "true".into());
            }
            json!({"devices": {name: d}})
        };
        let wanted = dev(&disk.device, &disk.path, disk.readonly, disk.shift);
        let e = match self.patch(name, &wanted) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if !disk.shift || !matches!(e, LxdError::Refused { .. }) {
            return Err(e);
        }
        let no_shift = || LxdError::NoShift {
            what: name.to_string(),
        };
        if !self.idmapping()?.shift {
            return Err(no_shift());
        }
        match self.patch(name, &dev(PROBE, PROBE_PATH, true, false)) {
            Ok(()) => {
                self.remove_instance_device(name, PROBE)?;
                Err(no_shift())
            }
            Err(_) => Err(e),
        }
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
