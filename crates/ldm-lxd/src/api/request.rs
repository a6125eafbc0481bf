//! One request and its answer: the envelope read, an error answer turned
//! into [`LxdError::Refused`] (the HTTP status, and LXD's words kept for
//! the message), a connection failure into [`LxdError::Unreachable`], an
//! answer that does not follow the API into [`LxdError::Protocol`]. What
//! a refusal means for a given call is decided by the caller from the
//! status (404, 409, 412) and by asking the server, never from the words.

use std::io::Read;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::transport::Endpoint;
use super::types::{Envelope, Operation};
use super::Api;
use crate::LxdError;

/// The largest JSON answer ldm reads (a list of every instance of a busy
/// server with their state is a few MiB).
const MAX_JSON: u64 = 64 << 20;

/// An answer: its status, the headers ldm reads, the body.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `ETag`, for a later `If-Match`.
    pub etag: Option<String>,
    /// The `X-LXD-*` (and `X-Incus-*`) headers of a file answer.
    pub file: FileHeaders,
    /// The body.
    pub body: ureq::Body,
}

/// What a file answer's headers say of the file.
#[derive(Debug, Default, Clone)]
pub struct FileHeaders {
    /// `file`, `directory` or `symlink`.
    pub kind: Option<String>,
    /// Permission bits.
    pub mode: Option<u32>,
}

/// A request body.
pub enum Body<'a> {
    /// None.
    Empty,
    /// JSON.
    Json(&'a Value),
    /// A file's bytes, with headers (`X-LXD-*`).
    File {
        /// The bytes.
        reader: Box<dyn Read + Send + 'a>,
        /// Their number.
        len: u64,
        /// Header name and value pairs.
        headers: Vec<(String, String)>,
    },
}

impl Api {
    /// `server`'s name in messages.
    pub(super) fn who(&self) -> &'static str {
        self.family.name()
    }

    /// `path` in the client's LXD project: every request names it.
    pub(super) fn scoped(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}project={}", encode(&self.project))
    }

    /// Sends `method path` and returns the answer, whatever its status.
    pub(super) fn send(
        &self,
        method: &str,
        path: &str,
        body: Body,
        if_match: Option<&str>,
    ) -> Result<Reply, LxdError> {
        let conn = self.conn()?;
        let uri = format!("{}{path}", conn.endpoint.base());
        let mut req = ureq::http::Request::builder().method(method).uri(&uri);
        if let Some(tag) = if_match {
            req = req.header("If-Match", tag);
        }
        let result = match body {
            Body::Empty => req.body(()).map(|r| conn.agent.run(r)),
            Body::Json(v) => req
                .header("Content-Type", "application/json")
                .body(v.to_string())
                .map(|r| conn.agent.run(r)),
            Body::File {
                mut reader,
                len,
                headers,
            } => {
                req = req.header("Content-Length", len.to_string());
                for (k, v) in &headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                req.body(ureq::SendBody::from_reader(&mut reader))
                    .map(|r| conn.agent.run(r))
            }
        };
        let request = format!("{method} {}", strip_query(path));
        let resp = result
            .map_err(|e| self.protocol(&request, e))?
            .map_err(|e| self.transport_error(&conn.endpoint, &request, e))?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let lxd_header = |name: &str| {
            header(&format!("X-LXD-{name}")).or_else(|| header(&format!("X-Incus-{name}")))
        };
        let file = FileHeaders {
            kind: lxd_header("type"),
            mode: lxd_header("mode")
                .and_then(|m| u32::from_str_radix(m.trim_start_matches("0o"), 8).ok()),
        };
        Ok(Reply {
            status: resp.status().as_u16(),
            etag: header("ETag"),
            file,
            body: resp.into_body(),
        })
    }

    /// The envelope of an answer, or the error it is: a status of 400 and
    /// above is [`LxdError::Refused`] with LXD's words.
    pub(super) fn envelope(
        &self,
        request: &str,
        mut reply: Reply,
    ) -> Result<(Envelope, Option<String>), LxdError> {
        let bytes = reply
            .body
            .with_config()
            .limit(MAX_JSON)
            .read_to_vec()
            .map_err(|e| self.protocol(request, e))?;
        let env: Result<Envelope, _> = serde_json::from_slice(&bytes);
        if reply.status >= 400 {
            let message = match env {
                Ok(e) if !e.error.is_empty() => e.error,
                _ => String::from_utf8_lossy(&bytes[..bytes.len().min(500)])
                    .trim()
                    .to_string(),
            };
            return Err(LxdError::Refused {
                server: self.who(),
                request: request.to_string(),
                status: reply.status,
                message,
            });
        }
        let env = env.map_err(|e| self.protocol(request, format!("not an LXD answer: {e}")))?;
        if env.kind == "error" {
            return Err(LxdError::Refused {
                server: self.who(),
                request: request.to_string(),
                status: env.error_code,
                message: env.error,
            });
        }
        Ok((env, reply.etag))
    }

    /// `GET path`'s object.
    pub(super) fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, LxdError> {
        self.get_tagged(path).map(|(v, _)| v)
    }

    /// `GET path`'s object and its `ETag`.
    pub(super) fn get_tagged<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<(T, Option<String>), LxdError> {
        let request = format!("GET {}", strip_query(path));
        let reply = self.send("GET", path, Body::Empty, None)?;
        let (env, etag) = self.envelope(&request, reply)?;
        let v = serde_json::from_value(env.metadata)
            .map_err(|e| self.protocol(&request, format!("unexpected metadata: {e}")))?;
        Ok((v, etag))
    }

    /// A request answered at once (`sync`).
    pub(super) fn sync(
        &self,
        method: &str,
        path: &str,
        body: Body,
        if_match: Option<&str>,
    ) -> Result<Value, LxdError> {
        let request = format!("{method} {}", strip_query(path));
        let reply = self.send(method, path, body, if_match)?;
        self.envelope(&request, reply).map(|(e, _)| e.metadata)
    }

    /// A request that starts a background operation; returns it (not yet
    /// waited for) with the request's name for messages. A `sync` answer
    /// (some servers finish small jobs at once) is an operation done.
    pub(super) fn start(
        &self,
        method: &str,
        path: &str,
        body: Body,
        if_match: Option<&str>,
    ) -> Result<Started, LxdError> {
        let request = format!("{method} {}", strip_query(path));
        let reply = self.send(method, path, body, if_match)?;
        let (env, _) = self.envelope(&request, reply)?;
        if env.kind != "async" {
            return Ok(Started {
                request,
                op: Operation {
                    status_code: 200,
                    metadata: env.metadata,
                    ..Operation::default()
                },
            });
        }
        let op: Operation = serde_json::from_value(env.metadata)
            .map_err(|e| self.protocol(&request, format!("not an operation: {e}")))?;
        if op.id.is_empty() {
            return Err(self.protocol(&request, "an operation without an id"));
        }
        Ok(Started { request, op })
    }

    /// [`LxdError::Protocol`] for `request`.
    pub(super) fn protocol(&self, request: &str, why: impl std::fmt::Display) -> LxdError {
        LxdError::Protocol {
            server: self.who(),
            request: request.to_string(),
            why: why.to_string(),
        }
    }

    /// A failure to talk to the server at all.
    fn transport_error(&self, endpoint: &Endpoint, request: &str, e: ureq::Error) -> LxdError {
        let source = match e {
            ureq::Error::Io(io) => io,
            ureq::Error::Timeout(t) => std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer to {request} in time ({t})"),
            ),
            other => return self.protocol(request, other),
        };
        let next = match (endpoint, source.kind()) {
            (Endpoint::Unix(_), std::io::ErrorKind::PermissionDenied) => format!(
                "may this user use {}? (root, or a member of group {})",
                self.who(),
                self.family.group()
            ),
            (Endpoint::Unix(_), _) => format!(
                "is {} installed and running? (set LDM_LXC=incus or LDM_LXC=lxc to choose the server)",
                self.who()
            ),
            (Endpoint::Https { .. }, _) => format!(
                "is the remote {} reachable, and this client trusted there? (`{} info {}:`)",
                self.remote,
                self.family.program(),
                self.remote
            ),
        };
        LxdError::Unreachable {
            server: format!("{} at {endpoint}", self.who()),
            source,
            next,
        }
    }
}

/// A background operation just started.
pub struct Started {
    /// Method and path, for messages.
    pub request: String,
    /// The operation as the server announced it.
    pub op: Operation,
}

/// `path` without its query string (for messages: the project is noise).
pub fn strip_query(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

/// Percent-encodes everything but RFC 3986's unreserved characters: a name
/// reaches LXD as one path segment or query value whatever it contains.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The status of a refusal, if `e` is one.
pub fn status(e: &LxdError) -> Option<u16> {
    match e {
        LxdError::Refused { status, .. } => Some(*status),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_encoded_segment() {
        assert_eq!(encode("p-a_b.c~"), "p-a_b.c~");
        assert_eq!(encode("a&b c/../x"), "a%26b%20c%2F..%2Fx");
        assert_eq!(strip_query("/1.0/instances?project=x"), "/1.0/instances");
    }
}
