//! One run of the client program: [`Invocation`] holds the program, argv
//! and stdin bytes (never a shell string) and knows how to run them:
//! captured, attached to the terminal, or with progress on stderr. Its
//! `Display` is the shell-quoted command line for messages. Failures keep
//! the client's stderr as [`LxdError::Failed`]; reading what that text
//! means is `cli.rs`'s business (cargo's `ProcessBuilder` is the model:
//! "could not start" and "ran and failed" are kept apart).

use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::cli::CliError;
use super::lines::{Lines, CHUNK, IN_FLIGHT};
use super::stopping::Stopping;
use super::{LxdError, Stop};

/// Exit code (`None` if killed by a signal), stdout and stderr of a run.
type Captured = (Option<i32>, Vec<u8>, Vec<u8>);

/// One client command line with its stdin.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub(super) program: OsString,
    pub(super) args: Vec<String>,
    pub(super) stdin: Vec<u8>,
}

impl fmt::Display for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", quote(&self.program.to_string_lossy()))?;
        for a in &self.args {
            write!(f, " {}", quote(a))?;
        }
        Ok(())
    }
}

/// True if an executable named `program` is in a `PATH` folder.
pub(super) fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Quotes `s` for a POSIX shell if it needs it; for messages only.
fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl Invocation {
    /// The error for a client that could not be started or waited for.
    fn spawn_error(&self, source: std::io::Error) -> LxdError {
        LxdError::from(CliError::Spawn {
            cmd: self.to_string(),
            source,
        })
    }

    /// Starts it with stdout and stderr piped, its stdin fed from a thread
    /// (so a child that writes before it reads cannot deadlock against us).
    fn spawn_piped(
        &self,
    ) -> Result<(std::process::Child, Option<std::thread::JoinHandle<()>>), LxdError> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .env("LC_ALL", "C")
            .stdin(if self.stdin.is_empty() {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| self.spawn_error(source))?;
        let feeder = child.stdin.take().map(|mut pipe| {
            let bytes = self.stdin.clone();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            })
        });
        Ok((child, feeder))
    }

    /// Runs it and returns exit code and both streams; spawn failure only is an error.
    pub(super) fn output(&self) -> Result<Captured, LxdError> {
        // wait_with_output drains both pipes while the feeder writes stdin.
        let (child, feeder) = self.spawn_piped()?;
        let out = child
            .wait_with_output()
            .map_err(|source| self.spawn_error(source))?;
        if let Some(t) = feeder {
            let _ = t.join();
        }
        Ok((out.status.code(), out.stdout, out.stderr))
    }

    /// Runs it, handing each line of stdout and stderr to `each` as it
    /// comes (lossy UTF-8, without the newline, cut at [`super::MAX_LINE`]);
    /// returns the exit code and the last 64 KiB of stderr, which says
    /// what failed. A signal `stop` names goes to the client program
    /// (`lxc exec` passes it on to the command), then SIGTERM and SIGKILL
    /// ([`Stopping`]).
    pub(super) fn lines(
        &self,
        each: &mut dyn FnMut(&str),
        stop: Option<Stop>,
    ) -> Result<(Option<i32>, Vec<u8>), LxdError> {
        use std::io::Read;
        use std::sync::mpsc;
        let (mut child, feeder) = self.spawn_piped()?;
        // Bounded: output that comes faster than it is printed waits in
        // the pipe, not in ldm's memory.
        let (tx, rx) = mpsc::sync_channel::<(bool, Vec<u8>)>(IN_FLIGHT);
        let out = child
            .stdout
            .take()
            .map(|p| (false, Box::new(p) as Box<dyn std::io::Read + Send>));
        let err = child
            .stderr
            .take()
            .map(|p| (true, Box::new(p) as Box<dyn std::io::Read + Send>));
        for (is_err, mut pipe) in out.into_iter().chain(err) {
            let tx = tx.clone();
            // Not joined: they end with the pipes, which end with the
            // child and whatever it left running.
            std::thread::spawn(move || {
                let mut buf = vec![0; CHUNK];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 || tx.send((is_err, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut tail = Vec::new();
        let mut split = [Lines::default(), Lines::default()];
        let mut stopping = Stopping::default();
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok((is_err, bytes)) => {
                    if is_err {
                        tail.extend_from_slice(&bytes);
                        if tail.len() > 64 * 1024 {
                            tail.drain(..tail.len() - 64 * 1024);
                        }
                    }
                    split[usize::from(is_err)].feed(&bytes, each);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            let Some(stop) = stop else { continue };
            match stopping.due(stop) {
                Ok(Some(sig)) => {
                    // SAFETY: kill(2) on the child this process spawned
                    // and has not reaped.
                    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
                }
                Ok(None) => {}
                // Its pipes are held by what it left running: stop
                // reading them.
                Err(()) => break,
            }
        }
        for s in &mut split {
            s.finish(each);
        }
        if let Some(t) = feeder {
            let _ = t.join();
        }
        let status = child.wait().map_err(|source| self.spawn_error(source))?;
        Ok((status.code(), tail))
    }

    /// Runs it with this process's terminal; returns the exit code.
    pub(super) fn attached(&self) -> Result<Option<i32>, LxdError> {
        Command::new(&self.program)
            .args(&self.args)
            .status()
            .map(|s| s.code())
            .map_err(|source| self.spawn_error(source))
    }

    /// Runs it with stdout sent to stderr (progress) and stderr captured.
    pub(super) fn run_with_progress(&self) -> Result<(), LxdError> {
        let child = Command::new(&self.program)
            .args(&self.args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                std::io::stderr()
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|source| self.spawn_error(source))?,
            ))
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| self.spawn_error(source))?;
        let out = child
            .wait_with_output()
            .map_err(|source| self.spawn_error(source))?;
        if out.status.success() {
            return Ok(());
        }
        Err(self.failed(out.status.code(), &out.stderr))
    }

    /// Runs it; a non-zero exit is [`LxdError::Failed`] with the client's stderr.
    pub(super) fn run(&self) -> Result<Vec<u8>, LxdError> {
        let (code, stdout, stderr) = self.output()?;
        if code == Some(0) {
            return Ok(stdout);
        }
        Err(self.failed(code, &stderr))
    }

    /// The error for a run that exited non-zero (or was killed).
    fn failed(&self, code: Option<i32>, stderr: &[u8]) -> LxdError {
        LxdError::from(CliError::Failed {
            cmd: self.to_string(),
            code,
            stderr: String::from_utf8_lossy(stderr).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_what_a_shell_would_split() {
        let inv = Invocation {
            program: "lxc".into(),
            args: vec!["exec".into(), "p-a".into(), "it's $(x)".into()],
            stdin: Vec::new(),
        };
        assert_eq!(inv.to_string(), r"lxc exec p-a 'it'\''s $(x)'");
    }
}
