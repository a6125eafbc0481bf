//! The socket side: one thread per connection, requests read in turn
//! (keep-alive), each logged, put through the knobs, routed, answered.

use std::io::BufReader;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use crate::http::{self, ReadError, Req, Response};
use crate::knobs::HangAt;
use crate::log::{Body, Request};
use crate::ops::{OpKnobs, Operation};
use crate::shared::Shared;

/// What a handler answers.
pub(crate) enum Reply {
    /// A sync answer: status (200, or 201 for a creation) and metadata,
    /// with extra headers.
    Sync(u16, Value, Vec<(String, String)>),
    /// An error answer: status and LXD's text.
    Error(u16, String),
    /// An operation was created (202).
    Async(Box<Operation>),
    /// A raw answer (a pulled file).
    Raw(Response),
    /// Switch to a websocket of exec operation `.0`, stream `.1`.
    Upgrade(String, String),
}

impl Reply {
    /// A 200 sync answer.
    pub fn ok(v: Value) -> Reply {
        Reply::Sync(200, v, Vec::new())
    }

    /// An error answer.
    pub fn err(status: u16, text: impl Into<String>) -> Reply {
        Reply::Error(status, text.into())
    }
}

/// What a handler knows of its request beyond it.
pub(crate) struct Ctx {
    /// What the knobs do to an operation the request creates.
    pub op_knobs: OpKnobs,
}

/// The pid of the process at the other end (`SO_PEERCRED`).
fn peer_pid(s: &UnixStream) -> Option<i32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a ucred.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0 && cred.pid > 0).then_some(cred.pid)
}

/// Accepts connections until the double stops.
pub(crate) fn accept_loop(shared: Arc<Shared>, listener: UnixListener) {
    for stream in listener.incoming() {
        if shared.stopping() {
            return;
        }
        let Ok(stream) = stream else { continue };
        let id = {
            let mut g = shared.lock();
            g.next_conn += 1;
            let id = g.next_conn;
            if let Ok(clone) = stream.try_clone() {
                g.conns.insert(id, clone);
            }
            id
        };
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            serve(&s, stream);
            s.lock().conns.remove(&id);
        });
    }
}

/// The error envelope.
pub(crate) fn error_body(status: u16, text: &str) -> Value {
    json!({"type": "error", "status": "", "status_code": 0, "operation": "",
           "error_code": status, "error": text, "metadata": null})
}

/// One connection.
fn serve(shared: &Arc<Shared>, stream: UnixStream) {
    let peer = peer_pid(&stream);
    let Ok(mut w) = stream.try_clone() else {
        return;
    };
    let mut r = BufReader::new(stream);
    loop {
        let req = match http::read_request(&mut r, &mut w) {
            Ok(req) => req,
            Err(ReadError::Bad(text)) => {
                let _ = http::write_response(
                    &mut w,
                    &Response::json(400, &error_body(400, &text), vec![]),
                    false,
                );
                return;
            }
            Err(ReadError::Closed | ReadError::Io) => return,
        };
        let (seq, decision) = begin(shared, &req, peer);
        if decision.hang.contains(&HangAt::Request) {
            hang(shared, HangAt::Request, &req, peer);
        }
        let mut ctx = Ctx {
            op_knobs: OpKnobs {
                duration: decision.slow.unwrap_or_default(),
                fail: decision.fail_operation.clone(),
                hold: None,
            },
        };
        if decision.hang.contains(&HangAt::Operation) {
            let mut g = shared.lock();
            let id = g.add_hang(HangAt::Operation, &req.method, &req.target, peer);
            ctx.op_knobs.hold = Some(id);
        }
        let reply = match &decision.fail {
            Some((status, text)) => Reply::Error(*status, text.clone()),
            None => crate::api::route(shared, &req, &mut ctx),
        };
        if let Some(h) = ctx.op_knobs.hold {
            // Tie the held operation to its hang point, or drop the point
            // if the request made none.
            let mut g = shared.lock();
            let op = match &reply {
                Reply::Async(op) => Some(op.id.clone()),
                _ => None,
            };
            match op {
                Some(id) => {
                    if let Some(hp) = g.hangs.iter_mut().find(|x| x.id == h) {
                        hp.operation = Some(id);
                    }
                }
                None => g.hangs.retain(|x| x.id != h),
            }
            shared.notify();
        }
        if !matches!(reply, Reply::Async(_)) {
            if let Some(t) = decision.slow {
                std::thread::sleep(t);
            }
        }
        if decision.hang.contains(&HangAt::Response) {
            hang(shared, HangAt::Response, &req, peer);
        }
        let (resp, op) = match reply {
            Reply::Upgrade(op, fd) => {
                let leftover = r.buffer().to_vec();
                end(shared, seq, 101, None);
                crate::ws::serve(shared, &req, w, leftover, &op, &fd);
                return;
            }
            reply => answer(reply),
        };
        // Logged as answered before the answer goes, so a client that has
        // read it finds it logged; unmarked if it could not be sent.
        end(shared, seq, resp.status, op);
        let sent = http::write_response(&mut w, &resp, req.keep_alive).is_ok();
        if !sent {
            if let Some(e) = shared.lock().request_mut(seq) {
                e.end = None;
            }
        }
        if !sent || !req.keep_alive || shared.stopping() {
            return;
        }
    }
}

/// Logs the request and asks the knobs about it.
fn begin(shared: &Shared, req: &Req, peer: Option<i32>) -> (u64, crate::knobs::Decision) {
    let body = if req.body.is_empty() {
        Body::Empty
    } else {
        match serde_json::from_slice::<Value>(&req.body) {
            Ok(v) if req.header("content-type") != Some("application/octet-stream") => {
                Body::Json(v)
            }
            _ => Body::Bytes(req.body.clone()),
        }
    };
    let mut g = shared.lock();
    g.seq += 1;
    let seq = g.seq;
    g.log.push(Request {
        seq,
        method: req.method.clone(),
        target: req.target.clone(),
        body,
        headers: req.headers.clone(),
        start: Instant::now(),
        end: None,
        status: None,
        operation: None,
        peer_pid: peer,
    });
    let d = g.knobs.decide(&req.method, req.path());
    shared.notify();
    (seq, d)
}

/// Marks request `seq` answered.
fn end(shared: &Shared, seq: u64, status: u16, op: Option<String>) {
    let mut g = shared.lock();
    if let Some(e) = g.request_mut(seq) {
        e.end = Some(Instant::now());
        e.status = Some(status);
        e.operation = op;
    }
    shared.notify();
}

/// Holds the request at `at` until the test releases it.
fn hang(shared: &Shared, at: HangAt, req: &Req, peer: Option<i32>) {
    let mut g = shared.lock();
    let id = g.add_hang(at, &req.method, &req.target, peer);
    shared.notify();
    let _g = shared.wait_while(g, None, |i| !i.released(id));
}

/// The HTTP answer of a reply, and the operation it names.
fn answer(reply: Reply) -> (Response, Option<String>) {
    match reply {
        Reply::Sync(status, metadata, headers) => {
            let v = json!({"type": "sync", "status": "Success", "status_code": 200, "operation": "",
                           "error_code": 0, "error": "", "metadata": metadata});
            (Response::json(status, &v, headers), None)
        }
        Reply::Error(status, text) => (
            Response::json(status, &error_body(status, &text), vec![]),
            None,
        ),
        Reply::Async(op) => {
            let url = op.url();
            let v = json!({"type": "async", "status": "Operation created", "status_code": 100,
                           "operation": url, "error_code": 0, "error": "", "metadata": op.render()});
            let headers = vec![("Location".to_string(), url)];
            (Response::json(202, &v, headers), Some(op.id))
        }
        Reply::Raw(resp) => (resp, None),
        Reply::Upgrade(..) => unreachable!("upgrades are served before answering"),
    }
}
