//! The typed results commands see: instances, their state, snapshots,
//! images, the server, where calls go, and instances in other LXD projects.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::owner;

/// One instance as LXD reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// Full LXD name.
    pub name: String,
    /// `Running`, `Stopped`, ...
    pub status: String,
    /// First global IPv4 address, if any.
    pub ipv4: Option<String>,
    /// Its snapshots.
    pub snapshots: Vec<SnapshotInfo>,
    /// The image description LXD recorded at launch, if any.
    pub image: Option<String>,
    /// Its own disk devices that show a host path inside it (not the
    /// profile's, not the root disk).
    pub disks: Vec<Disk>,
    /// Its `raw.idmap` config, if set.
    pub raw_idmap: Option<String>,
    /// The id map it runs with (`volatile.idmap.current`, JSON), if LXD
    /// says: `raw.idmap` takes effect only at a start.
    #[serde(skip)]
    pub idmap_current: Option<String>,
    /// Its `user.*` config keys (ldm's own marks live there).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub user: BTreeMap<String, String>,
    /// Whose it is, by its marks: set by the client a command gets
    /// ([`crate::owned::Owned`]), [`owner::Owner::Unknown`] from a bare one.
    #[serde(skip)]
    pub owner: owner::Owner,
}

/// Who the server is: what ldm keys what it knows of a server on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    /// `lxd` or `incus`.
    pub family: String,
    /// Its name (`environment.server_name`).
    pub name: String,
    /// Its version.
    pub version: String,
    /// SHA-256 of its certificate: the same whichever way it is reached.
    pub fingerprint: String,
    /// The LXD project ldm's requests name.
    pub project: String,
    /// The client's remote it was reached by (`local`, ...).
    pub remote: String,
}

/// What LXD says of an instance's running state: the cheap question
/// (`/1.0/instances/NAME/state`), whose cost does not grow with the
/// instance's snapshots, asked while waiting for an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// `Running`, `Stopped`, ...
    pub status: String,
    /// First global IPv4 address not on `lo`, if any.
    pub ipv4: Option<String>,
    /// The process id of its init, when it runs on this machine's LXD
    /// (`None` for a remote, whose ids mean nothing here).
    pub pid: Option<u32>,
}

/// A disk device showing a host path inside an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disk {
    /// Device name.
    pub device: String,
    /// Absolute host path.
    pub source: String,
    /// Path inside the instance.
    pub path: String,
    /// Mounted read-only.
    pub readonly: bool,
    /// With `shift=true` (an idmapped mount).
    pub shift: bool,
}

impl Instance {
    /// True when LXD says it is running.
    pub fn is_running(&self) -> bool {
        self.status.eq_ignore_ascii_case("running")
    }
}

/// One snapshot as LXD reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    /// Snapshot name (without the instance prefix).
    pub name: String,
    /// Creation time as LXD reports it (RFC 3339).
    pub created_at: String,
}

/// Output of a command run inside an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code of the command (LXD passes it through).
    pub code: i32,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
}

/// One image in the local image store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    /// Its aliases (may be empty).
    pub aliases: Vec<String>,
    /// Full fingerprint.
    pub fingerprint: String,
    /// Size in bytes.
    pub size: u64,
    /// The `description` property.
    pub description: String,
}

/// An instance in an LXD project other than the one ldm's calls address,
/// or (with `server`) one this checkout made on another server than the
/// one the client now points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Away {
    /// Instance name.
    pub instance: String,
    /// Its LXD project.
    pub project: String,
    /// The client command that makes that project (or server) current
    /// (`lxc project switch [REMOTE:]PROJECT`, `lxc remote switch REMOTE`).
    pub switch: String,
    /// Set when the checkout's record says the instance was made on
    /// another server (nothing was asked of either): where it was made,
    /// and where the client points now, in words.
    pub server: Option<(String, String)>,
}

/// Where ldm's calls go, told from the client's configuration alone (no
/// request): the server as reached (its unix socket, or `https://HOST:PORT`)
/// and the LXD project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The server's identity: its socket or HTTPS address, whatever the
    /// remote is called.
    pub server: String,
    /// The remote and server in words, for messages.
    pub what: String,
    /// The client command that makes this remote the default again.
    pub switch: String,
    /// The LXD project the calls name.
    pub project: String,
}
