//! LXD's JSON shapes for the state's objects (as LXD 5.0.2 answers them on
//! this machine).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::model::{Device, Image, Instance, Snapshot, Status};
use crate::state::{Family, Project, State};
use crate::util;

const ARCH: &str = "x86_64";
const NEVER: &str = "0001-01-01T00:00:00Z";

/// The profiles' config then the instance's.
pub fn expanded_config(st: &State, project: &str, inst: &Instance) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let pp = st.profiles_project(project);
    for name in &inst.profiles {
        if let Some(p) = st.projects.get(&pp).and_then(|p| p.profiles.get(name)) {
            out.extend(p.config.clone());
        }
    }
    out.extend(inst.config.clone());
    out
}

/// The profiles' devices then the instance's.
pub fn expanded_devices(st: &State, project: &str, inst: &Instance) -> BTreeMap<String, Device> {
    let mut out = BTreeMap::new();
    let pp = st.profiles_project(project);
    for name in &inst.profiles {
        if let Some(p) = st.projects.get(&pp).and_then(|p| p.profiles.get(name)) {
            out.extend(p.devices.clone());
        }
    }
    out.extend(inst.devices.clone());
    out
}

/// The instance's ETag (over what a PUT can change, as LXD hashes).
pub fn etag(inst: &Instance) -> String {
    util::hex64(&(
        ARCH,
        &inst.config,
        &inst.devices,
        inst.ephemeral,
        &inst.profiles,
    ))
}

/// An instance; `full` adds `state`, `snapshots` and `backups`.
pub fn instance(st: &State, project: &str, name: &str, inst: &Instance, full: bool) -> Value {
    let (status, code) = inst.status.api();
    let mut v = json!({
        "architecture": ARCH,
        "config": inst.config,
        "devices": inst.devices,
        "ephemeral": inst.ephemeral,
        "profiles": inst.profiles,
        "stateful": false,
        "description": inst.description,
        "created_at": inst.created_at,
        "expanded_config": expanded_config(st, project, inst),
        "expanded_devices": expanded_devices(st, project, inst),
        "name": name,
        "status": status,
        "status_code": code,
        "last_used_at": if inst.is_running() { inst.created_at.as_str() } else { "1970-01-01T00:00:00Z" },
        "location": "none",
        "type": "container",
        "project": project,
    });
    if full {
        v["backups"] = Value::Null;
        v["state"] = state(name, inst);
        v["snapshots"] = if inst.snapshots.is_empty() {
            Value::Null
        } else {
            inst.snapshots
                .iter()
                .map(|s| snapshot(st, project, inst, s))
                .collect()
        };
    }
    v
}

/// An instance's running state (`/1.0/instances/NAME/state`).
pub fn state(name: &str, inst: &Instance) -> Value {
    let (status, code) = inst.status.api();
    let running = inst.status != Status::Stopped;
    let n = util::hash64(name) % 250;
    let network = if running {
        let mut eth0 = vec![
            json!({"family": "inet6", "address": format!("fe80::216:3eff:fe00:{n:x}"),
                                   "netmask": "64", "scope": "link"}),
        ];
        if let Some(ip) = &inst.ipv4 {
            eth0.insert(
                0,
                json!({"family": "inet", "address": ip, "netmask": "24", "scope": "global"}),
            );
        }
        json!({
            "eth0": {"addresses": eth0, "counters": counters(), "hwaddr": format!("00:16:3e:00:00:{n:02x}"),
                     "host_name": format!("veth{:08x}", util::hash64(name) as u32), "mtu": 1500,
                     "state": "up", "type": "broadcast"},
            "lo": {"addresses": [{"family": "inet", "address": "127.0.0.1", "netmask": "8", "scope": "local"},
                                 {"family": "inet6", "address": "::1", "netmask": "128", "scope": "local"}],
                   "counters": counters(), "hwaddr": "", "host_name": "", "mtu": 65536,
                   "state": "up", "type": "loopback"},
        })
    } else {
        Value::Null
    };
    json!({
        "status": status,
        "status_code": code,
        "disk": {},
        "memory": {"usage": if running { 602_112 } else { 0 }, "usage_peak": 0, "swap_usage": 0, "swap_usage_peak": 0},
        "network": network,
        "pid": if running { inst.pid } else { 0 },
        "processes": if running { 2 } else { 0 },
        "cpu": {"usage": 0},
    })
}

fn counters() -> Value {
    json!({"bytes_received": 0, "bytes_sent": 0, "packets_received": 0, "packets_sent": 0,
           "errors_received": 0, "errors_sent": 0, "packets_dropped_outbound": 0,
           "packets_dropped_inbound": 0})
}

/// A snapshot.
pub fn snapshot(st: &State, project: &str, inst: &Instance, s: &Snapshot) -> Value {
    // The snapshot's own config and devices under the instance's profiles
    // (not a clone of the instance: that copies every snapshot, for each).
    let as_inst = Instance {
        config: s.config.clone(),
        devices: s.devices.clone(),
        profiles: inst.profiles.clone(),
        ..Instance::stopped()
    };
    json!({
        "expires_at": NEVER,
        "architecture": ARCH,
        "config": s.config,
        "created_at": s.created_at,
        "devices": s.devices,
        "ephemeral": false,
        "expanded_config": expanded_config(st, project, &as_inst),
        "expanded_devices": expanded_devices(st, project, &as_inst),
        "last_used_at": NEVER,
        "name": s.name,
        "profiles": inst.profiles,
        "stateful": false,
        "size": -1,
    })
}

/// An image.
pub fn image(img: &Image) -> Value {
    json!({
        "auto_update": false,
        "properties": img.properties,
        "public": false,
        "expires_at": "1970-01-01T00:00:00Z",
        "profiles": ["default"],
        "aliases": img.aliases.iter().map(|a| json!({"name": a, "description": ""})).collect::<Vec<_>>(),
        "architecture": ARCH,
        "cached": img.cached,
        "filename": format!("{}.tar.gz", &img.fingerprint[..12.min(img.fingerprint.len())]),
        "fingerprint": img.fingerprint,
        "size": img.size,
        "type": "container",
        "created_at": img.created_at,
        "last_used_at": NEVER,
        "uploaded_at": img.created_at,
    })
}

/// A project, with what uses it.
pub fn project(name: &str, p: &Project) -> Value {
    let q = if name == "default" {
        String::new()
    } else {
        format!("?project={}", util::percent_encode(name))
    };
    let mut used: Vec<String> = p
        .profiles
        .keys()
        .map(|n| format!("/1.0/profiles/{n}{q}"))
        .collect();
    used.extend(
        p.images
            .iter()
            .map(|i| format!("/1.0/images/{}{q}", i.fingerprint)),
    );
    used.extend(p.instances.keys().map(|n| format!("/1.0/instances/{n}{q}")));
    json!({"config": p.config, "description": p.description, "name": name, "used_by": used})
}

/// `GET /1.0`.
pub fn server(st: &State) -> Value {
    let s = &st.server;
    let idmap = if s.idmapped_mounts_reported {
        "true"
    } else {
        "false"
    };
    let (extensions, server, driver) = match s.family {
        Family::Lxd => (include_str!("data/lxd-5.0.2-extensions.txt"), "lxd", "lxc"),
        Family::Incus => (
            include_str!("data/incus-6.0.4-extensions.txt"),
            "incus",
            "lxc",
        ),
    };
    json!({
        "config": {},
        "api_extensions": extensions.lines().filter(|l| !l.is_empty()).collect::<Vec<_>>(),
        "api_status": "stable",
        "api_version": "1.0",
        "auth": "trusted",
        "public": false,
        "auth_methods": ["tls"],
        "environment": {
            "addresses": [],
            "architectures": [ARCH, "i686"],
            "certificate": "-----BEGIN CERTIFICATE-----\nlxd-double\n-----END CERTIFICATE-----\n",
            "certificate_fingerprint": s.certificate_fingerprint,
            "driver": driver,
            "driver_version": "5.0.2",
            "firewall": "nftables",
            "kernel": "Linux",
            "kernel_architecture": ARCH,
            "kernel_features": {"idmapped_mounts": idmap, "netnsid_getifaddrs": "true",
                                "seccomp_listener": "true", "shiftfs": "false"},
            "kernel_version": "6.1.0",
            "lxc_features": {"cgroup2": "true", "idmapped_mounts_v2": idmap, "pidfd": "true"},
            "os_name": "Debian GNU/Linux",
            "os_version": "12",
            "project": "default",
            "server": server,
            "server_clustered": false,
            "server_name": s.server_name,
            "server_pid": std::process::id(),
            "server_version": s.version,
            "storage": "dir",
            "storage_version": "1",
        },
    })
}
