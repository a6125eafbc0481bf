//! The LXD backend: every operation ldm asks of LXD, as one trait.
//!
//! [`Lxd`] is implemented by [`api::Api`], which speaks LXD's REST API
//! (the client program is run only for an interactive shell, `ldm ssh`).
//! Unit tests (here and, with feature `double`, the CLI's) speak to the
//! API TEST DOUBLE through the real backend (`double.rs`). Commands see
//! only the trait and its typed results (`results.rs`, `error.rs`); this
//! crate knows nothing of the project store: its Cargo.toml does not name it.
//! Names passed in are full LXD instance names (`project-container`).
//! DESIGN.md, "The LXD backend".

pub mod api;
#[cfg(any(test, feature = "double"))]
pub mod double;
mod error;
mod ipv4;
mod lines;
pub mod owned;
pub mod owner;
mod pins;
mod results;
mod stopping;
mod wait;

use std::collections::BTreeMap;
use std::time::Duration;

pub use error::LxdError;
pub use ipv4::wait_ipv4;
pub use lines::MAX_LINE;
pub use results::{Away, Disk, ExecOutput, Image, Instance, Server, SnapshotInfo, State, Target};
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
