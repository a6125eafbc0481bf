//! The body of a derived file (DESIGN.md, "The base and the load cache"):
//! the state as JSON with each container's snapshots left out, then the
//! snapshots as length-prefixed strings, which decode in the time it takes
//! to allocate them. Every field of `Container` and `Snapshot` is named
//! here, so that a new one does not compile until it is carried.

use std::io;

use serde::{Deserialize, Serialize};

use super::record::LOG_ID_LEN;
use super::snapshot::{hex, unhex, Doc, Mark, Written};
use ldm_model::{Pending, Project, Snapshot};

pub(super) fn mark_body(m: &Mark) -> MarkBody {
    MarkBody {
        generation: m.generation,
        seq: m.seq,
        log: m.log.map(|id| hex(&id)),
    }
}

pub(super) fn mark_of(m: MarkBody) -> Option<Mark> {
    Some(Mark {
        generation: m.generation,
        seq: m.seq,
        log: match m.log {
            None => None,
            Some(text) => Some(unhex::<LOG_ID_LEN>(&text)?),
        },
    })
}

#[derive(Serialize, Deserialize)]
pub(super) struct MarkBody {
    generation: u64,
    seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum WrittenBody {
    NoMark,
    MarkRemoved,
    Unchecked,
    ByLdm,
    Edited,
}

#[derive(Serialize, Deserialize)]
struct Body {
    project: Project,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mark: Option<MarkBody>,
    written: WrittenBody,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    unknown: Vec<String>,
}

/// The state without its snapshots, which go in the binary part. Every
/// field is named, so that a new field of `Container` fails to compile
/// here until it is carried over.
fn without_snapshots(project: &Project) -> Project {
    use ldm_model::Container;
    Project {
        project: project.project.clone(),
        remote: project.remote.clone(),
        lxd_project: project.lxd_project.clone(),
        defaults: project.defaults.clone(),
        containers: project
            .containers
            .iter()
            .map(|(name, c)| {
                let Container {
                    image,
                    ports,
                    user,
                    mounts,
                    setup,
                    snapshots: _,
                    pending,
                    security,
                } = c;
                let shell = Container {
                    image: image.clone(),
                    ports: ports.clone(),
                    user: user.clone(),
                    mounts: mounts.clone(),
                    setup: setup.clone(),
                    snapshots: Default::default(),
                    pending: pending.clone(),
                    security: *security,
                };
                (name.clone(), shell)
            })
            .collect(),
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s);
}

pub(super) fn encode_body(doc: &Doc) -> io::Result<(Vec<u8>, u64)> {
    let body = Body {
        project: without_snapshots(&doc.project),
        mark: doc.mark.as_ref().map(mark_body),
        written: match doc.written {
            Written::NoMark => WrittenBody::NoMark,
            Written::MarkRemoved => WrittenBody::MarkRemoved,
            Written::Unchecked => WrittenBody::Unchecked,
            Written::ByLdm => WrittenBody::ByLdm,
            Written::Edited => WrittenBody::Edited,
        },
        unknown: doc.unknown.clone(),
    };
    let mut out = serde_json::to_vec(&body).map_err(io::Error::other)?;
    let json_len = out.len() as u64;
    for c in doc.project.containers.values() {
        out.extend_from_slice(&(c.snapshots.len() as u32).to_le_bytes());
        for (name, snap) in &c.snapshots {
            // Every field named: a new one fails to compile here.
            let Snapshot {
                description,
                created_at,
                pending,
            } = snap;
            put_str(&mut out, name.as_bytes());
            put_str(&mut out, description.as_bytes());
            put_str(&mut out, created_at.as_bytes());
            match pending {
                None => put_str(&mut out, b""),
                Some(p) => put_str(&mut out, &serde_json::to_vec(p).map_err(io::Error::other)?),
            }
        }
    }
    Ok((out, json_len))
}

/// Reads the binary part of a body.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Option<u32> {
        let b = self.bytes.get(self.at..self.at.checked_add(4)?)?;
        self.at += 4;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        let b = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(b)
    }

    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

pub(super) fn decode_body(body: &[u8], json_len: usize) -> Option<Doc> {
    let b: Body = serde_json::from_slice(body.get(..json_len)?).ok()?;
    let mut project = b.project;
    let mut r = Reader {
        bytes: body,
        at: json_len,
    };
    for c in project.containers.values_mut() {
        let n = r.u32()? as usize;
        // Each snapshot takes at least 16 bytes: a count past that is damage.
        if n > (body.len() - r.at) / 16 {
            return None;
        }
        for _ in 0..n {
            let name = r.string()?;
            let description = r.string()?;
            let created_at = r.string()?;
            let pending = match r.bytes()? {
                [] => None,
                json => Some(serde_json::from_slice::<Pending>(json).ok()?),
            };
            // Written in the map's order: strictly increasing, or damage.
            // Inserted one by one: no list of them moved about first.
            if c.snapshots
                .last_key_value()
                .is_some_and(|(k, _)| *k >= name)
            {
                return None;
            }
            c.snapshots.insert(
                name,
                Snapshot {
                    description,
                    created_at,
                    pending,
                },
            );
        }
    }
    if r.at != body.len() {
        return None;
    }
    let mark = match b.mark {
        None => None,
        Some(m) => Some(mark_of(m)?),
    };
    Some(Doc {
        project,
        mark,
        written: match b.written {
            WrittenBody::NoMark => Written::NoMark,
            WrittenBody::MarkRemoved => Written::MarkRemoved,
            WrittenBody::Unchecked => Written::Unchecked,
            WrittenBody::ByLdm => Written::ByLdm,
            WrittenBody::Edited => Written::Edited,
        },
        unknown: b.unknown,
    })
}
