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
use crate::store::{self, Paths, SafeDirs, Store};
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
    /// Folders whose projects may hold other users' files (`-C`, `LDM_SAFE_DIRS`).
    pub safe: SafeDirs,
    /// The project's `remote:` key, filled by the first load of the project
    /// (any store from [`Ctx::store`]) and read by the LXD client.
    pub remote: Arc<OnceLock<Option<String>>>,
}

impl Ctx {
    /// The store of the project at `start` or its nearest parent (one
    /// owned by another user only if the user trusts its folder).
    pub fn store(&self) -> Result<Store, Error> {
        let (paths, trust) = Paths::find(&self.start, &self.safe)?;
        let mut opts = self.opts.clone().trusting(trust);
        let remote = Arc::clone(&self.remote);
        opts.on_load = Some(Arc::new(move |p: &Project| {
            let _ = remote.set(p.remote.clone());
        }));
        Ok(Store::open(paths, opts))
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
    let (start, opts, safe) = (ctx.start.clone(), ctx.opts.clone(), ctx.safe.clone());
    client.with_remote(Remote::lazy(Arc::clone(&ctx.remote), move || {
        let (paths, trust) = Paths::find(&start, &safe).ok()?;
        Store::open(paths, opts.clone().trusting(trust))
            .read()
            .ok()?
            .remote
    }))
}

/// The command as typed without its arguments, for the lock's holder note.
fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Create(_) => "create",
        Command::Project(ProjectCommand::Create(_)) => "project create",
        Command::Project(ProjectCommand::Delete(_)) => "project delete",
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
        Command::Compact => "compact",
        Command::Doctor(_) => "doctor",
        Command::Completions { .. } => "completions",
        Command::Man => "man",
    }
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
            ..store::Options::default()
        },
        safe: SafeDirs::from_env(cli.dir.as_ref().map(|_| start_dir.as_path())),
        quiet: cli.quiet,
        style: style::Style::for_stdout(cli.color),
        remote: Arc::default(),
    })
}
