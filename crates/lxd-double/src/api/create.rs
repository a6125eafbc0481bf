//! `POST /1.0/instances`: create from an image (local, or a remote's with
//! a download), copy an instance or a snapshot, or make an empty one.

use std::sync::Arc;

use serde_json::Value;

use super::{body, bool_field, check_name, devices_field, map_field, project, str_field};
use crate::http::Req;
use crate::model::{Image, Instance, Status};
use crate::ops::{self, Action, Stage, Work};
use crate::server::{Ctx, Reply};
use crate::shared::Shared;
use crate::state::{Project, State};
use crate::util;

const DUPLICATE: &str =
    "Failed creating instance record: Add instance info to the database: This \"instances\" entry already exists";

/// Where the new instance comes from.
enum Source {
    /// A local image (by alias or fingerprint): its fingerprint.
    Local(Image),
    /// A remote server's image alias.
    Remote { server: String, alias: String },
    /// A copy of an instance, or of one of its snapshots.
    Copy {
        src: String,
        snap: Option<String>,
        instance_only: bool,
    },
    /// Nothing.
    Empty,
}

fn bad(e: Reply) -> Option<Reply> {
    Some(e)
}

/// `POST /1.0/instances`.
pub(super) fn post(shared: &Arc<Shared>, req: &Req, ctx: &mut Ctx) -> Option<Reply> {
    let b = match body(req) {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    let p = project(req);
    let fields = (|| {
        Ok::<_, Reply>((
            str_field(&b, "name")?.to_string(),
            map_field(&b, "config")?,
            devices_field(&b, "devices")?,
            bool_field(&b, "start")?,
            str_field(&b, "description")?.to_string(),
        ))
    })();
    let (mut name, config, devices, start, description) = match fields {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    let source = b.get("source").cloned().unwrap_or(Value::Null);
    let g = shared.lock();
    let st = &g.state;
    if !st.projects.contains_key(&p) {
        return bad(Reply::err(404, "Failed loading project: Project not found"));
    }
    if name.is_empty() {
        name = format!("double-{:04x}", util::hash64(&util::uuid()) & 0xffff);
    }
    if let Err(why) = check_name(&name) {
        return bad(Reply::err(400, why));
    }
    let profiles: Vec<String> = match b.get("profiles") {
        None | Some(Value::Null) => vec!["default".into()],
        Some(v) => match serde_json::from_value(v.clone()) {
            Ok(p) => p,
            Err(e) => return bad(Reply::err(400, format!("json: {e}"))),
        },
    };
    let pp = st.profiles_project(&p);
    if let Some(missing) = profiles.iter().find(|n| {
        !st.projects
            .get(&pp)
            .is_some_and(|x| x.profiles.contains_key(*n))
    }) {
        return bad(Reply::err(
            500,
            format!("Requested profile {missing:?} doesn't exist"),
        ));
    }
    let src = match source_of(st, &p, &source) {
        Ok(s) => s,
        Err(e) => return bad(e),
    };
    let mut names = vec![name.clone()];
    let mut stages = Vec::new();
    match &src {
        Source::Local(_) => stages.push(Stage::Unpack),
        Source::Remote { .. } => stages.extend([Stage::Download, Stage::Unpack]),
        Source::Copy { src, snap, .. } => names.push(match snap {
            Some(s) => format!("{src}/{s}"),
            None => src.clone(),
        }),
        Source::Empty => {}
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let resources = ops::instance_resources(st, &p, &refs);
    let early = st.behaviour.create_record_early;
    // `start` came with the instance_create_start extension: LXD 5.0.2
    // ignores it (the instance stays Stopped), Incus 6.0 starts it.
    let start = start && st.server.family == crate::Family::Incus;
    drop(g);

    let mut inst = Instance::stopped();
    inst.created_at = util::now();
    inst.config = config;
    inst.devices = devices;
    inst.profiles = profiles;
    inst.description = description;
    let record = inst.clone();
    let (p1, p2, p3) = (p.clone(), p.clone(), p.clone());
    let (n1, n2, n3) = (name.clone(), name.clone(), name.clone());
    let begin = Box::new(move |st: &mut State| {
        let proj = project_mut(st, &p1)?;
        if proj.instances.contains_key(&n1) {
            return Err(DUPLICATE.to_string());
        }
        if early {
            proj.instances.insert(n1, record);
        }
        Ok(())
    });
    let undo = Box::new(move |st: &mut State| {
        if early {
            if let Some(proj) = st.projects.get_mut(&p2) {
                proj.instances.remove(&n2);
            }
        }
    });
    let effect = Box::new(move |st: &mut State| {
        let exists = st.instance(&p3, &n3).is_some();
        if exists && !early {
            return Err(DUPLICATE.to_string());
        }
        let made = make(st, &p3, inst, src);
        let made = match made {
            Ok(m) => m,
            Err(e) => {
                if early {
                    project_mut(st, &p3)?.instances.remove(&n3);
                }
                return Err(e);
            }
        };
        let ip = st.behaviour.addresses.then(|| st.alloc_ip());
        let shift = st.server.shift_works;
        let proj = project_mut(st, &p3)?;
        proj.instances.insert(n3.clone(), made);
        let slot = proj.instances.get_mut(&n3).ok_or("Instance not found")?;
        if start {
            super::devices::start(slot, shift, ip)?;
        }
        Ok(None)
    });
    let work = Work {
        description: "Creating instance".into(),
        project: p,
        resources,
        lock: Some((name, Action::Create)),
        stages,
        may_cancel: false,
        begin: Some(begin),
        undo: Some(undo),
        effect,
    };
    Some(Reply::Async(Box::new(ops::spawn(
        shared,
        work,
        ctx.op_knobs.clone(),
    ))))
}

fn project_mut<'a>(st: &'a mut State, p: &str) -> Result<&'a mut Project, String> {
    st.projects
        .get_mut(p)
        .ok_or_else(|| "Failed loading project: Project not found".to_string())
}

/// Reads `source` and checks what can be checked at once (as LXD does
/// before creating the operation).
fn source_of(st: &State, p: &str, source: &Value) -> Result<Source, Reply> {
    let kind = str_field(source, "type")?;
    match kind {
        "image" => {
            let server = str_field(source, "server")?;
            let alias = str_field(source, "alias")?;
            let fp = str_field(source, "fingerprint")?;
            if !server.is_empty() {
                return Ok(Source::Remote {
                    server: server.into(),
                    alias: if alias.is_empty() { fp } else { alias }.into(),
                });
            }
            let images = st.images(p);
            let found = if !alias.is_empty() {
                let on_demand = st.behaviour.images_on_demand && !alias.starts_with("missing");
                match images.iter().find(|i| i.aliases.iter().any(|a| a == alias)) {
                    Some(i) => i,
                    None if on_demand => return Ok(Source::Local(Image::new(alias))),
                    None => return Err(Reply::err(404, "Image alias not found")),
                }
            } else {
                let hits: Vec<&Image> = images
                    .iter()
                    .filter(|i| !fp.is_empty() && i.fingerprint.starts_with(fp))
                    .collect();
                match hits.as_slice() {
                    [one] => *one,
                    _ => return Err(Reply::err(404, "Image not found")),
                }
            };
            Ok(Source::Local(found.clone()))
        }
        "copy" => {
            let full = str_field(source, "source")?;
            let instance_only = super::bool_field(source, "instance_only")?;
            let (src, snap) = match full.split_once('/') {
                Some((s, n)) => (s.to_string(), Some(n.to_string())),
                None => (full.to_string(), None),
            };
            let Some(inst) = st.instance(p, &src) else {
                return Err(Reply::err(
                    404,
                    format!(
                        "Failed to fetch instance {src:?} in project {p:?}: Instance not found"
                    ),
                ));
            };
            if let Some(s) = &snap {
                if inst.find_snapshot(s).is_none() {
                    return Err(Reply::err(
                        404,
                        format!(
                            "Failed to fetch snapshot {s:?} of instance {src:?} in project {p:?}: InstanceSnapshot not found"
                        ),
                    ));
                }
            }
            Ok(Source::Copy {
                src,
                snap,
                instance_only,
            })
        }
        "none" | "" => Ok(Source::Empty),
        other => Err(Reply::err(400, format!("Unknown source type {other}"))),
    }
}

/// The instance `inst` becomes from `src` (when the operation ends).
fn make(st: &mut State, p: &str, mut inst: Instance, src: Source) -> Result<Instance, String> {
    let extra = st.behaviour.create_config.clone();
    let image_keys = |inst: &mut Instance, img: &Image| {
        for (k, v) in &extra {
            inst.config.entry(k.clone()).or_insert(v.clone());
        }
        for (k, v) in &img.properties {
            inst.config.entry(format!("image.{k}")).or_insert(v.clone());
        }
        inst.config
            .insert("volatile.base_image".into(), img.fingerprint.clone());
    };
    match src {
        Source::Local(img) => {
            image_keys(&mut inst, &img);
            inst.files = img.files.clone();
            inst.origin = format!("image {}", img.aliases.first().unwrap_or(&img.fingerprint));
        }
        Source::Remote { server, alias } => {
            if !st.remote_has(&alias) {
                return Err("Failed instance creation: Failed getting remote image info: Failed getting image: The requested image couldn't be found".into());
            }
            let mut img = Image::new(&alias);
            img.fingerprint = util::hex64(&("remote", &server, &alias));
            img.aliases.clear();
            img.cached = true;
            image_keys(&mut inst, &img);
            if let Some(images) = st.images_mut(p) {
                if !images.iter().any(|i| i.fingerprint == img.fingerprint) {
                    images.push(img);
                }
            }
            inst.origin = format!("image {server} {alias}");
        }
        Source::Copy {
            src,
            snap,
            instance_only,
        } => {
            let from = st
                .instance(p, &src)
                .ok_or_else(|| format!("Failed to fetch instance {src:?}: Instance not found"))?;
            let (config, devices, files) = match &snap {
                Some(s) => {
                    let s = from.find_snapshot(s).ok_or_else(|| {
                        format!("Failed to fetch snapshot {s:?}: InstanceSnapshot not found")
                    })?;
                    (s.config.clone(), s.devices.clone(), s.files.clone())
                }
                None => (
                    from.config.clone(),
                    from.devices.clone(),
                    from.files.clone(),
                ),
            };
            let mut merged = config;
            merged.extend(inst.config);
            inst.config = merged;
            let mut devs = devices;
            devs.extend(inst.devices);
            inst.devices = devs;
            inst.files = files;
            if snap.is_none() && !instance_only {
                inst.snapshots = from.snapshots.clone();
            }
            inst.origin = match snap {
                Some(s) => format!("copy {src}/{s}"),
                None => format!("copy {src}"),
            };
        }
        Source::Empty => inst.origin = "empty".into(),
    }
    inst.status = Status::Stopped;
    Ok(inst)
}
