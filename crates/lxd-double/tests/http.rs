//! The HTTP layer: keep-alive, bodies by length and chunked, `Expect:
//! 100-continue`, errors for unknown paths and methods, and the request
//! log (with the client's pid).

mod client;

use client::{call, double, get, Conn};
use lxd_double::{Body, Match};

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let (_t, d) = double();
    let mut c = Conn::open(d.socket());
    for _ in 0..3 {
        let a = c.call("GET", "/1.0", b"");
        assert_eq!(a.status, 200);
        assert_eq!(a.json()["type"], "sync");
        assert_eq!(a.meta()["environment"]["server"], "lxd");
    }
    assert_eq!(d.requests().len(), 3);
}

#[test]
fn chunked_and_continued_bodies_arrive_whole() {
    let (_t, d) = double();
    d.seed("default", "c1", lxd_double::Instance::stopped());
    let mut c = Conn::open(d.socket());
    let body = br#"{"config":{"user.a":"1"}}"#;
    let (a, b) = body.split_at(10);
    let mut raw =
        b"PATCH /1.0/instances/c1 HTTP/1.1\r\nHost: lxd\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    raw.extend_from_slice(format!("{:x}\r\n", a.len()).as_bytes());
    raw.extend_from_slice(a);
    raw.extend_from_slice(format!("\r\n{:x};ext=1\r\n", b.len()).as_bytes());
    raw.extend_from_slice(b);
    raw.extend_from_slice(b"\r\n0\r\n\r\n");
    c.send_raw(&raw);
    assert_eq!(c.read().status, 200);
    assert_eq!(d.instance("default", "c1").unwrap().config["user.a"], "1");

    // Expect: 100-continue gets its interim answer before the body.
    let body = br#"{"config":{"user.b":"2"}}"#;
    c.send_raw(format!("PATCH /1.0/instances/c1 HTTP/1.1\r\nHost: lxd\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
    assert_eq!(c.read().status, 100);
    c.send_raw(body);
    assert_eq!(c.read().status, 200);
    assert_eq!(d.instance("default", "c1").unwrap().config["user.b"], "2");
    let log = d.requests();
    assert_eq!(
        log[0].json()["config"]["user.a"],
        "1",
        "the log has the decoded body"
    );
}

#[test]
fn long_json_answers_are_chunked_as_go_does_and_files_never() {
    let (_t, d) = double();
    let mut c = Conn::open(d.socket());
    let a = c.call("GET", "/1.0", b"");
    assert_eq!(
        a.header("Transfer-Encoding"),
        Some("chunked"),
        "GET /1.0 is longer than 2 KiB"
    );
    assert!(a.header("Content-Length").is_none());
    assert_eq!(a.meta()["api_version"], "1.0");
    let short = c.call("GET", "/1.0/instances", b"");
    assert_eq!(short.header("Content-Length"), Some("108"));
    d.seed(
        "default",
        "c1",
        lxd_double::Instance::stopped().file("/tmp/big", &[7u8; 5000]),
    );
    let f = c.call("GET", "/1.0/instances/c1/files?path=/tmp/big", b"");
    assert_eq!(
        (f.header("Content-Length"), f.body.len()),
        (Some("5000"), 5000)
    );
}

#[test]
fn unknown_paths_are_404_and_unknown_methods_501() {
    let (_t, d) = double();
    let a = get(&d, "/1.0/nope");
    assert_eq!((a.status, a.error().as_str()), (404, "not found"));
    assert_eq!(a.json()["error_code"], 404);
    assert_eq!(a.json()["type"], "error");
    let a = call(&d, "PATCH", "/1.0/operations", "");
    assert_eq!((a.status, a.error().as_str()), (501, "not implemented"));
    assert_eq!(get(&d, "/").meta(), serde_json::json!(["/1.0"]));
}

#[test]
fn a_malformed_request_is_a_400_and_closes() {
    let (_t, d) = double();
    let mut c = Conn::open(d.socket());
    c.send_raw(b"GET /1.0 HTTP/1.1\r\nContent-Length: x\r\n\r\n");
    assert_eq!(c.read().status, 400);
}

#[test]
fn bad_json_is_a_400() {
    let (_t, d) = double();
    let a = call(&d, "POST", "/1.0/instances", "{nope");
    assert_eq!(a.status, 400);
    assert!(
        a.error().contains("JSON") || a.error().contains("key"),
        "{}",
        a.error()
    );
}

#[test]
fn the_log_has_method_target_body_times_status_and_the_peer_pid() {
    let (_t, d) = double();
    d.seed("default", "c1", lxd_double::Instance::running());
    let a = call(
        &d,
        "PUT",
        "/1.0/instances/c1/state?project=default",
        r#"{"action":"stop"}"#,
    );
    let op = a.op();
    let mut c = Conn::open(d.socket());
    c.send(
        "POST",
        "/1.0/instances/c1/files?path=/tmp/x",
        &[("Content-Type", "application/octet-stream")],
        b"{}",
    );
    assert_eq!(c.read().status, 200);
    let log = d.take_requests();
    assert_eq!(log.len(), 2);
    let r = &log[0];
    assert_eq!(r.line(), "PUT /1.0/instances/c1/state?project=default");
    assert_eq!(r.path(), "/1.0/instances/c1/state");
    assert_eq!(r.query("project").as_deref(), Some("default"));
    assert_eq!(r.segments(), ["1.0", "instances", "c1", "state"]);
    assert_eq!(r.json()["action"], "stop");
    assert_eq!(
        (r.status, r.operation.as_deref()),
        (Some(202), Some(op.as_str()))
    );
    assert!(r.end.unwrap() >= r.start);
    assert_eq!(
        r.peer_pid,
        Some(std::process::id() as i32),
        "SO_PEERCRED names this process"
    );
    assert!(r.is("PUT", "/1.0/instances/*/state"));
    assert_eq!(
        log[1].body,
        Body::Bytes(b"{}".to_vec()),
        "a pushed file is bytes, even if it parses"
    );
    assert!(d.requests().is_empty(), "taken");
}

#[test]
fn percent_encoded_segments_are_decoded_for_routing() {
    let (_t, d) = double();
    d.seed("default", "c1", lxd_double::Instance::stopped());
    let a = get(&d, "/1.0/instances/%63%31");
    assert_eq!(a.status, 200);
    assert_eq!(a.meta()["name"], "c1");
    let a = get(&d, "/1.0/instances/c1%2Fx");
    assert_eq!(a.status, 404, "an encoded slash stays in its segment");
    assert_eq!(d.requests()[1].segments()[2], "c1/x");
}

#[test]
fn a_failing_knob_answers_its_status_and_text_without_effect() {
    let (_t, d) = double();
    d.seed("default", "c1", lxd_double::Instance::stopped());
    d.fail(
        Match::new("DELETE", "/1.0/instances/*"),
        500,
        "Failed deleting instance: not found",
    );
    let a = call(&d, "DELETE", "/1.0/instances/c1", "");
    assert_eq!(
        (a.status, a.error().as_str()),
        (500, "Failed deleting instance: not found")
    );
    assert!(
        d.instance("default", "c1").is_some(),
        "the instance is still there"
    );
    d.clear_knobs();
    assert_eq!(call(&d, "DELETE", "/1.0/instances/c1", "").status, 202);
}

#[test]
fn dropping_the_double_removes_its_socket_and_closes_connections() {
    let (t, d) = double();
    let mut c = Conn::open(d.socket());
    assert_eq!(c.call("GET", "/1.0", b"").status, 200);
    let sock = d.socket().to_path_buf();
    drop(d);
    assert!(!sock.exists());
    let mut buf = [0u8; 1];
    use std::io::Read;
    let mut s = c.into_stream();
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "the connection is closed");
    drop(t);
}
