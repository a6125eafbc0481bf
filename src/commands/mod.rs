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
mod proxy;
mod snapshot;
mod ssh;
pub mod style;
mod table;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use crate::cli::{Cli, Command, ContainerCommand, ImageCommand, ProjectCommand, SnapshotCommand};
use crate::lxd::{Client, Remote};
use crate::model::Project;
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
    /// Colour for stdout.
    pub style: style::Style,
    /// The project's `remote:` key, filled by the first load of the project
    /// (any store from [`Ctx::store`]) and read by the LXD client.
    pub remote: Arc<OnceLock<Option<String>>>,
}

impl Ctx {
    /// The store of the project at `start` or its nearest parent.
    pub fn store(&self) -> Result<Store, Error> {
        let mut opts = self.opts.clone();
        let remote = Arc::clone(&self.remote);
        opts.on_load = Some(Arc::new(move |p: &Project| {
            let _ = remote.set(p.remote.clone());
        }));
        Ok(Store::open(Paths::find(&self.start)?, opts))
    }
}

/// Runs one parsed command line, writing results to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<(), Error> {
    match &cli.command {
        Command::Completions { shell } => {
            // Into a buffer first: clap_complete panics if its writer fails
            // (`ldm completions bash | head`); ours reports a broken pipe.
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "ldm", &mut buf);
            out.write_all(&buf)?;
            return Ok(());
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(out)?;
            return Ok(());
        }
        _ => {}
    }
    let ctx = context(&cli)?;
    let lxd = client(&ctx, &cli.command);
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
        Command::Proxy(args) => proxy::run(&ctx, &lxd, &args),
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
        Command::Completions { .. } | Command::Man => Ok(()),
    }
}

/// The LXD client, addressed to the project's `remote:` if it has one.
/// Commands that never call LXD skip the project read.
fn client(ctx: &Ctx, command: &Command) -> Client {
    let (client, note) = Client::from_env();
    let uses_lxd = !matches!(
        command,
        Command::Create(_)
            | Command::Project(ProjectCommand::Create(_))
            | Command::Config(_)
            | Command::Compact
            | Command::Completions { .. }
            | Command::Man
    );
    if !uses_lxd {
        return client;
    }
    // Said once per user, when it matters: not for commands that never call
    // LXD, and not under -q (the marker is then not written either).
    if let (Some(note), false) = (note, ctx.quiet) {
        note_once("incus", &note);
    }
    // Usually the command has loaded the project before its first LXD call,
    // which filled `ctx.remote`; else (image commands, which work without a
    // project) the first call reads it. A project that cannot be read fails
    // with its own error in the command.
    let (start, opts) = (ctx.start.clone(), ctx.opts.clone());
    client.with_remote(Remote::lazy(Arc::clone(&ctx.remote), move || {
        let paths = Paths::find(&start).ok()?;
        Store::open(paths, opts.clone()).read().ok()?.remote
    }))
}

/// Prints `message` on stderr the first time `key` comes up for this user.
fn note_once(key: &str, message: &str) {
    let dir = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("ldm"));
    let marker = dir.as_ref().map(|d| d.join(format!("noted-{key}")));
    if marker.as_ref().is_some_and(|m| m.exists()) {
        return;
    }
    eprintln!("ldm: {message}");
    if let (Some(dir), Some(marker)) = (dir, marker) {
        let _ = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(marker, message));
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
        style: style::Style::for_stdout(cli.color),
        remote: Arc::default(),
    })
}
