//! The user's own folders for ldm, outside every project: what ldm keeps
//! about a project folder where no one who can write that folder (a cloned
//! repository, a teammate, the container through its mount) can change it.
//!
//! - State (`$XDG_STATE_HOME/ldm`, else `~/.local/state/ldm`): which
//!   checkout a folder is, and per checkout what the user allowed and what
//!   ldm derived from the project.
//! - Cache (`$XDG_CACHE_HOME/ldm`, else `~/.cache/ldm`): what may be lost
//!   at any time.
//!
//! A **checkout** is one project folder on this machine, as opposed to a
//! copy of it (a second clone, a `git worktree`, a backup): both hold the
//! same `containers.yaml`, and only the folder's identity tells them apart.
//! Its id is made the first time ldm sees the folder and kept under
//! `folders/DEV-INO-BIRTH` (device, inode and birth time of the folder), so a
//! `mv` within one file system keeps it (the inode stays) and a copy gets
//! its own (a new inode). DESIGN.md, "The user's state folder".
//!
//! Folders are created `0700`, files `0600`; every file is written to a
//! temporary name and then linked or renamed in, so two ldm processes that
//! meet a new folder at once agree on one id. Knows nothing else of ldm.

// Over 400 lines with its tests (about 65): the folders, the checkout
// identity and their safe file writes are one small crate's whole job.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Errors reading or writing the user's state folder.
#[derive(Debug, Error)]
pub enum UserStateError {
    /// Neither `XDG_STATE_HOME` nor a home folder says where it is.
    #[error("cannot tell where your state folder is: HOME is not set and the user database has no home folder for uid {uid}; set HOME or XDG_STATE_HOME")]
    NoHome {
        /// The effective user.
        uid: u32,
    },
    /// A file or folder operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What ldm was doing, as a verb phrase.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file of the state folder does not hold what ldm wrote there.
    #[error("{path} is damaged ({why}); remove it and run the command again (ldm makes it anew)")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> UserStateError {
    let path = path.to_path_buf();
    move |source| UserStateError::Io {
        action,
        path,
        source,
    }
}

/// Where ldm keeps the user's own state and cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDirs {
    /// `$XDG_STATE_HOME/ldm` or `~/.local/state/ldm`.
    pub state: PathBuf,
    /// `$XDG_CACHE_HOME/ldm` or `~/.cache/ldm`.
    pub cache: PathBuf,
}

impl UserDirs {
    /// The folders from the environment (XDG base directories; `HOME`, else
    /// the user database's home folder of the effective user).
    pub fn from_env() -> Result<UserDirs, UserStateError> {
        let home = || -> Result<PathBuf, UserStateError> {
            if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
                return Ok(PathBuf::from(h));
            }
            let uid = ldm_sys::euid();
            ldm_sys::users::by_uid(uid)
                .map(|u| u.home)
                .ok_or(UserStateError::NoHome { uid })
        };
        let xdg = |var: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        let state = match xdg("XDG_STATE_HOME") {
            Some(p) => p,
            None => home()?.join(".local/state"),
        };
        let cache = match xdg("XDG_CACHE_HOME") {
            Some(p) => p,
            None => home()?.join(".cache"),
        };
        Ok(UserDirs {
            state: state.join("ldm"),
            cache: cache.join("ldm"),
        })
    }

    /// Both folders under `root` (tests).
    pub fn in_dir(root: &Path) -> UserDirs {
        UserDirs {
            state: root.join("state"),
            cache: root.join("cache"),
        }
    }

    /// The checkout that project folder `dir` is, made on first sight.
    /// When the folder was moved since ldm last saw it (same identity,
    /// another path) the new path is recorded and the old one returned in
    /// [`Checkout::moved_from`].
    pub fn checkout(&self, dir: &Path) -> Result<Checkout, UserStateError> {
        let dir = fs::canonicalize(dir).map_err(io_err("resolve", dir))?;
        let meta = fs::metadata(&dir).map_err(io_err("read the metadata of", &dir))?;
        let birth = meta
            .created()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let folders = self.state.join("folders");
        let key = folders.join(format!("{}-{}-{birth}", meta.dev(), meta.ino()));
        // Known folders (every command but the first) cost one read; only
        // a new one pays for the synced write of its entry.
        let entry = match read_entry(&key) {
            Ok(entry) => entry,
            Err(UserStateError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                make_dir(&folders)?;
                let mine = FolderEntry {
                    id: CheckoutId::random().map_err(io_err("read random bytes for", &key))?,
                    dir: dir.clone(),
                };
                match publish_new(&key, &encode(&mine)?)? {
                    true => mine,
                    false => read_entry(&key)?,
                }
            }
            Err(e) => return Err(e),
        };
        let moved_from = if entry.dir != dir {
            let moved = FolderEntry {
                id: entry.id,
                dir: dir.clone(),
            };
            replace(&key, &encode(&moved)?)?;
            Some(entry.dir)
        } else {
            None
        };
        Ok(Checkout {
            id: entry.id,
            dir,
            moved_from,
        })
    }

    /// The checkout id ldm gave folder `dir`, if it has seen it: nothing
    /// is made or recorded (`None` for a folder that is not there, or
    /// that ldm never saw as it is now).
    pub fn known(&self, dir: &Path) -> Option<CheckoutId> {
        let meta = fs::metadata(dir).ok()?;
        let birth = meta
            .created()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let key = self
            .state
            .join("folders")
            .join(format!("{}-{}-{birth}", meta.dev(), meta.ino()));
        read_entry(&key).ok().map(|e| e.id)
    }

    /// The folder of checkout `id`'s own state (made on demand, `0700`).
    pub fn checkout_state(&self, id: CheckoutId) -> Result<PathBuf, UserStateError> {
        let dir = self.state.join("checkouts").join(id.to_string());
        make_dir(&dir)?;
        Ok(dir)
    }

    /// The folder of checkout `id`'s cache (made on demand, `0700`).
    pub fn checkout_cache(&self, id: CheckoutId) -> Result<PathBuf, UserStateError> {
        let dir = self.cache.join("checkouts").join(id.to_string());
        make_dir(&dir)?;
        Ok(dir)
    }
}

/// One project folder on this machine, told apart from its copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// Its id, the same for as long as the folder exists.
    pub id: CheckoutId,
    /// The folder, canonical.
    pub dir: PathBuf,
    /// Where ldm last saw it, when that was elsewhere (it was moved).
    pub moved_from: Option<PathBuf>,
}

/// 16 random bytes naming one checkout; shown as 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckoutId(pub [u8; 16]);

impl CheckoutId {
    fn random() -> io::Result<CheckoutId> {
        let mut id = [0u8; 16];
        ldm_sys::random_bytes(&mut id)?;
        Ok(CheckoutId(id))
    }

    /// Parses 32 hex digits.
    pub fn parse(text: &str) -> Option<CheckoutId> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut id = [0u8; 16];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(CheckoutId(id))
    }
}

impl fmt::Display for CheckoutId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl Serialize for CheckoutId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CheckoutId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CheckoutId, D::Error> {
        let text = String::deserialize(d)?;
        CheckoutId::parse(&text).ok_or_else(|| serde::de::Error::custom("not 32 hex digits"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FolderEntry {
    id: CheckoutId,
    #[serde(with = "any_path")]
    dir: PathBuf,
}

/// A path as JSON: a string when it is UTF-8, else its bytes (a folder
/// named in another encoding is a checkout like any other).
mod any_path {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Form {
        Text(String),
        Bytes(Vec<u8>),
    }

    pub fn serialize<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        match p.to_str() {
            Some(t) => Form::Text(t.to_owned()),
            None => Form::Bytes(p.as_os_str().as_bytes().to_vec()),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        Ok(match Form::deserialize(d)? {
            Form::Text(t) => PathBuf::from(t),
            Form::Bytes(b) => PathBuf::from(std::ffi::OsString::from_vec(b)),
        })
    }
}

fn encode(entry: &FolderEntry) -> Result<Vec<u8>, UserStateError> {
    serde_json::to_vec(entry).map_err(|e| UserStateError::Damaged {
        path: entry.dir.clone(),
        why: e.to_string(),
    })
}

fn read_entry(path: &Path) -> Result<FolderEntry, UserStateError> {
    let bytes = read_small(path)?;
    serde_json::from_slice(&bytes).map_err(|e| UserStateError::Damaged {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

/// Creates `dir` and its parents, `0700`.
pub fn make_dir(dir: &Path) -> Result<(), UserStateError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("create the folder", dir))
}

/// Reads a file of the state folder (at most 16 MiB), without following a
/// symbolic link.
pub fn read_small(path: &Path) -> Result<Vec<u8>, UserStateError> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(io_err("open", path))?;
    let mut bytes = Vec::new();
    (&mut f)
        .take(16 << 20)
        .read_to_end(&mut bytes)
        .map_err(io_err("read", path))?;
    Ok(bytes)
}

/// Writes `bytes` to a new temporary file beside `path`, synced.
fn write_temp(path: &Path, bytes: &[u8]) -> Result<PathBuf, UserStateError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per call, not only per process: threads of one process (ldm
    // up) may meet the same new folder at once.
    let salt = CheckoutId::random().map_err(io_err("read random bytes for", path))?;
    let tmp = path.with_file_name(format!(".{name}.tmp-{}-{salt}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_data())
        .map_err(io_err("write", &tmp))?;
    Ok(tmp)
}

/// Puts `bytes` at `path` unless a file is there already: true if this
/// call made it. Two processes racing agree on the one that won.
pub fn publish_new(path: &Path, bytes: &[u8]) -> Result<bool, UserStateError> {
    let tmp = write_temp(path, bytes)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_err("write", path)(e)),
    }
}

/// Replaces the file at `path` with `bytes` (temporary file, sync, rename).
pub fn replace(path: &Path, bytes: &[u8]) -> Result<(), UserStateError> {
    let tmp = write_temp(path, bytes)?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("replace", path)(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_keeps_its_id_a_copy_gets_another_and_a_move_is_noticed() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = UserDirs::in_dir(&tmp.path().join("user"));
        let a = tmp.path().join("a");
        fs::create_dir(&a).unwrap();
        let first = dirs.checkout(&a).unwrap();
        assert_eq!(first.moved_from, None);
        assert_eq!(dirs.checkout(&a).unwrap().id, first.id);

        let copy = tmp.path().join("copy");
        fs::create_dir(&copy).unwrap();
        assert_ne!(dirs.checkout(&copy).unwrap().id, first.id);

        let moved = tmp.path().join("moved");
        fs::rename(&a, &moved).unwrap();
        let after = dirs.checkout(&moved).unwrap();
        assert_eq!(after.id, first.id);
        assert_eq!(after.moved_from.as_deref(), Some(first.dir.as_path()));
        assert_eq!(dirs.checkout(&moved).unwrap().moved_from, None);
    }

    #[test]
    fn processes_meeting_a_new_folder_at_once_agree_on_one_id() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = UserDirs::in_dir(&tmp.path().join("user"));
        let dir = tmp.path().join("p");
        fs::create_dir(&dir).unwrap();
        let ids: Vec<CheckoutId> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| dirs.checkout(&dir))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().unwrap().id)
                .collect()
        });
        assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    }

    #[test]
    fn ids_print_and_parse_as_hex() {
        let id = CheckoutId([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
        assert_eq!(CheckoutId::parse(&id.to_string()), Some(id));
        assert_eq!(CheckoutId::parse("xyz"), None);
    }

    #[test]
    fn folders_and_files_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = UserDirs::in_dir(&tmp.path().join("user"));
        let c = dirs.checkout(tmp.path()).unwrap();
        let st = dirs.checkout_state(c.id).unwrap();
        assert_eq!(fs::metadata(&st).unwrap().mode() & 0o777, 0o700);
        let f = st.join("x");
        assert!(publish_new(&f, b"1").unwrap());
        assert!(!publish_new(&f, b"2").unwrap());
        assert_eq!(read_small(&f).unwrap(), b"1");
        assert_eq!(fs::metadata(&f).unwrap().mode() & 0o777, 0o600);
        replace(&f, b"3").unwrap();
        assert_eq!(read_small(&f).unwrap(), b"3");
    }
}
