//! What the LXD client's English means: the messages LXD 5.0 prints (with
//! `LC_ALL=C`) that ldm acts on, turned into typed [`LxdError`]s. The only
//! file that reads the client's text; everything else sees the types.

use super::super::process::Invocation;
use super::super::LxdError;
use super::CliError;

/// Turns a failed client run into a typed error about `what`, by the
/// messages LXD 5.0 prints (`LC_ALL=C`); anything else stays
/// [`LxdError::Failed`] with the client's stderr.
pub(super) fn classify(e: LxdError, what: &str) -> LxdError {
    let LxdError::Cli(CliError::Failed { ref stderr, .. }) = e else {
        return e;
    };
    let lower = stderr.to_lowercase();
    let what = what.to_string();
    if lower.contains("is busy running") {
        // LXD's operation lock: `Instance is busy running a "create" operation`.
        LxdError::Busy {
            what,
            waited: std::time::Duration::ZERO,
        }
    } else if lower.contains("not found")
        || lower.contains("does not exist")
        || lower.contains("doesn't exist")
    {
        LxdError::NotFound { what }
    } else if lower.contains("is already running") || lower.contains("is already stopped") {
        LxdError::AlreadyInState { what }
    } else if lower.contains("already exists") {
        LxdError::AlreadyExists { what }
    } else {
        e
    }
}

/// Failures of device and config changes: LXD's refusal to idmap (no
/// idmapped mounts or shiftfs; a `raw.idmap` outside what /etc/subuid and
/// /etc/subgid allow it), else as [`classify`].
pub(super) fn device_failure(e: LxdError, name: &str, what: &str) -> LxdError {
    let LxdError::Cli(CliError::Failed { ref stderr, .. }) = e else {
        return e;
    };
    let lower = stderr.to_lowercase();
    if lower.contains("idmapping abilities not available") {
        return LxdError::NoShift {
            what: name.to_string(),
        };
    }
    if lower.contains("idmap") {
        return LxdError::IdmapRefused {
            what: name.to_string(),
            stderr: stderr.clone(),
        };
    }
    classify(e, what)
}

/// LXD's own failures of `exec`, told from the command's (whose exit code
/// and stderr `exec` passes through) by LXD's exact messages.
pub(super) fn exec_failure(
    inv: &Invocation,
    name: &str,
    code: i32,
    stderr: &[u8],
) -> Option<LxdError> {
    let text = String::from_utf8_lossy(stderr);
    if code != 0 && text.contains("Instance is not running") {
        return Some(LxdError::NotRunning {
            what: name.to_string(),
        });
    }
    // Exit 255 with this message: LXD could not start the command, as
    // happens for a moment right after the container boots.
    if code == 255 && text.contains("Failed to retrieve PID of executing child process") {
        return Some(LxdError::NotReady {
            cmd: inv.to_string(),
            stderr: text.into_owned(),
        });
    }
    if code != 0 && text.contains("is busy running") {
        return Some(classify(
            LxdError::from(CliError::Failed {
                cmd: inv.to_string(),
                code: Some(code),
                stderr: text.into_owned(),
            }),
            name,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lxd::Client;

    fn failed(stderr: &str) -> LxdError {
        LxdError::from(CliError::Failed {
            cmd: "lxc x".into(),
            code: Some(1),
            stderr: stderr.into(),
        })
    }

    #[test]
    fn known_messages_become_typed_errors() {
        let busy = failed(
            "Error: Failed deleting instance: Instance is busy running a \"create\" operation",
        );
        assert!(matches!(classify(busy, "p-a"), LxdError::Busy { what, .. } if what == "p-a"));
        assert!(matches!(
            classify(failed("Error: Instance not found"), "p-a"),
            LxdError::NotFound { .. }
        ));
        assert!(matches!(
            classify(failed("Error: The instance is already stopped"), "p-a"),
            LxdError::AlreadyInState { .. }
        ));
        assert!(matches!(
            classify(
                failed("Error: This \"instances\" entry already exists"),
                "p-a"
            ),
            LxdError::AlreadyExists { .. }
        ));
        assert!(matches!(
            classify(failed("Error: out of space"), "p-a"),
            LxdError::Cli(CliError::Failed { .. })
        ));
    }

    #[test]
    fn exec_tells_lxd_failures_from_the_command_s() {
        let inv = Client::from_env().0.exec_call("p-a", &["true"]);
        let e = exec_failure(&inv, "p-a", 1, b"Error: Instance is not running\n");
        assert!(matches!(e, Some(LxdError::NotRunning { .. })));
        let e = exec_failure(
            &inv,
            "p-a",
            255,
            b"Error: Failed to retrieve PID of executing child process\n",
        );
        assert!(matches!(e, Some(LxdError::NotReady { .. })));
        // The command's own failure, even with a message that looks alike.
        assert!(exec_failure(&inv, "p-a", 1, b"sh: x: not found\n").is_none());
        assert!(exec_failure(&inv, "p-a", 0, b"Instance is not running").is_none());
    }
}
