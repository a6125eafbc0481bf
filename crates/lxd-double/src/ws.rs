//! One exec websocket, on the connection that upgraded: stdin in, output
//! out (binary messages, then an empty text message as LXD's end
//! barrier), signals from `control`. When the operation ends the socket is
//! closed without a close frame, as LXD's server does.

use std::io::{ErrorKind, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tungstenite::protocol::Role;
use tungstenite::{Error, Message, WebSocket};

use crate::http::Req;
use crate::shared::Shared;

/// Answers the upgrade and serves stream `fd` of exec operation `op`.
pub(crate) fn serve(
    shared: &Arc<Shared>,
    req: &Req,
    mut stream: UnixStream,
    leftover: Vec<u8>,
    op: &str,
    fd: &str,
) {
    let key = req.header("sec-websocket-key").unwrap_or("");
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
    let mut ws = WebSocket::from_partially_read(stream, leftover, Role::Server, None);
    {
        let mut g = shared.lock();
        if let Some(s) = g.sessions.get_mut(op) {
            s.connected.insert(fd.to_string());
        }
        shared.notify();
    }
    let mut open = true;
    loop {
        // Output to send, or the end.
        let (send, done) = {
            let mut g = shared.lock();
            let Some(s) = g.sessions.get_mut(op) else {
                break;
            };
            let send = if s.out.contains_key(fd) && !s.sent.contains(fd) {
                s.out.get(fd).cloned()
            } else {
                None
            };
            (send, s.done)
        };
        if let Some(bytes) = send {
            // In frames of at most 128 KiB, as LXD's own reads of the
            // command's pipes come. A client gone meanwhile is noticed by
            // the next read.
            if bytes
                .chunks(128 * 1024)
                .all(|c| ws.send(Message::binary(c.to_vec())).is_ok())
            {
                let _ = ws.send(Message::text(""));
            }
            let mut g = shared.lock();
            if let Some(s) = g.sessions.get_mut(op) {
                s.sent.insert(fd.to_string());
            }
            shared.notify();
        }
        if done || shared.stopping() {
            break;
        }
        if !open {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match ws.read() {
            Ok(msg) => received(shared, op, fd, msg),
            Err(Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                open = false;
                closed(shared, op, fd);
            }
        }
    }
    let _ = ws.get_ref().shutdown(Shutdown::Both);
}

/// A message from the client on stream `fd`.
fn received(shared: &Shared, op: &str, fd: &str, msg: Message) {
    let mut g = shared.lock();
    let interactive = g.sessions.get(op).is_some_and(|s| s.interactive);
    match (fd, msg) {
        ("0", Message::Binary(b)) => {
            if let Some(e) = g.execs.iter_mut().find(|e| e.operation == op) {
                e.stdin.extend_from_slice(&b);
            }
        }
        // LXD's barrier (any text message) or a close ends stdin.
        ("0", Message::Text(_) | Message::Close(_)) => {
            if let Some(s) = g.sessions.get_mut(op) {
                s.stdin_eof = true;
            }
        }
        ("control", Message::Text(t)) => {
            let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
            if v["command"] == "signal" {
                if let Some(sig) = v["signal"].as_i64() {
                    if let Some(e) = g.execs.iter_mut().find(|e| e.operation == op) {
                        e.signals.push(sig as i32);
                    }
                }
            }
        }
        ("control", Message::Close(_)) => kill(&mut g, op),
        // Anything read on stdout means the client went away: LXD kills
        // the command unless a control socket is there to do it.
        ("1", Message::Binary(_) | Message::Text(_) | Message::Close(_)) if !interactive => {
            let control = g
                .sessions
                .get(op)
                .is_some_and(|s| s.connected.contains("control"));
            if !control {
                kill(&mut g, op);
            }
        }
        _ => {}
    }
    shared.notify();
}

/// Stream `fd` broke or closed.
fn closed(shared: &Shared, op: &str, fd: &str) {
    let mut g = shared.lock();
    match fd {
        "0" => {
            if let Some(s) = g.sessions.get_mut(op) {
                s.stdin_eof = true;
            }
        }
        "control" => kill(&mut g, op),
        "1" => {
            let control = g
                .sessions
                .get(op)
                .is_some_and(|s| s.connected.contains("control"));
            if !control {
                kill(&mut g, op);
            }
        }
        _ => {}
    }
    shared.notify();
}

fn kill(g: &mut crate::shared::Inner, op: &str) {
    if let Some(s) = g.sessions.get_mut(op) {
        if !s.done {
            s.killed = true;
        }
    }
}
