//! Devices as LXD 5.0.2 checks them: validation, and shifted disks that
//! need idmapped mounts to start.

use std::collections::BTreeMap;

use crate::model::{Device, Instance, Status};
use crate::state::State;
use crate::util;

/// Starts `inst`: its shifted disks need idmapped mounts.
pub(super) fn start(
    inst: &mut Instance,
    shift_works: bool,
    ip: Option<String>,
) -> Result<(), String> {
    if !shift_works {
        if let Some(dev) = inst
            .devices
            .iter()
            .find(|(_, d)| shifted(d))
            .map(|(n, _)| n)
        {
            return Err(no_shift(dev));
        }
    }
    inst.status = Status::Running;
    inst.pid = 4000 + (util::hash64(&inst.created_at) % 1000) as u32;
    if inst.ipv4.is_none() {
        inst.ipv4 = ip;
    }
    Ok(())
}

fn shifted(d: &Device) -> bool {
    d.get("type").is_some_and(|t| t == "disk") && d.get("shift").is_some_and(|s| s == "true")
}

fn no_shift(dev: &str) -> String {
    format!("Failed to start device {dev:?}: Required idmapping abilities not available")
}

/// LXD's device validation, as far as the double models it.
pub(super) fn validate(devices: &BTreeMap<String, Device>) -> Result<(), String> {
    let mut paths = BTreeMap::new();
    for (name, d) in devices {
        let Some(kind) = d.get("type") else {
            return Err(format!(
                "Invalid devices: Device validation failed for {name:?}: Failed loading device {name:?}: Missing device type in config"
            ));
        };
        if kind == "disk" {
            if let Some(path) = d.get("path") {
                if paths.insert(path.clone(), name.clone()).is_some() {
                    return Err(format!(
                        "Invalid devices: Device validation failed for {name:?}: More than one disk device uses the same path {path:?}"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// New shifted disks on a running instance fail to start without
/// idmapped mounts.
pub(super) fn check_shift(
    st: &State,
    inst: &Instance,
    devices: &BTreeMap<String, Device>,
) -> Result<(), String> {
    if st.server.shift_works || !inst.is_running() {
        return Ok(());
    }
    for (name, d) in devices {
        if shifted(d) && inst.devices.get(name) != Some(d) {
            return Err(no_shift(name));
        }
    }
    Ok(())
}
