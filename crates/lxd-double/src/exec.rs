//! `POST /1.0/instances/NAME/exec`: a command "runs" as rules the test
//! sets say (stdout, stderr, exit code, how long, whether it reads its
//! stdin to the end), with LXD's websockets: `0` stdin, `1` stdout, `2`
//! stderr, `control` for signals (interactive: `0` both ways, and
//! `control`). The exit code is the finished operation's
//! `metadata.return`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::api::{body, bool_field, map_field, project};
use crate::http::Req;
use crate::ops::{self, OpStatus};
use crate::server::{Ctx, Reply};
use crate::shared::Shared;
use crate::util;

pub use crate::rules::ExecRule;

/// One command run, as the test inspects it.
#[derive(Debug, Clone)]
pub struct Exec {
    /// Its operation.
    pub operation: String,
    /// The LXD project.
    pub project: String,
    /// The instance.
    pub instance: String,
    /// `command`.
    pub command: Vec<String>,
    /// `environment`, with LXD's defaults added.
    pub environment: BTreeMap<String, String>,
    /// `user`, `group`, `cwd`.
    pub user: u64,
    /// The group.
    pub group: u64,
    /// The working folder.
    pub cwd: String,
    /// `interactive`.
    pub interactive: bool,
    /// What it received on stdin.
    pub stdin: Vec<u8>,
    /// The signals sent on the control socket.
    pub signals: Vec<i32>,
    /// Its exit code, once it ended.
    pub code: Option<i32>,
}

/// The running side of one exec with websockets.
#[derive(Debug, Default)]
pub(crate) struct Session {
    pub interactive: bool,
    /// Stream name (`0`, `1`, `2`, `control`) -> secret.
    pub secrets: BTreeMap<String, String>,
    pub connected: BTreeSet<String>,
    pub stdin_eof: bool,
    /// Output for each output stream once the command ended.
    pub out: BTreeMap<String, Vec<u8>>,
    /// Output streams that sent theirs and the end barrier.
    pub sent: BTreeSet<String>,
    /// The command is being killed (control closed, client gone).
    pub killed: bool,
    /// The operation ended: close every websocket.
    pub done: bool,
}

impl Session {
    fn required(&self) -> Vec<&'static str> {
        if self.interactive {
            vec!["0", "control"]
        } else {
            vec!["0", "1", "2"]
        }
    }

    /// The streams that carry output.
    pub fn outputs(&self) -> Vec<&'static str> {
        if self.interactive {
            vec!["0"]
        } else {
            vec!["1", "2"]
        }
    }
}

/// `POST .../exec`.
pub(crate) fn post(shared: &Arc<Shared>, req: &Req, ctx: &mut Ctx, name: &str) -> Reply {
    let b = match body(req) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let command: Vec<String> = match b.get("command").map(|c| serde_json::from_value(c.clone())) {
        Some(Ok(c)) => c,
        Some(Err(e)) => return Reply::err(400, format!("json: {e}")),
        None => Vec::new(),
    };
    let (mut env, wait_ws, interactive) = match (
        map_field(&b, "environment"),
        bool_field(&b, "wait-for-websocket"),
        bool_field(&b, "interactive"),
    ) {
        (Ok(e), Ok(w), Ok(i)) => (e, w, i),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
    };
    let user = b.get("user").and_then(Value::as_u64).unwrap_or(0);
    let group = b.get("group").and_then(Value::as_u64).unwrap_or(0);
    let cwd = b
        .get("cwd")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let p = project(req);
    let mut g = shared.lock();
    let Some(inst) = g.state.instance(&p, name) else {
        return crate::api::no_instance();
    };
    match inst.status {
        crate::Status::Stopped => return Reply::err(400, "Instance is not running"),
        crate::Status::Frozen => return Reply::err(400, "Instance is frozen"),
        crate::Status::Running => {}
    }
    for (k, v) in &inst.config {
        if let Some(var) = k.strip_prefix("environment.") {
            env.entry(var.into()).or_insert(v.clone());
        }
    }
    env.entry("PATH".into())
        .or_insert("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    if user == 0 {
        env.entry("HOME".into()).or_insert("/root".into());
        env.entry("USER".into()).or_insert("root".into());
    }
    env.entry("LANG".into()).or_insert("C.UTF-8".into());
    let resources = ops::instance_resources(&g.state, &p, &[name]);
    let mut session = Session {
        interactive,
        ..Session::default()
    };
    let (class, metadata) = if wait_ws {
        let streams: &[&str] = if interactive {
            &["0", "control"]
        } else {
            &["0", "1", "2", "control"]
        };
        for s in streams {
            session.secrets.insert(s.to_string(), util::secret());
        }
        let fds = session.secrets.clone();
        let meta =
            json!({"fds": fds, "command": command, "environment": env, "interactive": interactive});
        ("websocket", meta)
    } else {
        session.stdin_eof = true;
        ("task", Value::Null)
    };
    let op = ops::register(&mut g, class, "Executing command", &p, resources, metadata);
    g.execs.push(Exec {
        operation: op.id.clone(),
        project: p,
        instance: name.into(),
        command,
        environment: env,
        user,
        group,
        cwd,
        interactive,
        stdin: Vec::new(),
        signals: Vec::new(),
        code: None,
    });
    g.sessions.insert(op.id.clone(), session);
    drop(g);
    let (s, id, wait) = (Arc::clone(shared), op.id.clone(), ctx.op_knobs.clone());
    std::thread::spawn(move || run(&s, &id, wait_ws, wait));
    Reply::Async(Box::new(op))
}

/// `GET /1.0/operations/ID/websocket?secret=S`: which stream to attach.
pub(crate) fn websocket(shared: &Arc<Shared>, req: &Req, id: &str) -> Reply {
    let g = shared.lock();
    if g.op(id).filter(|o| ops::visible(&g, o)).is_none() {
        return Reply::err(404, "Operation not found");
    }
    let Some(session) = g
        .sessions
        .get(id)
        .filter(|s| !s.done && !s.secrets.is_empty())
    else {
        return Reply::err(400, "Only websocket operations can be connected");
    };
    let secret = req.query("secret").unwrap_or("");
    if secret.is_empty() {
        return Reply::err(500, "missing secret");
    }
    let Some(fd) = session
        .secrets
        .iter()
        .find(|(_, s)| *s == secret)
        .map(|(k, _)| k.clone())
    else {
        return Reply::err(403, "permission denied");
    };
    if session.connected.contains(&fd) {
        return Reply::err(500, "Websocket number already connected");
    }
    let upgrade = req
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    if !upgrade || req.header("sec-websocket-key").is_none() {
        return Reply::err(
            400,
            "websocket: the client is not using the websocket protocol: 'upgrade' token not found in 'Connection' header",
        );
    }
    Reply::Upgrade(id.into(), fd)
}

/// Is a signal one that ends a process by default?
fn terminates(sig: i32) -> bool {
    !matches!(sig, 0 | 17..=23 | 28)
}

/// The life of one command.
fn run(shared: &Arc<Shared>, id: &str, wait_ws: bool, knobs: ops::OpKnobs) {
    let mut g = shared.lock();
    if wait_ws {
        let deadline = Instant::now() + g.state.behaviour.websocket_timeout;
        g = shared.wait_while(g, Some(deadline), |i| {
            i.sessions
                .get(id)
                .is_some_and(|s| s.required().iter().any(|f| !s.connected.contains(*f)))
        });
        let ready = g
            .sessions
            .get(id)
            .is_some_and(|s| s.required().iter().all(|f| s.connected.contains(*f)));
        if !ready {
            end(
                shared,
                g,
                id,
                Err("Timed out waiting for websockets to connect".into()),
                None,
            );
            return;
        }
    }
    let Some(exec) = g.execs.iter().find(|e| e.operation == id).cloned() else {
        return;
    };
    let builtin = ExecRule::contains("id -u \"$1\"").stdout("1000\n1000\n");
    let rule = g
        .rules
        .iter()
        .find(|r| r.matches(&exec.instance, &exec.command))
        .cloned()
        .or_else(|| {
            builtin
                .matches(&exec.instance, &exec.command)
                .then_some(builtin)
        })
        .unwrap_or_default();
    if let Some(text) = knobs.fail.clone().or(rule.start_error.clone()) {
        end(shared, g, id, Err(text), Some(-1));
        return;
    }
    let started = Instant::now();
    let limit = (!rule.until_signal).then(|| started + rule.runs.max(knobs.duration));
    let signal = |i: &crate::shared::Inner| {
        i.execs
            .iter()
            .find(|e| e.operation == id)
            .and_then(|e| e.signals.iter().copied().find(|s| terminates(*s)))
    };
    if let Some(h) = knobs.hold {
        g.reach(h);
        shared.notify();
    }
    // Runs until its time is up (and its stdin has ended, if it reads
    // it), a signal ends it, or it is killed.
    let ended = |i: &crate::shared::Inner| {
        let s = i.sessions.get(id);
        let killed = s.is_some_and(|s| s.killed);
        let eof = s.is_none_or(|s| s.stdin_eof);
        let time_up = limit.is_some_and(|l| Instant::now() >= l);
        let held = knobs.hold.is_some_and(|h| !i.released(h));
        killed || signal(i).is_some() || (time_up && !held && (eof || !rule.reads_stdin))
    };
    while !ended(&g) && !shared.stopping() {
        let until = limit.filter(|l| *l > Instant::now());
        g = shared.wait_while(g, until, |i| !ended(i));
    }
    let (code, out, err) = if g.sessions.get(id).is_some_and(|s| s.killed) {
        (137, Vec::new(), Vec::new())
    } else if let Some(sig) = signal(&g) {
        (128 + sig, Vec::new(), Vec::new())
    } else {
        let stdin = g
            .execs
            .iter()
            .find(|e| e.operation == id)
            .map(|e| e.stdin.clone())
            .unwrap_or_default();
        let out = if rule.echo_stdin {
            stdin
        } else {
            rule.stdout.clone()
        };
        (rule.code, out, rule.stderr.clone())
    };
    if let Some(s) = g.sessions.get_mut(id) {
        if s.interactive {
            s.out.insert("0".into(), [out, err].concat());
        } else {
            s.out.insert("1".into(), out);
            s.out.insert("2".into(), err);
        }
    }
    shared.notify();
    // LXD ends the operation once the output streams are flushed.
    if wait_ws {
        let deadline = Instant::now() + Duration::from_secs(5);
        g = shared.wait_while(g, Some(deadline), |i| {
            i.sessions.get(id).is_some_and(|s| {
                s.outputs()
                    .iter()
                    .any(|f| s.connected.contains(*f) && !s.sent.contains(*f))
            })
        });
    }
    // LXD turns these exit codes into errors: the operation fails, with
    // the code still in `return`.
    let outcome = match code {
        127 => Err("Command not found".to_string()),
        126 => Err("Command not executable".to_string()),
        _ => Ok(()),
    };
    end(shared, g, id, outcome, Some(code));
}

/// Ends the exec operation with `return` = `code`.
fn end(
    shared: &Arc<Shared>,
    mut g: std::sync::MutexGuard<'_, crate::shared::Inner>,
    id: &str,
    outcome: Result<(), String>,
    code: Option<i32>,
) {
    if let Some(c) = code {
        if let Some(op) = g.op_mut(id) {
            if !op.metadata.is_object() {
                op.metadata = json!({});
            }
            op.metadata["return"] = json!(c);
        }
        if let Some(e) = g.execs.iter_mut().find(|e| e.operation == id) {
            e.code = Some(c);
        }
    }
    ops::finish(&mut g, id, outcome.map(|_| None));
    if let Some(s) = g.sessions.get_mut(id) {
        s.done = true;
    }
    debug_assert!(g.op(id).is_none_or(|o| o.status != OpStatus::Running));
    shared.notify();
}
