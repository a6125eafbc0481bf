//! The endpoints: routing by method and decoded path segments, and what
//! handlers share (the project parameter, JSON bodies, LXD's name rules).

mod create;
mod devices;
mod files;
mod images;
mod instances;
mod misc;
mod snapshots;

use std::sync::Arc;

use serde_json::Value;

use crate::http::Req;
use crate::server::{Ctx, Reply};
use crate::shared::Shared;

/// Answers one request.
pub(crate) fn route(shared: &Arc<Shared>, req: &Req, ctx: &mut Ctx) -> Reply {
    let segs = req.segs();
    let m = req.method.as_str();
    let r = match segs.as_slice() {
        [] => get(m, || Reply::ok(serde_json::json!(["/1.0"]))),
        ["1.0"] => get(m, || misc::server(shared)),
        ["1.0", "instances"] => match m {
            "GET" => instances::list(shared, req),
            "POST" => create::post(shared, req, ctx),
            _ => None,
        },
        ["1.0", "instances", name] => match m {
            "GET" => instances::get(shared, req, name),
            "PUT" => instances::put(shared, req, ctx, name),
            "PATCH" => instances::patch(shared, req, name),
            "POST" => instances::rename(shared, req, ctx, name),
            "DELETE" => instances::delete(shared, req, ctx, name),
            _ => None,
        },
        ["1.0", "instances", name, "state"] => match m {
            "GET" => instances::get_state(shared, req, name),
            "PUT" => instances::put_state(shared, req, ctx, name),
            _ => None,
        },
        ["1.0", "instances", name, "snapshots"] => match m {
            "GET" => snapshots::list(shared, req, name),
            "POST" => snapshots::post(shared, req, ctx, name),
            _ => None,
        },
        ["1.0", "instances", name, "snapshots", snap] => match m {
            "GET" => snapshots::get(shared, req, name, snap),
            "DELETE" => snapshots::delete(shared, req, ctx, name, snap),
            _ => None,
        },
        ["1.0", "instances", name, "exec"] => match m {
            "POST" => Some(crate::exec::post(shared, req, ctx, name)),
            _ => None,
        },
        ["1.0", "instances", name, "files"] => match m {
            "GET" => files::get(shared, req, name),
            "POST" => files::post(shared, req, name),
            "DELETE" => files::delete(shared, req, name),
            _ => None,
        },
        ["1.0", "images"] => match m {
            "GET" => images::list(shared, req),
            "POST" => images::publish(shared, req, ctx),
            _ => None,
        },
        ["1.0", "images", "aliases"] => match m {
            "GET" => images::aliases(shared, req),
            "POST" => images::alias_post(shared, req),
            _ => None,
        },
        ["1.0", "images", "aliases", alias] => match m {
            "GET" => images::alias_get(shared, req, alias),
            "POST" => images::alias_rename(shared, req, alias),
            "DELETE" => images::alias_delete(shared, req, alias),
            _ => None,
        },
        ["1.0", "images", fp] => match m {
            "GET" => images::get(shared, req, fp),
            "DELETE" => images::delete(shared, req, ctx, fp),
            _ => None,
        },
        ["1.0", "operations"] => get(m, || misc::operations(shared, req)),
        ["1.0", "operations", id] => match m {
            "GET" => Some(misc::operation(shared, id)),
            "DELETE" => Some(misc::cancel(shared, id)),
            _ => None,
        },
        ["1.0", "operations", id, "wait"] => get(m, || misc::wait(shared, req, id)),
        ["1.0", "operations", id, "websocket"] => {
            get(m, || crate::exec::websocket(shared, req, id))
        }
        ["1.0", "projects"] => match m {
            "GET" => Some(misc::projects(shared, req)),
            "POST" => Some(misc::project_post(shared, req)),
            _ => None,
        },
        ["1.0", "projects", name] => match m {
            "GET" => Some(misc::project_get(shared, name)),
            "DELETE" => Some(misc::project_delete(shared, name)),
            _ => None,
        },
        ["1.0", "profiles"] => get(m, || misc::profiles(shared, req)),
        ["1.0", "profiles", name] => get(m, || misc::profile(shared, req, name)),
        _ => return Reply::err(404, "not found"),
    };
    r.unwrap_or_else(|| Reply::err(501, "not implemented"))
}

/// `f` for a GET, nothing (501) for any other method.
fn get(m: &str, f: impl FnOnce() -> Reply) -> Option<Reply> {
    (m == "GET").then(f)
}

/// The project a request addresses (`project=`, else `default`).
pub(crate) fn project(req: &Req) -> String {
    req.query("project")
        .filter(|p| !p.is_empty())
        .unwrap_or("default")
        .to_string()
}

/// `recursion=` as a number (0 if absent).
pub(crate) fn recursion(req: &Req) -> u32 {
    req.query("recursion")
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The JSON body, or LXD's 400 (Go's decoder words).
pub(crate) fn body(req: &Req) -> Result<Value, Reply> {
    if req.body.is_empty() {
        return Err(Reply::err(400, "EOF"));
    }
    serde_json::from_slice(&req.body).map_err(|e| Reply::err(400, format!("invalid JSON: {e}")))
}

/// A string field (absent or null: ""), or 400 if another type.
pub(crate) fn str_field<'a>(v: &'a Value, key: &str) -> Result<&'a str, Reply> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Reply::err(
            400,
            format!("json: cannot unmarshal into field {key} of type string"),
        )),
    }
}

/// A bool field (absent or null: false), or 400 if another type.
pub(crate) fn bool_field(v: &Value, key: &str) -> Result<bool, Reply> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(Reply::err(
            400,
            format!("json: cannot unmarshal into field {key} of type bool"),
        )),
    }
}

/// A map of strings (absent or null: empty), or 400.
pub(crate) fn map_field(
    v: &Value,
    key: &str,
) -> Result<std::collections::BTreeMap<String, String>, Reply> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(Default::default()),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(Reply::err(
                    400,
                    format!("json: cannot unmarshal into field {key}.{k} of type string"),
                )),
            })
            .collect(),
        Some(_) => Err(Reply::err(
            400,
            format!("json: cannot unmarshal into field {key} of type map[string]string"),
        )),
    }
}

/// Devices (absent or null: empty), or 400.
pub(crate) fn devices_field(
    v: &Value,
    key: &str,
) -> Result<std::collections::BTreeMap<String, crate::Device>, Reply> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(Default::default()),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(name, d)| {
                let wrapper = serde_json::json!({ "d": d });
                map_field(&wrapper, "d").map(|m| (name.clone(), m))
            })
            .collect(),
        Some(_) => Err(Reply::err(
            400,
            format!("json: cannot unmarshal into field {key}"),
        )),
    }
}

/// LXD's instance name rules (`IsHostname`).
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let why = if name.is_empty() || name.len() > 63 {
        "Name must be 1-63 characters long"
    } else if name.starts_with('-') {
        "Name must not start with \"-\" character"
    } else if name.ends_with('-') {
        "Name must not end with \"-\" character"
    } else if name.as_bytes()[0].is_ascii_digit() {
        "Name must not start with a number"
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        "Name can only contain alphanumeric and hyphen characters"
    } else {
        return Ok(());
    };
    Err(format!("Invalid instance name: {why}"))
}

/// LXD's 404 for a missing instance.
pub(crate) fn no_instance() -> Reply {
    Reply::err(404, "Instance not found")
}
