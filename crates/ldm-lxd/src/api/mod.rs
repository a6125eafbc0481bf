//! [`Api`]: the LXD backend that speaks LXD's REST API (`/1.0`), to LXD
//! and to Incus alike, over the local unix socket or HTTPS to a remote.
//!
//! - `config.rs`: which family, server, remote and LXD project, from the
//!   environment and the client program's own configuration; `connect.rs`:
//!   the endpoint a remote names;
//! - `transport.rs`, `tls.rs`: HTTP/1.1 (ureq) over the socket or TLS
//!   (rustls, the server's certificate pinned);
//! - `request.rs`: one request, its envelope, errors by status;
//! - `operations.rs`: background operations awaited by id, and "busy" as a
//!   wait for the other operations on the instance;
//! - `instances.rs`, `create.rs`, `snapshots.rs`, `devices.rs`,
//!   `images.rs`, `exec.rs`, `files.rs`: the calls; `progress.rs`:
//!   download, unpack and publish progress; `time.rs`: the server's
//!   timestamps; `types.rs`: the API objects;
//! - `backend.rs`: [`crate::Lxd`] for [`Api`], each method one of the calls.
//!
//! Every request names the LXD project (`?project=`), the remote's current
//! one in the client's configuration (`lxc project switch`), `default`
//! included. No decision reads the words of an answer: status codes, the
//! state of operations and what the server reports decide, and LXD's words
//! are kept for the message shown (tests/api_no_words.rs checks the
//! source). Interactive shells (`ldm ssh`) still run the client program.
//! DESIGN.md, "The LXD backend".

mod backend;
mod config;
mod connect;
mod create;
mod devices;
mod exec;
mod files;
mod images;
mod instances;
mod operations;
mod progress;
mod projects;
mod request;
mod snapshots;
mod time;
mod tls;
mod transport;
mod types;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub use config::{choose, env_var, Choice, Family, MACHINE};

use config::ClientConfig;
use connect::{config_file, connect, home, unreachable_config};
use transport::Endpoint;
use types::ServerObj;

use super::wait::OnWait;
use super::LxdError;

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
    /// `project` is the project file's `lxd_project:`, not the client's
    /// current project.
    pinned: bool,
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

impl Api {
    /// The client for `remote` (`None`: the client's default remote) of the
    /// chosen family, addressing LXD project `project` (`None`: the
    /// remote's current one in the client's configuration). A configuration that cannot be used makes a client
    /// whose every call fails with that error (commands report it at their
    /// first LXD call, as they would a server that is down).
    pub fn new(
        choice: &Choice,
        remote: Option<&str>,
        project: Option<&str>,
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
        Api::with_config(choice, config, problem, remote, project, patience, progress)
    }

    /// The client for `remote` of `config` (the client's configuration, or
    /// the defaults when it had `problem`).
    fn with_config(
        choice: &Choice,
        config: ClientConfig,
        problem: Option<(PathBuf, String)>,
        remote: Option<&str>,
        project: Option<&str>,
        patience: Patience,
        progress: ShowProgress,
    ) -> Api {
        let family = choice.family;
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
        let pinned = project.is_some();
        let project = match project {
            Some(p) => p.to_string(),
            None => config
                .remotes
                .get(&name)
                .map(|r| r.project.clone())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "default".into()),
        };
        Api {
            family,
            program: choice.program.clone(),
            remote: name,
            named_remote: remote.is_some(),
            project,
            pinned,
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

    /// A client of the server on `socket` (the test double), for unit
    /// tests: no configuration is read; `remote` (default `local`) and
    /// `local` both name that socket, in LXD project `default`.
    #[cfg(any(test, feature = "double"))]
    pub fn on_socket(socket: &std::path::Path, remote: Option<&str>, patience: Patience) -> Api {
        let at = config::Remote {
            addr: format!("unix://{}", socket.display()),
            protocol: "lxd".into(),
            public: false,
            project: String::new(),
        };
        let config = ClientConfig {
            dir: None,
            default_remote: "local".into(),
            remotes: [("local", &at), (remote.unwrap_or("local"), &at)]
                .into_iter()
                .map(|(n, r)| (n.to_string(), r.clone()))
                .collect(),
        };
        let choice = Choice {
            family: Family::Lxd,
            program: "/nonexistent/lxc".into(),
            note: None,
        };
        Api::with_config(
            &choice,
            config,
            None,
            remote,
            None,
            patience,
            ShowProgress::Off,
        )
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
