//! [`LxdError`]: what a failed LXD operation was, by kind.

use std::time::Duration;

use thiserror::Error;

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
    /// [`STOP_GRACE`](crate::STOP_GRACE) after each.
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
