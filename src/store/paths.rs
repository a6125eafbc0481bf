//! Where a project's files are, and finding the project from a folder the
//! way git finds `.git`.

use std::path::{Path, PathBuf};

use super::{StoreError, LOCK_FILE, LOG_FILE, YAML_FILE};

/// The three files of one project folder.
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
    /// `containers.yaml`, as git finds `.git`.
    pub fn find(start: &Path) -> Result<Paths, StoreError> {
        start
            .ancestors()
            .find(|d| d.join(YAML_FILE).is_file())
            .map(Paths::in_dir)
            .ok_or_else(|| StoreError::NotAProject {
                start: start.to_path_buf(),
            })
    }
}
