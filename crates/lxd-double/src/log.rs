//! The request log: every request the double received, for tests that
//! count requests per command or assert exact requests.

use std::time::Instant;

use serde_json::Value;

use crate::util;

/// A request's body as logged.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// No body.
    Empty,
    /// A JSON body.
    Json(Value),
    /// Anything else (a pushed file): its bytes.
    Bytes(Vec<u8>),
}

/// One request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Order of arrival (from 1).
    pub seq: u64,
    /// `GET`, `POST`, ...
    pub method: String,
    /// The raw target: path and query, as sent (percent-encoded).
    pub target: String,
    /// Its body.
    pub body: Body,
    /// Its headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// When its head was read.
    pub start: Instant,
    /// When its answer was sent (`None` while it runs, or if the client
    /// went away first).
    pub end: Option<Instant>,
    /// The HTTP status answered.
    pub status: Option<u16>,
    /// The id of the operation it created.
    pub operation: Option<String>,
    /// The pid of the process on the other end of the socket
    /// (`SO_PEERCRED`): which ldm process asked.
    pub peer_pid: Option<i32>,
}

impl Request {
    /// The path without its query, still percent-encoded.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The decoded path segments (`["1.0", "instances", "p-a"]`).
    pub fn segments(&self) -> Vec<String> {
        self.path()
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| util::percent_decode(s).unwrap_or_else(|| s.to_string()))
            .collect()
    }

    /// The decoded value of query parameter `key`.
    pub fn query(&self, key: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        util::parse_query(q)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The JSON body (`Value::Null` if it has none).
    pub fn json(&self) -> Value {
        match &self.body {
            Body::Json(v) => v.clone(),
            _ => Value::Null,
        }
    }

    /// Header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Is it `method` on a path matching `pattern` (see [`crate::Match`])?
    pub fn is(&self, method: &str, pattern: &str) -> bool {
        crate::Match::new(method, pattern).matches(&self.method, self.path())
    }

    /// `METHOD target`, the way a test prints a request list.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.target)
    }
}
