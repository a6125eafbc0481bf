//! The client's machine-readable output (`--format json`, `query`) turned
//! into [`Instance`], [`SnapshotInfo`] and [`Image`]. Missing fields read as
//! empty, never as a panic: the JSON comes from another program.

use serde_json::Value;

use super::{Disk, Idmapping, Image, Instance, SnapshotInfo, State};

/// One snapshot object (`/1.0/instances/NAME/snapshots?recursion=1` items).
pub(super) fn snapshot(s: &Value) -> SnapshotInfo {
    let name = s["name"].as_str().unwrap_or_default();
    SnapshotInfo {
        name: name.rsplit('/').next().unwrap_or(name).to_string(),
        created_at: s["created_at"].as_str().unwrap_or_default().to_string(),
    }
}

/// One instance object (`list --format json` items, or `query
/// /1.0/instances/NAME?recursion=1`): its first global IPv4 not on `lo`.
pub(super) fn instance(v: &Value) -> Instance {
    let text = |v: &Value| v.as_str().map(str::to_string);
    let state = &v["state"];
    let ipv4 = ipv4(state);
    let snapshots = v["snapshots"]
        .as_array()
        .map(|a| a.iter().map(snapshot).collect())
        .unwrap_or_default();
    Instance {
        name: text(&v["name"]).unwrap_or_default(),
        status: text(&v["status"])
            .or_else(|| text(&state["status"]))
            .unwrap_or_else(|| "Unknown".into()),
        ipv4,
        snapshots,
        image: text(&v["config"]["image.description"]),
        disks: disks(&v["devices"]),
        raw_idmap: text(&v["config"]["raw.idmap"]),
        idmap_current: text(&v["config"]["volatile.idmap.current"]),
        user: v["config"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.starts_with("user."))
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect(),
        owner: Default::default(),
    }
}

/// One instance's state object (`query /1.0/instances/NAME/state`, or the
/// `state` of an instance object); its init's pid only when `local`.
pub(super) fn state(v: &Value, local: bool) -> State {
    State {
        status: v["status"].as_str().unwrap_or("Unknown").to_string(),
        ipv4: ipv4(v),
        pid: v["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| local && *p > 0),
    }
}

/// A state object's first global IPv4 address not on `lo`.
fn ipv4(state: &Value) -> Option<String> {
    state["network"].as_object().and_then(|nics| {
        nics.iter()
            .filter(|(name, _)| name.as_str() != "lo")
            .flat_map(|(_, nic)| nic["addresses"].as_array().into_iter().flatten())
            .find(|a| a["family"] == "inet" && a["scope"] == "global")
            .and_then(|a| a["address"].as_str().map(str::to_string))
    })
}

/// The instance's own disk devices with a host `source` (the root disk has
/// a pool instead).
fn disks(devices: &Value) -> Vec<Disk> {
    let Some(devices) = devices.as_object() else {
        return Vec::new();
    };
    let yes = |v: &Value| matches!(v.as_str(), Some("true" | "1" | "yes" | "on"));
    devices
        .iter()
        .filter(|(_, d)| d["type"] == "disk")
        .filter_map(|(name, d)| {
            Some(Disk {
                device: name.clone(),
                source: d["source"].as_str().filter(|s| !s.is_empty())?.to_string(),
                path: d["path"].as_str().unwrap_or_default().to_string(),
                readonly: yes(&d["readonly"]),
                shift: yes(&d["shift"]),
            })
        })
        .collect()
}

/// The descriptions of the running operations in `query
/// /1.0/operations?recursion=1` whose resources name instance `name`.
pub(super) fn operations_on(v: &Value, name: &str) -> Vec<String> {
    let path = format!("/1.0/instances/{name}");
    v["running"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|op| {
            op["resources"]["instances"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                // Another LXD project's instances carry `?project=NAME`.
                .any(|r| r == path || r.starts_with(&format!("{path}?")))
        })
        .map(|op| {
            op["description"]
                .as_str()
                .unwrap_or("an operation")
                .to_string()
        })
        .collect()
}

/// One image object (`image list --format json` items).
pub(super) fn image(i: &Value) -> Image {
    Image {
        aliases: i["aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["name"].as_str().map(str::to_string))
            .collect(),
        fingerprint: i["fingerprint"].as_str().unwrap_or_default().to_string(),
        size: i["size"].as_u64().unwrap_or(0),
        description: i["properties"]["description"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    }
}

/// Who the server of `query /1.0` is.
pub(super) fn server(v: &Value, project: Option<&str>, remote: Option<&str>) -> super::Server {
    let env = &v["environment"];
    let text = |k: &str| env[k].as_str().unwrap_or_default().to_string();
    super::Server {
        family: if text("server") == "incus" {
            "incus"
        } else {
            "lxd"
        }
        .into(),
        name: text("server_name"),
        version: text("server_version"),
        fingerprint: text("certificate_fingerprint"),
        project: project.unwrap_or("default").to_string(),
        remote: remote.unwrap_or("local").to_string(),
    }
}

/// What `query /1.0` says of idmapped mounts: `shift=true` works when the
/// kernel has idmapped mounts or shiftfs and LXD may use them.
pub(super) fn idmapping(v: &Value) -> Idmapping {
    let features = &v["environment"]["kernel_features"];
    let on = |k: &str| features[k].as_str() == Some("true");
    Idmapping {
        shift: on("idmapped_mounts") || on("shiftfs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_json_is_parsed() {
        let v: Value = serde_json::from_str(
            r#"{"name":"p-a","status":"Running","config":{"image.description":"Debian"},
                "state":{"network":{"lo":{"addresses":[{"family":"inet","address":"127.0.0.1","scope":"local"}]},
                "eth0":{"addresses":[{"family":"inet6","address":"fe80::1","scope":"link"},{"family":"inet","address":"198.18.77.5","scope":"global"}]}}},
                "snapshots":[{"name":"initial-state","created_at":"2026-01-01T00:00:00Z"}]}"#,
        )
        .unwrap();
        let i = instance(&v);
        assert_eq!(i.ipv4.as_deref(), Some("198.18.77.5"));
        assert_eq!(i.snapshots[0].name, "initial-state");
        assert!(i.is_running());
        assert_eq!(i.image.as_deref(), Some("Debian"));
    }

    #[test]
    fn operations_on_an_instance_are_picked_by_their_resources() {
        let v = serde_json::json!({"running": [
            {"description": "Creating instance", "resources": {"instances": ["/1.0/instances/p-a"]}},
            {"description": "Stopping instance", "resources": {"instances": ["/1.0/instances/p-ab"]}},
            {"description": "Other project", "resources": {"instances": ["/1.0/instances/p-a?project=x"]}},
        ], "success": [
            {"description": "Done", "resources": {"instances": ["/1.0/instances/p-a"]}},
        ]});
        assert_eq!(
            operations_on(&v, "p-a"),
            ["Creating instance", "Other project"]
        );
        assert!(operations_on(&serde_json::json!({"running": null}), "p-a").is_empty());
    }

    #[test]
    fn missing_fields_read_as_empty() {
        let i = instance(&serde_json::json!({}));
        assert_eq!((i.name.as_str(), i.status.as_str()), ("", "Unknown"));
        assert!(i.ipv4.is_none() && i.snapshots.is_empty());
        let img = image(&serde_json::json!({"aliases": [{"name": "a"}, {}]}));
        assert_eq!(img.aliases, vec!["a".to_string()]);
    }
}
