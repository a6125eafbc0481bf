//! Exec over websockets: the fds, stdin forwarded to the end barrier,
//! output and its barrier, the return code, rules, signals on the control
//! socket, and LXD's refusals.

mod client;

use std::os::unix::net::UnixStream;
use std::time::Duration;

use client::{call, double, get, wait};
use lxd_double::{Double, ExecRule, Instance};
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<UnixStream>;

/// Starts `command` in `a` with websockets; the operation id and fds.
fn exec(d: &Double, command: &[&str], interactive: bool) -> (String, Value) {
    let body = json!({"command": command, "environment": {"LDM": "1"}, "wait-for-websocket": true,
                      "interactive": interactive, "record-output": false, "user": 0, "group": 0, "cwd": "/"});
    let a = call(
        d,
        "POST",
        "/1.0/instances/a/exec?project=default",
        &body.to_string(),
    );
    let op = a.meta();
    assert_eq!(op["class"], "websocket");
    assert_eq!(op["description"], "Executing command");
    (
        op["id"].as_str().unwrap().to_string(),
        op["metadata"]["fds"].clone(),
    )
}

fn connect(d: &Double, op: &str, secret: &Value) -> Ws {
    let stream = UnixStream::connect(d.socket()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let url = format!(
        "ws://lxd/1.0/operations/{op}/websocket?secret={}",
        secret.as_str().unwrap()
    );
    tungstenite::client(url.as_str(), stream)
        .expect("websocket handshake")
        .0
}

/// Every byte up to LXD's end barrier (an empty text message).
fn drain(ws: &mut Ws) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        match ws.read().expect("a message before the barrier") {
            Message::Binary(b) => out.extend_from_slice(&b),
            Message::Text(t) if t.is_empty() => return out,
            other => panic!("unexpected {other:?}"),
        }
    }
}

struct Streams {
    stdin: Ws,
    stdout: Ws,
    stderr: Ws,
    control: Ws,
}

/// Connects the streams, control first (the command starts once 0, 1
/// and 2 are there, as on LXD).
fn attach(d: &Double, op: &str, fds: &Value) -> Streams {
    let control = connect(d, op, &fds["control"]);
    Streams {
        stdin: connect(d, op, &fds["0"]),
        stdout: connect(d, op, &fds["1"]),
        stderr: connect(d, op, &fds["2"]),
        control,
    }
}

fn running_double() -> (tempfile::TempDir, Double) {
    let (t, d) = double();
    d.seed("default", "a", Instance::running());
    (t, d)
}

#[test]
fn a_command_gets_its_stdin_and_gives_output_and_a_return_code() {
    let (_t, d) = running_double();
    d.exec_rule(ExecRule::contains("cat").echo().stderr("warn\n").code(3));
    let (op, fds) = exec(&d, &["sh", "-c", "cat"], false);
    assert_eq!(fds.as_object().unwrap().len(), 4, "{fds}");
    let mut s = attach(&d, &op, &fds);
    s.stdin.send(Message::binary(b"hello ".to_vec())).unwrap();
    s.stdin.send(Message::binary(b"world".to_vec())).unwrap();
    s.stdin.send(Message::text("")).unwrap();
    assert_eq!(drain(&mut s.stdout), b"hello world");
    assert_eq!(drain(&mut s.stderr), b"warn\n");
    let done = wait(&d, &op);
    assert_eq!(
        (done["status"].as_str(), done["metadata"]["return"].as_i64()),
        (Some("Success"), Some(3))
    );
    let e = &d.execs()[0];
    assert_eq!(e.command, ["sh", "-c", "cat"]);
    assert_eq!((e.stdin.as_slice(), e.code), (&b"hello world"[..], Some(3)));
    assert_eq!(e.environment["LDM"], "1");
    assert_eq!(
        (
            e.environment["HOME"].as_str(),
            e.environment["LANG"].as_str()
        ),
        ("/root", "C.UTF-8")
    );
    assert!(
        s.stdout.read().is_err(),
        "the server closes the streams when it ends"
    );
    drop(s.control);
}

#[test]
fn rules_match_by_instance_argument_and_last_argument_and_id_is_builtin() {
    let (_t, d) = running_double();
    d.exec_rule(
        ExecRule::contains("echo parent")
            .last("/tmp/x")
            .stdout("dir\n"),
    );
    d.exec_rule(ExecRule::contains("echo").instance("other").code(9));
    for (cmd, out) in [
        (
            vec!["sh", "-c", "echo parent", "sh", "/tmp/x"],
            &b"dir\n"[..],
        ),
        (vec!["sh", "-c", "echo parent", "sh", "/tmp/y"], b""),
        (
            vec!["sh", "-c", "id -u \"$1\" && id -g \"$1\"", "sh", "dev"],
            b"1000\n1000\n",
        ),
    ] {
        let (op, fds) = exec(&d, &cmd, false);
        let mut s = attach(&d, &op, &fds);
        s.stdin.send(Message::text("")).unwrap();
        assert_eq!(drain(&mut s.stdout), out, "{cmd:?}");
        assert_eq!(wait(&d, &op)["metadata"]["return"], 0);
    }
}

#[test]
fn a_command_that_reads_stdin_ends_only_after_stdin_does() {
    let (_t, d) = running_double();
    let (op, fds) = exec(&d, &["chpasswd", "-e"], false);
    let mut s = attach(&d, &op, &fds);
    s.stdin
        .send(Message::binary(b"dev:hash\n".to_vec()))
        .unwrap();
    let still = get(&d, &format!("/1.0/operations/{op}/wait?timeout=1")).meta();
    assert_eq!(still["status"], "Running", "no end barrier yet");
    s.stdin.send(Message::text("")).unwrap();
    assert_eq!(wait(&d, &op)["status"], "Success");
    assert_eq!(d.execs()[0].stdin, b"dev:hash\n");

    d.exec_rule(ExecRule::contains("true").ignores_stdin());
    let (op, fds) = exec(&d, &["true"], false);
    let _s = attach(&d, &op, &fds);
    assert_eq!(
        wait(&d, &op)["metadata"]["return"],
        0,
        "a command that never reads ends anyway"
    );
}

#[test]
fn a_signal_on_the_control_socket_ends_the_command() {
    let (_t, d) = running_double();
    d.exec_rule(ExecRule::contains("sleep").until_signal().ignores_stdin());
    let (op, fds) = exec(&d, &["sleep", "1000"], false);
    let mut s = attach(&d, &op, &fds);
    assert_eq!(
        get(&d, &format!("/1.0/operations/{op}/wait?timeout=0")).meta()["status"],
        "Running"
    );
    s.control
        .send(Message::text(r#"{"command":"signal","signal":2}"#))
        .unwrap();
    assert_eq!(wait(&d, &op)["metadata"]["return"], 130);
    assert_eq!(d.execs()[0].signals, [2]);
    assert_eq!(drain(&mut s.stdout), b"", "killed: no output");
}

#[test]
fn closing_the_control_socket_kills_the_command() {
    let (_t, d) = running_double();
    d.exec_rule(ExecRule::contains("sleep").until_signal());
    let (op, fds) = exec(&d, &["sleep", "1000"], false);
    let s = attach(&d, &op, &fds);
    drop(s.control);
    assert_eq!(wait(&d, &op)["metadata"]["return"], 137);
}

#[test]
fn websockets_must_connect_in_time_with_the_right_secret() {
    let (_t, d) = running_double();
    d.state().behaviour.websocket_timeout = Duration::from_millis(300);
    let (op, fds) = exec(&d, &["true"], false);
    let bad = get(&d, &format!("/1.0/operations/{op}/websocket?secret=nope"));
    assert_eq!(bad.status, 403);
    assert_eq!(
        get(&d, &format!("/1.0/operations/{op}/websocket")).status,
        500,
        "missing secret"
    );
    let no_upgrade = get(
        &d,
        &format!(
            "/1.0/operations/{op}/websocket?secret={}",
            fds["0"].as_str().unwrap()
        ),
    );
    assert_eq!(no_upgrade.status, 400);
    let _stdin = connect(&d, &op, &fds["0"]);
    let twice = get(
        &d,
        &format!(
            "/1.0/operations/{op}/websocket?secret={}",
            fds["0"].as_str().unwrap()
        ),
    );
    assert_eq!(
        (twice.status, twice.error().as_str()),
        (500, "Websocket number already connected")
    );
    let done = wait(&d, &op);
    assert_eq!(
        (done["status"].as_str(), done["err"].as_str()),
        (
            Some("Failure"),
            Some("Timed out waiting for websockets to connect")
        )
    );
}

#[test]
fn exec_refuses_a_stopped_instance_and_can_fail_to_start() {
    let (_t, d) = double();
    d.seed("default", "a", Instance::stopped());
    let a = call(
        &d,
        "POST",
        "/1.0/instances/a/exec",
        r#"{"command":["true"],"wait-for-websocket":true}"#,
    );
    assert_eq!(
        (a.status, a.error().as_str()),
        (400, "Instance is not running")
    );
    assert_eq!(
        call(
            &d,
            "POST",
            "/1.0/instances/zz/exec",
            r#"{"command":["true"]}"#
        )
        .status,
        404
    );
    d.seed("default", "a", Instance::running());
    d.exec_rule(
        ExecRule::contains("true").start_error("Failed to retrieve PID of executing child process"),
    );
    let (op, fds) = exec(&d, &["true"], false);
    let _s = attach(&d, &op, &fds);
    let done = wait(&d, &op);
    assert_eq!(
        done["err"],
        "Failed to retrieve PID of executing child process"
    );
    assert_eq!(done["metadata"]["return"], -1);
}

#[test]
fn interactive_exec_has_one_stream_both_ways_and_control() {
    let (_t, d) = running_double();
    d.exec_rule(ExecRule::contains("bash").stdout("prompt$ ").stderr("err"));
    let (op, fds) = exec(&d, &["bash"], true);
    let names: Vec<&String> = fds.as_object().unwrap().keys().collect();
    assert_eq!(names, ["0", "control"]);
    let mut tty = connect(&d, &op, &fds["0"]);
    let _control = connect(&d, &op, &fds["control"]);
    tty.send(Message::text("")).unwrap();
    assert_eq!(drain(&mut tty), b"prompt$ err");
    assert_eq!(wait(&d, &op)["metadata"]["return"], 0);
}

#[test]
fn exec_without_websockets_is_a_task_with_a_return_code() {
    let (_t, d) = running_double();
    d.exec_rule(ExecRule::contains("false").code(1));
    let a = call(
        &d,
        "POST",
        "/1.0/instances/a/exec",
        r#"{"command":["false"],"wait-for-websocket":false,"record-output":false}"#,
    );
    let done = wait(&d, &a.op());
    assert_eq!(
        (done["class"].as_str(), done["metadata"]["return"].as_i64()),
        (Some("task"), Some(1))
    );
}

#[test]
fn exit_codes_127_and_126_fail_the_operation_as_lxd_does() {
    let (_t, d) = running_double();
    d.exec_rule(ExecRule::contains("nope").code(127));
    d.exec_rule(ExecRule::contains("/tmp").code(126));
    for (cmd, err) in [
        ("nope", "Command not found"),
        ("/tmp", "Command not executable"),
    ] {
        let a = call(
            &d,
            "POST",
            "/1.0/instances/a/exec",
            &json!({"command": [cmd], "wait-for-websocket": false}).to_string(),
        );
        let done = wait(&d, &a.op());
        assert_eq!(
            (done["status"].as_str(), done["err"].as_str()),
            (Some("Failure"), Some(err))
        );
        assert_eq!(
            done["metadata"]["return"],
            if cmd == "nope" { 127 } else { 126 }
        );
    }
}
