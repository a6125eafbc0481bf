//! The ignore rules `ldm create` writes in a git work tree, so that
//! `git add -A` commits `containers.yaml` and not ldm's own files: the log
//! (per checkout, with passwords in its history), the lock files, temporary
//! files, and the copies ldm keeps beside the log.
//!
//! They go to `.gitignore` in the project folder rather than
//! `.git/info/exclude`: the rules are committed with `containers.yaml`, so
//! every clone and worktree of the repository gets them (a teammate's clone
//! never runs `ldm create`), and they name ldm's files only, so
//! `containers.yaml` stays committable. The file is opened without
//! following a link and only if it is the user's own regular file.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The block appended to `.gitignore`: the store's own files by name.
pub fn rules() -> String {
    use crate::store::{GO_LOCK_FILE, LOCK_FILE, LOG_FILE, YAML_FILE};
    format!(
        "# ldm's own files: the log (per checkout), its lock files, temporary files\n\
         # and the copies it keeps beside the log. {YAML_FILE} is to be committed.\n\
         /{LOG_FILE}\n/{LOG_FILE}.*\n/{LOCK_FILE}\n/{GO_LOCK_FILE}\n/{YAML_FILE}.edited-*\n/.containers.*\n"
    )
}

/// The first rule: when it is there, they all are.
fn mark() -> String {
    format!("/{}", crate::store::LOG_FILE)
}

/// True if `dir` or a parent holds `.git` (a folder, or a worktree's file).
pub fn in_git_work_tree(dir: &Path) -> bool {
    dir.ancestors()
        .any(|d| std::fs::symlink_metadata(d.join(".git")).is_ok())
}

/// Adds [`rules`] to `dir/.gitignore` unless they are there: the file
/// written, or `None` when nothing was needed.
pub fn write(dir: &Path) -> std::io::Result<Option<PathBuf>> {
    let path = dir.join(".gitignore");
    let mut f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)?;
    let meta = f.metadata()?;
    let me = ldm_sys::euid();
    if !meta.is_file() || meta.uid() != me {
        return Err(std::io::Error::other(
            "it is not a regular file of yours; add the rules by hand",
        ));
    }
    let mut text = String::new();
    (&mut f).take(1 << 20).read_to_string(&mut text)?;
    if text.lines().any(|l| l.trim() == mark()) {
        return Ok(None);
    }
    let sep = if text.is_empty() || text.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    let gap = if text.is_empty() { "" } else { "\n" };
    f.write_all(format!("{sep}{gap}{}", rules()).as_bytes())?;
    f.sync_data()?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_added_once_and_a_link_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".gitignore"), "target").unwrap();
        assert!(write(d.path()).unwrap().is_some());
        assert!(write(d.path()).unwrap().is_none());
        let text = std::fs::read_to_string(d.path().join(".gitignore")).unwrap();
        assert!(text.starts_with("target\n\n# ldm's own files"), "{text}");
        assert_eq!(text.matches(&format!("{}\n", mark())).count(), 1);
        assert!(
            text.contains("/containers.lock\n/containers.yaml.lock\n"),
            "{text}"
        );
        assert!(!text
            .lines()
            .any(|l| l.trim_start_matches('/') == "containers.yaml"));

        let e = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, e.path().join(".gitignore")).unwrap();
        assert!(write(e.path()).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }
}
