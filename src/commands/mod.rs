//! One file per command group; [`run`] dispatches in one `match`.
//!
//! Every command follows the same shape: validate the arguments into model
//! values, open the store and read or commit, then build the LXD client
//! from the project it loaded ([`Ctx::lxd`]: its `remote:`, and a wait for
//! LXD's busy state) and make its calls. Results go to `out` (stdout);
//! notices and progress go to stderr.

mod away;
mod clone;
mod config;
mod container;
mod ctx;
mod doctor;
mod drift;
mod files;
mod first_boot;
pub mod gate;
mod idmap;
mod ignore;
mod image;
mod lifecycle;
mod list;
mod mount;
mod mounts;
pub mod op;
mod project;
mod provision;
mod proxy;
mod rename;
mod setup;
mod snapshot;
mod sources;
mod ssh;
mod steps;
pub mod style;
mod table;
pub mod text;
mod trust;
mod updown;
mod updown_plan;

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cli::{Cli, Command, ContainerCommand, ImageCommand, ProjectCommand, SnapshotCommand};
use crate::lxd::api::{self, Api, Patience, ShowProgress};
use crate::lxd::owned::Seen;
use crate::lxd::{Lxd, OnWait};
use crate::store::{self, SafeDirs};
use crate::user_state::UserDirs;
use crate::Error;

pub use ctx::{Connect, Ctx};

/// Runs one parsed command line, writing results to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<(), Error> {
    match &cli.command {
        Command::Completions { shell } => {
            // Into a buffer first: clap_complete panics if its writer fails
            // (`ldm completions bash | head`); ours reports a broken pipe.
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "ldm", &mut buf);
            return out.write_all(&buf).map_err(Error::Output);
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            return clap_mangen::Man::new(cmd)
                .render(out)
                .map_err(Error::Output);
        }
        _ => {}
    }
    let ctx = context(&cli)?;
    let r = dispatch(&ctx, cli.command, out);
    gate::after(&ctx);
    r
}

/// One `match` from command to the function that runs it.
fn dispatch(ctx: &Ctx, command: Command, out: &mut dyn Write) -> Result<(), Error> {
    match command {
        Command::Create(args) | Command::Project(ProjectCommand::Create(args)) => {
            project::create(ctx, &args, out)
        }
        Command::Project(ProjectCommand::Delete(args)) => {
            lifecycle::delete_project(ctx, &args, out)
        }
        Command::Project(ProjectCommand::Rename(args)) => rename::rename(ctx, &args, out),
        Command::Container(ContainerCommand::Create(args)) => container::create(ctx, &args, out),
        Command::Container(ContainerCommand::Clone(args)) => clone::clone(ctx, &args, out),
        Command::Container(ContainerCommand::Reset(args)) => lifecycle::reset(ctx, &args, out),
        Command::Container(ContainerCommand::Snapshot(cmd)) => match cmd {
            SnapshotCommand::Create {
                container,
                name,
                description,
                wait,
            } => snapshot::create(ctx, &container, &name, &description, wait.timeout, out),
            SnapshotCommand::List { container, json } => snapshot::list(ctx, &container, json, out),
            SnapshotCommand::Delete {
                container,
                name,
                wait,
            } => snapshot::delete(ctx, &container, &name, wait.timeout, out),
        },
        Command::List(args) => list::run(ctx, args.json, out),
        Command::Up(args) => updown::up(ctx, &args, out),
        Command::Down(args) => updown::down(ctx, &args, out),
        Command::Mount(args) => mount::mount(ctx, &args, out),
        Command::Umount(args) => mount::umount(ctx, &args, out),
        Command::Container(ContainerCommand::Setup(args)) => mount::setup(ctx, &args, out),
        Command::Remove(args) => lifecycle::remove(ctx, &args, out),
        Command::Ssh(args) => ssh::run(ctx, &args),
        Command::Proxy(args) => proxy::run(ctx, &args),
        Command::Mv(args) => files::run(ctx, &args, out),
        Command::Images(args) | Command::Image(ImageCommand::List(args)) => {
            image::list(ctx, &args, out)
        }
        Command::Image(ImageCommand::Create {
            container,
            alias,
            wait,
        }) => image::create(ctx, &container, &alias, wait.timeout, out),
        Command::Image(ImageCommand::Delete { alias, force }) => {
            image::delete(ctx, &alias, force, out)
        }
        Command::Image(ImageCommand::Rename { old, new }) => image::rename(ctx, &old, &new, out),
        Command::Config(cmd) => config::run(ctx, cmd, out),
        Command::Trust(args) => trust::run(ctx, &args, out),
        Command::Compact => doctor::compact(ctx, out),
        Command::Doctor(args) => doctor::run(ctx, &args, out),
        Command::Completions { .. } | Command::Man => Ok(()),
    }
}

/// How commands reach LXD: one client per remote asked for. The family
/// note ("LXD is not installed; using Incus") is printed here, once per
/// user, and only for commands that call LXD.
fn connector(cli: &Cli) -> Connect {
    let uses_lxd = !matches!(
        cli.command,
        Command::Create(_)
            | Command::Project(ProjectCommand::Create(_))
            | Command::Config(_)
            | Command::Trust(_)
            | Command::Compact
            | Command::Completions { .. }
            | Command::Man
    );
    let choice = api::choose(&api::env_var, &api::MACHINE);
    if let (Some((key, note)), true, false) = (&choice.note, uses_lxd, cli.quiet) {
        said_once(key, note);
    }
    let progress = match (cli.quiet, std::io::stderr().is_terminal(), cli.progress) {
        (true, _, _) => ShowProgress::Off,
        (false, true, _) => ShowProgress::Terminal,
        (false, false, true) => ShowProgress::Lines,
        (false, false, false) => ShowProgress::Off,
    };
    Arc::new(
        move |remote: Option<&str>,
              project: Option<&str>,
              wait: Duration,
              on_wait: OnWait|
              -> Arc<dyn Lxd> {
            Arc::new(Api::new(
                &choice,
                remote,
                project,
                Patience::new(wait, on_wait),
                progress,
            ))
        },
    )
}

/// Prints `message` on stderr the first time `key` comes up for this user,
/// remembered in the user's state folder (`said.json`); where that cannot
/// be read or written, it is said every time.
fn said_once(key: &str, message: &str) {
    let path = crate::user_state::UserDirs::from_env()
        .ok()
        .map(|d| d.state.join("said.json"));
    if say_once(path.as_deref(), key) {
        eprintln!("ldm: {message}");
    }
}

/// Whether to say the note `key` now: true the first time for the
/// `said.json` at `path` (which then records it), and always without one.
fn say_once(path: Option<&std::path::Path>, key: &str) -> bool {
    use crate::user_state;
    let Some(path) = path else {
        return true;
    };
    let mut said: std::collections::BTreeMap<String, bool> = user_state::read_small(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if said.contains_key(key) {
        return false;
    }
    said.insert(key.to_string(), true);
    if let (Ok(bytes), Some(dir)) = (serde_json::to_vec_pretty(&said), path.parent()) {
        let _ = user_state::make_dir(dir).and_then(|()| user_state::replace(path, &bytes));
    }
    true
}

/// The command as typed without its arguments, for the lock's holder note.
fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Create(_) => "create",
        Command::Project(ProjectCommand::Create(_)) => "project create",
        Command::Project(ProjectCommand::Delete(_)) => "project delete",
        Command::Project(ProjectCommand::Rename(_)) => "project rename",
        Command::Container(ContainerCommand::Create(_)) => "container create",
        Command::Container(ContainerCommand::Clone(_)) => "container clone",
        Command::Container(ContainerCommand::Reset(_)) => "container reset",
        Command::Container(ContainerCommand::Snapshot(SnapshotCommand::Create { .. })) => {
            "container snapshot create"
        }
        Command::Container(ContainerCommand::Snapshot(SnapshotCommand::List { .. })) => {
            "container snapshot list"
        }
        Command::Container(ContainerCommand::Snapshot(SnapshotCommand::Delete { .. })) => {
            "container snapshot delete"
        }
        Command::List(_) => "list",
        Command::Mount(_) => "mount",
        Command::Umount(_) => "umount",
        Command::Container(ContainerCommand::Setup(_)) => "container setup",
        Command::Up(_) => "up",
        Command::Down(_) => "down",
        Command::Remove(_) => "remove",
        Command::Ssh(_) => "ssh",
        Command::Proxy(_) => "proxy",
        Command::Mv(_) => "mv",
        Command::Image(ImageCommand::Create { .. }) => "image create",
        Command::Image(ImageCommand::List(_)) | Command::Images(_) => "image list",
        Command::Image(ImageCommand::Delete { .. }) => "image delete",
        Command::Image(ImageCommand::Rename { .. }) => "image rename",
        Command::Config(crate::cli::ConfigCommand::Get { .. }) => "config get",
        Command::Config(crate::cli::ConfigCommand::Set { .. }) => "config set",
        Command::Config(crate::cli::ConfigCommand::Unset { .. }) => "config unset",
        Command::Trust(_) => "trust",
        Command::Compact => "compact",
        Command::Doctor(_) => "doctor",
        Command::Completions { .. } => "completions",
        Command::Man => "man",
    }
}

fn context(cli: &Cli) -> Result<Ctx, Error> {
    let cwd = std::env::current_dir().map_err(Error::io("read the current folder", None))?;
    let start = match &cli.dir {
        Some(d) => cwd.join(d),
        None => cwd,
    };
    if !start.is_dir() {
        return Err(Error::Usage(format!(
            "-C {}: no such folder",
            start.display()
        )));
    }
    // The command only: argument values (a password given to `config set`)
    // must not reach a file other users may read.
    let holder = format!("ldm {}", command_name(&cli.command));
    // Tuning and test knob (DESIGN.md, "Compaction"): the auto-compaction floor.
    let auto_compact_min = match std::env::var("LDM_AUTO_COMPACT_BYTES") {
        Ok(v) => v.parse().map_err(|_| {
            Error::Usage(format!(
                "LDM_AUTO_COMPACT_BYTES={v:?} is not a number of bytes"
            ))
        })?,
        Err(_) => store::AUTO_COMPACT_MIN_BYTES,
    };
    // The same for the fold after each commit (DESIGN.md, "Fold").
    let fold_max = match std::env::var("LDM_FOLD_BYTES") {
        Ok(v) => v
            .parse()
            .map_err(|_| Error::Usage(format!("LDM_FOLD_BYTES={v:?} is not a number of bytes")))?,
        Err(_) => store::FOLD_MAX_BYTES,
    };
    let start_dir = start.clone();
    Ok(Ctx {
        start,
        opts: store::Options {
            lock_timeout: cli.lock_timeout,
            holder,
            auto_compact_min,
            fold_max,
            // Notices quote keys and values from containers.yaml: each of
            // their lines is escaped as one line, so a line break in a
            // value never prints a line that reads as ldm's own.
            notify: Arc::new(|n| {
                let lines: Vec<String> = n.lines().iter().map(|l| text::escape(l)).collect();
                eprintln!("ldm: {}", lines.join("\n"));
                // The store knows no LXD: what to run about it is said here.
                if let store::Notice::ContainersGone { names, .. } = n {
                    eprintln!(
                        "ldm: LXD may still have {}: `ldm doctor` lists the instances of this project it does not record, and `ldm doctor --fix` records them again",
                        if names.len() == 1 { "its instance" } else { "their instances" }
                    );
                }
            }),
            ..store::Options::default()
        },
        safe: SafeDirs::from_env(cli.dir.as_ref().map(|_| start_dir.as_path())),
        quiet: cli.quiet,
        step_timeout: cli.step_timeout,
        style: style::Style::for_stdout(cli.color),
        connect: connector(cli),
        user: UserDirs::from_env().ok(),
        log_seen: Mutex::new(None),
        project_at: Mutex::new(None),
        lxd_project: Mutex::new(None),
        seen: Seen::default(),
    })
}

#[cfg(test)]
mod tests;
