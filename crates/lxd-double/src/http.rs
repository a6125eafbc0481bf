//! HTTP/1.1 as LXD's Go server speaks it, for one connection: request
//! heads (httparse), bodies by Content-Length or chunked, `Expect:
//! 100-continue`, keep-alive, and answers with a Content-Length.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;

use crate::util;

/// Longest request head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// One request read from the socket.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    /// Percent-decoded path segments.
    pub segments: Vec<String>,
    /// Decoded query pairs.
    pub query: Vec<(String, String)>,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub keep_alive: bool,
}

impl Req {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// Header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Query parameter `key`.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The segments as `&str`s, for matching.
    pub fn segs(&self) -> Vec<&str> {
        self.segments.iter().map(String::as_str).collect()
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The client closed the connection between requests.
    Closed,
    /// A malformed request (answered 400, then the connection closes).
    Bad(String),
    /// The socket failed.
    Io,
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> ReadError {
        ReadError::Io
    }
}

/// Reads one request; answers `100 Continue` on `w` when asked.
pub(crate) fn read_request(
    r: &mut BufReader<UnixStream>,
    w: &mut UnixStream,
) -> Result<Req, ReadError> {
    let mut head = Vec::new();
    loop {
        let n = r.read_until(b'\n', &mut head)?;
        if n == 0 {
            return Err(if head.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Bad("connection closed in a request head".into())
            });
        }
        if head == b"\r\n" || head == b"\n" {
            head.clear(); // stray line breaks between requests
            continue;
        }
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            break;
        }
        if head.len() > MAX_HEAD {
            return Err(ReadError::Bad("request head too large".into()));
        }
    }
    let mut hdrs = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut hdrs);
    match parsed.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(ReadError::Bad("incomplete request head".into()))
        }
        Err(e) => return Err(ReadError::Bad(format!("malformed request: {e}"))),
    }
    let method = parsed.method.unwrap_or("").to_string();
    let target = origin_form(parsed.path.unwrap_or(""));
    let version = parsed.version.unwrap_or(1);
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let connection = get("connection").unwrap_or("").to_ascii_lowercase();
    let keep_alive = if version == 0 {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    let chunked =
        get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = match get("content-length") {
        Some(v) => Some(
            v.parse::<usize>()
                .map_err(|_| ReadError::Bad(format!("bad Content-Length {v:?}")))?,
        ),
        None => None,
    };
    if get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let body = if chunked {
        read_chunked(r)?
    } else if let Some(n) = length {
        let mut b = vec![0; n];
        r.read_exact(&mut b)?;
        b
    } else {
        Vec::new()
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            util::percent_decode(s).ok_or_else(|| ReadError::Bad(format!("bad path {path:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let query = util::parse_query(query);
    Ok(Req {
        method,
        target,
        segments,
        query,
        headers,
        body,
        keep_alive,
    })
}

/// The path and query of a target, also when sent in absolute form
/// (`http://lxd/1.0`), which Go's server accepts too.
fn origin_form(target: &str) -> String {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = target.strip_prefix(scheme) {
            return match rest.find(['/', '?']) {
                Some(i) if rest[i..].starts_with('/') => rest[i..].to_string(),
                Some(i) => format!("/{}", &rest[i..]),
                None => "/".to_string(),
            };
        }
    }
    target.to_string()
}

/// A chunked body (chunk extensions and trailers are skipped).
fn read_chunked(r: &mut BufReader<UnixStream>) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let size = line.trim().split(';').next().unwrap_or("");
        let n = usize::from_str_radix(size, 16)
            .map_err(|_| ReadError::Bad(format!("bad chunk size {size:?}")))?;
        if n == 0 {
            loop {
                let mut trailer = String::new();
                if r.read_line(&mut trailer)? == 0 || trailer.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + n, 0);
        r.read_exact(&mut body[start..])?;
        let mut crlf = String::new();
        r.read_line(&mut crlf)?;
    }
}

/// An answer.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Sent chunked when longer than Go's buffer, as LXD's JSON answers
    /// are (a pulled file always has a Content-Length).
    pub may_chunk: bool,
}

/// Go's `net/http` buffers this much of an answer before it gives up on a
/// Content-Length and chunks.
const GO_BUFFER: usize = 2048;

impl Response {
    /// A JSON answer (LXD's encoder ends it with a newline).
    pub fn json(status: u16, v: &serde_json::Value, headers: Vec<(String, String)>) -> Response {
        let mut body = serde_json::to_vec(v).unwrap_or_default();
        body.push(b'\n');
        let mut headers = headers;
        headers.push(("Content-Type".into(), "application/json".into()));
        Response {
            status,
            headers,
            body,
            may_chunk: true,
        }
    }
}

/// The reason phrase of `status`.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        412 => "Precondition Failed",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Writes `resp`, with `Connection: close` when the connection ends.
pub(crate) fn write_response(
    w: &mut UnixStream,
    resp: &Response,
    keep_alive: bool,
) -> io::Result<()> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    let chunked = resp.may_chunk && resp.body.len() > GO_BUFFER;
    if chunked {
        out.push_str("Transfer-Encoding: chunked\r\n");
    } else {
        out.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    }
    if !keep_alive {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if chunked {
        for chunk in resp.body.chunks(GO_BUFFER) {
            bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            bytes.extend_from_slice(chunk);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
    } else {
        bytes.extend_from_slice(&resp.body);
    }
    w.write_all(&bytes)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::origin_form;

    #[test]
    fn absolute_targets_become_origin_form() {
        assert_eq!(
            origin_form("http://lxd/1.0/instances?recursion=1"),
            "/1.0/instances?recursion=1"
        );
        assert_eq!(origin_form("http://lxd"), "/");
        assert_eq!(origin_form("http://lxd?x=1"), "/?x=1");
        assert_eq!(origin_form("/1.0"), "/1.0");
    }
}
