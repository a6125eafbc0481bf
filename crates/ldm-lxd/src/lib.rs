//! The LXD backend: every operation ldm asks of LXD, as one trait.
//!
//! [`Lxd`] is implemented by [`api::Api`], which speaks LXD's REST API
//! (the client program is run only for an interactive shell, `ldm ssh`).
//! Unit tests (here and, with feature `double`, the CLI's) speak to the
//! API TEST DOUBLE through the real backend (`double.rs`). Commands see
//! only the trait and the typed results below, and this crate knows nothing
//! of the project store: its Cargo.toml does not name it.
//! Names passed in are full LXD instance names (`project-container`).
//! DESIGN.md, "The LXD backend".

pub mod api;
#[cfg(any(test, feature = "double"))]
pub mod double;
mod ipv4;
mod lines;
pub mod owned;
pub mod owner;
mod pins;
mod stopping;
mod wait;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

pub use ipv4::wait_ipv4;
pub use lines::MAX_LINE;
pub use wait::OnWait;

/// Asked about every 100 ms while [`Lxd::exec_lines`] runs: a signal to
/// send the command now (SIGINT for Ctrl+C, SIGTERM at a timeout), or
/// `None` to let it run. Once it named one, it is not asked again.
pub type Stop<'a> = &'a dyn Fn() -> Option<i32>;

/// How long a command told to stop has before the next, harder signal:
/// the one `Stop` named, then SIGTERM (a second signal: setup steps' wrapper
/// then kills the step's whole process group), then SIGKILL; after that
/// ldm stops waiting for it.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

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
    /// ([`owned::Owned`]), [`owner::Owner::Unknown`] from a bare one.
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

/// A failed LXD operation. The typed variants are what commands decide
/// on; each is decided from status codes, operation states and what the
/// server reports, never from the words of a message (LXD's words are kept
/// for the message shown).
#[derive(Debug, Error)]
pub enum LxdError {
    /// The server could not be reached (no socket, refused, not allowed).
    #[error("cannot reach {server}: {source}; {next}")]
    Unreachable {
        /// The server (its socket or address) and the family.
        server: String,
        /// Why.
        source: std::io::Error,
        /// What to do about it.
        next: String,
    },
    /// The server answered a request with an error: its HTTP status and
    /// its own words.
    #[error("{server} refused {request}: {message} (HTTP {status})")]
    Refused {
        /// `LXD` or `Incus`.
        server: &'static str,
        /// Method and path.
        request: String,
        /// The HTTP status (LXD's `error_code`).
        status: u16,
        /// LXD's words.
        message: String,
    },
    /// A background operation failed.
    #[error("{server} could not finish {request} ({description}): {message}")]
    OperationFailed {
        /// `LXD` or `Incus`.
        server: &'static str,
        /// Method and path that started it.
        request: String,
        /// The operation's description ("Creating instance").
        description: String,
        /// LXD's words.
        message: String,
    },
    /// The server's answer does not follow the API.
    #[error("unexpected answer from {server} to {request}: {why}")]
    Protocol {
        /// `LXD` or `Incus`.
        server: &'static str,
        /// Method and path.
        request: String,
        /// What was wrong.
        why: String,
    },
    /// The client's configuration (config.yml, certificates) cannot be used.
    #[error("{}: {why}", path.display())]
    Config {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong, and what to do.
        why: String,
    },
    /// A host file or folder of a copy (`ldm mv`) could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    HostFile {
        /// What ldm was doing, as a verb phrase.
        action: String,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The instance or snapshot does not exist.
    #[error("LXD has no {what}")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// A start LXD refused while another LXD project of the server has an
    /// instance of the same name: on a managed network with DNS, LXD starts
    /// one instance of a name (its words, kept in `source`, say when that
    /// is why). Told from the failed start and the server's instances,
    /// never from the words.
    #[error("{source}; LXD project {others} has an instance named {name} too, and on one managed network with DNS LXD runs only one instance of a name: give this LXD project's containers another network (a profile whose eth0 is on another bridge, used with LDM_PROFILE=PROFILE), or turn the network's DNS off (`{program} network set NETWORK dns.mode none`), then `ldm up`")]
    SameNameElsewhere {
        /// The instance.
        name: String,
        /// The other LXD projects that have one of that name, comma separated.
        others: String,
        /// The client program (`lxc`, `incus`).
        program: String,
        /// The failed start.
        source: Box<LxdError>,
    },
    /// The instance or snapshot exists already.
    #[error("LXD already has {what}")]
    AlreadyExists {
        /// What was created.
        what: String,
    },
    /// LXD is still running another operation on the instance (e.g. the
    /// server-side create of a client that was killed). The backend waits
    /// for LXD's operations on it (`api/operations.rs`); this reaches a
    /// command only when the wait timed out.
    #[error("LXD is still running another operation on {what}{}; wait for it to finish, or run the command again with a longer --timeout", waited_for(*waited))]
    Busy {
        /// The instance.
        what: String,
        /// How long ldm waited for LXD before giving up.
        waited: Duration,
    },
    /// A command to run inside an instance that is not running.
    #[error("{what} is not running")]
    NotRunning {
        /// The instance.
        what: String,
    },
    /// LXD failed to start a command inside the instance, as it does for a
    /// moment right after the instance boots; retrying is the cure.
    #[error("`{cmd}` failed: LXD could not start the command yet: {}", stderr.trim())]
    NotReady {
        /// The command line.
        cmd: String,
        /// LXD's account of the failure.
        stderr: String,
    },
    /// A command told to stop (a signal, then SIGKILL) had not ended
    /// [`STOP_GRACE`] after each.
    #[error("`{cmd}` in {what} did not end after SIGKILL; it may still be running there (see `ps` inside it)")]
    Unstoppable {
        /// The instance.
        what: String,
        /// The command line.
        cmd: String,
    },
    /// The instance is another checkout's (its owner marks say so): ldm
    /// does not act on it.
    #[error("LXD's {name} belongs to {whose}; {next}")]
    NotOurs {
        /// The instance.
        name: String,
        /// Whose it is (its folder and machine).
        whose: String,
        /// What to do.
        next: String,
    },
    /// Start of a running or stop of a stopped instance.
    #[error("{what} is already in that state")]
    AlreadyInState {
        /// The instance.
        what: String,
    },
}

fn waited_for(waited: Duration) -> String {
    if waited.is_zero() {
        String::new()
    } else {
        format!(" after {} s", waited.as_secs_f64().round())
    }
}

/// Every LXD operation ldm uses. `Send + Sync` so that a command may share
/// its client with threads (`ldm proxy` looks addresses up from its
/// connection threads). Tests, unit tests included, run the real backend
/// against the API test double (`crates/lxd-double`).
pub trait Lxd: Send + Sync {
    /// All instances (one client call, however many there are).
    fn list(&self) -> Result<Vec<Instance>, LxdError>;
    /// All instances without their running state (`ipv4` is `None`) or
    /// snapshots (empty): one call that, unlike [`Lxd::list`], does not
    /// ask every running container on the server for its addresses.
    fn statuses(&self) -> Result<Vec<Instance>, LxdError>;
    /// One instance, or `None`.
    fn instance(&self, name: &str) -> Result<Option<Instance>, LxdError>;
    /// One instance's `user.*` keys (ldm's owner marks), or `None` if LXD
    /// has no such instance: one request, without waiting for operations
    /// on it (the marks are set when it is made).
    fn user_keys(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, LxdError> {
        Ok(self.instance(name)?.map(|i| i.user))
    }
    /// One instance's running state, or `None` if LXD has no such instance.
    fn state(&self, name: &str) -> Result<Option<State>, LxdError>;
    /// Creates and starts `name` from `image` with `config` keys set at launch.
    fn launch(&self, image: &str, name: &str, config: &[(&str, &str)]) -> Result<(), LxdError>;
    /// Creates `name` from `image` with `config` keys, stopped: what
    /// [`Lxd::launch`] does before its start.
    fn create(&self, image: &str, name: &str, config: &[(&str, &str)]) -> Result<(), LxdError>;
    /// The bytes of the regular file `path` in `name`, running or stopped;
    /// [`LxdError::NotFound`] if there is none, [`LxdError::Protocol`] if it
    /// is not a regular file or longer than `limit` bytes.
    fn read_file(&self, name: &str, path: &str, limit: u64) -> Result<Vec<u8>, LxdError>;
    /// Starts a stopped instance.
    fn start(&self, name: &str) -> Result<(), LxdError>;
    /// Stops a running instance.
    fn stop(&self, name: &str) -> Result<(), LxdError>;
    /// Deletes an instance (running or not).
    fn delete(&self, name: &str) -> Result<(), LxdError>;
    /// Runs `argv` inside `name`, feeding `stdin`. The command's own
    /// failure is an [`ExecOutput`] with its code; LXD's is an error
    /// ([`LxdError::NotRunning`], [`LxdError::NotReady`], ...).
    fn exec(&self, name: &str, argv: &[&str], stdin: &[u8]) -> Result<ExecOutput, LxdError>;
    /// Snapshots of `name`.
    fn snapshots(&self, name: &str) -> Result<Vec<SnapshotInfo>, LxdError>;
    /// Takes snapshot `snap` of `name`.
    fn snapshot(&self, name: &str, snap: &str) -> Result<(), LxdError>;
    /// Restores `name` to `snap`.
    fn restore(&self, name: &str, snap: &str) -> Result<(), LxdError>;
    /// Deletes snapshot `snap` of `name`.
    fn delete_snapshot(&self, name: &str, snap: &str) -> Result<(), LxdError>;
    /// Copies `source` (or its snapshot) to a new stopped instance `target`,
    /// without the source's snapshots or ldm's marks, with `config` keys
    /// set in the same request.
    fn copy(
        &self,
        source: &str,
        snap: Option<&str>,
        target: &str,
        config: &[(&str, &str)],
    ) -> Result<(), LxdError>;
    /// Runs `argv` inside `name` on this terminal and returns its exit code.
    fn exec_attached(&self, name: &str, argv: &[&str]) -> Result<i32, LxdError>;
    /// Replaces this process with an interactive `argv` inside `name`;
    /// returns only if that could not be done.
    fn exec_replace(&self, name: &str, argv: &[&str]) -> LxdError;
    /// Copies host file or folder `src` to `path` inside `name`.
    fn push(
        &self,
        name: &str,
        src: &std::path::Path,
        path: &str,
        recursive: bool,
    ) -> Result<(), LxdError>;
    /// Copies `path` inside `name` to host `dest`.
    fn pull(
        &self,
        name: &str,
        path: &str,
        dest: &std::path::Path,
        recursive: bool,
    ) -> Result<(), LxdError>;
    /// Local images.
    fn images(&self) -> Result<Vec<Image>, LxdError>;
    /// Publishes snapshot `snap` of `name` as an image with `alias`
    /// (progress on stderr as the client was built to show it: terminal,
    /// `--progress`, `-q`).
    fn publish(&self, name: &str, snap: &str, alias: &str) -> Result<(), LxdError>;
    /// Deletes the image an alias points to.
    fn delete_image(&self, alias: &str) -> Result<(), LxdError>;
    /// Renames an image alias in one step (the server never shows both or neither).
    fn rename_alias(&self, old: &str, new: &str) -> Result<(), LxdError>;
    /// What LXD is doing to instance `name` right now: the descriptions of
    /// its running operations on it ("Creating instance"), empty if none.
    /// A killed client's operation goes on in the server, and an instance
    /// being created is "not found" until it is done.
    fn operations(&self, name: &str) -> Result<Vec<String>, LxdError>;
    /// Instances in LXD projects other than the one ldm's calls address:
    /// where a container LXD "no longer has" went after an `lxc project
    /// switch`.
    fn elsewhere(&self) -> Result<Vec<Away>, LxdError>;
    /// The remote's name when its LXD server is on another machine (so host
    /// folders are not there), `None` when it is this machine's: the
    /// project's `remote:`, else the client's default remote (`lxc remote
    /// switch`).
    fn remote_server(&self) -> Result<Option<String>, LxdError>;
    /// Who the server is, and the LXD project ldm's calls address.
    fn identity(&self) -> Result<Server, LxdError>;
    /// Where the calls go, from the configuration alone (no request).
    fn target(&self) -> Result<Target, LxdError>;
    /// Adds disk device `disk` to `name` (live, if it runs).
    fn add_disk(&self, name: &str, disk: &Disk) -> Result<(), LxdError>;
    /// Removes device `device` from `name`.
    fn remove_device(&self, name: &str, device: &str) -> Result<(), LxdError>;
    /// Sets config key `key` of `name`.
    fn set_config(&self, name: &str, key: &str, value: &str) -> Result<(), LxdError>;
    /// Sets config keys `keys` of `name` in one change.
    fn set_configs(&self, name: &str, keys: &[(&str, &str)]) -> Result<(), LxdError> {
        keys.iter()
            .try_for_each(|(k, v)| self.set_config(name, k, v))
    }
    /// Restarts a running instance.
    fn restart(&self, name: &str) -> Result<(), LxdError>;
    /// Makes LXD project `name` (sharing the default project's images and
    /// profiles) unless the server has it; true when it was made.
    fn ensure_project(&self, name: &str) -> Result<bool, LxdError>;
    /// Renames stopped instance `name` to `new` in the same LXD project
    /// (LXD refuses a running one). [`LxdError::AlreadyExists`] when `new`
    /// is taken, [`LxdError::NotFound`] when `name` is gone.
    fn rename(&self, name: &str, new: &str) -> Result<(), LxdError>;
    /// Runs `argv` inside `name` feeding `stdin`, handing each line of its
    /// output (stdout and stderr) to `line` as it comes; returns its exit
    /// code. LXD's own failures are errors, as for [`Lxd::exec`]. Lines
    /// longer than [`MAX_LINE`] are cut (what was cut is counted on the
    /// line). `stop` is asked while it runs: a signal it names is sent to
    /// the command, then SIGTERM and SIGKILL, [`STOP_GRACE`] apart, while
    /// it has not ended.
    fn exec_lines(
        &self,
        name: &str,
        argv: &[&str],
        stdin: &[u8],
        line: &mut dyn FnMut(&str),
        stop: Stop,
    ) -> Result<i32, LxdError>;
}
