//! Running a command in an instance: `POST .../exec` with
//! `wait-for-websocket`, then one websocket each for stdin, stdout, stderr
//! and control (`/1.0/operations/ID/websocket?secret=S`, tungstenite over
//! the same kind of stream as the requests). Stdin is sent in binary
//! frames and ended with an empty text frame, as LXD's own client does;
//! stdout and stderr end with the server's empty text frame; the exit code
//! is the finished operation's `metadata.return`.
//!
//! LXD's own failures are told from the command's by the operation, never
//! by words: a refused request on an instance that does not run is
//! [`LxdError::NotRunning`]; an operation that failed without the command
//! ever running (`return` -1: LXD could not start it, as happens for a
//! moment after boot) is [`LxdError::NotReady`]. A command that cannot be
//! found (127) or run (126) is the command's outcome, with LXD's words on
//! its stderr, as `lxc exec` prints them.
//!
//! Interactive shells (`ldm ssh`) run the client program instead: a
//! terminal over the websocket (raw mode, window size, signals) is its job.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;
use tungstenite::{Message, WebSocket};

use super::request::{encode, status, Body};
use super::transport::Stream;
use super::Api;
use crate::lines::{Lines, IN_FLIGHT};
use crate::stopping::Stopping;
use crate::{ExecOutput, LxdError, Stop};

/// Stdin goes out in frames of at most this.
const FRAME: usize = 128 * 1024;

/// One piece of output: from stderr (true) or stdout.
type Chunk = (bool, Vec<u8>);

impl Api {
    /// Runs `argv` in `name` and collects its output.
    pub(super) fn exec_captured(
        &self,
        name: &str,
        argv: &[&str],
        stdin: &[u8],
    ) -> Result<ExecOutput, LxdError> {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let code = self.exec_run(name, argv, stdin, None, &mut |(is_err, bytes)| {
            if is_err {
                stderr.extend_from_slice(&bytes);
            } else {
                stdout.extend_from_slice(&bytes);
            }
        })?;
        Ok(ExecOutput {
            code,
            stdout,
            stderr,
        })
    }

    /// Runs `argv` in `name`, handing each line of its output (stdout and
    /// stderr, as they come, each cut at [`crate::MAX_LINE`]) to `line`; `stop`
    /// as [`crate::Lxd::exec_lines`] says.
    pub(super) fn exec_streamed(
        &self,
        name: &str,
        argv: &[&str],
        stdin: &[u8],
        line: &mut dyn FnMut(&str),
        stop: Stop,
    ) -> Result<i32, LxdError> {
        let mut partial: [Lines; 2] = [Lines::default(), Lines::default()];
        let code = self.exec_run(name, argv, stdin, Some(stop), &mut |(is_err, bytes)| {
            partial[usize::from(is_err)].feed(&bytes, line);
        })?;
        for p in &mut partial {
            p.finish(line);
        }
        Ok(code)
    }

    /// The exec itself; `out` gets the output as it comes.
    fn exec_run(
        &self,
        name: &str,
        argv: &[&str],
        stdin: &[u8],
        stop: Option<Stop>,
        out: &mut dyn FnMut(Chunk),
    ) -> Result<i32, LxdError> {
        let path = self.scoped(&format!("{}/exec", self.instance_path(name)));
        let body = json!({
            "command": argv,
            "environment": {},
            "wait-for-websocket": true,
            "interactive": false,
            "record-output": false,
        });
        let started = self.patiently(name, || self.start("POST", &path, Body::Json(&body), None));
        let started = match started {
            Ok(s) => s,
            Err(e @ LxdError::Refused { .. }) => return Err(self.exec_refused(name, e)?),
            Err(e) => return Err(e),
        };
        let request = started.request.clone();
        let fds = started.op.metadata["fds"].clone();
        let secret = |k: &str| fds[k].as_str().map(str::to_string);
        let (Some(s0), Some(s1), Some(s2), Some(sc)) =
            (secret("0"), secret("1"), secret("2"), secret("control"))
        else {
            return Err(self.protocol(
                &request,
                "the exec operation names no websockets (fds 0, 1, 2, control)",
            ));
        };
        let id = started.op.id.clone();
        let ws = |s: &str| self.websocket(&id, s, &request);
        // The control socket first: LXD kills the command if stdout's is
        // left without it.
        let mut control = ws(&sc)?;
        let (mut w0, mut w1, mut w2) = (ws(&s0)?, ws(&s1)?, ws(&s2)?);
        // Output sockets are only read. LXD pings them every 10 s and needs
        // no answer; once the command ends it may close them before ldm
        // has read what they hold, and a pong written to a closed socket
        // would fail the reads of the output still buffered.
        w1.get_mut().read_only = true;
        w2.get_mut().read_only = true;
        // Bounded: output that comes faster than it is printed waits in
        // the socket, not in ldm's memory.
        let (tx, rx) = mpsc::sync_channel::<Chunk>(IN_FLIGHT);
        // Not joined: a command that exits without reading all its stdin
        // leaves the writer blocked until the server drops the socket.
        let input = stdin.to_vec();
        std::thread::spawn(move || feed(&mut w0, &input));
        // Not scoped: a command that outlives SIGKILL's grace leaves its
        // readers blocked until the server drops the sockets.
        for (is_err, mut w) in [(false, w1), (true, w2)] {
            let tx = tx.clone();
            std::thread::spawn(move || drain(&mut w, is_err, &tx));
        }
        drop(tx);
        let mut stopping = Stopping::default();
        loop {
            match rx.recv_timeout(POLL) {
                Ok(chunk) => out(chunk),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Some(stop) = stop {
                let due = stopping.due(stop);
                if let Ok(Some(sig)) = due {
                    signal(&mut control, sig);
                }
                if due.is_err() {
                    // Closing the control socket is LXD's cue to kill it.
                    let _ = control.close(None);
                    let _ = control.flush();
                    return Err(LxdError::Unstoppable {
                        what: name.to_string(),
                        cmd: argv.join(" "),
                    });
                }
            }
        }
        let op = self.wait_done(started, None)?;
        let _ = control.close(None);
        let _ = control.flush();
        let code = op.metadata["return"]
            .as_i64()
            .and_then(|c| i32::try_from(c).ok());
        match code {
            Some(c) if c >= 0 => {
                if !op.succeeded() && !op.err.is_empty() {
                    // "Command not found": LXD's words, where `lxc exec` prints them.
                    out((true, format!("Error: {}\n", op.err).into_bytes()));
                }
                Ok(c)
            }
            // The command never ran: LXD's failure, not the command's.
            _ => {
                let running = self
                    .state_of(name)?
                    .is_some_and(|s| super::instances::is_running(&s.status));
                if running {
                    Err(LxdError::NotReady {
                        cmd: argv.join(" "),
                        stderr: self.failed(&request, &op).to_string(),
                    })
                } else {
                    Err(LxdError::NotRunning {
                        what: name.to_string(),
                    })
                }
            }
        }
    }

    /// A refused exec: the instance is missing, or not running, or the
    /// refusal stands.
    fn exec_refused(&self, name: &str, e: LxdError) -> Result<LxdError, LxdError> {
        if status(&e) == Some(404) {
            return Ok(LxdError::NotFound {
                what: format!("instance {name}"),
            });
        }
        Ok(match self.state_of(name)? {
            None => LxdError::NotFound {
                what: format!("instance {name}"),
            },
            Some(s) if !super::instances::is_running(&s.status) => LxdError::NotRunning {
                what: name.to_string(),
            },
            Some(_) => e,
        })
    }

    /// One of an operation's websockets.
    fn websocket(
        &self,
        id: &str,
        secret: &str,
        request: &str,
    ) -> Result<WebSocket<WsStream>, LxdError> {
        let conn = self.conn()?;
        let stream = conn.endpoint.open().map_err(|e| LxdError::Unreachable {
            server: format!("{} at {}", self.who(), conn.endpoint),
            source: e,
            next: "it answered a moment ago; run the command again".into(),
        })?;
        let url = format!(
            "{}/1.0/operations/{}/websocket?secret={}",
            conn.endpoint.ws_base(),
            encode(id),
            encode(secret)
        );
        let stream = WsStream {
            inner: stream,
            read_only: false,
        };
        tungstenite::client::client(url.as_str(), stream)
            .map(|(ws, _)| ws)
            .map_err(|e| self.protocol(request, format!("its websocket did not open: {e}")))
    }

    /// `program exec -- [REMOTE:]NAME ARGV` on this terminal.
    fn shell(&self, name: &str, argv: &[&str]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg("exec").arg("--").arg(self.at(name)).args(argv);
        cmd
    }

    /// Runs `argv` with the client program on this terminal.
    pub(super) fn shell_attached(&self, name: &str, argv: &[&str]) -> Result<i32, LxdError> {
        let mut cmd = self.shell(name, argv);
        cmd.status()
            .map(|s| s.code().unwrap_or(128 + 9))
            .map_err(|e| self.no_program(e))
    }

    /// Replaces this process with the client program running `argv`.
    pub(super) fn shell_replace(&self, name: &str, argv: &[&str]) -> LxdError {
        let e = self.shell(name, argv).exec();
        self.no_program(e)
    }

    fn no_program(&self, e: std::io::Error) -> LxdError {
        LxdError::Unreachable {
            server: format!("the {} client program {}", self.who(), self.program.to_string_lossy()),
            source: e,
            next: format!(
                "ldm runs it for interactive shells; install it, or set LDM_LXC to its path (the {} client: `{}`)",
                self.who(),
                self.family.program()
            ),
        }
    }
}

/// How often a running command's `stop` is asked.
const POLL: Duration = Duration::from_millis(100);

/// Sends signal `sig` to the command (LXD's exec control message).
fn signal(control: &mut WebSocket<WsStream>, sig: i32) {
    let msg = json!({"command": "signal", "signal": sig}).to_string();
    // A control socket that is gone means the command is too.
    let _ = control.send(Message::Text(msg.into()));
}

/// Sends `bytes` then the end (an empty text frame).
fn feed(ws: &mut WebSocket<WsStream>, bytes: &[u8]) {
    for chunk in bytes.chunks(FRAME) {
        if ws.send(Message::Binary(chunk.to_vec().into())).is_err() {
            return;
        }
    }
    if ws.send(Message::Text(String::new().into())).is_ok() {
        let _ = ws.close(None);
        let _ = ws.flush();
    }
}

/// Reads binary frames into `tx` until the server's end (an empty text
/// frame or a close).
fn drain(ws: &mut WebSocket<WsStream>, is_err: bool, tx: &mpsc::SyncSender<Chunk>) {
    loop {
        match ws.read() {
            Ok(Message::Binary(b)) => {
                if tx.send((is_err, b.to_vec())).is_err() {
                    return;
                }
            }
            Ok(Message::Text(_)) | Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// A websocket's stream, whose writes may be dropped once its handshake is
/// done (`read_only`: the output sockets).
pub(super) struct WsStream {
    inner: Stream,
    read_only: bool,
}

impl Read for WsStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Write for WsStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.read_only {
            return Ok(buf.len());
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.inner.flush()
    }
}
