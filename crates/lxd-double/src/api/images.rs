//! `/1.0/images`: list, read, delete, publish (with progress), aliases.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{body, project, recursion, str_field};
use crate::http::Req;
use crate::model::Image;
use crate::ops::{self, Stage, Work};
use crate::render;
use crate::server::{Ctx, Reply};
use crate::shared::Shared;
use crate::state::State;
use crate::util;

fn no_project() -> Reply {
    Reply::err(
        404,
        "Check if project has images: fetch project: Project not found",
    )
}

fn suffix(p: &str) -> String {
    if p == "default" {
        String::new()
    } else {
        format!("?project={}", util::percent_encode(p))
    }
}

/// `GET /1.0/images`.
pub(super) fn list(shared: &Arc<Shared>, req: &Req) -> Option<Reply> {
    let g = shared.lock();
    let p = project(req);
    if !g.state.projects.contains_key(&p) {
        return Some(no_project());
    }
    let out: Vec<Value> = g
        .state
        .images(&p)
        .iter()
        .map(|i| {
            if recursion(req) > 0 {
                render::image(i)
            } else {
                json!(format!("/1.0/images/{}{}", i.fingerprint, suffix(&p)))
            }
        })
        .collect();
    Some(Reply::ok(Value::Array(out)))
}

/// The image whose fingerprint is or starts with `fp` (unique).
fn find<'a>(images: &'a [Image], fp: &str) -> Option<&'a Image> {
    let hits: Vec<&Image> = images
        .iter()
        .filter(|i| !fp.is_empty() && i.fingerprint.starts_with(fp))
        .collect();
    match hits.as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

/// `GET /1.0/images/FP`.
pub(super) fn get(shared: &Arc<Shared>, req: &Req, fp: &str) -> Option<Reply> {
    let g = shared.lock();
    Some(match find(g.state.images(&project(req)), fp) {
        Some(i) => Reply::ok(render::image(i)),
        None => Reply::err(404, "Image not found"),
    })
}

/// `DELETE /1.0/images/FP`: an operation.
pub(super) fn delete(shared: &Arc<Shared>, req: &Req, ctx: &mut Ctx, fp: &str) -> Option<Reply> {
    let p = project(req);
    let g = shared.lock();
    let Some(img) = find(g.state.images(&p), fp) else {
        return Some(Reply::err(404, "Image not found"));
    };
    let full = img.fingerprint.clone();
    drop(g);
    let resources = Some([("images".to_string(), vec![format!("/1.0/images/{full}")])].into());
    let pp = p.clone();
    let effect = Box::new(move |st: &mut State| {
        let images = st.images_mut(&pp).ok_or("Image not found")?;
        let before = images.len();
        images.retain(|i| i.fingerprint != full);
        if images.len() == before {
            return Err("Image not found".into());
        }
        Ok(None)
    });
    let work = Work {
        description: "Deleting image".into(),
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

/// `POST /1.0/images` from an instance or a snapshot: an operation
/// ("Downloading image", as LXD 5.0.2 calls it) that packs with progress,
/// then adds the aliases (a taken alias fails it and leaves the image
/// without, as LXD does).
pub(super) fn publish(shared: &Arc<Shared>, req: &Req, ctx: &mut Ctx) -> Option<Reply> {
    let b = match body(req) {
        Ok(b) => b,
        Err(e) => return Some(e),
    };
    let p = project(req);
    if !shared.lock().state.projects.contains_key(&p) {
        return Some(no_project());
    }
    let source = b.get("source").cloned().unwrap_or(Value::Null);
    let kind = str_field(&source, "type").unwrap_or("").to_string();
    if kind == "image" || kind == "url" {
        return Some(Reply::err(400, "The double does not model image copies"));
    }
    let name = str_field(&source, "name").unwrap_or("").to_string();
    let aliases: Vec<String> = b
        .get("aliases")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.get("name")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let props: Vec<(String, String)> = b
        .get("properties")
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let pp = p.clone();
    let effect = Box::new(move |st: &mut State| {
        let is_snap = name.contains('/');
        match kind.as_str() {
            _ if name.is_empty() || kind.is_empty() => return Err("No source provided".into()),
            "snapshot" if !is_snap => return Err("Not a snapshot".into()),
            "container" | "virtual-machine" | "instance" if is_snap => {
                return Err("This is a snapshot".into())
            }
            "snapshot" | "container" | "virtual-machine" | "instance" => {}
            _ => return Err("Bad type".into()),
        }
        let (inst_name, snap) = name.split_once('/').unwrap_or((&name, ""));
        let inst = st.instance(&pp, inst_name).ok_or("Instance not found")?;
        if !snap.is_empty() && inst.find_snapshot(snap).is_none() {
            return Err(format!(
                "Failed to fetch snapshot {snap:?} of instance {inst_name:?} in project {pp:?}: InstanceSnapshot not found"
            ));
        }
        let mut img = Image::new(&name);
        img.fingerprint = util::hex64(&("publish", &name, util::now()));
        img.aliases.clear();
        img.created_at = util::now();
        img.properties = inst
            .config
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("image.")?.to_string(), v.clone())))
            .collect();
        img.properties.extend(props);
        let meta = json!({"fingerprint": img.fingerprint, "size": img.size.to_string()});
        let fp = img.fingerprint.clone();
        let images = st.images_mut(&pp).ok_or("Project not found")?;
        images.push(img);
        for a in aliases {
            if images.iter().any(|i| i.aliases.contains(&a)) {
                return Err(format!("Alias already exists: {a}"));
            }
            if let Some(i) = images.iter_mut().find(|i| i.fingerprint == fp) {
                i.aliases.push(a);
            }
        }
        Ok(Some(meta))
    });
    let work = Work {
        description: "Downloading image".into(),
        project: p,
        resources: None,
        lock: None,
        stages: vec![Stage::Pack],
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

fn alias_json(img: &Image, alias: &str) -> Value {
    json!({"description": "", "target": img.fingerprint, "name": alias, "type": "container"})
}

fn no_alias() -> Reply {
    Reply::err(404, "Image alias not found")
}

fn created(alias: &str) -> Reply {
    let loc = vec![(
        "Location".to_string(),
        format!("/1.0/images/aliases/{}", util::percent_encode(alias)),
    )];
    Reply::Sync(201, Value::Null, loc)
}

/// `GET /1.0/images/aliases`.
pub(super) fn aliases(shared: &Arc<Shared>, req: &Req) -> Option<Reply> {
    let g = shared.lock();
    let out: Vec<Value> = g
        .state
        .images(&project(req))
        .iter()
        .flat_map(|i| i.aliases.iter().map(move |a| (i, a)))
        .map(|(i, a)| {
            if recursion(req) > 0 {
                alias_json(i, a)
            } else {
                json!(format!("/1.0/images/aliases/{}", util::percent_encode(a)))
            }
        })
        .collect();
    Some(Reply::ok(Value::Array(out)))
}

/// `GET /1.0/images/aliases/A`.
pub(super) fn alias_get(shared: &Arc<Shared>, req: &Req, alias: &str) -> Option<Reply> {
    let g = shared.lock();
    let hit = g
        .state
        .images(&project(req))
        .iter()
        .find(|i| i.aliases.iter().any(|a| a == alias));
    Some(hit.map_or_else(no_alias, |i| Reply::ok(alias_json(i, alias))))
}

/// `POST /1.0/images/aliases {"name","target"}`.
pub(super) fn alias_post(shared: &Arc<Shared>, req: &Req) -> Option<Reply> {
    let b = match body(req) {
        Ok(b) => b,
        Err(e) => return Some(e),
    };
    let (name, target) = (
        str_field(&b, "name").unwrap_or(""),
        str_field(&b, "target").unwrap_or(""),
    );
    let mut g = shared.lock();
    let Some(images) = g.state.images_mut(&project(req)) else {
        return Some(no_project());
    };
    if images.iter().any(|i| i.aliases.iter().any(|a| a == name)) {
        return Some(Reply::err(409, format!("Alias {name:?} already exists")));
    }
    let Some(img) = images
        .iter_mut()
        .find(|i| !target.is_empty() && i.fingerprint.starts_with(target))
    else {
        return Some(Reply::err(404, "Fetch aliased image: Image not found"));
    };
    img.aliases.push(name.to_string());
    Some(created(name))
}

/// `POST /1.0/images/aliases/A {"name": B}`: rename.
pub(super) fn alias_rename(shared: &Arc<Shared>, req: &Req, alias: &str) -> Option<Reply> {
    let b = match body(req) {
        Ok(b) => b,
        Err(e) => return Some(e),
    };
    let new = str_field(&b, "name").unwrap_or("").to_string();
    let mut g = shared.lock();
    let Some(images) = g.state.images_mut(&project(req)) else {
        return Some(no_project());
    };
    if !images.iter().any(|i| i.aliases.iter().any(|a| a == alias)) {
        return Some(no_alias());
    }
    if images.iter().any(|i| i.aliases.contains(&new)) {
        return Some(Reply::err(409, format!("Alias {new:?} already exists")));
    }
    for a in images.iter_mut().flat_map(|i| i.aliases.iter_mut()) {
        if a == alias {
            *a = new.clone();
        }
    }
    Some(created(&new))
}

/// `DELETE /1.0/images/aliases/A`.
pub(super) fn alias_delete(shared: &Arc<Shared>, req: &Req, alias: &str) -> Option<Reply> {
    let mut g = shared.lock();
    let Some(images) = g.state.images_mut(&project(req)) else {
        return Some(no_project());
    };
    let mut found = false;
    for i in images.iter_mut() {
        let before = i.aliases.len();
        i.aliases.retain(|a| a != alias);
        found |= i.aliases.len() != before;
    }
    Some(if found {
        Reply::ok(json!({}))
    } else {
        no_alias()
    })
}
