//! `/1.0/instances/NAME/snapshots[/SNAP]`.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{body, no_instance, project, recursion, str_field};
use crate::http::Req;
use crate::model::Snapshot;
use crate::ops::{self, Work};
use crate::render;
use crate::server::{Ctx, Reply};
use crate::shared::Shared;
use crate::state::State;
use crate::util;

fn missing(p: &str, name: &str, snap: &str) -> String {
    format!("Failed to fetch snapshot {snap:?} of instance {name:?} in project {p:?}: InstanceSnapshot not found")
}

/// `GET .../snapshots`: URLs, or objects with `recursion=1`.
pub(super) fn list(shared: &Arc<Shared>, req: &Req, name: &str) -> Option<Reply> {
    let g = shared.lock();
    let p = project(req);
    let Some(inst) = g.state.instance(&p, name) else {
        return Some(no_instance());
    };
    let out: Vec<Value> = inst
        .snapshots
        .iter()
        .map(|s| {
            if recursion(req) > 0 {
                render::snapshot(&g.state, &p, inst, s)
            } else {
                json!(format!(
                    "/1.0/instances/{}/snapshots/{}",
                    util::percent_encode(name),
                    util::percent_encode(&s.name)
                ))
            }
        })
        .collect();
    Some(Reply::ok(Value::Array(out)))
}

/// `GET .../snapshots/SNAP`.
pub(super) fn get(shared: &Arc<Shared>, req: &Req, name: &str, snap: &str) -> Option<Reply> {
    let g = shared.lock();
    let p = project(req);
    let Some(inst) = g.state.instance(&p, name) else {
        return Some(no_instance());
    };
    Some(match inst.find_snapshot(snap) {
        Some(s) => Reply::ok(render::snapshot(&g.state, &p, inst, s)),
        None => Reply::err(404, missing(&p, name, snap)),
    })
}

/// `POST .../snapshots {"name"}`: an operation (a duplicate name fails
/// it; an empty name is the next free `snapN`).
pub(super) fn post(shared: &Arc<Shared>, req: &Req, ctx: &mut Ctx, name: &str) -> Option<Reply> {
    let p = project(req);
    let g = shared.lock();
    let Some(inst) = g.state.instance(&p, name) else {
        return Some(no_instance());
    };
    let b = match body(req) {
        Ok(b) => b,
        Err(e) => return Some(e),
    };
    let mut snap = match str_field(&b, "name") {
        Ok(s) => s.to_string(),
        Err(e) => return Some(e),
    };
    if snap.contains('/') {
        return Some(Reply::err(
            400,
            "Invalid snapshot name: Cannot contain \"/\"",
        ));
    }
    if snap.is_empty() {
        let n = (0..)
            .find(|n| inst.find_snapshot(&format!("snap{n}")).is_none())
            .unwrap_or(0);
        snap = format!("snap{n}");
    }
    let resources = ops::instance_resources(&g.state, &p, &[name]);
    drop(g);
    let (pp, n) = (p.clone(), name.to_string());
    let effect = Box::new(move |st: &mut State| {
        let inst = st.instance_mut(&pp, &n).ok_or("Instance not found")?;
        if inst.find_snapshot(&snap).is_some() {
            return Err(format!(
                "Failed creating instance snapshot record {snap:?}: Add snapshot info to the database: This \"instances_snapshots\" entry already exists"
            ));
        }
        let s = Snapshot::of(inst, &snap, &util::now());
        inst.snapshots.push(s);
        Ok(None)
    });
    let work = Work {
        description: "Snapshotting instance".into(),
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

/// `DELETE .../snapshots/SNAP`: an operation.
pub(super) fn delete(
    shared: &Arc<Shared>,
    req: &Req,
    ctx: &mut Ctx,
    name: &str,
    snap: &str,
) -> Option<Reply> {
    let p = project(req);
    let g = shared.lock();
    let Some(inst) = g.state.instance(&p, name) else {
        return Some(no_instance());
    };
    if inst.find_snapshot(snap).is_none() {
        return Some(Reply::err(404, missing(&p, name, snap)));
    }
    let full = format!("{name}/{snap}");
    let resources = ops::instance_resources(&g.state, &p, &[&full]);
    drop(g);
    let (pp, n, s) = (p.clone(), name.to_string(), snap.to_string());
    let effect = Box::new(move |st: &mut State| {
        let inst = st.instance_mut(&pp, &n).ok_or("Instance not found")?;
        let before = inst.snapshots.len();
        inst.snapshots.retain(|x| x.name != s);
        if inst.snapshots.len() == before {
            return Err(missing(&pp, &n, &s));
        }
        Ok(None)
    });
    let work = Work {
        description: "Deleting snapshot".into(),
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
