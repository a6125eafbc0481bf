//! [`Api`]: the LXD backend that speaks LXD's REST API (`/1.0`), to LXD
//! and to Incus alike, over the local unix socket or HTTPS to a remote.
//!
//! - `config.rs`: which family, server, remote and LXD project, from the
//!   environment and the client program's own configuration;
//! - `transport.rs`, `tls.rs`: HTTP/1.1 (ureq) over the socket or TLS
//!   (rustls, the server's certificate pinned);
//! - `request.rs`: one request, its envelope, errors by status;
//! - `operations.rs`: background operations awaited by id, and "busy" as a
//!   wait for the other operations on the instance;
//! - `instances.rs`, `snapshots.rs`, `devices.rs`, `images.rs`, `exec.rs`,
//!   `files.rs`: the calls; `progress.rs`: download, unpack and publish
//!   progress; `time.rs`: the server's timestamps; `types.rs`: the API
//!   objects.
//!
//! Every request names the LXD project (`?project=`), the remote's current
//! one in the client's configuration (`lxc project switch`), `default`
//! included. No decision reads the words of an answer: status codes, the
//! state of operations and what the server reports decide, and LXD's words
//! are kept for the message shown (tests/api_no_words.rs checks the
//! source). Interactive shells (`ldm ssh`) still run the client program.
//! DESIGN.md, "The LXD backend".

mod config;
mod devices;
mod exec;
mod files;
mod images;
mod instances;
mod operations;
mod progress;
mod request;
mod snapshots;
mod time;
mod tls;
mod transport;
mod types;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub use config::{choose, env_var, Choice, Family, MACHINE};

use config::{ClientConfig, Remote};
use transport::Endpoint;
use types::ServerObj;

use super::wait::OnWait;
use super::{
    Away, Disk, ExecOutput, Idmapping, Image, Instance, Lxd, LxdError, Server, SnapshotInfo, State,
};

/// How long calls that act on an instance wait for LXD's other operations
/// on it, and who to tell when they start waiting.
pub struct Patience {
    /// The command's `--timeout`.
    pub limit: Duration,
    /// Told once per instance ("waiting for LXD to finish ...").
    pub on_wait: OnWait,
    told: Mutex<BTreeSet<String>>,
}

impl Patience {
    /// Waits up to `limit`, telling `on_wait`.
    pub fn new(limit: Duration, on_wait: OnWait) -> Patience {
        Patience {
            limit,
            on_wait,
            told: Mutex::new(BTreeSet::new()),
        }
    }
}

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShowProgress {
    /// Nowhere (`-q`, or stderr is not a terminal).
    Off,
    /// One line rewritten in place on the terminal.
    Terminal,
    /// A line now and then (`--progress` without a terminal).
    Lines,
}

/// How ldm reaches one server.
struct Conn {
    endpoint: Endpoint,
    agent: ureq::Agent,
}

/// The LXD client: one server, one LXD project, one remote.
pub struct Api {
    family: Family,
    program: OsString,
    /// The remote's name (`local`, or the project's `remote:`).
    remote: String,
    /// Named only when the project names it (`remote:`): the client's
    /// default remote is implied for commands ldm hands to the client.
    named_remote: bool,
    /// The LXD project every request names.
    project: String,
    /// Its server is on another machine (not the unix socket).
    far: bool,
    conn: Result<Conn, (PathBuf, String)>,
    config: Arc<ClientConfig>,
    profile: Option<String>,
    progress: ShowProgress,
    patience: Patience,
    hello: OnceLock<ServerObj>,
    /// The status of each instance as last read or left by this client, so
    /// that `delete` knows whether to stop first without asking.
    known: Mutex<BTreeMap<String, bool>>,
}

/// The home folder: `HOME`, else the user database's.
fn home() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(h));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    crate::users::by_uid(uid).map(|u| u.home)
}

impl Api {
    /// The client for `remote` (`None`: the client's default remote) of the
    /// chosen family. A configuration that cannot be used makes a client
    /// whose every call fails with that error (commands report it at their
    /// first LXD call, as they would a server that is down).
    pub fn new(
        choice: &Choice,
        remote: Option<&str>,
        patience: Patience,
        progress: ShowProgress,
    ) -> Api {
        let family = choice.family;
        let dir = family.config_dir(home().as_deref());
        let (config, problem) = match ClientConfig::read(family, dir) {
            Ok(c) => (c, None),
            Err(p) => (
                ClientConfig::read(family, None).unwrap_or_else(|_| unreachable_config(family)),
                Some((p.path, p.why)),
            ),
        };
        let name = remote.unwrap_or(&config.default_remote).to_string();
        let entry = config.remotes.get(&name).cloned();
        let conn = match (problem, entry) {
            (Some(p), _) => Err(p),
            (None, None) => Err((
                config_file(&config),
                format!(
                    "the {} client has no remote {name:?}; add it with `{} remote add {name} ADDRESS`, or see `{} remote list`",
                    family.name(),
                    family.program(),
                    family.program()
                ),
            )),
            (None, Some(r)) => connect(family, &config, &name, &r),
        };
        let far = matches!(
            conn,
            Ok(Conn {
                endpoint: Endpoint::Https { .. },
                ..
            })
        );
        let project = config
            .remotes
            .get(&name)
            .map(|r| r.project.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "default".into());
        Api {
            family,
            program: choice.program.clone(),
            remote: name,
            named_remote: remote.is_some(),
            project,
            far,
            conn,
            config: Arc::new(config),
            profile: std::env::var("LDM_PROFILE").ok().filter(|p| !p.is_empty()),
            progress,
            patience,
            hello: OnceLock::new(),
            known: Mutex::new(BTreeMap::new()),
        }
    }

    /// The connection, or why there is none.
    fn conn(&self) -> Result<&Conn, LxdError> {
        self.conn.as_ref().map_err(|(path, why)| LxdError::Config {
            path: path.clone(),
            why: why.clone(),
        })
    }

    /// `GET /1.0`, once per client.
    fn hello(&self) -> Result<&ServerObj, LxdError> {
        if let Some(h) = self.hello.get() {
            return Ok(h);
        }
        let h: ServerObj = self.get(&self.scoped("/1.0"))?;
        Ok(self.hello.get_or_init(|| h))
    }

    /// Notes that instance `name` is running (or not) now.
    fn note_running(&self, name: &str, running: Option<bool>) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        match running {
            Some(r) => known.insert(name.to_string(), r),
            None => known.remove(name),
        };
    }

    /// What this client last saw of `name`: running or not, if it looked.
    fn seen_running(&self, name: &str) -> Option<bool> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.get(name).copied()
    }

    /// `[REMOTE:]name` for the client program.
    fn at(&self, name: &str) -> String {
        if self.named_remote {
            format!("{}:{name}", self.remote)
        } else {
            name.to_string()
        }
    }
}

/// A config that names only the local socket (when even the defaults fail).
fn unreachable_config(family: Family) -> ClientConfig {
    ClientConfig {
        dir: None,
        default_remote: "local".into(),
        remotes: BTreeMap::from([(
            "local".to_string(),
            Remote {
                addr: "unix://".into(),
                protocol: family.program().into(),
                public: false,
                project: String::new(),
            },
        )]),
    }
}

/// The client's `config.yml` (for messages).
fn config_file(config: &ClientConfig) -> PathBuf {
    config
        .dir
        .as_ref()
        .map(|d| d.join("config.yml"))
        .unwrap_or_else(|| PathBuf::from("config.yml"))
}

/// The connection to remote `name`.
fn connect(
    family: Family,
    config: &ClientConfig,
    name: &str,
    r: &Remote,
) -> Result<Conn, (PathBuf, String)> {
    let endpoint = endpoint(family, config, name, r)?;
    Ok(Conn {
        agent: transport::agent(&endpoint),
        endpoint,
    })
}

fn endpoint(
    family: Family,
    config: &ClientConfig,
    name: &str,
    r: &Remote,
) -> Result<Endpoint, (PathBuf, String)> {
    let file = config_file(config);
    if let Some(rest) = r.addr.strip_prefix("unix:") {
        let path = rest.trim_start_matches("//");
        return Ok(Endpoint::Unix(if path.is_empty() {
            family.socket()
        } else {
            PathBuf::from(path)
        }));
    }
    if r.protocol == "simplestreams" {
        return Err((
            file,
            format!(
                "the remote {name} is an image server ({}), not an {} server; name a server remote",
                r.addr,
                family.name()
            ),
        ));
    }
    let Some(hostport) = r.addr.strip_prefix("https://") else {
        return Err((
            file,
            format!(
                "the remote {name} has the address {:?}, which is neither unix:// nor https://",
                r.addr
            ),
        ));
    };
    let hostport = hostport.trim_end_matches('/');
    let (host, port) = split_host_port(hostport).ok_or_else(|| {
        (
            file.clone(),
            format!(
                "the remote {name} has an address ldm cannot read: {:?}",
                r.addr
            ),
        )
    })?;
    let (Some((crt, key)), Some(server)) = (config.client_cert(), config.server_cert(name)) else {
        return Err((file, "no configuration folder (HOME is not set)".into()));
    };
    let tls = tls::Tls::load(&crt, &key, &server).map_err(|p| {
        let next = if p.path == server {
            format!(
                "the {} client keeps no certificate for the remote {name}; add it with `{} remote add {name} {}` and accept its fingerprint",
                family.name(),
                family.program(),
                r.addr
            )
        } else {
            format!("make a client certificate with `{} remote add` (or `{} info`)", family.program(), family.program())
        };
        (p.path, format!("{}; {next}", p.why))
    })?;
    Ok(Endpoint::Https {
        host,
        port,
        tls: Arc::new(tls),
    })
}

/// `host:port`, `host` (port 8443), `[v6]:port` or `[v6]`.
fn split_host_port(s: &str) -> Option<(String, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 8443,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), p.parse().ok()?)),
        Some(_) => None,
        None if !s.is_empty() => Some((s.to_string(), 8443)),
        None => None,
    }
}

impl Lxd for Api {
    fn list(&self) -> Result<Vec<Instance>, LxdError> {
        self.list_all(2)
    }

    fn statuses(&self) -> Result<Vec<Instance>, LxdError> {
        self.list_all(1)
    }

    fn instance(&self, name: &str) -> Result<Option<Instance>, LxdError> {
        self.one(name)
    }

    fn state(&self, name: &str) -> Result<Option<State>, LxdError> {
        self.state_of(name)
    }

    fn launch(&self, image: &str, name: &str, config: &[(&str, &str)]) -> Result<(), LxdError> {
        self.launch_from(image, name, config)
    }

    fn start(&self, name: &str) -> Result<(), LxdError> {
        self.change_state(name, "start")
    }

    fn stop(&self, name: &str) -> Result<(), LxdError> {
        self.change_state(name, "stop")
    }

    fn restart(&self, name: &str) -> Result<(), LxdError> {
        self.change_state(name, "restart")
    }

    fn delete(&self, name: &str) -> Result<(), LxdError> {
        self.delete_instance(name)
    }

    fn exec(&self, name: &str, argv: &[&str], stdin: &[u8]) -> Result<ExecOutput, LxdError> {
        self.exec_captured(name, argv, stdin)
    }

    fn exec_lines(
        &self,
        name: &str,
        argv: &[&str],
        stdin: &[u8],
        line: &mut dyn FnMut(&str),
    ) -> Result<i32, LxdError> {
        self.exec_streamed(name, argv, stdin, line)
    }

    fn exec_attached(&self, name: &str, argv: &[&str]) -> Result<i32, LxdError> {
        self.shell_attached(name, argv)
    }

    fn exec_replace(&self, name: &str, argv: &[&str]) -> LxdError {
        self.shell_replace(name, argv)
    }

    fn snapshots(&self, name: &str) -> Result<Vec<SnapshotInfo>, LxdError> {
        self.snapshot_list(name)
    }

    fn snapshot(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        self.take_snapshot(name, snap)
    }

    fn restore(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        self.restore_snapshot(name, snap)
    }

    fn delete_snapshot(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        self.remove_snapshot(name, snap)
    }

    fn copy(&self, source: &str, snap: Option<&str>, target: &str) -> Result<(), LxdError> {
        self.copy_instance(source, snap, target)
    }

    fn push(&self, name: &str, src: &Path, path: &str, recursive: bool) -> Result<(), LxdError> {
        self.push_files(name, src, path, recursive)
    }

    fn pull(&self, name: &str, path: &str, dest: &Path, recursive: bool) -> Result<(), LxdError> {
        self.pull_files(name, path, dest, recursive)
    }

    fn images(&self) -> Result<Vec<Image>, LxdError> {
        self.image_list()
    }

    fn publish(&self, name: &str, snap: &str, alias: &str, progress: bool) -> Result<(), LxdError> {
        self.publish_snapshot(name, snap, alias, progress)
    }

    fn delete_image(&self, alias: &str) -> Result<(), LxdError> {
        self.delete_image_alias(alias)
    }

    fn rename_alias(&self, old: &str, new: &str) -> Result<(), LxdError> {
        self.rename_image_alias(old, new)
    }

    fn operations(&self, name: &str) -> Result<Vec<String>, LxdError> {
        Ok(self
            .running_on(name)?
            .into_iter()
            .map(|op| op.description)
            .collect())
    }

    fn elsewhere(&self) -> Result<Vec<Away>, LxdError> {
        self.in_other_projects()
    }

    fn remote_server(&self) -> Result<Option<String>, LxdError> {
        self.conn()?;
        Ok(self.far.then(|| self.remote.clone()))
    }

    fn idmapping(&self) -> Result<Idmapping, LxdError> {
        let env = &self.hello()?.environment;
        let on = |m: &BTreeMap<String, String>, k: &str| m.get(k).is_some_and(|v| v == "true");
        // As LXD's container driver decides: idmapped mounts need both the
        // kernel's and liblxc's; shiftfs is the older way.
        Ok(Idmapping {
            shift: (on(&env.kernel_features, "idmapped_mounts")
                && on(&env.lxc_features, "idmapped_mounts_v2"))
                || on(&env.kernel_features, "shiftfs"),
        })
    }

    fn identity(&self) -> Result<Server, LxdError> {
        let h = self.hello()?;
        Ok(Server {
            family: if h.environment.server == "incus" {
                "incus"
            } else {
                "lxd"
            }
            .into(),
            name: h.environment.server_name.clone(),
            version: h.environment.server_version.clone(),
            fingerprint: h.environment.certificate_fingerprint.clone(),
            project: self.project.clone(),
            remote: self.remote.clone(),
        })
    }

    fn add_disk(&self, name: &str, disk: &Disk) -> Result<(), LxdError> {
        self.add_disk_device(name, disk)
    }

    fn remove_device(&self, name: &str, device: &str) -> Result<(), LxdError> {
        self.remove_instance_device(name, device)
    }

    fn set_config(&self, name: &str, key: &str, value: &str) -> Result<(), LxdError> {
        self.set_instance_config(name, key, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_addresses_are_split_into_host_and_port() {
        let hp = |s: &str| split_host_port(s);
        assert_eq!(hp("198.51.100.7:8443"), Some(("198.51.100.7".into(), 8443)));
        assert_eq!(hp("lxd.example"), Some(("lxd.example".into(), 8443)));
        assert_eq!(hp("[2001:db8::1]:9443"), Some(("2001:db8::1".into(), 9443)));
        assert_eq!(hp("[2001:db8::1]"), Some(("2001:db8::1".into(), 8443)));
        assert_eq!(hp("2001:db8::1"), None);
        assert_eq!(hp("h:x"), None);
    }
}
