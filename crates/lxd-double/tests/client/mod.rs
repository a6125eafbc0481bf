//! A tiny client for the double's own tests: hand-written HTTP/1.1 over a
//! std `UnixStream`, and tungstenite for exec websockets.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use lxd_double::Double;
use serde_json::Value;

/// An answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// `metadata` of the envelope.
    pub fn meta(&self) -> Value {
        self.json()["metadata"].clone()
    }

    /// `error` of an error envelope.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or("").to_string()
    }

    /// Header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The operation id of an async answer.
    pub fn op(&self) -> String {
        assert_eq!(
            self.status,
            202,
            "not async: {}",
            String::from_utf8_lossy(&self.body)
        );
        self.meta()["id"].as_str().unwrap().to_string()
    }
}

/// One keep-alive connection.
pub struct Conn {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Conn {
    pub fn open(socket: &Path) -> Conn {
        let s = UnixStream::connect(socket).expect("connect to the double");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Conn {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    /// Sends a request with a Content-Length body.
    pub fn send(&mut self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: lxd\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method != "GET" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        self.send_raw(&bytes);
    }

    /// Reads one answer.
    pub fn read(&mut self) -> Answer {
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("bad status line {line:?}"))
            .parse()
            .unwrap();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.r.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let chunked = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked");
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse::<usize>().unwrap())
            .unwrap_or(0);
        let mut body = vec![0; len];
        self.r.read_exact(&mut body).unwrap();
        if chunked {
            loop {
                let mut size = String::new();
                self.r.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                self.r.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        Answer {
            status,
            headers,
            body,
        }
    }

    /// A request and its answer.
    pub fn call(&mut self, method: &str, target: &str, body: &[u8]) -> Answer {
        self.send(method, target, &[], body);
        self.read()
    }

    /// The stream, to hand to a websocket client.
    pub fn into_stream(self) -> UnixStream {
        self.w
    }
}

/// One request on a fresh connection.
pub fn call(d: &Double, method: &str, target: &str, body: &str) -> Answer {
    Conn::open(d.socket()).call(method, target, body.as_bytes())
}

/// GET.
pub fn get(d: &Double, target: &str) -> Answer {
    call(d, "GET", target, "")
}

/// Waits for operation `id` to end; its final state.
pub fn wait(d: &Double, id: &str) -> Value {
    let a = get(d, &format!("/1.0/operations/{id}/wait?timeout=30"));
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    a.meta()
}

/// An async request that must succeed; its operation's final state.
pub fn run_op(d: &Double, method: &str, target: &str, body: &str) -> Value {
    let a = call(d, method, target, body);
    let op = wait(d, &a.op());
    assert_eq!(op["status"], "Success", "{op}");
    op
}

/// A double in a fresh folder (kept alive with it).
pub fn double() -> (tempfile::TempDir, Double) {
    let tmp = tempfile::tempdir().unwrap();
    let d = Double::start(tmp.path()).unwrap();
    (tmp, d)
}
