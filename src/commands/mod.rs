//! One file per command group; [`run`] dispatches in one `match`.
//!
//! Every command follows the same shape: validate the arguments into model
//! values, then open the store and read or commit. Results go to `out`
//! (stdout); notices and progress go to stderr.

mod config;
mod container;
mod doctor;
mod drift;
mod files;
mod image;
mod lifecycle;
mod list;
pub mod op;
mod project;
mod snapshot;
mod ssh;
mod table;

use std::io::Write;
use std::path::PathBuf;

use crate::cli::{Cli, Command, ContainerCommand, ImageCommand, ProjectCommand, SnapshotCommand};
use crate::lxd::Client;
use crate::store::{self, Paths, Store};
use crate::Error;

/// What every command gets: where it runs and how the store behaves.
pub struct Ctx {
    /// Absolute folder the command starts in (`-C DIR` or the current one).
    pub start: PathBuf,
    /// Store options (lock timeout, holder note, notices).
    pub opts: store::Options,
    /// `-q`: no progress output.
    pub quiet: bool,
}

impl Ctx {
    /// The store of the project at `start` or its nearest parent.
    pub fn store(&self) -> Result<Store, Error> {
        Ok(Store::open(Paths::find(&self.start)?, self.opts.clone()))
    }
}

/// Runs one parsed command line, writing results to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<(), Error> {
    let ctx = context(&cli)?;
    let lxd = Client::from_env();
    match cli.command {
        Command::Create(args) | Command::Project(ProjectCommand::Create(args)) => {
            project::create(&ctx, &args, out)
        }
        Command::Project(ProjectCommand::Delete(args)) => {
            lifecycle::delete_project(&ctx, &lxd, args.force, out)
        }
        Command::Container(ContainerCommand::Create(args)) => {
            container::create(&ctx, &lxd, &args, out)
        }
        Command::Container(ContainerCommand::Clone(args)) => {
            container::clone(&ctx, &lxd, &args, out)
        }
        Command::Container(ContainerCommand::Reset(args)) => {
            lifecycle::reset(&ctx, &lxd, &args, out)
        }
        Command::Container(ContainerCommand::Snapshot(cmd)) => match cmd {
            SnapshotCommand::Create {
                container,
                name,
                description,
            } => snapshot::create(&ctx, &lxd, &container, &name, &description, out),
            SnapshotCommand::List { container, json } => {
                snapshot::list(&ctx, &lxd, &container, json, out)
            }
            SnapshotCommand::Delete { container, name } => {
                snapshot::delete(&ctx, &lxd, &container, &name, out)
            }
        },
        Command::List(args) => list::run(&ctx, &lxd, args.json, out),
        Command::Up(args) => lifecycle::up(&ctx, &lxd, &args.name, out),
        Command::Down(args) => lifecycle::down(&ctx, &lxd, &args.name, out),
        Command::Remove(args) => lifecycle::remove(&ctx, &lxd, &args, out),
        Command::Ssh(args) => ssh::run(&ctx, &lxd, &args),
        Command::Proxy(args) => Err(crate::Error::Usage(format!(
            "proxy for {} is not built yet",
            args.name
        ))),
        Command::Mv(args) => files::run(&ctx, &lxd, &args, out),
        Command::Images(args) | Command::Image(ImageCommand::List(args)) => {
            image::list(&lxd, &args, out)
        }
        Command::Image(ImageCommand::Create { container, alias }) => {
            image::create(&ctx, &lxd, &container, &alias, out)
        }
        Command::Image(ImageCommand::Delete { alias, force }) => {
            image::delete(&lxd, &alias, force, out)
        }
        Command::Image(ImageCommand::Rename { old, new }) => image::rename(&lxd, &old, &new, out),
        Command::Config(cmd) => config::run(&ctx, cmd, out),
        Command::Compact => doctor::compact(&ctx, out),
        Command::Doctor(args) => doctor::run(&ctx, &lxd, &args, out),
    }
}

fn context(cli: &Cli) -> Result<Ctx, Error> {
    let cwd = std::env::current_dir()
        .map_err(|e| Error::Usage(format!("cannot read the current folder: {e}")))?;
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
    let holder = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    // Tuning and test knob (DESIGN.md, "Compaction"): the auto-compaction floor.
    let auto_compact_min = match std::env::var("LDM_AUTO_COMPACT_BYTES") {
        Ok(v) => v.parse().map_err(|_| {
            Error::Usage(format!(
                "LDM_AUTO_COMPACT_BYTES={v:?} is not a number of bytes"
            ))
        })?,
        Err(_) => store::AUTO_COMPACT_MIN_BYTES,
    };
    Ok(Ctx {
        start,
        opts: store::Options {
            lock_timeout: cli.lock_timeout,
            holder,
            auto_compact_min,
            ..store::Options::default()
        },
        quiet: cli.quiet,
    })
}
