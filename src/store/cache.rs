//! The two derived files beside `containers.yaml`, both a parsed YAML keyed
//! by the exact bytes it was parsed from (DESIGN.md, "The base and the load
//! cache"):
//!
//! - `.containers.folded`: what ldm itself last wrote into `containers.yaml`
//!   (its fold). While the YAML's bytes are unchanged it is the load cache,
//!   so a load parses JSON instead of YAML; when another writer changed the
//!   YAML it is the *base* of the three-way merge. Written by every fold.
//! - `.containers.cache`: the parsed form of a YAML that ldm did not write,
//!   so that read-only commands do not re-parse it until the next writer
//!   folds. Written by readers and writers alike, best effort.
//!
//! Layout of both:
//!
//! ```text
//! {"format":1,"yaml_len":N,"yaml_sha256":"<hex>","body_len":M,"body_crc":C}\n<body: M bytes of JSON>
//! ```
//!
//! A file that fails any check (format, size, body checksum, JSON) is
//! ignored as if absent; a cache is only used for the YAML whose length and
//! SHA-256 it names, so it can never stand for other bytes. Neither file is
//! needed to read the state: the YAML's own mark says whether ldm wrote it.
//! The base matters for merging: it is fdatasynced before its rename, and
//! the fold's folder fsync makes its name durable with the YAML's. The cache
//! is written by temp file and rename, nothing synced.

use serde::{Deserialize, Serialize};

use super::fs::Fs;
use super::record::LOG_ID_LEN;
use super::snapshot::{hex, sha256, unhex, Doc, Mark, Written};
use super::Paths;
use crate::model::Project;

/// What ldm last folded into `containers.yaml`.
pub const FOLDED_FILE: &str = ".containers.folded";
/// The parsed form of a `containers.yaml` ldm did not write.
pub const CACHE_FILE: &str = ".containers.cache";
/// Prefix of their temp files.
pub const TMP_PREFIX: &str = ".containers.cache.tmp-";
/// Larger files are ignored: a parsed state is a few times its YAML at most.
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// The YAML bytes a parsed form belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// Length in bytes.
    pub len: u64,
    /// SHA-256 of the bytes.
    pub sha: [u8; 32],
}

impl Key {
    /// The key of `yaml`.
    pub fn of(yaml: &[u8]) -> Key {
        Key {
            len: yaml.len() as u64,
            sha: sha256(yaml),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Head {
    format: u32,
    yaml_len: u64,
    yaml_sha256: String,
    body_len: u64,
    body_crc: u32,
}

#[derive(Serialize, Deserialize)]
struct MarkBody {
    generation: u64,
    seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum WrittenBody {
    NoMark,
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

fn to_body(doc: &Doc) -> Body {
    Body {
        project: doc.project.clone(),
        mark: doc.mark.map(|m| MarkBody {
            generation: m.generation,
            seq: m.seq,
            log: m.log.map(|id| hex(&id)),
        }),
        written: match doc.written {
            Written::NoMark => WrittenBody::NoMark,
            Written::Unchecked => WrittenBody::Unchecked,
            Written::ByLdm => WrittenBody::ByLdm,
            Written::Edited => WrittenBody::Edited,
        },
        unknown: doc.unknown.clone(),
    }
}

fn from_body(b: Body) -> Option<Doc> {
    let mark = match b.mark {
        None => None,
        Some(m) => Some(Mark {
            generation: m.generation,
            seq: m.seq,
            log: match m.log {
                None => None,
                Some(text) => Some(unhex::<LOG_ID_LEN>(&text)?),
            },
        }),
    };
    Some(Doc {
        project: b.project,
        mark,
        written: match b.written {
            WrittenBody::NoMark => Written::NoMark,
            WrittenBody::Unchecked => Written::Unchecked,
            WrittenBody::ByLdm => Written::ByLdm,
            WrittenBody::Edited => Written::Edited,
        },
        unknown: b.unknown,
    })
}

/// The parsed YAML stored in `name` (one of [`FOLDED_FILE`], [`CACHE_FILE`])
/// and the key of the bytes it was parsed from; `None` if absent or if any
/// check fails.
pub fn read(fs: &dyn Fs, paths: &Paths, name: &str) -> Option<(Key, Doc)> {
    let path = paths.dir.join(name);
    if fs.stat(&path).ok()?.len > MAX_FILE_BYTES {
        return None;
    }
    let bytes = fs.read(&path).ok()?;
    let split = bytes.iter().position(|b| *b == b'\n')?;
    let head: Head = serde_json::from_slice(&bytes[..split]).ok()?;
    let body = &bytes[split + 1..];
    if head.format != 1
        || head.body_len != body.len() as u64
        || head.body_crc != crc32fast::hash(body)
    {
        return None;
    }
    let sha = unhex::<32>(&head.yaml_sha256)?;
    let doc = from_body(serde_json::from_slice(body).ok()?)?;
    Some((
        Key {
            len: head.yaml_len,
            sha,
        },
        doc,
    ))
}

/// How a parsed form is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// The cache: temp and rename, nothing synced (a loss is a miss).
    None,
    /// The base: the temp is fdatasynced before the rename (the caller
    /// fsyncs the folder), so that a base whose name survives a power loss
    /// has its bytes too.
    Data,
}

/// Stores `doc` as the parsed form of the YAML with `key` in `name`. The
/// error only matters for the base (a fold reports it); the cache ignores it.
pub fn write(
    fs: &dyn Fs,
    paths: &Paths,
    name: &str,
    key: &Key,
    doc: &Doc,
    sync: Sync,
) -> std::io::Result<()> {
    let body = serde_json::to_vec(&to_body(doc)).map_err(std::io::Error::other)?;
    let head = Head {
        format: 1,
        yaml_len: key.len,
        yaml_sha256: hex(&key.sha),
        body_len: body.len() as u64,
        body_crc: crc32fast::hash(&body),
    };
    let mut out = serde_json::to_vec(&head).map_err(std::io::Error::other)?;
    out.push(b'\n');
    out.extend_from_slice(&body);
    let tmp = paths
        .dir
        .join(format!("{TMP_PREFIX}{}", super::compact::temp_tail()));
    let result = fs
        .write_new(&tmp, &out)
        .and_then(|()| match sync {
            Sync::Data => fs.sync(&tmp),
            Sync::None => Ok(()),
        })
        .and_then(|()| fs.rename(&tmp, &paths.dir.join(name)));
    if result.is_err() {
        let _ = fs.remove(&tmp);
    }
    result
}

/// Removes `name` if it is there (a cache made stale by a fold).
pub fn remove(fs: &dyn Fs, paths: &Paths, name: &str) {
    let _ = fs.remove(&paths.dir.join(name));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OsFs;

    fn doc() -> Doc {
        Doc {
            project: Project::new("p", vec![1]),
            mark: Some(Mark {
                generation: 2,
                seq: 5,
                log: Some([3; LOG_ID_LEN]),
            }),
            written: Written::ByLdm,
            unknown: vec!["colour".into()],
        }
    }

    #[test]
    fn round_trips_and_refuses_a_changed_body() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::in_dir(dir.path());
        let fs = OsFs::strict();
        let key = Key::of(b"project: p\n");
        write(&fs, &paths, CACHE_FILE, &key, &doc(), Sync::None).unwrap();
        assert_eq!(read(&fs, &paths, CACHE_FILE), Some((key, doc())));
        // A body changed behind the checksum's back is ignored.
        let path = dir.path().join(CACHE_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"ports\":[1]", "\"ports\":[2]")).unwrap();
        assert_eq!(read(&fs, &paths, CACHE_FILE), None);
    }

    #[test]
    fn garbage_is_absent() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::in_dir(dir.path());
        std::fs::write(dir.path().join(FOLDED_FILE), b"{\"format\":1}\nnot json").unwrap();
        assert!(read(&OsFs::strict(), &paths, FOLDED_FILE).is_none());
    }
}
