//! Where a project's files are, and finding the project from a folder the
//! way git finds `.git`, refusing one that belongs to someone else the way
//! git refuses a repository owned by another user (`safe.directory`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::fs::{effective_uid, Trust};
use super::{StoreError, LOCK_FILE, LOG_FILE, YAML_FILE};
use crate::users::describe;

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
    /// The files of a project in `dir`.
    pub fn in_dir(dir: &Path) -> Paths {
        Paths {
            dir: dir.to_path_buf(),
            yaml: dir.join(YAML_FILE),
            log: dir.join(LOG_FILE),
            lock: dir.join(LOCK_FILE),
        }
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
            let me = effective_uid();
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
