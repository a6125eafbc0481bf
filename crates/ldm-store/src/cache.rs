//! ldm's two derived files, both a parsed `containers.yaml` tied to the
//! YAML they were made from (DESIGN.md, "The base and the load cache").
//! They live outside the project folder, per checkout, in the user's own
//! folders ([`super::Derived`]): anyone who can write the project folder (a
//! cloned repository, the container through its mount) could otherwise
//! plant one for a YAML whose SHA-256 anyone can compute.
//!
//! - `base` (state folder): what ldm itself last wrote into
//!   `containers.yaml` (its fold). While the YAML is unchanged it is the
//!   load cache; when another writer changed the YAML it is the *base* of
//!   the three-way merge. Written by every fold, fdatasynced.
//! - `cache` (cache folder): the parsed form of the YAML as a reader last
//!   found it, so that reads neither hash nor parse it again. Written by
//!   readers and writers, best effort, nothing synced.
//!
//! Layout of both:
//!
//! ```text
//! {"format":3,"yaml_len":N,"yaml_sha256":"<hex>","stamp":{...},"seen_ns":T,
//!  "extras":B,"json_len":J,"body_len":M,"body_crc":C}\n<body: M bytes>
//! body = J bytes of JSON (the state, each container's snapshots left out,
//!        its mark, who wrote it, unknown keys), then per container in
//!        order: u32 count, and per snapshot its name, description and
//!        created_at (u32 length + UTF-8 each) and its pending operation
//!        (u32 length + JSON; length 0: none)
//! ```
//!
//! Snapshots are most of a big project (10,000 of them are 1 MB); decoding
//! them as length-prefixed strings costs what allocating them costs, about
//! a quarter of serde_json's time. A file that fails any check is a miss.
//!
//! **Which YAML.** An entry names the YAML's bytes (length and SHA-256) and
//! the YAML file it saw holding them (`stamp`: device, inode, size, mtime,
//! ctime, and the machine's boot id) at time `seen`. Like git's index, a
//! later `stat` equal to the stamp vouches for the bytes without reading
//! them, unless the file was changed too close to `seen` for its times to
//! tell a later change apart (git's "racy" rule: then the bytes are hashed).

// Over 400 lines with its tests (about 120): the base and the load cache
// share their key, their checks and their writes.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::codec::{decode_body, encode_body, mark_body, mark_of, MarkBody};
use super::fs::{FileId, Fs};

use super::snapshot::{hex, sha256, unhex, Doc, Mark};

/// The base's name, in the checkout's state folder.
pub const BASE_FILE: &str = "base";
/// The load cache's name, in the checkout's cache folder.
pub const CACHE_FILE: &str = "cache";
/// Where ldm before version 0.1's derived files moved kept them, in the
/// project folder: ignored now, removed by writers as leftovers.
pub const OLD_FILES: [&str; 2] = [".containers.folded", ".containers.cache"];
/// Prefix of the temp files of both (in their own folders).
pub const TMP_PREFIX: &str = ".tmp-";
/// The version of ldm writing derived files (see [`Stored::ours`]).
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Larger files are ignored: a parsed state is a few times its YAML at most.
pub const MAX_FILE_BYTES: u64 = 256 << 20;
/// A file changed less than this before `seen` is "racy": its times cannot
/// tell a later change within the same clock tick apart, so its bytes are
/// hashed. File times come from the kernel's coarse clock (a tick is 1 to
/// 10 ms); file systems with whole-second times get [`RACY_COARSE_NS`].
pub const RACY_NS: i128 = 50_000_000;
/// The racy margin for a file whose times have no sub-second part.
pub const RACY_COARSE_NS: i128 = 2_000_000_000;

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

/// The YAML file as `stat` showed it, and which boot of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Identity, size and times.
    pub id: FileId,
    /// The boot it was seen in ([`Fs::boot_id`]).
    pub boot: [u8; 16],
}

impl Stamp {
    /// The stamp of `id` seen now on `fs`.
    pub fn of(fs: &dyn Fs, id: FileId) -> Stamp {
        Stamp {
            id,
            boot: fs.boot_id(),
        }
    }
}

/// One derived file: a parsed YAML and which YAML it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The bytes it was parsed from.
    pub key: Key,
    /// The file that held those bytes at `seen_ns`.
    pub stamp: Stamp,
    /// When the file was known to hold them ([`Fs::now_ns`]).
    pub seen_ns: i128,
    /// The YAML holds what a rewrite drops (comments of its own, unknown
    /// keys): a writer keeps a copy before it folds over it.
    pub extras: bool,
    /// The parsed YAML.
    pub doc: Doc,
}

impl Entry {
    /// True when the YAML file now (`stamp`) is the one this entry saw and
    /// its times prove it unchanged since ([`vouches`]).
    pub fn vouches(&self, stamp: &Stamp) -> bool {
        vouches(&self.stamp, self.seen_ns, stamp)
    }
}

/// True when the YAML file now (`now`) is the one seen as `then` at
/// `seen_ns` and its times prove it unchanged since: same boot, identity,
/// size and times, and changed long enough before `seen_ns` that a later
/// change would show in them. Otherwise only its bytes can tell.
fn vouches(then: &Stamp, seen_ns: i128, now: &Stamp) -> bool {
    let id = &then.id;
    let margin = if id.mtime_ns % 1_000_000_000 == 0 {
        RACY_COARSE_NS
    } else {
        RACY_NS
    };
    now == then
        && then.boot != [0; 16]
        && id.mtime_ns.saturating_add(margin) < seen_ns
        && id.ctime_ns.saturating_add(margin) < seen_ns
}

/// A derived file as read: its head and checksum checked; its body, most
/// of its bytes, decoded only when it is used ([`Stored::decode`]), so a
/// base that does not vouch for the YAML costs a read, not a decode.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The bytes it was parsed from.
    pub key: Key,
    /// The file that held those bytes at `seen_ns`.
    pub stamp: Stamp,
    /// When the file was known to hold them.
    pub seen_ns: i128,
    /// The YAML holds what a rewrite drops.
    pub extras: bool,
    /// The parsed YAML's mark.
    pub mark: Option<Mark>,
    /// Written by this very version of ldm, which validated what it stored.
    pub ours: bool,
    /// The whole file, when read ([`read`]); empty after [`read_head`].
    bytes: Vec<u8>,
    /// The head line, to tell that a later full read is the same file.
    head: Vec<u8>,
    body_at: usize,
    json_len: usize,
}

impl Stored {
    /// [`Entry::vouches`] for this file.
    pub fn vouches(&self, stamp: &Stamp) -> bool {
        vouches(&self.stamp, self.seen_ns, stamp)
    }

    /// The parsed YAML; `None` if the body does not decode. After
    /// [`read_head`], the file at `path` is read whole first, and must
    /// still have the same head (and a body that matches its checksum).
    pub fn decode(self, fs: &dyn Fs, path: &Path) -> Option<Doc> {
        if self.bytes.is_empty() {
            let whole = read(fs, path)?;
            if whole.head != self.head {
                return None;
            }
            return whole.decode(fs, path);
        }
        decode_body(&self.bytes[self.body_at..], self.json_len)
    }
}

#[derive(Serialize, Deserialize)]
struct StampHead {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    boot: String,
}

#[derive(Serialize, Deserialize)]
struct Head {
    format: u32,
    yaml_len: u64,
    yaml_sha256: String,
    stamp: StampHead,
    seen_ns: i128,
    extras: bool,
    /// The ldm version that wrote it: one of the same version validated
    /// what it stored, so a load need not validate it again.
    by: String,
    /// The parsed YAML's mark, also in the body: lineage needs only this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mark: Option<MarkBody>,
    json_len: u64,
    body_len: u64,
    body_crc: u32,
}

/// The derived file at `path`, its body not decoded yet; `None` if absent
/// or if any check of its head or checksum fails.
pub fn read(fs: &dyn Fs, path: &Path) -> Option<Stored> {
    if fs.stat(path).ok()?.len > MAX_FILE_BYTES {
        return None;
    }
    let bytes = fs.read(path).ok()?;
    let split = bytes.iter().position(|b| *b == b'\n')?;
    let body = &bytes[split + 1..];
    let stored = parse_head(&bytes[..split], Some(body))?;
    Some(Stored {
        body_at: split + 1,
        bytes,
        ..stored
    })
}

/// Longest head line: the head is a few hundred bytes of JSON.
const HEAD_MAX: usize = 4096;

/// The head of the derived file at `path`, its body unread (the first few
/// KiB only): enough to know which YAML it stands for, its mark, and
/// whether it vouches. [`Stored::decode`] reads the rest when it is used.
pub fn read_head(fs: &dyn Fs, path: &Path) -> Option<Stored> {
    let bytes = fs.read_prefix(path, HEAD_MAX).ok()?;
    let split = bytes.iter().position(|b| *b == b'\n')?;
    parse_head(&bytes[..split], None)
}

/// The head line parsed and checked; with `body`, the body's length and
/// checksum checked against it too.
fn parse_head(line: &[u8], body: Option<&[u8]>) -> Option<Stored> {
    let head: Head = serde_json::from_slice(line).ok()?;
    let body_ok =
        body.is_none_or(|b| head.body_len == b.len() as u64 && head.body_crc == crc32fast::hash(b));
    if head.format != 3 || head.json_len > head.body_len || !body_ok {
        return None;
    }
    let s = head.stamp;
    let mark = match head.mark {
        None => None,
        Some(m) => Some(mark_of(m)?),
    };
    Some(Stored {
        key: Key {
            len: head.yaml_len,
            sha: unhex::<32>(&head.yaml_sha256)?,
        },
        stamp: Stamp {
            id: FileId {
                dev_ino: (s.dev, s.ino),
                len: s.len,
                mtime_ns: s.mtime_ns,
                ctime_ns: s.ctime_ns,
            },
            boot: unhex::<16>(&s.boot)?,
        },
        seen_ns: head.seen_ns,
        extras: head.extras,
        mark,
        ours: head.by == VERSION,
        bytes: Vec::new(),
        head: line.to_vec(),
        body_at: 0,
        json_len: head.json_len as usize,
    })
}

/// How a derived file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// The cache: temp and rename, nothing synced (a loss is a miss).
    None,
    /// The base: the temp is fdatasynced before the rename, so that a base
    /// whose name survives a power loss has its bytes too.
    Data,
}

/// Stores `entry` at `path` (temp file beside it, then rename). The error
/// only matters for the base (a fold reports it); the cache ignores it.
pub fn write(fs: &dyn Fs, path: &Path, entry: &Entry, sync: Sync) -> io::Result<()> {
    let (body, json_len) = encode_body(&entry.doc)?;
    let id = &entry.stamp.id;
    let head = Head {
        format: 3,
        yaml_len: entry.key.len,
        yaml_sha256: hex(&entry.key.sha),
        stamp: StampHead {
            dev: id.dev_ino.0,
            ino: id.dev_ino.1,
            len: id.len,
            mtime_ns: id.mtime_ns,
            ctime_ns: id.ctime_ns,
            boot: hex(&entry.stamp.boot),
        },
        seen_ns: entry.seen_ns,
        extras: entry.extras,
        by: VERSION.to_string(),
        mark: entry.doc.mark.as_ref().map(mark_body),
        json_len,
        body_len: body.len() as u64,
        body_crc: crc32fast::hash(&body),
    };
    let mut out = serde_json::to_vec(&head).map_err(io::Error::other)?;
    out.push(b'\n');
    out.extend_from_slice(&body);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        "{TMP_PREFIX}{name}-{}",
        super::compact::temp_tail()
    ));
    let result = fs
        .write_new(&tmp, &out)
        .and_then(|()| match sync {
            Sync::Data => fs.sync(&tmp),
            Sync::None => Ok(()),
        })
        .and_then(|()| fs.rename(&tmp, path));
    if result.is_err() {
        let _ = fs.remove(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::LOG_ID_LEN;
    use crate::snapshot::Written;
    use crate::OsFs;
    use ldm_model::{Container, Op, Owner, Pending, Project, Snapshot};

    fn doc() -> Doc {
        let mut project = Project::new("p", vec![1]);
        let mut c = Container {
            image: "img".into(),
            ..Default::default()
        };
        for (i, pending) in [None, Some(Op::Remove)].into_iter().enumerate() {
            c.snapshots.insert(
                format!("s{i}"),
                Snapshot {
                    description: format!("snapshot {i}, ünïcode"),
                    created_at: "2026-01-15T10:30:00Z".into(),
                    pending: pending.map(|op| Pending {
                        op,
                        owner: Owner {
                            pid: 7,
                            slot: 9,
                            ..Default::default()
                        },
                        started_at: "t".into(),
                        setup: None,
                    }),
                },
            );
        }
        project.containers.insert("a".into(), c.clone());
        c.snapshots.clear();
        project.containers.insert("b".into(), c);
        Doc {
            project,
            mark: Some(Mark {
                generation: 2,
                seq: 5,
                log: Some([3; LOG_ID_LEN]),
            }),
            written: Written::ByLdm,
            unknown: vec!["colour".into()],
        }
    }

    fn entry(seen_ns: i128) -> Entry {
        Entry {
            key: Key::of(b"project: p\n"),
            stamp: Stamp {
                id: FileId {
                    dev_ino: (1, 2),
                    len: 11,
                    mtime_ns: 1_000_000_001,
                    ctime_ns: 1_000_000_001,
                },
                boot: [9; 16],
            },
            seen_ns,
            extras: true,
            doc: doc(),
        }
    }

    #[test]
    fn round_trips_and_refuses_a_changed_body() {
        let dir = tempfile::tempdir().unwrap();
        let fs = OsFs::strict();
        let path = dir.path().join(CACHE_FILE);
        let e = entry(5_000_000_000);
        write(&fs, &path, &e, Sync::None).unwrap();
        let got = read(&fs, &path).unwrap();
        assert_eq!(
            (got.key, got.stamp, got.seen_ns, got.extras),
            (e.key, e.stamp, e.seen_ns, e.extras)
        );
        assert_eq!(got.mark, e.doc.mark);
        let head = read_head(&fs, &path).unwrap();
        assert_eq!(
            (head.key, head.stamp, head.mark),
            (e.key, e.stamp, e.doc.mark)
        );
        assert_eq!(head.decode(&fs, &path), Some(e.doc.clone()));
        assert_eq!(got.decode(&fs, &path), Some(e.doc));
        // A body changed behind the checksum's back is ignored.
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(read(&fs, &path).is_none());
    }

    #[test]
    fn garbage_is_absent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BASE_FILE);
        std::fs::write(&path, b"{\"format\":2}\nnot json").unwrap();
        assert!(read(&OsFs::strict(), &path).is_none());
    }

    #[test]
    fn times_vouch_only_outside_the_racy_window_and_within_one_boot() {
        let e = entry(1_000_000_001 + RACY_NS + 1);
        assert!(e.vouches(&e.stamp));
        // Changed within the margin before it was seen: racy.
        assert!(!entry(1_000_000_001 + RACY_NS).vouches(&e.stamp));
        // Any field differing, or another boot.
        let mut other = e.stamp;
        other.id.ctime_ns += 1;
        assert!(!e.vouches(&other));
        let mut other = e.stamp;
        other.boot = [8; 16];
        assert!(!e.vouches(&other));
        // Whole-second times need the coarse margin.
        let mut coarse = entry(3_000_000_000);
        coarse.stamp.id.mtime_ns = 2_000_000_000;
        coarse.stamp.id.ctime_ns = 2_000_000_000;
        assert!(!coarse.vouches(&coarse.stamp));
        coarse.seen_ns = 2_000_000_000 + RACY_COARSE_NS + 1;
        assert!(coarse.vouches(&coarse.stamp));
    }
}
