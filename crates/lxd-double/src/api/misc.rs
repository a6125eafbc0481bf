//! `/1.0` itself, operations (list, read, wait, cancel), projects and
//! profiles.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::{body, map_field, project, recursion, str_field};
use crate::http::Req;
use crate::ops::{self, OpStatus};
use crate::render;
use crate::server::Reply;
use crate::shared::Shared;
use crate::state::Project;
use crate::util;

/// `GET /1.0`.
pub(super) fn server(shared: &Arc<Shared>) -> Reply {
    Reply::ok(render::server(&shared.lock().state))
}

/// `GET /1.0/operations`: the project's operations by status (running,
/// success, failure, cancelled); `{}` when there are none.
pub(super) fn operations(shared: &Arc<Shared>, req: &Req) -> Reply {
    let g = shared.lock();
    let p = project(req);
    let mut out = Map::new();
    for op in g.ops.iter().filter(|o| ops::visible(&g, o)) {
        if !op.project.is_empty() && op.project != p {
            continue;
        }
        let key = op.status.api().0.to_ascii_lowercase();
        let item = if recursion(req) > 0 {
            op.render()
        } else {
            json!(op.url())
        };
        if let Value::Array(a) = out.entry(key).or_insert_with(|| json!([])) {
            a.push(item);
        }
    }
    Reply::ok(Value::Object(out))
}

fn no_op() -> Reply {
    Reply::err(404, "Operation not found")
}

/// `GET /1.0/operations/ID`.
pub(super) fn operation(shared: &Arc<Shared>, id: &str) -> Reply {
    let g = shared.lock();
    match g.op(id).filter(|o| ops::visible(&g, o)) {
        Some(op) => Reply::ok(op.render()),
        None => no_op(),
    }
}

/// `GET /1.0/operations/ID/wait?timeout=N`: the operation once it ends,
/// or still running after N seconds (no timeout: as long as it takes).
pub(super) fn wait(shared: &Arc<Shared>, req: &Req, id: &str) -> Reply {
    let timeout = match req.query("timeout").filter(|t| !t.is_empty()) {
        None => -1,
        Some(t) => match t.parse::<i64>() {
            Ok(n) => n,
            Err(_) => {
                return Reply::err(500, format!("strconv.Atoi: parsing {t:?}: invalid syntax"))
            }
        },
    };
    let g = shared.lock();
    if g.op(id).filter(|o| ops::visible(&g, o)).is_none() {
        return no_op();
    }
    let deadline = (timeout >= 0).then(|| Instant::now() + Duration::from_secs(timeout as u64));
    let g = shared.wait_while(g, deadline, |i| i.op(id).is_some_and(|o| o.is_running()));
    match g.op(id) {
        Some(op) => Reply::ok(op.render()),
        None => no_op(),
    }
}

/// `DELETE /1.0/operations/ID`: cancel, where the operation allows it.
pub(super) fn cancel(shared: &Arc<Shared>, id: &str) -> Reply {
    let mut g = shared.lock();
    let Some(op) = g.op_mut(id) else {
        return no_op();
    };
    if op.status != OpStatus::Running {
        return Reply::err(400, "Only running operations can be cancelled");
    }
    if !op.may_cancel {
        return Reply::err(400, "This operation can't be cancelled");
    }
    op.cancel = true;
    shared.notify();
    Reply::ok(json!({}))
}

/// `GET /1.0/projects`.
pub(super) fn projects(shared: &Arc<Shared>, req: &Req) -> Reply {
    let g = shared.lock();
    let out: Vec<Value> = g
        .state
        .projects
        .iter()
        .map(|(n, p)| {
            if recursion(req) > 0 {
                render::project(n, p)
            } else {
                json!(format!("/1.0/projects/{}", util::percent_encode(n)))
            }
        })
        .collect();
    Reply::ok(Value::Array(out))
}

/// `GET /1.0/projects/NAME`.
pub(super) fn project_get(shared: &Arc<Shared>, name: &str) -> Reply {
    let g = shared.lock();
    match g.state.projects.get(name) {
        Some(p) => Reply::ok(render::project(name, p)),
        None => Reply::err(404, "Project not found"),
    }
}

/// `POST /1.0/projects`: a new project; features it does not name are on
/// (LXD's defaults).
pub(super) fn project_post(shared: &Arc<Shared>, req: &Req) -> Reply {
    let b = match body(req) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let (name, mut config) = match (str_field(&b, "name"), map_field(&b, "config")) {
        (Ok(n), Ok(c)) => (n.to_string(), c),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    if name.is_empty() {
        return Reply::err(400, "No name provided");
    }
    if name.contains('/') {
        return Reply::err(400, "Project names may not contain slashes");
    }
    for f in [
        "features.images",
        "features.profiles",
        "features.storage.volumes",
    ] {
        config.entry(f.to_string()).or_insert_with(|| "true".into());
    }
    let mut g = shared.lock();
    if g.state.projects.contains_key(&name) {
        return Reply::err(
            409,
            format!("Failed creating project {name:?}: Failed adding database record: This \"projects\" entry already exists"),
        );
    }
    let mut p = Project::new(config);
    p.description = str_field(&b, "description").unwrap_or("").to_string();
    g.state.projects.insert(name.clone(), p);
    let loc = vec![(
        "Location".to_string(),
        format!("/1.0/projects/{}", util::percent_encode(&name)),
    )];
    Reply::Sync(201, Value::Null, loc)
}

/// `DELETE /1.0/projects/NAME`: only an empty project, never `default`.
pub(super) fn project_delete(shared: &Arc<Shared>, name: &str) -> Reply {
    let mut g = shared.lock();
    let Some(p) = g.state.projects.get(name) else {
        return Reply::err(404, "Project not found");
    };
    if name == "default" {
        return Reply::err(403, "The 'default' project cannot be deleted");
    }
    if !p.instances.is_empty() || !p.images.is_empty() {
        return Reply::err(400, "Only empty projects can be removed");
    }
    g.state.projects.remove(name);
    Reply::ok(json!({}))
}

fn profile_json(name: &str, p: &crate::Profile) -> Value {
    json!({"name": name, "description": p.description, "config": p.config,
           "devices": p.devices, "used_by": []})
}

/// `GET /1.0/profiles`.
pub(super) fn profiles(shared: &Arc<Shared>, req: &Req) -> Reply {
    let g = shared.lock();
    let pp = g.state.profiles_project(&project(req));
    let empty = BTreeMap::new();
    let all = g.state.projects.get(&pp).map_or(&empty, |p| &p.profiles);
    let out: Vec<Value> = all
        .iter()
        .map(|(n, p)| {
            if recursion(req) > 0 {
                profile_json(n, p)
            } else {
                json!(format!("/1.0/profiles/{}", util::percent_encode(n)))
            }
        })
        .collect();
    Reply::ok(Value::Array(out))
}

/// `GET /1.0/profiles/NAME`.
pub(super) fn profile(shared: &Arc<Shared>, req: &Req, name: &str) -> Reply {
    let g = shared.lock();
    let pp = g.state.profiles_project(&project(req));
    match g.state.projects.get(&pp).and_then(|p| p.profiles.get(name)) {
        Some(p) => Reply::ok(profile_json(name, p)),
        None => Reply::err(404, "Profile not found"),
    }
}
