//! `/1.0/instances/NAME/files?path=P`: push, pull, list and delete in the
//! instance's in-memory tree, with LXD's headers.

use std::sync::Arc;

use serde_json::json;

use super::{no_instance, project};
use crate::files::{normalize, Kind, Push};
use crate::http::{Req, Response};
use crate::server::Reply;
use crate::shared::Shared;
use crate::state::Family;

/// The header prefix the server answers with.
fn prefix(f: Family) -> &'static str {
    match f {
        Family::Lxd => "X-Lxd",
        Family::Incus => "X-Incus",
    }
}

/// A file header of the request: `X-LXD-key`, or on Incus `X-Incus-key`
/// first (Incus reads both).
fn header<'a>(req: &'a Req, f: Family, key: &str) -> Option<&'a str> {
    let incus = (f == Family::Incus)
        .then(|| req.header(&format!("x-incus-{key}")))
        .flatten();
    incus
        .or_else(|| req.header(&format!("x-lxd-{key}")))
        .filter(|v| !v.is_empty())
}

/// A mode as Go's `ParseInt(s, 0, 0)` reads it (`0640` is octal), masked
/// to permission bits.
fn parse_mode(s: &str) -> Option<u32> {
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()?
    } else if let Some(o) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0O")) {
        u32::from_str_radix(o, 8).ok()?
    } else if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8).ok()?
    } else {
        s.parse().ok()?
    };
    Some(v & 0o777)
}

fn path_of(req: &Req) -> Result<String, Reply> {
    match req.query("path") {
        Some(p) if !p.is_empty() => Ok(normalize(p)),
        _ => Err(Reply::err(400, "Missing path argument")),
    }
}

/// `GET`: a file's bytes or a folder's names, with type, mode and owner
/// headers.
pub(super) fn get(shared: &Arc<Shared>, req: &Req, name: &str) -> Option<Reply> {
    let path = match path_of(req) {
        Ok(p) => p,
        Err(e) => return Some(e),
    };
    let g = shared.lock();
    let pre = prefix(g.state.server.family);
    let Some(inst) = g.state.instance(&project(req), name) else {
        return Some(no_instance());
    };
    let Some(node) = inst.files.get(&path) else {
        return Some(Reply::err(404, "Not Found"));
    };
    let mut headers = vec![
        (format!("{pre}-Uid"), node.uid.to_string()),
        (format!("{pre}-Gid"), node.gid.to_string()),
        (format!("{pre}-Mode"), format!("{:04o}", node.mode)),
        (format!("{pre}-Type"), node.kind.name().to_string()),
    ];
    let body = match &node.kind {
        Kind::Dir => return Some(Reply::Sync(200, json!(inst.files.list(&path)), headers)),
        Kind::File(b) => b.clone(),
        Kind::Symlink(t) => t.clone().into_bytes(),
    };
    let base = path.rsplit('/').next().unwrap_or("");
    headers.push(("Content-Type".into(), "application/octet-stream".into()));
    headers.push((
        "Content-Disposition".into(),
        format!("inline;filename={base}"),
    ));
    Some(Reply::Raw(Response {
        status: 200,
        headers,
        body,
        may_chunk: false,
    }))
}

/// `POST`: push a file, folder or symlink.
pub(super) fn post(shared: &Arc<Shared>, req: &Req, name: &str) -> Option<Reply> {
    let path = match path_of(req) {
        Ok(p) => p,
        Err(e) => return Some(e),
    };
    let mut g = shared.lock();
    let f = g.state.server.family;
    let push = Push {
        kind: header(req, f, "type").unwrap_or("file").to_string(),
        mode: header(req, f, "mode").and_then(parse_mode),
        uid: header(req, f, "uid").and_then(|v| v.parse().ok()),
        gid: header(req, f, "gid").and_then(|v| v.parse().ok()),
        append: header(req, f, "write") == Some("append"),
    };
    // Go parses a form body for the path parameter and so eats it.
    let form = req
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let data: &[u8] = if form { &[] } else { &req.body };
    let Some(inst) = g.state.instance_mut(&project(req), name) else {
        return Some(no_instance());
    };
    let r = match inst.files.push(&path, &push, data) {
        Ok(()) => Reply::ok(json!({})),
        Err((status, text)) => Reply::err(status, text),
    };
    shared.notify();
    Some(r)
}

/// `DELETE`: remove a file or folder.
pub(super) fn delete(shared: &Arc<Shared>, req: &Req, name: &str) -> Option<Reply> {
    let path = match path_of(req) {
        Ok(p) => p,
        Err(e) => return Some(e),
    };
    let mut g = shared.lock();
    let Some(inst) = g.state.instance_mut(&project(req), name) else {
        return Some(no_instance());
    };
    Some(if inst.files.remove(&path) {
        Reply::ok(json!({}))
    } else {
        Reply::err(404, "Not Found")
    })
}

#[cfg(test)]
mod tests {
    use super::parse_mode;

    #[test]
    fn modes_parse_as_go_does() {
        assert_eq!(parse_mode("0640"), Some(0o640));
        assert_eq!(parse_mode("0o755"), Some(0o755));
        assert_eq!(parse_mode("420"), Some(0o644), "a bare number is decimal");
        assert_eq!(parse_mode("abc"), None);
    }
}
