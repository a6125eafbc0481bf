//! LXD's API objects, the subset ldm reads and sends, as serde types
//! (/work/notes/api-catalogue.md; the shapes are LXD 5.0's and Incus 6.0's
//! alike). Every field has a default: a server that leaves one out, or a
//! newer one that adds some, still parses; what ldm does not know it keeps
//! out of its decisions.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// `null` read as the default: LXD writes `null` for empty maps and lists
/// (an operation's `resources`, a list of no operations).
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Every answer of LXD: sync, async (an operation was created) or error.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Envelope {
    /// `sync`, `async` or `error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The error's HTTP status (`error` answers).
    pub error_code: u16,
    /// LXD's own words for the error (shown, never parsed).
    pub error: String,
    /// `/1.0/operations/ID` for `async` answers.
    pub operation: String,
    /// The object asked for, or the operation.
    pub metadata: Value,
}

/// A background operation (`/1.0/operations/ID`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Operation {
    /// Its id.
    pub id: String,
    /// `task`, `websocket` or `token`.
    pub class: String,
    /// "Creating instance", ...: shown while ldm waits for it.
    pub description: String,
    /// RFC 3339, the server's clock.
    pub created_at: String,
    /// 103 running, 200 success, 400 failure, 401 cancelled (and the
    /// other "pending" codes below 200).
    pub status_code: u16,
    /// The objects it works on (`instances: ["/1.0/instances/NAME"]`).
    #[serde(deserialize_with = "null_as_default")]
    pub resources: BTreeMap<String, Vec<String>>,
    /// What it reports: progress, exec's `fds` and `return`, a publish's
    /// `fingerprint`.
    pub metadata: Value,
    /// LXD's words for its failure.
    pub err: String,
}

impl Operation {
    /// Still running (or pending): below LXD's 200 "Success".
    pub fn running(&self) -> bool {
        self.status_code < 200
    }

    /// Ended well.
    pub fn succeeded(&self) -> bool {
        self.status_code == 200
    }
}

/// `GET /1.0/operations?recursion=1`: the operations by status.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Operations {
    /// Running ones.
    #[serde(deserialize_with = "null_as_default")]
    pub running: Vec<Operation>,
}

/// One instance (`/1.0/instances/NAME?recursion=1`, or an item of
/// `/1.0/instances?recursion=1|2`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InstanceObj {
    /// Its name.
    pub name: String,
    /// `Running`, `Stopped`, ...
    pub status: String,
    /// Its LXD project (servers with the `projects` extension).
    pub project: String,
    /// RFC 3339, the server's clock.
    pub created_at: String,
    /// Its own config keys (`user.*`, `raw.idmap`, `image.description`).
    #[serde(deserialize_with = "null_as_default")]
    pub config: BTreeMap<String, String>,
    /// Its own devices (not its profiles').
    #[serde(deserialize_with = "null_as_default")]
    pub devices: BTreeMap<String, BTreeMap<String, String>>,
    /// Running state (`recursion=2` lists, and one instance at `recursion=1`).
    pub state: Option<StateObj>,
    /// Its snapshots (`recursion=1` of one instance, `recursion=2` lists).
    pub snapshots: Option<Vec<SnapshotObj>>,
}

/// `/1.0/instances/NAME/state`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StateObj {
    /// `Running`, `Stopped`, ...
    pub status: String,
    /// Its init's pid on the server's machine (0 when stopped).
    pub pid: i64,
    /// Its network interfaces by name.
    pub network: Option<BTreeMap<String, NetObj>>,
}

/// One network interface of an instance.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NetObj {
    /// Its addresses.
    #[serde(deserialize_with = "null_as_default")]
    pub addresses: Vec<AddressObj>,
}

/// One address of an interface.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AddressObj {
    /// `inet` or `inet6`.
    pub family: String,
    /// The address.
    pub address: String,
    /// `global`, `link`, `local`.
    pub scope: String,
}

/// One snapshot.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SnapshotObj {
    /// `SNAP`, or `INSTANCE/SNAP` on some servers.
    pub name: String,
    /// RFC 3339, the server's clock.
    pub created_at: String,
}

/// One image (`/1.0/images?recursion=1` items).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ImageObj {
    /// Its aliases.
    #[serde(deserialize_with = "null_as_default")]
    pub aliases: Vec<AliasObj>,
    /// Full fingerprint.
    pub fingerprint: String,
    /// Size in bytes.
    pub size: u64,
    /// `description` and others.
    #[serde(deserialize_with = "null_as_default")]
    pub properties: BTreeMap<String, String>,
}

/// An image alias.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AliasObj {
    /// The alias.
    pub name: String,
    /// The fingerprint it points to (`/1.0/images/aliases/NAME`).
    pub target: String,
}

/// `GET /1.0`: who the server is and what it can do.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServerObj {
    /// `trusted` or `untrusted`.
    pub auth: String,
    /// The API additions it knows.
    #[serde(deserialize_with = "null_as_default")]
    pub api_extensions: Vec<String>,
    /// About its machine and itself.
    pub environment: EnvironmentObj,
}

/// `GET /1.0`'s `environment`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EnvironmentObj {
    /// `lxd` or `incus` (absent on older LXD: `lxd`).
    pub server: String,
    /// Its version.
    pub server_version: String,
    /// Its name (the host name, or the cluster member's).
    pub server_name: String,
    /// SHA-256 of its certificate: who it is, whichever way ldm reached it.
    pub certificate_fingerprint: String,
    /// `"true"`/`"false"` by feature (`idmapped_mounts`, `shiftfs`).
    #[serde(deserialize_with = "null_as_default")]
    pub kernel_features: BTreeMap<String, String>,
    /// liblxc's (`idmapped_mounts_v2`).
    #[serde(deserialize_with = "null_as_default")]
    pub lxc_features: BTreeMap<String, String>,
}

/// The body of `POST /1.0/instances`.
#[derive(Debug, Serialize)]
pub struct InstancesPost<'a> {
    /// New instance's name.
    pub name: &'a str,
    /// Always `container`.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// Where it comes from.
    pub source: Source,
    /// Config keys set at creation.
    pub config: BTreeMap<String, String>,
    /// Profiles (`None`: the server's default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profiles: Option<Vec<String>>,
}

/// Where a new instance comes from: an image (local or another server's)
/// or a copy of an instance or snapshot.
#[derive(Debug, Default, Serialize)]
pub struct Source {
    /// `image` or `copy`.
    #[serde(rename = "type")]
    pub kind: String,
    /// An image alias.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The image server's address, for an image from another server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// `simplestreams` or `lxd`, for an image from another server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// That server's certificate (PEM), when the client pinned one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// `pull` for an image from another server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `INSTANCE` or `INSTANCE/SNAP`, for a copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Leave the source's snapshots behind (a copy of an instance).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_only: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_unknown_fields_parse() {
        let op: Operation =
            serde_json::from_str(r#"{"id":"x","status_code":103,"new":1}"#).unwrap();
        assert!(op.running() && !op.succeeded());
        // As LXD 5.0.2 announces a publish: `resources` null.
        let op: Operation =
            serde_json::from_str(r#"{"id":"x","resources":null,"metadata":null}"#).unwrap();
        assert!(op.resources.is_empty());
        let ops: Operations = serde_json::from_str(r#"{"running":null}"#).unwrap();
        assert!(ops.running.is_empty());
        let i: InstanceObj =
            serde_json::from_str(r#"{"name":"a","config":{"user.x":"1"}}"#).unwrap();
        assert_eq!(i.config["user.x"], "1");
        assert!(i.state.is_none());
        let s: ServerObj = serde_json::from_str(r#"{"environment":{}}"#).unwrap();
        assert!(s.environment.kernel_features.is_empty());
    }
}
