//! Other files of the project that ldm reads for the user (setup scripts),
//! with the checks of the store's own files (DESIGN.md, "What ldm trusts"):
//! a cloned repository cannot make ldm read a file outside the project
//! folder through a symbolic link, hang on a FIFO, or use a file another
//! user can change.

use std::path::{Component, Path};

use super::error::StoreError;
use super::fs::Fs;

/// Reads `rel` (relative, no `..`) inside the project folder `dir`: at most
/// `limit` bytes, a regular file that the store's trust allows, reached
/// without leaving `dir` through a symbolic link.
pub fn read(fs: &dyn Fs, dir: &Path, rel: &Path, limit: u64) -> Result<Vec<u8>, StoreError> {
    let path = dir.join(rel);
    let untrusted = |why: String| StoreError::Untrusted {
        path: path.clone(),
        why,
    };
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(untrusted("it is not a file name".into()));
    };
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(untrusted(
            "it is not a path inside the project folder (relative, without `..`)".into(),
        ));
    }
    let io = |e| StoreError::io("read", &path, e);
    // The folders on the way, resolved, must stay inside the project; the
    // file itself is opened without following a link (`Fs::read`).
    let top = std::fs::canonicalize(dir).map_err(io)?;
    let real_parent = std::fs::canonicalize(parent).map_err(io)?;
    if !real_parent.starts_with(&top) {
        return Err(untrusted(format!(
            "its folder is a symbolic link to {}, outside the project folder; ldm reads project files only inside the project, so that a cloned repository cannot make it read elsewhere. Replace the link with the folder itself",
            real_parent.display()
        )));
    }
    let real = real_parent.join(name);
    let len = fs.stat(&real).map_err(io)?.len;
    let too_big = |len| StoreError::TooBig {
        path: path.clone(),
        len,
        limit,
    };
    if len > limit {
        return Err(too_big(len));
    }
    let bytes = fs.read(&real).map_err(io)?;
    // It may have grown between the stat and the read.
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fs::{OsFs, Trust};

    fn read_in(dir: &Path, rel: &str) -> Result<Vec<u8>, StoreError> {
        read(&OsFs::with_trust(Trust::Mine), dir, Path::new(rel), 64)
    }

    #[test]
    fn a_project_file_is_read() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("setup")).unwrap();
        std::fs::write(d.path().join("setup/a.sh"), "echo a\n").unwrap();
        assert_eq!(read_in(d.path(), "setup/a.sh").unwrap(), b"echo a\n");
    }

    #[test]
    fn links_out_of_the_project_fifos_and_big_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "key").unwrap();
        let p = d.path();
        std::os::unix::fs::symlink(outside.path().join("secret"), p.join("file-link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), p.join("dir-link")).unwrap();
        let fifo = std::ffi::CString::new(p.join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path only.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        std::fs::write(p.join("big"), [b'x'; 65]).unwrap();
        for (rel, want) in [
            ("file-link", "symbolic link"),
            ("dir-link/secret", "outside the project folder"),
            ("fifo", "FIFO"),
            ("../x", "not a path inside the project folder"),
            ("/etc/passwd", "not a path inside the project folder"),
        ] {
            let e = read_in(p, rel).unwrap_err().to_string();
            assert!(e.contains(want), "{rel}: {e}");
            assert!(!e.contains("key"), "{rel}: {e}");
        }
        assert!(matches!(
            read_in(p, "big"),
            Err(StoreError::TooBig { len: 65, .. })
        ));
        assert!(matches!(read_in(p, "missing"), Err(StoreError::Io { .. })));
    }
}
