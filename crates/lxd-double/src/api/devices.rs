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
    apply_idmap(inst);
    if inst.ipv4.is_none() {
        inst.ipv4 = ip;
    }
    Ok(())
}

/// `volatile.idmap.current` as LXD sets it at a start: the default range
/// plus one entry for each `raw.idmap` line (`uid|gid|both HOST NS`).
pub(super) fn apply_idmap(inst: &mut crate::Instance) {
    let entry = |uid: bool, host: u64, ns: u64, range: u64| serde_json::json!({"Isuid": uid, "Isgid": !uid, "Hostid": host, "Nsid": ns, "Maprange": range});
    let mut map = vec![
        entry(true, 1_000_000, 0, 1_000_000_000),
        entry(false, 1_000_000, 0, 1_000_000_000),
    ];
    let raw = inst.config.get("raw.idmap").cloned().unwrap_or_default();
    for line in raw.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(kind), Some(Ok(h)), Some(Ok(n))) = (
            f.first(),
            f.get(1).map(|v| v.parse::<u64>()),
            f.get(2).map(|v| v.parse::<u64>()),
        ) else {
            continue;
        };
        if matches!(*kind, "uid" | "both") {
            map.push(entry(true, h, n, 1));
        }
        if matches!(*kind, "gid" | "both") {
            map.push(entry(false, h, n, 1));
        }
    }
    inst.config.insert(
        "volatile.idmap.current".into(),
        serde_json::Value::from(map).to_string(),
    );
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
