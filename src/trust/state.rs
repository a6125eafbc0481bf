//! What the user allowed for one checkout (`trust.json`) and the logs ldm
//! made there (`logs.json`), in the checkout's private state folder
//! (`user_state`): nothing that can write the project folder can write
//! them. Each is replaced whole (temporary file, sync, rename) under an
//! exclusive lock on `trust.lock` beside them, so two commands allowing at
//! once (`ldm mount` in two terminals) both count.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Item, TrustError};
use crate::user_state::{self, UserStateError};

/// `trust.json`: what the user allowed for this checkout.
pub const TRUST_FILE: &str = "trust.json";
/// `logs.json`: the identities of the logs ldm made in this checkout.
pub const LOGS_FILE: &str = "logs.json";
const LOCK_FILE: &str = "trust.lock";
const FORMAT: u32 = 1;

/// What the user allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allowed {
    /// Format of the file.
    #[serde(default)]
    pub format: u32,
    /// SHA-256 of the rest, in hex: the fingerprint of what was allowed,
    /// shown by `ldm trust --show`.
    #[serde(default)]
    pub digest: String,
    /// Every item allowed.
    #[serde(default)]
    pub items: BTreeSet<Item>,
    /// Mount sources the user mounted with `--force` typed on the command
    /// line: the only refused sources a mount from the file may show.
    #[serde(default)]
    pub forced: BTreeSet<PathBuf>,
    /// Settings the project had turned off (`scope`, `key`; scope `""` is
    /// the defaults): turning one back on is turning isolation down, which
    /// needs the user's word again.
    #[serde(default)]
    pub off: BTreeSet<(String, String)>,
    /// Containers whose settings ldm had judged against the floor: a
    /// container not among them (nor in `off`) is new since, and its
    /// floor is the defaults' (scope `""`), so a new entry cannot turn
    /// back on what the project turned off for new containers.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub seen: BTreeSet<String>,
}

impl Allowed {
    /// The fingerprint of what is allowed.
    pub fn fingerprint(&self) -> String {
        let body = serde_json::to_vec(&(&self.items, &self.forced, &self.off)).unwrap_or_default();
        Sha256::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// True if nothing is allowed (no file, or one emptied).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.forced.is_empty() && self.off.is_empty()
    }
}

/// The log identities of `logs.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logs {
    /// Format of the file.
    #[serde(default)]
    pub format: u32,
    /// Logs ldm created or compacted in this checkout (hex `log_id`s).
    #[serde(default)]
    pub ours: BTreeSet<String>,
    /// Logs ldm found here without having made them, and said so once.
    #[serde(default)]
    pub noted: BTreeSet<String>,
}

/// One checkout's state folder.
#[derive(Debug, Clone)]
pub struct Folder {
    dir: PathBuf,
}

impl Folder {
    /// The state folder `dir` (made by `UserDirs::checkout_state`).
    pub fn at(dir: PathBuf) -> Folder {
        Folder { dir }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// What was allowed; nothing when the file is missing.
    pub fn allowed(&self) -> Result<Allowed, TrustError> {
        read(&self.dir.join(TRUST_FILE))
    }

    /// The logs ldm made here; none when the file is missing.
    pub fn logs(&self) -> Result<Logs, TrustError> {
        read(&self.dir.join(LOGS_FILE))
    }

    /// Changes what is allowed with `f` under the lock; writes only if it
    /// changed. Returns the new state.
    pub fn update_allowed(&self, f: impl FnOnce(&mut Allowed)) -> Result<Allowed, TrustError> {
        let _lock = self.lock()?;
        let path = self.dir.join(TRUST_FILE);
        let mut a: Allowed = read(&path)?;
        let before = a.clone();
        f(&mut a);
        a.format = FORMAT;
        a.digest = a.fingerprint();
        if a != before {
            write(&path, &a)?;
        }
        Ok(a)
    }

    /// Forgets everything allowed; true if there was something.
    pub fn revoke(&self) -> Result<bool, TrustError> {
        let _lock = self.lock()?;
        let path = self.dir.join(TRUST_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(UserStateError::Io {
                action: "remove",
                path,
                source: e,
            }
            .into()),
        }
    }

    /// Changes the log identities with `f` under the lock; writes only if
    /// it changed.
    pub fn update_logs(&self, f: impl FnOnce(&mut Logs)) -> Result<(), TrustError> {
        let _lock = self.lock()?;
        let path = self.dir.join(LOGS_FILE);
        let mut l: Logs = read(&path)?;
        let before = l.clone();
        f(&mut l);
        l.format = FORMAT;
        if l != before {
            write(&path, &l)?;
        }
        Ok(())
    }

    fn lock(&self) -> Result<File, TrustError> {
        let path = self.dir.join(LOCK_FILE);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|source| UserStateError::Io {
                action: "open",
                path: path.clone(),
                source,
            })?;
        f.lock().map_err(|source| UserStateError::Io {
            action: "lock",
            path,
            source,
        })?;
        Ok(f)
    }
}

fn read<T: Default + for<'de> Deserialize<'de>>(path: &Path) -> Result<T, TrustError> {
    match user_state::read_small(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            TrustError::State(UserStateError::Damaged {
                path: path.to_path_buf(),
                why: e.to_string(),
            })
        }),
        Err(UserStateError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(T::default())
        }
        Err(e) => Err(e.into()),
    }
}

fn write<T: Serialize>(path: &Path, value: &T) -> Result<(), TrustError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| UserStateError::Damaged {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    user_state::replace(path, &bytes)?;
    Ok(())
}
