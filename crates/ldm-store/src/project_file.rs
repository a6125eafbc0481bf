//! Other files of the project that ldm reads for the user (setup scripts),
//! with the checks of the store's own files (DESIGN.md, "What ldm trusts"):
//! a cloned repository, or the container writing the project folder through
//! its mount, cannot make ldm read a file outside the project folder through
//! a symbolic link, hang on a FIFO, or use a file another user can change.
//!
//! The path is resolved beneath the project folder by file descriptors,
//! never checked first and opened after: `openat2(2)` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` from a descriptor of the folder,
//! or, where the kernel lacks `openat2` (before Linux 5.6, or a seccomp
//! filter refusing it), one `openat(O_NOFOLLOW)` per component. Either way
//! no symbolic link is followed anywhere on the path, so a folder swapped
//! for a link while ldm reads is refused, not followed.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use super::error::StoreError;
use super::fs::{check_kind_and_owner, Trust};

/// Reads `rel` (relative, no `..`) inside the project folder `dir`: at most
/// `limit` bytes, a regular file that `trust` allows, reached without any
/// symbolic link on the way.
pub fn read(dir: &Path, rel: &Path, limit: u64, trust: Trust) -> Result<Vec<u8>, StoreError> {
    let path = dir.join(rel);
    let untrusted = |why: String| StoreError::Untrusted {
        path: path.clone(),
        why,
    };
    if rel.as_os_str().is_empty()
        || rel.is_absolute()
        || rel.components().any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(untrusted(
            "it is not a path inside the project folder (relative, without `..`)".into(),
        ));
    }
    let io = |e: io::Error| StoreError::io("read", &path, e);
    let file = match open_beneath(dir, rel) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(untrusted(
                "it or a folder on its path is a symbolic link, which could lead outside the project folder; ldm reads project files only through real folders of the project, so that a cloned repository or a container cannot make it read elsewhere. Replace the link with the file or folder itself".into(),
            ))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            return Err(untrusted("it is a FIFO or socket, not a regular file".into()))
        }
        Err(e) => return Err(io(e)),
    };
    let meta = file.metadata().map_err(io)?;
    check_kind_and_owner(&meta, trust).map_err(io)?;
    let too_big = |len| StoreError::TooBig {
        path: path.clone(),
        len,
        limit,
    };
    if meta.len() > limit {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // One byte more than the limit: it may have grown since the fstat.
    (&file)
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Flags of the final open: read only, never through a link, never
/// blocking on a FIFO.
const FILE_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;

/// Opens `rel` beneath `dir` without following any symbolic link: ELOOP
/// (or ENOTDIR for a link where a folder should be, reported as ELOOP)
/// when one is on the way.
fn open_beneath(dir: &Path, rel: &Path) -> io::Result<File> {
    let top = open_at(
        None,
        dir,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
    )?;
    match openat2(&top, rel) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => walk(top, rel),
        r => r,
    }
}

/// `openat2(top, rel, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`. It fails
/// with EAGAIN when a rename elsewhere raced the lookup: asked again.
fn openat2(top: &OwnedFd, rel: &Path) -> io::Result<File> {
    let name = c_path(rel)?;
    // SAFETY: open_how is plain data; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = FILE_FLAGS as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    for _ in 0..100 {
        // SAFETY: a valid directory fd, a NUL-terminated path and a
        // properly sized open_how that outlive the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                top.as_raw_fd(),
                name.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel just gave us this descriptor.
            return Ok(unsafe { File::from_raw_fd(fd as libc::c_int) });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
    }
    Err(io::Error::from_raw_os_error(libc::EAGAIN))
}

/// The fallback of kernels without `openat2`: each folder opened from the
/// one before with `O_NOFOLLOW | O_DIRECTORY`, the file with `O_NOFOLLOW`.
fn walk(top: OwnedFd, rel: &Path) -> io::Result<File> {
    let parts: Vec<&std::ffi::OsStr> = rel.iter().collect();
    let Some((last, folders)) = parts.split_last() else {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    };
    let mut cur = top;
    for part in folders {
        cur = match open_at(
            Some(&cur),
            Path::new(part),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        ) {
            Ok(fd) => fd,
            // O_PATH | O_NOFOLLOW on a link to a folder: "not a folder".
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) && is_link(&cur, part) => {
                return Err(io::Error::from_raw_os_error(libc::ELOOP))
            }
            Err(e) => return Err(e),
        };
    }
    let fd = open_at(Some(&cur), Path::new(last), FILE_FLAGS)?;
    Ok(File::from(fd))
}

/// True if `name` in folder `dir` is a symbolic link now.
fn is_link(dir: &OwnedFd, name: &std::ffi::OsStr) -> bool {
    let Ok(c) = CString::new(name.as_bytes()) else {
        return false;
    };
    // SAFETY: stat is plain data filled by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd, a NUL-terminated name and a stat buffer.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    r == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFLNK
}

fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))
}

/// `openat(dir or AT_FDCWD, path, flags)`.
fn open_at(dir: Option<&OwnedFd>, path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = c_path(path)?;
    let base = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: a valid fd (or AT_FDCWD) and a NUL-terminated path.
    let fd = unsafe { libc::openat(base, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn read_in(dir: &Path, rel: &str) -> Result<Vec<u8>, StoreError> {
        read(dir, Path::new(rel), 64, Trust::Mine)
    }

    #[test]
    fn a_project_file_is_read() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("setup")).unwrap();
        std::fs::write(d.path().join("setup/a.sh"), "echo a\n").unwrap();
        assert_eq!(read_in(d.path(), "setup/a.sh").unwrap(), b"echo a\n");
        let top = open_at(None, d.path(), libc::O_PATH | libc::O_DIRECTORY).unwrap();
        let mut text = String::new();
        walk(top, Path::new("setup/a.sh"))
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "echo a\n", "the fallback walk reads it too");
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
        // The fallback walk refuses the same links.
        for rel in ["file-link", "dir-link/secret"] {
            let top = open_at(None, p, libc::O_PATH | libc::O_DIRECTORY).unwrap();
            let e = walk(top, Path::new(rel)).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{rel}: {e}");
        }
        assert!(matches!(
            read_in(p, "big"),
            Err(StoreError::TooBig { len: 65, .. })
        ));
        assert!(matches!(read_in(p, "missing"), Err(StoreError::Io { .. })));
    }

    /// Finding 6 of issue 22: a folder on the script's path swapped for a
    /// link to an outside folder while ldm reads. Check-then-open code fed
    /// the outside file to the container in 2 to 13 of 22 to 32 tries; a
    /// resolution by descriptors never reads a byte of it, with openat2 or
    /// the fallback walk.
    #[test]
    fn a_folder_swapped_for_a_link_while_reading_never_yields_an_outside_byte() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let p = d.path().to_path_buf();
        std::fs::write(outside.path().join("a.sh"), "OUTSIDE-SECRET").unwrap();
        let real = p.join("setup.real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("a.sh"), "inside").unwrap();
        let link_tmp = p.join("setup.link");
        std::os::unix::fs::symlink(outside.path(), &link_tmp).unwrap();
        std::fs::rename(&real, p.join("setup")).unwrap();
        let stop = AtomicBool::new(false);
        let tries = 4000;
        let (mut inside, mut refused, mut outside_bytes, mut done) = (0, 0, 0, 0);
        std::thread::scope(|s| {
            s.spawn(|| {
                // Exchange `setup` and the link atomically, as fast as
                // possible: `setup` is a folder and a link in turn.
                let a = CString::new(p.join("setup").as_os_str().as_bytes()).unwrap();
                let b = CString::new(link_tmp.as_os_str().as_bytes()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: two NUL-terminated paths.
                    unsafe {
                        libc::renameat2(
                            libc::AT_FDCWD,
                            a.as_ptr(),
                            libc::AT_FDCWD,
                            b.as_ptr(),
                            libc::RENAME_EXCHANGE,
                        )
                    };
                }
            });
            // At least `tries` reads, and on until one met the link: on a
            // loaded machine the swapping thread may not run for a while.
            let begun = std::time::Instant::now();
            while done < tries
                || (refused == 0 && begun.elapsed() < std::time::Duration::from_secs(30))
            {
                let i = done;
                done += 1;
                let r = if i % 2 == 0 {
                    read_in(&p, "setup/a.sh").map_err(|e| e.to_string())
                } else {
                    let top = open_at(None, &p, libc::O_PATH | libc::O_DIRECTORY).unwrap();
                    walk(top, Path::new("setup/a.sh"))
                        .and_then(|mut f| {
                            let mut v = Vec::new();
                            f.read_to_end(&mut v).map(|_| v)
                        })
                        .map_err(|e| e.to_string())
                };
                match r {
                    Ok(b) if b == b"inside" => inside += 1,
                    Ok(b) => outside_bytes += b.len(),
                    Err(_) => refused += 1,
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        assert_eq!(outside_bytes, 0, "bytes of the outside file were read");
        assert_eq!(inside + refused, done);
        // The swap really raced the reads both ways.
        assert!(refused > 0, "no read ever met the link ({inside} inside)");
    }
}
