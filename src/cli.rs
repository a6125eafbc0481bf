//! The command line, as clap structs: the raw layer. Commands turn these
//! into validated `model` values before taking any lock.

// Over 400 lines: every clap struct of the command line, declarations only,
// in the order `--help` shows them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Per-project LXD development containers, with a crash-safe project store.
#[derive(Debug, Parser)]
#[command(name = "ldm", version, about, propagate_version = true)]
pub struct Cli {
    /// When to use colour: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    pub color: clap::ColorChoice,
    /// Run as if ldm was started in DIR.
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Seconds to wait for another ldm to release the project lock.
    #[arg(long, global = true, value_name = "SECS", default_value = "5", value_parser = parse_timeout)]
    pub lock_timeout: Duration,
    /// Seconds a setup step may run before it is stopped (SIGTERM, then
    /// SIGKILL) and fails: `container create`, `container setup`, `up`, `mount`.
    /// Generous by default (30 min), as steps install toolchains over slow
    /// networks.
    #[arg(long, global = true, value_name = "SECS", default_value = "1800", value_parser = parse_timeout)]
    pub step_timeout: Duration,
    /// Print nothing but results and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Show download and publish progress even when stderr is not a terminal.
    #[arg(long, global = true)]
    pub progress: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a project in this folder (same as `ldm project create`).
    Create(ProjectCreate),
    /// Project-level commands.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Create, clone, reset and snapshot containers.
    #[command(subcommand, visible_alias = "c")]
    Container(ContainerCommand),
    /// List the project's containers with status, IPv4 and ports.
    List(List),
    /// Start containers (none named: all of them, re-creating those LXD lost) and wait for their IPv4 addresses.
    Up(UpDown),
    /// Stop containers (none named: all of them).
    Down(UpDown),
    /// Show a host folder inside a running or stopped container, and record it.
    Mount(MountArgs),
    /// Remove a mount from a container, and from the project.
    Umount(UmountArgs),
    /// Delete a container from LXD and from the project.
    #[command(visible_alias = "rm")]
    Remove(Remove),
    /// Open a login shell in a container, or run one command there.
    Ssh(Ssh),
    /// Forward the container's ports to this machine (127.0.0.1 by default).
    Proxy(Proxy),
    /// Copy files: host to container (NAME:/path), back, or between containers.
    Mv(Mv),
    /// Save containers as images, list, delete and rename images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// List images (same as `ldm image list`).
    Images(ImageList),
    /// Read and change settings in containers.yaml.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Show what the project asks for beyond its folder (outside mounts, setup steps, a remote), and allow it for this folder.
    Trust(TrustArgs),
    /// Fold containers.log into containers.yaml now.
    Compact,
    /// Check containers.yaml and containers.log; repair a damaged log.
    Doctor(Doctor),
    /// Print a shell completion script: `ldm completions bash > /etc/bash_completion.d/ldm`.
    Completions {
        /// Shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `ldm man | man -l -`.
    Man,
}

/// `ldm project ...`
#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Start a project in this folder: writes containers.yaml.
    Create(ProjectCreate),
    /// Delete every container of the project from LXD, then the project files.
    Delete(Force),
    /// Give the project a new name, renaming its containers in LXD
    /// (PROJECT-NAME becomes NEW-NAME; running ones are stopped and started again).
    Rename(ProjectRename),
}

/// Arguments of `ldm project rename`.
#[derive(Debug, Args)]
pub struct ProjectRename {
    /// The new project name (the prefix of every LXD container name).
    pub name: String,
    /// How long to wait for LXD, per container.
    #[command(flatten)]
    pub wait: Wait,
}

/// `ldm container ...`
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Launch a container from IMAGE, set up its user and SSH, snapshot it as initial-state.
    #[command(visible_alias = "c")]
    Create(ContainerCreate),
    /// Copy a container (or one of its snapshots) to a new container.
    Clone(ContainerClone),
    /// Restore a container to a snapshot (default initial-state), keeping it running or stopped.
    Reset(ContainerReset),
    /// Run the container's setup steps again, all of them.
    Setup(SetupArgs),
    /// Snapshot commands.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

/// Arguments of `ldm container create`.
#[derive(Debug, Args)]
pub struct ContainerCreate {
    /// Container name (the LXD name is PROJECT-NAME).
    pub name: String,
    /// Image to launch, e.g. ubuntu:24.04 or a local alias; may be left
    /// out to finish an interrupted create.
    pub image: Option<String>,
    /// Do not mount the project folder (or `defaults.mounts`).
    #[arg(long)]
    pub no_mount: bool,
    /// Mount host paths ldm refuses otherwise (system folders, your home
    /// folder's dot-files, LXD's state): only ever when typed here.
    #[arg(long)]
    pub force: bool,
    /// Seconds to wait for the container to finish booting (cloud-init).
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = parse_timeout)]
    pub timeout: Duration,
}

/// Arguments of `ldm mount`.
#[derive(Debug, Args)]
pub struct MountArgs {
    /// Container name.
    pub name: String,
    /// HOST:CONTAINER[:ro]; HOST relative to the project folder or absolute.
    #[arg(value_name = "HOST:CONTAINER")]
    pub mount: String,
    /// Read-only in the container.
    #[arg(long)]
    pub ro: bool,
    /// Mount host paths ldm refuses otherwise (system folders, your home
    /// folder's dot-files, LXD's state): only ever when typed here.
    #[arg(long)]
    pub force: bool,
    /// How long to wait for LXD (and for a restart to apply raw.idmap).
    #[command(flatten)]
    pub wait: Wait,
}

/// Arguments of `ldm umount`.
#[derive(Debug, Args)]
pub struct UmountArgs {
    /// Container name.
    pub name: String,
    /// The mount's path inside the container.
    #[arg(value_name = "CONTAINER_PATH")]
    pub path: String,
    /// How long to wait for LXD.
    #[command(flatten)]
    pub wait: Wait,
}

/// Arguments of `ldm container setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Container name.
    pub name: String,
    /// How long to wait for LXD.
    #[command(flatten)]
    pub wait: Wait,
}

/// `ldm up` and `ldm down`.
#[derive(Debug, Args)]
pub struct UpDown {
    /// Containers to act on, in parallel; none: every container of the project.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Print what would be done, and do nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How many containers to act on at once [default: twice the CPU
    /// cores, at least 4].
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// How long to wait for LXD (`up`: also for the IPv4 address, and the
    /// boot of a re-created container).
    #[command(flatten)]
    pub wait: Wait,
}

impl UpDown {
    /// How many containers to act on at once: `--jobs`, else twice the
    /// CPU cores and at least 4 (a boot waits on its init and DHCP as much
    /// as on a core; DESIGN.md, "`ldm up` / `ldm down`").
    pub fn jobs(&self) -> usize {
        match self.jobs {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism()
                .map_or(4, |n| 2 * n.get())
                .max(4),
        }
    }
}

/// Arguments of `ldm container clone`.
#[derive(Debug, Args)]
pub struct ContainerClone {
    /// Container to copy.
    pub source: String,
    /// Name of the copy.
    pub name: String,
    /// Copy this snapshot of the source instead of its current state.
    #[arg(short, long, value_name = "SNAP")]
    pub snapshot: Option<String>,
    /// Seconds to wait for LXD to finish an operation already running on
    /// the source (e.g. one an interrupted ldm started).
    #[arg(long, value_name = "SECS", default_value = "120", value_parser = parse_timeout)]
    pub timeout: Duration,
}

/// Arguments of `ldm container reset`.
#[derive(Debug, Args)]
pub struct ContainerReset {
    /// Container to reset.
    pub name: String,
    /// Snapshot to restore.
    #[arg(default_value = "initial-state")]
    pub snapshot: String,
    /// How long to wait for LXD.
    #[command(flatten)]
    pub wait: Wait,
}

/// The wait for LXD shared by the commands that act on an existing
/// instance: LXD refuses them while another operation runs on it (e.g. the
/// server-side create of a `container create` killed with Ctrl+C).
#[derive(Debug, Clone, Copy, Args)]
pub struct Wait {
    /// Seconds to wait for LXD to finish an operation already running on
    /// the container (e.g. one an interrupted ldm started).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_timeout)]
    pub timeout: Duration,
}

/// The wait for LXD of commands without a `--timeout` of their own.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// `ldm container snapshot ...`
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot.
    Create {
        /// Container.
        container: String,
        /// Snapshot name.
        name: String,
        /// Free-text description.
        #[arg(short, long, default_value = "")]
        description: String,
        /// How long to wait for LXD.
        #[command(flatten)]
        wait: Wait,
    },
    /// List snapshots: LXD's, with ldm's descriptions and times.
    List {
        /// Container.
        container: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a snapshot (not initial-state).
    Delete {
        /// Container.
        container: String,
        /// Snapshot name.
        name: String,
        /// How long to wait for LXD.
        #[command(flatten)]
        wait: Wait,
    },
}

/// Arguments of `ldm ssh`.
#[derive(Debug, Args)]
pub struct Ssh {
    /// Container name.
    pub name: String,
    /// Log in as USER (default: the container's configured user; `root` for a root shell).
    #[arg(short, long)]
    pub user: Option<String>,
    /// Run this command instead of a shell, and exit with its exit code.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Arguments of `ldm proxy`.
#[derive(Debug, Args)]
pub struct Proxy {
    /// Container name.
    pub name: String,
    /// Address to listen on; 0.0.0.0 exposes the ports to your network.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// LOCAL:REMOTE port pair (or one port for both); repeatable. Default: the configured ports.
    #[arg(short, long = "port", value_name = "LOCAL:REMOTE")]
    pub ports: Vec<String>,
    /// Most connections at once per port.
    #[arg(long, default_value = "100")]
    pub max_conns: usize,
    /// Close a connection after this many seconds without traffic either way.
    #[arg(long, value_name = "SECS", default_value = "600", value_parser = parse_timeout)]
    pub idle_timeout: Duration,
}

/// Arguments of `ldm mv`.
#[derive(Debug, Args)]
pub struct Mv {
    /// Source: a host path, or NAME:/path (NAME may be `*` or `prefix*`).
    pub src: String,
    /// Destination: a host path, or NAME:/path (NAME may be `*` or `prefix*`); `~` is the user's home.
    pub dst: String,
    /// Create a missing destination folder without asking.
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// `ldm image ...`
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Save a container as an image (stops and restarts it if running).
    Create {
        /// Container.
        container: String,
        /// Alias of the new image.
        alias: String,
        /// How long to wait for LXD.
        #[command(flatten)]
        wait: Wait,
    },
    /// List images.
    List(ImageList),
    /// Delete an image.
    Delete {
        /// Image alias.
        alias: String,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
    },
    /// Rename an image alias.
    Rename {
        /// Current alias.
        old: String,
        /// New alias.
        new: String,
    },
}

/// Arguments of `ldm image list`.
#[derive(Debug, Args)]
pub struct ImageList {
    /// Include images without an alias.
    #[arg(long)]
    pub all: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ldm list`.
#[derive(Debug, Args)]
pub struct List {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ldm remove`.
#[derive(Debug, Args)]
pub struct Remove {
    /// Container name.
    pub name: String,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
    /// How long to wait for LXD.
    #[command(flatten)]
    pub wait: Wait,
}

/// Arguments of `ldm project delete`.
#[derive(Debug, Args)]
pub struct Force {
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
    /// How long to wait for LXD, per container.
    #[command(flatten)]
    pub wait: Wait,
}

/// Arguments of `ldm create`.
#[derive(Debug, Args)]
pub struct ProjectCreate {
    /// Project name, the prefix of every LXD container name [default: folder name].
    #[arg(long)]
    pub name: Option<String>,
    /// Default ports to forward, e.g. 5173,8000.
    #[arg(long, value_name = "PORTS")]
    pub ports: Option<String>,
    /// Run the containers on this LXD remote (see `lxc remote list`) instead of the local LXD.
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// Put the containers in this LXD project (made if missing, sharing the
    /// default project's images and profiles), whatever the client's current project.
    #[arg(long, value_name = "NAME")]
    pub lxd_project: Option<String>,
}

/// `ldm config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective value of KEY.
    Get {
        /// One of defaults.ports, defaults.user.name, defaults.user.password,
        /// containers.NAME.ports, containers.NAME.user.name, containers.NAME.user.password.
        key: String,
        /// Print JSON: {"key", "value", "source"}.
        #[arg(long)]
        json: bool,
    },
    /// Set KEY to VALUE (ports as 3000,4000).
    Set {
        /// The key (see `ldm config get --help`).
        key: String,
        /// The new value.
        value: String,
    },
    /// Remove KEY, so that it falls back to the defaults.
    Unset {
        /// The key (see `ldm config get --help`).
        key: String,
    },
}

/// Arguments of `ldm trust`.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// Allow without asking (for scripts).
    #[arg(short, long)]
    pub yes: bool,
    /// Show what is allowed for this folder and what waits; change nothing.
    #[arg(long, conflicts_with_all = ["yes", "revoke"])]
    pub show: bool,
    /// Forget everything allowed for this folder (what you typed too).
    #[arg(long, conflicts_with = "yes")]
    pub revoke: bool,
    /// With --show: print JSON.
    #[arg(long, requires = "show")]
    pub json: bool,
}

/// Arguments of `ldm doctor`.
#[derive(Debug, Args)]
pub struct Doctor {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Back up and rebuild a damaged log, keeping every valid record.
    #[arg(long)]
    pub repair: bool,
    /// Record what LXD has: adopt unrecorded containers and snapshots,
    /// forget missing ones, close interrupted operations.
    #[arg(long)]
    pub fix: bool,
    /// With --fix: delete half-created or half-removed containers from LXD
    /// instead of adopting them. With --repair: also drop records written by
    /// a newer ldm.
    #[arg(long)]
    pub force: bool,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{s} is outside 0..86400 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn timeout_rejects_negative_and_garbage() {
        assert!(parse_timeout("-1").is_err());
        assert!(parse_timeout("abc").is_err());
        assert_eq!(parse_timeout("0.5").unwrap(), Duration::from_millis(500));
    }
}
