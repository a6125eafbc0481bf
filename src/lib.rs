//! ldm: per-project LXD development containers, with a crash-safe project
//! store. The successor of `lxc-dev-manager`, reading and writing the same
//! `containers.yaml`.
//!
//! Modules follow the data: [`model`] (state and mutations, no I/O),
//! [`store`] (the files), [`commands`] (one file per command group), [`cli`]
//! (clap definitions). [`run`] is the single entry point `main.rs` calls.

pub mod cli;
pub mod commands;
pub mod lxd;
pub mod model;
pub mod proxy;
pub mod store;
pub mod yaml;

use std::io::{self, Write};

use thiserror::Error;

pub use commands::run;

/// Any error a command can end with; [`Error::exit_code`] maps it.
#[derive(Debug, Error)]
pub enum Error {
    /// The project store failed or refused.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A value the user gave is not valid.
    #[error(transparent)]
    Invalid(#[from] model::ValidationError),
    /// Arguments that parse but make no sense together.
    #[error("{0}")]
    Usage(String),
    /// The LXD client failed; `doing` says what ldm was doing.
    #[error("{doing}: {source}")]
    Lxd {
        /// What ldm was doing, e.g. "launching webapp-dev".
        doing: String,
        /// The client's failure, with its own message.
        source: lxd::LxdError,
    },
    /// Another live ldm process is running an operation on this container.
    #[error("container {container} is busy: {who}; wait for it to finish")]
    Busy {
        /// Container name.
        container: String,
        /// Who, what and since when.
        who: String,
    },
    /// `doctor` found damage; the report is already printed.
    #[error("{0}")]
    Unhealthy(String),
    /// `doctor` found the project and LXD out of step; the report is printed.
    #[error("{0}")]
    Drift(String),
    /// A command run in a container exited with this code; ldm exits with it too.
    #[error("the command exited with code {0}")]
    Exit(i32),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] io::Error),
}

impl Error {
    /// 0 success, 1 user error, 2 store damage or lock timeout (README, "Exit codes").
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Store(e) if e.is_damage() => 2,
            Error::Unhealthy(_) => 2,
            Error::Exit(code) => *code,
            _ => 1,
        }
    }

    /// True when stdout was closed by the reader (`ldm list | head`): not an error.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl Error {
    /// Wraps an LXD failure with what ldm was doing.
    pub fn lxd(doing: impl Into<String>) -> impl FnOnce(lxd::LxdError) -> Error {
        let doing = doing.into();
        move |source| Error::Lxd { doing, source }
    }
}

/// Writes one line to `out`, for commands' results.
pub fn say(out: &mut dyn Write, line: &str) -> Result<(), Error> {
    writeln!(out, "{line}")?;
    Ok(())
}
