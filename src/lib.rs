//! ldm: per-project LXD development containers, with a crash-safe project
//! store. The successor of `lxc-dev-manager`, reading and writing the same
//! `containers.yaml`.
//!
//! This package is the CLI: [`commands`] (one file per command group),
//! [`cli`] (clap definitions), [`trust`] (what the user allowed), output
//! and interrupts. The layers below are crates of the workspace
//! (DESIGN.md, "Architecture"), re-exported under their module names:
//! [`model`] (state, mutations and validation, no I/O), [`store`] (the
//! files), [`lxd`] (the LXD client), [`proxy`] (port forwarding), [`yaml`]
//! (the YAML crate), [`user_state`], [`users`] and [`sys`]. Each crate's
//! Cargo.toml says what it may use: store and lxd never meet, and the model
//! knows neither. [`run`] is the single entry point `main.rs` calls.

pub mod cli;
pub mod commands;
pub mod interrupt;
pub mod output;
pub mod trust;

pub use ldm_lxd as lxd;
pub use ldm_model as model;
pub use ldm_proxy as proxy;
pub use ldm_store as store;
pub use ldm_sys as sys;
pub use ldm_sys::users;
pub use ldm_user_state as user_state;
pub use ldm_yaml as yaml;

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

pub use commands::run;

/// Any error a command can end with, one variant per kind;
/// [`Error::exit_code`] maps them (README, "Exit codes"). Each message
/// names the file or container, the problem, and the command to run next.
#[derive(Debug, Error)]
pub enum Error {
    /// The project store failed or refused; [`store::StoreError::is_damage`]
    /// tells damage (exit 2) from what the user must fix (exit 1).
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A value the user gave is not valid.
    #[error(transparent)]
    Invalid(#[from] model::ValidationError),
    /// Bad arguments: they parse but make no sense (together), or the
    /// command needs a flag it was not given.
    #[error("{0}")]
    Usage(String),
    /// ldm will not do this here, by its own rules (a mount on a remote
    /// LXD, host root's files in a container, a refused host folder): the
    /// words say why and what to do instead. Not a usage error: the
    /// arguments were fine.
    #[error("{0}")]
    Refused(String),
    /// ldm itself went wrong (a worker thread panicked): a bug to report.
    #[error("{0}; this is a bug in ldm: please report it with the command you ran")]
    Internal(String),
    /// A container, snapshot, image or instance that does not exist.
    #[error("{what}; {next}")]
    NotFound {
        /// What is missing, and where it was looked for.
        what: String,
        /// The command to run next.
        next: String,
    },
    /// Another ldm process runs an operation on the container, or LXD is
    /// still busy with one after ldm waited for it.
    #[error("{what} is busy: {who}; {next}")]
    Busy {
        /// The container or instance.
        what: String,
        /// Who, what and since when.
        who: String,
        /// What to do.
        next: String,
    },
    /// The request conflicts with what exists: a name already taken, an
    /// interrupted operation of another kind.
    #[error("{what}; {next}")]
    Conflict {
        /// What is in the way.
        what: String,
        /// The command to run next.
        next: String,
    },
    /// The command needs the container running.
    #[error("{name} is {status}; start it with `ldm up {name}`")]
    NotRunning {
        /// Container name.
        name: String,
        /// Its status, in words.
        status: String,
    },
    /// LXD refused or failed; `doing` says what ldm was doing.
    #[error("{doing}: {source}")]
    Lxd {
        /// What ldm was doing, e.g. "launching webapp-dev".
        doing: String,
        /// The client's failure, with its own message.
        source: lxd::LxdError,
    },
    /// A step ldm runs inside a container exited non-zero.
    #[error("{doing} in {instance} failed (exit {code}): {}{hint}", stderr.trim())]
    InContainer {
        /// The step, e.g. "setting up the user".
        doing: String,
        /// The LXD instance.
        instance: String,
        /// The step's exit code.
        code: i32,
        /// What it printed on stderr.
        stderr: String,
        /// What to run next (may be empty).
        hint: String,
    },
    /// A file or system operation outside the store failed.
    #[error("cannot {action}{}: {source}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Io {
        /// What ldm was doing, as a verb phrase.
        action: String,
        /// The file or folder, when there is one.
        path: Option<PathBuf>,
        /// The cause.
        source: io::Error,
    },
    /// The proxy could not start.
    #[error(transparent)]
    Proxy(#[from] proxy::ProxyError),
    /// Some of the copies of a fan-out failed; each was reported already.
    #[error("{failed} of {total} copies failed (see above)")]
    SomeFailed {
        /// How many failed.
        failed: usize,
        /// How many were tried.
        total: usize,
    },
    /// Some containers of a whole-project `up` or `down` failed; each was
    /// named in the report above.
    #[error("{failed} of {total} containers failed: {names}")]
    SomeContainersFailed {
        /// How many failed.
        failed: usize,
        /// How many were tried.
        total: usize,
        /// Their names, comma separated.
        names: String,
    },
    /// A step needs a one-time change as root, which ldm does not make.
    #[error("{what}; run this once as root, then the command again:\n  {command}")]
    NeedsRoot {
        /// What could not be done, and why.
        what: String,
        /// The exact command.
        command: String,
    },
    /// The project asks for what the user has not allowed for this folder,
    /// and the command would apply it (DESIGN.md, "What ldm trusts").
    #[error("the project in {} asks for what you have not allowed for this folder (containers.yaml and containers.log may come from a cloned repository, a teammate, lxc-dev-manager or a container writing through its mount):\n{list}\nnothing was done; review them, then allow them with `ldm trust` (it shows this list and asks), or change containers.yaml", dir.display())]
    Untrusted {
        /// The project folder.
        dir: PathBuf,
        /// One line per item, escaped.
        list: String,
    },
    /// What the user allowed could not be read or written.
    #[error(transparent)]
    Trust(#[from] trust::TrustError),
    /// The user's state folder could not be read or written.
    #[error(transparent)]
    UserState(#[from] user_state::UserStateError),
    /// `doctor` found damage; the report is already printed.
    #[error("{0}")]
    Unhealthy(String),
    /// `doctor` found the project and LXD out of step; the report is printed.
    #[error("{0}")]
    Drift(String),
    /// A command run in a container exited with this code; ldm exits with it too.
    #[error("the command exited with code {0}")]
    Exit(i32),
    /// Writing the command's output to stdout or stderr failed (only that:
    /// other I/O is [`Error::Io`] or the store's).
    #[error("cannot write output: {0}")]
    Output(io::Error),
}

impl Error {
    /// 0 success; 1 user error, not found, busy, conflict, LXD refused,
    /// doctor drift; 2 store damage, a newer ldm's data, lock timeout
    /// (README, "Exit codes"); an `ssh` command's own code.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Store(e) if e.is_damage() => 2,
            Error::Unhealthy(_) => 2,
            Error::Exit(code) => *code,
            Error::Store(_)
            | Error::Invalid(_)
            | Error::Usage(_)
            | Error::Refused(_)
            | Error::Internal(_)
            | Error::NotFound { .. }
            | Error::Busy { .. }
            | Error::Conflict { .. }
            | Error::NotRunning { .. }
            | Error::Lxd { .. }
            | Error::InContainer { .. }
            | Error::Io { .. }
            | Error::Proxy(_)
            | Error::SomeFailed { .. }
            | Error::SomeContainersFailed { .. }
            | Error::NeedsRoot { .. }
            | Error::Untrusted { .. }
            | Error::Trust(_)
            | Error::UserState(_)
            | Error::Drift(_)
            | Error::Output(_) => 1,
        }
    }

    /// True when stdout was closed by the reader (`ldm list | head`): not an error.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }

    /// Wraps an LXD failure with what ldm was doing. LXD's "busy" (after
    /// ldm waited) becomes [`Error::Busy`], "not found" [`Error::NotFound`].
    pub fn lxd(doing: impl Into<String>) -> impl FnOnce(lxd::LxdError) -> Error {
        let doing = doing.into();
        move |source| {
            match source {
            lxd::LxdError::Busy { what, waited } => Error::Busy {
                what,
                who: format!(
                    "LXD is still running another operation on it (started by an interrupted ldm?); ldm waited {} while {doing}",
                    secs(waited)
                ),
                next: "wait for it to finish and run the command again, or pass a longer --timeout"
                    .into(),
            },
            lxd::LxdError::NotFound { what } => {
                let next = if what.starts_with("image") {
                    "see `ldm image list`, or `lxc image list REMOTE:` for another server's"
                } else {
                    "see `ldm doctor`"
                };
                Error::NotFound {
                    what: format!("{doing}: LXD has no {what}"),
                    next: next.into(),
                }
            }
            source @ lxd::LxdError::NotOurs { .. } => Error::Refused(source.to_string()),
            source => Error::Lxd { doing, source },
        }
        }
    }

    /// An I/O failure outside the store, with its file.
    pub fn io(
        action: impl Into<String>,
        path: Option<&std::path::Path>,
    ) -> impl FnOnce(io::Error) -> Error {
        let (action, path) = (action.into(), path.map(|p| p.to_path_buf()));
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64().round())
}

/// Writes one line to `out`, for commands' results.
pub fn say(out: &mut dyn Write, line: &str) -> Result<(), Error> {
    writeln!(out, "{line}").map_err(Error::Output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{LockError, StoreError};

    fn io_err() -> io::Error {
        io::Error::other("x")
    }

    #[test]
    fn exit_codes_follow_the_readme_table() {
        let user = [
            Error::Usage("u".into()),
            Error::NotFound {
                what: "w".into(),
                next: "n".into(),
            },
            Error::Busy {
                what: "w".into(),
                who: "x".into(),
                next: "n".into(),
            },
            Error::Conflict {
                what: "w".into(),
                next: "n".into(),
            },
            Error::NotRunning {
                name: "a".into(),
                status: "stopped".into(),
            },
            Error::Lxd {
                doing: "d".into(),
                source: lxd::LxdError::NotFound { what: "w".into() },
            },
            Error::Io {
                action: "a".into(),
                path: None,
                source: io_err(),
            },
            Error::Drift("d".into()),
            Error::Store(StoreError::NotAProject { start: "/".into() }),
            Error::Store(StoreError::Lock(LockError::Refused {
                path: "/x".into(),
                why: "w".into(),
            })),
        ];
        for e in &user {
            assert_eq!(e.exit_code(), 1, "{e:?}");
        }
        let damage = [
            Error::Unhealthy("u".into()),
            Error::Store(StoreError::Corrupt {
                path: "/l".into(),
                offset: 3,
                reason: "r".into(),
            }),
            Error::Store(StoreError::NewerRecord {
                path: "/l".into(),
                offset: 3,
                seq: 4,
                op: "x".into(),
            }),
        ];
        for e in &damage {
            assert_eq!(e.exit_code(), 2, "{e:?}");
        }
        assert_eq!(Error::Exit(7).exit_code(), 7);
    }

    #[test]
    fn lxd_busy_and_not_found_become_their_kinds() {
        let busy = lxd::LxdError::Busy {
            what: "p-a".into(),
            waited: Duration::from_secs(60),
        };
        let e = Error::lxd("deleting p-a")(busy);
        assert!(
            matches!(&e, Error::Busy { what, .. } if what == "p-a"),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("waited 60 s while deleting p-a"),
            "{e}"
        );
        let e = Error::lxd("launching p-a")(lxd::LxdError::NotFound {
            what: "image x".into(),
        });
        assert!(e.to_string().contains("ldm image list"), "{e}");
    }

    #[test]
    fn only_stdout_and_stderr_writes_are_output_errors() {
        let e = Error::io(
            "create a temporary folder in",
            Some(std::path::Path::new("/tmp")),
        )(io_err());
        assert_eq!(e.to_string(), "cannot create a temporary folder in /tmp: x");
        assert!(!e.is_broken_pipe());
        let pipe = Error::Output(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(pipe.is_broken_pipe());
    }
}
