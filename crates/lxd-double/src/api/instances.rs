//! `/1.0/instances`, `/1.0/instances/NAME` and its `state`: listing,
//! reading, config and device changes, power, rename, delete.

// Over 400 lines: one handler per verb of one endpoint family, each short;
// splitting them would only scatter the routing.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::{
    body, bool_field, devices_field, map_field, no_instance, project, recursion, str_field,
};
use crate::http::Req;
use crate::model::{Instance, Status};
use crate::ops::{self, Action, Work};
use crate::render;
use crate::server::{Ctx, Reply};
use crate::shared::Shared;
use crate::state::State;
use crate::util;

use super::devices::{check_shift, start, validate};

/// `GET /1.0/instances`.
pub(super) fn list(shared: &Arc<Shared>, req: &Req) -> Option<Reply> {
    let all = req.query("all-projects") == Some("true");
    if all && req.query("project").is_some() {
        return Some(Reply::err(
            400,
            "Cannot specify a project when requesting all projects",
        ));
    }
    let level = recursion(req);
    let g = shared.lock();
    let st = &g.state;
    let wanted = project(req);
    let mut out = Vec::new();
    for (pname, p) in &st.projects {
        if !all && *pname != wanted {
            continue;
        }
        for (name, inst) in &p.instances {
            out.push(match level {
                0 => {
                    let q = if pname == "default" {
                        String::new()
                    } else {
                        format!("?project={}", util::percent_encode(pname))
                    };
                    json!(format!("/1.0/instances/{}{q}", util::percent_encode(name)))
                }
                1 => render::instance(st, pname, name, inst, false),
                _ => render::instance(st, pname, name, inst, true),
            });
        }
    }
    Some(Reply::ok(Value::Array(out)))
}

/// `GET /1.0/instances/NAME` (with its ETag).
pub(super) fn get(shared: &Arc<Shared>, req: &Req, name: &str) -> Option<Reply> {
    let g = shared.lock();
    let p = project(req);
    let Some(inst) = g.state.instance(&p, name) else {
        return Some(no_instance());
    };
    let v = render::instance(&g.state, &p, name, inst, recursion(req) > 0);
    let etag = vec![("ETag".to_string(), format!("\"{}\"", render::etag(inst)))];
    Some(Reply::Sync(200, v, etag))
}

/// `GET /1.0/instances/NAME/state`.
pub(super) fn get_state(shared: &Arc<Shared>, req: &Req, name: &str) -> Option<Reply> {
    let g = shared.lock();
    Some(match g.state.instance(&project(req), name) {
        Some(inst) => Reply::ok(render::state(name, inst)),
        None => no_instance(),
    })
}

/// `PUT /1.0/instances/NAME/state`: start, stop, restart, freeze,
/// unfreeze, as an operation.
pub(super) fn put_state(
    shared: &Arc<Shared>,
    req: &Req,
    ctx: &mut Ctx,
    name: &str,
) -> Option<Reply> {
    let b = match body(req) {
        Ok(b) => b,
        Err(e) => return Some(e),
    };
    let action = match str_field(&b, "action") {
        Ok(a) => a.to_string(),
        Err(e) => return Some(e),
    };
    let p = project(req);
    let g = shared.lock();
    if g.state.instance(&p, name).is_none() {
        return Some(no_instance());
    }
    let (lock, description): (Option<Action>, &str) = match action.as_str() {
        "start" => (Some(Action::Start), "Starting instance"),
        "stop" => (Some(Action::Stop), "Stopping instance"),
        "restart" => (Some(Action::Restart), "Restarting instance"),
        "freeze" => (None, "Freezing instance"),
        "unfreeze" => (None, "Unfreezing instance"),
        other => return Some(Reply::err(400, format!("Unknown action: '{other}'"))),
    };
    let resources = ops::instance_resources(&g.state, &p, &[name]);
    drop(g);
    let (pp, n) = (p.clone(), name.to_string());
    let effect = Box::new(move |st: &mut State| {
        let shift_works = st.server.shift_works;
        let ip = st.behaviour.addresses.then(|| st.alloc_ip());
        let inst = st.instance_mut(&pp, &n).ok_or("Instance not found")?;
        match (action.as_str(), inst.status) {
            ("start", Status::Running) => Err("The instance is already running".into()),
            ("start", _) => start(inst, shift_works, ip).map(|_| None),
            ("stop" | "restart", Status::Stopped) => Err("The instance is already stopped".into()),
            ("stop", _) => {
                inst.status = Status::Stopped;
                inst.pid = 0;
                inst.config.remove("volatile.idmap.current");
                Ok(None)
            }
            ("freeze", Status::Running) => {
                inst.status = Status::Frozen;
                Ok(None)
            }
            ("freeze", _) => Err("The instance isn't running".into()),
            ("unfreeze", Status::Frozen) => {
                inst.status = Status::Running;
                Ok(None)
            }
            ("unfreeze", _) => Err("The instance is not frozen".into()),
            // A restart of a running instance: its config takes effect.
            _ => {
                super::devices::apply_idmap(inst);
                Ok(None)
            }
        }
    });
    let work = Work {
        description: description.into(),
        project: p,
        resources,
        lock: lock.map(|a| (name.to_string(), a)),
        stages: Vec::new(),
        may_cancel: false,
        begin: None,
        undo: None,
        effect,
    };
    Some(Reply::Async(Box::new(ops::spawn(
        shared,
        work,
        ctx.op_knobs.clone(),
    ))))
}

/// The `If-Match` check: 412 when it names another version.
fn etag_check(req: &Req, inst: &Instance) -> Result<(), Reply> {
    let Some(want) = req.header("if-match") else {
        return Ok(());
    };
    let want = want.trim_matches('"');
    let cur = render::etag(inst);
    if want.is_empty() || want == cur {
        return Ok(());
    }
    Err(Reply::err(
        412,
        format!("ETag doesn't match: {cur} vs {want}"),
    ))
}

/// `PATCH /1.0/instances/NAME`: merges config (an empty value removes a
/// key) and devices, at once (sync).
pub(super) fn patch(shared: &Arc<Shared>, req: &Req, name: &str) -> Option<Reply> {
    let p = project(req);
    let mut g = shared.lock();
    let Some(inst) = g.state.instance(&p, name) else {
        return Some(no_instance());
    };
    if let Err(e) = etag_check(req, inst) {
        return Some(e);
    }
    let b = match body(req) {
        Ok(b) => b,
        Err(e) => return Some(e),
    };
    if !str_field(&b, "restore").unwrap_or("").is_empty() {
        return Some(Reply::err(400, "Can't call PATCH in restore mode"));
    }
    if let Some((held, _)) = g.locks.get(&(p.clone(), name.to_string())) {
        return Some(Reply::err(500, Action::Update.busy_text(*held)));
    }
    let (config, devices) = match (map_field(&b, "config"), devices_field(&b, "devices")) {
        (Ok(c), Ok(d)) => (c, d),
        (Err(e), _) | (_, Err(e)) => return Some(e),
    };
    let mut merged = inst.devices.clone();
    merged.extend(devices);
    if let Err(e) = validate(&merged).and_then(|_| check_shift(&g.state, inst, &merged)) {
        return Some(Reply::err(500, e));
    }
    let description = b
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_string);
    let profiles: Option<Vec<String>> = b
        .get("profiles")
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let Some(inst) = g.state.instance_mut(&p, name) else {
        return Some(no_instance());
    };
    for (k, v) in config {
        if v.is_empty() {
            inst.config.remove(&k);
        } else {
            inst.config.insert(k, v);
        }
    }
    inst.devices = merged;
    if let Some(d) = description {
        inst.description = d;
    }
    if let Some(pr) = profiles {
        inst.profiles = pr;
    }
    shared.notify();
    Some(Reply::ok(json!({})))
}

/// `PUT /1.0/instances/NAME`: replaces config and devices, or restores a
/// snapshot (`{"restore": SNAP}`), as an operation.
pub(super) fn put(shared: &Arc<Shared>, req: &Req, ctx: &mut Ctx, name: &str) -> Option<Reply> {
    let p = project(req);
    let g = shared.lock();
    let Some(inst) = g.state.instance(&p, name) else {
        return Some(no_instance());
    };
    let b = match body(req) {
        Ok(b) => b,
        Err(e) => return Some(e),
    };
    let restore = str_field(&b, "restore").unwrap_or("").to_string();
    let resources = ops::instance_resources(&g.state, &p, &[name]);
    let (pp, n) = (p.clone(), name.to_string());
    let work = if restore.is_empty() {
        if let Err(e) = etag_check(req, inst) {
            return Some(e);
        }
        let (config, devices) = match (map_field(&b, "config"), devices_field(&b, "devices")) {
            (Ok(c), Ok(d)) => (c, d),
            (Err(e), _) | (_, Err(e)) => return Some(e),
        };
        let ephemeral = bool_field(&b, "ephemeral").unwrap_or(false);
        let profiles: Option<Vec<String>> = b
            .get("profiles")
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let description = str_field(&b, "description").unwrap_or("").to_string();
        let effect = Box::new(move |st: &mut State| {
            validate(&devices)?;
            let cur = st.instance(&pp, &n).ok_or("Instance not found")?;
            check_shift(st, cur, &devices)?;
            let inst = st.instance_mut(&pp, &n).ok_or("Instance not found")?;
            inst.config = config.into_iter().filter(|(_, v)| !v.is_empty()).collect();
            inst.devices = devices;
            inst.ephemeral = ephemeral;
            inst.description = description;
            if let Some(pr) = profiles {
                inst.profiles = pr;
            }
            Ok(None)
        });
        work(p, resources, name, Action::Update, effect)
    } else {
        let effect = Box::new(move |st: &mut State| {
            let inst = st.instance_mut(&pp, &n).ok_or("Instance not found")?;
            let snap = inst
                .find_snapshot(&restore)
                .cloned()
                .ok_or_else(|| format!("Snapshot {n}/{restore} does not exist"))?;
            inst.config = snap.config;
            inst.devices = snap.devices;
            inst.files = snap.files;
            inst.restored.push(restore);
            Ok(None)
        });
        work(p, resources, name, Action::Restore, effect)
    };
    drop(g);
    Some(Reply::Async(Box::new(ops::spawn(
        shared,
        work,
        ctx.op_knobs.clone(),
    ))))
}

fn work(
    project: String,
    resources: Option<BTreeMap<String, Vec<String>>>,
    name: &str,
    action: Action,
    effect: ops::Effect,
) -> Work {
    Work {
        description: action.description().into(),
        project,
        resources,
        lock: Some((name.to_string(), action)),
        stages: Vec::new(),
        may_cancel: false,
        begin: None,
        undo: None,
        effect,
    }
}

/// `DELETE /1.0/instances/NAME`: refused while it runs (400), else an
/// operation.
pub(super) fn delete(shared: &Arc<Shared>, req: &Req, ctx: &mut Ctx, name: &str) -> Option<Reply> {
    let p = project(req);
    let g = shared.lock();
    let Some(inst) = g.state.instance(&p, name) else {
        return Some(no_instance());
    };
    if inst.is_running() {
        return Some(Reply::err(400, "Instance is running"));
    }
    let resources = ops::instance_resources(&g.state, &p, &[name]);
    drop(g);
    let (pp, n) = (p.clone(), name.to_string());
    let effect = Box::new(move |st: &mut State| {
        let proj = st.projects.get_mut(&pp).ok_or("Instance not found")?;
        proj.instances.remove(&n).ok_or("Instance not found")?;
        Ok(None)
    });
    let work = work(p, resources, name, Action::Delete, effect);
    Some(Reply::Async(Box::new(ops::spawn(
        shared,
        work,
        ctx.op_knobs.clone(),
    ))))
}

/// `POST /1.0/instances/NAME {"name": NEW}`: a rename, as LXD 5.0 does it
/// (`instancePost`): a taken name is a 409 at once, an invalid one a 400;
/// the rename itself is an operation, which fails while the instance runs
/// ("Renaming of running instance not allowed"). Its snapshots go with it.
/// Migration (`"migration": true`, moves between servers, pools or
/// projects) is not modelled: 501.
pub(super) fn rename(shared: &Arc<Shared>, req: &Req, ctx: &mut Ctx, name: &str) -> Option<Reply> {
    let b = match body(req) {
        Ok(b) => b,
        Err(e) => return Some(e),
    };
    if bool_field(&b, "migration").unwrap_or(false) {
        return None;
    }
    let new = match str_field(&b, "name") {
        Ok("") => name.to_string(),
        Ok(n) => n.to_string(),
        Err(e) => return Some(e),
    };
    let p = project(req);
    let g = shared.lock();
    if g.state.instance(&p, name).is_none() {
        return Some(no_instance());
    }
    if let Err(e) = super::check_name(&new) {
        return Some(Reply::err(400, e));
    }
    if g.state.instance(&p, &new).is_some() {
        return Some(Reply::err(409, format!("Name {new:?} already in use")));
    }
    let resources = ops::instance_resources(&g.state, &p, &[name]);
    drop(g);
    let (pp, n) = (p.clone(), name.to_string());
    let effect = Box::new(move |st: &mut State| {
        let proj = st.projects.get_mut(&pp).ok_or("Instance not found")?;
        let inst = proj.instances.get(&n).ok_or("Instance not found")?;
        if inst.is_running() {
            return Err("Renaming of running instance not allowed".into());
        }
        if proj.instances.contains_key(&new) {
            return Err(format!("Name {new:?} already in use"));
        }
        let inst = proj.instances.remove(&n).ok_or("Instance not found")?;
        proj.instances.insert(new, inst);
        Ok(None)
    });
    // LXD takes no instance lock for a rename.
    let work = Work {
        description: "Renaming instance".into(),
        project: p,
        resources,
        lock: None,
        stages: Vec::new(),
        may_cancel: false,
        begin: None,
        undo: None,
        effect,
    };
    Some(Reply::Async(Box::new(ops::spawn(
        shared,
        work,
        ctx.op_knobs.clone(),
    ))))
}
