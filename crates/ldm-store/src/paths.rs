//! Where a project's files are, and finding the project from a folder the
//! way git finds `.git`, refusing one that belongs to someone else the way
//! git refuses a repository owned by another user (`safe.directory`). What
//! ldm derives from a project (the base and the load cache) is kept outside
//! it, per checkout, in the user's own folders ([`Derived`]).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::fs::Trust;
use super::{StoreError, LOCK_FILE, LOG_FILE, YAML_FILE};
use ldm_sys::users::describe;
use ldm_user_state::{UserDirs, UserStateError};

/// The files of one project folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The project folder.
    pub dir: PathBuf,
    /// `containers.yaml`.
    pub yaml: PathBuf,
    /// `containers.log`.
    pub log: PathBuf,
    /// `containers.lock`.
    pub lock: PathBuf,
    /// Where the base and the load cache go; `None`: ldm works without
    /// them (DESIGN.md, "The base and the load cache").
    pub derived: Option<Derived>,
    /// Why there is no `derived` when the user's folders could not be used
    /// (said once per process).
    pub derived_problem: Option<String>,
}

/// Where ldm keeps what it derives from one checkout of a project, where
/// only the user writes: `base` in the checkout's state folder, `cache` in
/// its cache folder ([`ldm_user_state`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    /// The checkout's state folder (`0700`).
    pub state: PathBuf,
    /// The checkout's cache folder (`0700`).
    pub cache: PathBuf,
}

impl Derived {
    /// The base: what ldm last folded into `containers.yaml`.
    pub fn base(&self) -> PathBuf {
        self.state.join(super::cache::BASE_FILE)
    }

    /// The load cache.
    pub fn cache_file(&self) -> PathBuf {
        self.cache.join(super::cache::CACHE_FILE)
    }

    /// The folders of `dir`'s checkout in the user's own folders, made on
    /// first use.
    pub fn for_checkout(users: &UserDirs, dir: &Path) -> Result<Derived, UserStateError> {
        let checkout = users.checkout(dir)?;
        Ok(Derived {
            state: users.checkout_state(checkout.id)?,
            cache: users.checkout_cache(checkout.id)?,
        })
    }
}

/// Project folders the user trusts although their files are another's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SafeDirs {
    /// The folder named with `-C DIR`, trusted when it is the project's.
    pub named: Option<PathBuf>,
    /// `LDM_SAFE_DIRS`, colon-separated folders.
    pub listed: Vec<PathBuf>,
    /// `LDM_SAFE_DIRS=*`: every folder.
    pub all: bool,
}

impl SafeDirs {
    /// `LDM_SAFE_DIRS` from the environment, plus the `-C` folder.
    pub fn from_env(named: Option<&Path>) -> SafeDirs {
        let raw = std::env::var_os("LDM_SAFE_DIRS").unwrap_or_default();
        let listed: Vec<PathBuf> = std::env::split_paths(&raw)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        SafeDirs {
            named: named.map(canonical),
            all: listed.iter().any(|p| p.as_os_str() == "*"),
            listed: listed.iter().map(|p| canonical(p)).collect(),
        }
    }

    /// How far the files of the project in `dir` are trusted.
    pub fn trust(&self, dir: &Path) -> Trust {
        let dir = canonical(dir);
        if self.all || self.named.as_ref() == Some(&dir) || self.listed.contains(&dir) {
            Trust::Anyone
        } else {
            Trust::Mine
        }
    }
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

impl Paths {
    /// The files of a project in `dir`, its derived files in the user's own
    /// folders (`XDG_STATE_HOME`/`XDG_CACHE_HOME`, else under `HOME`), or
    /// none when those cannot be used (no home, read-only: then
    /// `derived_problem` says why).
    pub fn in_dir(dir: &Path) -> Paths {
        let derived = UserDirs::from_env()
            .map_err(|e| e.to_string())
            .and_then(|users| {
                Derived::for_checkout(&users, dir).map_err(|e| {
                    format!(
                        "cannot use ldm's folders {} and {} ({e}); make them writable, or set XDG_STATE_HOME and XDG_CACHE_HOME to folders you can write",
                        users.state.display(),
                        users.cache.display()
                    )
                })
            });
        match derived {
            Ok(d) => Paths::with_derived(dir, d),
            Err(why) => Paths {
                derived_problem: Some(why),
                ..Paths::bare(dir)
            },
        }
    }

    /// The files of a project in `dir`, with no derived files at all.
    pub fn bare(dir: &Path) -> Paths {
        Paths {
            dir: dir.to_path_buf(),
            yaml: dir.join(YAML_FILE),
            log: dir.join(LOG_FILE),
            lock: dir.join(LOCK_FILE),
            derived: None,
            derived_problem: None,
        }
    }

    /// The files of a project in `dir`, its derived files in `derived`.
    pub fn with_derived(dir: &Path, derived: Derived) -> Paths {
        Paths {
            derived: Some(derived),
            ..Paths::bare(dir)
        }
    }

    /// The base's path, if ldm keeps one.
    pub fn base(&self) -> Option<PathBuf> {
        self.derived.as_ref().map(Derived::base)
    }

    /// The load cache's path, if ldm keeps one.
    pub fn cache(&self) -> Option<PathBuf> {
        self.derived.as_ref().map(Derived::cache_file)
    }

    /// The project whose folder is `start` or its nearest parent holding a
    /// `containers.yaml`, as git finds `.git`, and how far its files are
    /// trusted. A `containers.yaml` owned by another user is refused unless
    /// `safe` trusts its folder; root is not exempt.
    pub fn find(start: &Path, safe: &SafeDirs) -> Result<(Paths, Trust), StoreError> {
        for dir in start.ancestors() {
            let yaml = dir.join(YAML_FILE);
            let Ok(meta) = std::fs::symlink_metadata(&yaml) else {
                continue;
            };
            if meta.is_dir() {
                continue;
            }
            let trust = safe.trust(dir);
            let me = ldm_sys::euid();
            if trust == Trust::Mine && meta.uid() != me {
                return Err(StoreError::NotOwned {
                    path: yaml,
                    owner: describe(meta.uid()),
                    me: describe(me),
                });
            }
            return Ok((Paths::in_dir(dir), trust));
        }
        Err(StoreError::NotAProject {
            start: start.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_and_named_folders_are_trusted_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let none = SafeDirs::default();
        assert_eq!(none.trust(p), Trust::Mine);
        let named = SafeDirs {
            named: Some(canonical(p)),
            ..SafeDirs::default()
        };
        assert_eq!(named.trust(p), Trust::Anyone);
        assert_eq!(named.trust(&p.join("..")), Trust::Mine);
        let all = SafeDirs {
            all: true,
            ..SafeDirs::default()
        };
        assert_eq!(all.trust(p), Trust::Anyone);
    }
}
