//! The store's only door to the file system, and the checks that make it
//! safe to use in a folder someone else filled (DESIGN.md, "What ldm trusts").
//!
//! Every byte the store reads or writes, every fsync and rename, goes through
//! [`Fs`], so that a test implementation can stand in and "lose power" at any
//! point (DESIGN.md, "Crash points"). [`OsFs`] is a thin layer over `std`; the
//! calls are path-based because a store operation touches each file only a
//! few times, and an `open` costs microseconds next to an fdatasync.
//!
//! [`open_checked`] is how every project file is opened, by [`OsFs`] and by
//! the lock and owner code alike: never through a symbolic link
//! (`O_NOFOLLOW`), never blocking on a FIFO (`O_NONBLOCK`), and only if
//! `fstat` of the opened file says it is a regular file owned by this user
//! (unless the project is trusted explicitly). A refusal is an `io::Error`
//! carrying a [`Refusal`], which the store turns into a message naming the
//! file and what to do.

// Over 400 lines with its tests: the I/O seam (`Fs`) and the safe opens it
// offers are one job, the one door to the file system.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use ldm_sys::users::describe;

/// Mode of every file the store creates: they hold passwords.
pub const FILE_MODE: u32 = 0o600;

/// Identity and size of a file, to tell whether it changed since it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    /// Device and inode: a rename-replaced file has a new one.
    pub dev_ino: (u64, u64),
    /// Length in bytes.
    pub len: u64,
    /// Modification time in nanoseconds, to notice in-place hand edits.
    pub mtime_ns: i128,
    /// Status change time in nanoseconds: any write, rename or `chmod`
    /// moves it, and no program can set it back (`touch -d` sets mtime).
    pub ctime_ns: i128,
}

impl FileId {
    /// True when `other` is this file with the same bytes as far as its
    /// identity, size and modification time tell (ctime left out: a rename
    /// moves it, and the store renames files it then compares).
    pub fn same_content(&self, other: &FileId) -> bool {
        self.dev_ino == other.dev_ino && self.len == other.len && self.mtime_ns == other.mtime_ns
    }
}

/// Whose files the project's files may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trust {
    /// Only files owned by the effective user (the default; root included,
    /// as git's `safe.directory` does).
    #[default]
    Mine,
    /// Files of any owner: the user named this project explicitly (`-C DIR`
    /// or `LDM_SAFE_DIRS`). Symbolic links and non-regular files are still
    /// refused.
    Anyone,
}

/// Why a project file was not opened: it is not what ldm may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What is wrong with the file and what to do, without its name (the
    /// caller adds the path).
    pub why: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    /// The refusal inside `e`, if it is one.
    pub fn of(e: &io::Error) -> Option<&Refusal> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<Refusal>())
    }

    fn error(why: String) -> io::Error {
        io::Error::new(io::ErrorKind::PermissionDenied, Refusal { why })
    }
}

/// Opens `path` without following a symbolic link or blocking on a FIFO,
/// then checks with `fstat` that it is a regular file that `trust` allows.
/// `opts` says read/write/create; the safety flags are added here.
pub fn open_checked(path: &Path, opts: &mut OpenOptions, trust: Trust) -> io::Result<File> {
    let file = match opts
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            let target = fs::read_link(path)
                .map(|t| format!(" (to {})", t.display()))
                .unwrap_or_default();
            return Err(Refusal::error(format!(
                "it is a symbolic link{target}; ldm never follows links for its project files, so that a cloned repository cannot make it write elsewhere. Replace the link with the file itself, or remove it"
            )));
        }
        // A FIFO opened write-only without a reader.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            return Err(Refusal::error(
                "it is a FIFO or socket, not a regular file; remove it (`rm` it), ldm creates its files itself".into(),
            ))
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    check_kind_and_owner(&meta, trust)?;
    Ok(file)
}

/// Opens a lock file for reading and writing, creating it (mode 0600) if
/// missing, with the checks of [`open_checked`]: the store lock, the owner
/// slots and lxc-dev-manager's lock all live in such files.
pub fn open_lock_file(path: &Path, trust: Trust) -> io::Result<File> {
    open_checked(
        path,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE),
        trust,
    )
}

/// The checks of [`open_checked`] on metadata already read.
pub fn check_kind_and_owner(meta: &fs::Metadata, trust: Trust) -> io::Result<()> {
    if !meta.file_type().is_file() {
        return Err(Refusal::error(format!(
            "it is {}, not a regular file; remove it (ldm creates its files itself)",
            kind_name(meta)
        )));
    }
    let me = ldm_sys::euid();
    if trust == Trust::Mine && meta.uid() != me {
        return Err(Refusal::error(format!(
            "it is owned by {}, not by you ({}); ldm only uses project files you own. If you trust this project, run ldm with `-C DIR` naming its folder, or add the folder to LDM_SAFE_DIRS; or take the file over (`cp` it and replace the original)",
            describe(meta.uid()),
            describe(me)
        )));
    }
    Ok(())
}

fn kind_name(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// The file operations the store needs. Errors are plain `io::Error`s; the
/// store adds the path and what it was doing.
pub trait Fs: Send + Sync {
    /// Reads the whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Reads from `offset` to the end of the file.
    fn read_from(&self, path: &Path, offset: u64) -> io::Result<Vec<u8>>;
    /// Reads at most the first `max` bytes of the file.
    fn read_prefix(&self, path: &Path, max: usize) -> io::Result<Vec<u8>> {
        let mut all = self.read(path)?;
        all.truncate(max);
        Ok(all)
    }
    /// Identity and size of the file (the entry itself, not a link target).
    fn stat(&self, path: &Path) -> io::Result<FileId>;
    /// Creates `path` afresh (mode 0600; any old entry of that name is
    /// removed first, so the new inode is ours) and writes `bytes`; no sync.
    fn write_new(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Appends `bytes` at the end of an existing file; no sync.
    fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// fdatasync: the file's data and size are durable when this returns.
    fn sync(&self, path: &Path) -> io::Result<()>;
    /// Cuts or extends the file to `len` bytes; no sync.
    fn set_len(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Atomically replaces `to` with `from` (same folder); durable only
    /// after [`Fs::sync_dir`].
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// fsync of a folder: renames, creations and removals in it are durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries of a folder.
    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>>;
    /// Atomically swaps the entries `a` and `b` of one folder (Linux
    /// `renameat2(RENAME_EXCHANGE)`); durable only after [`Fs::sync_dir`].
    /// `ErrorKind::Unsupported` where the file system cannot (the store
    /// then falls back on a check and a plain rename).
    fn exchange(&self, a: &Path, b: &Path) -> io::Result<()> {
        let _ = (a, b);
        Err(io::ErrorKind::Unsupported.into())
    }
    /// The time file times are compared with, in nanoseconds since the
    /// epoch: the clock the file system stamps `mtime` and `ctime` from.
    fn now_ns(&self) -> i128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128)
    }
    /// Which boot of the machine this is (`/proc/sys/kernel/random/boot_id`;
    /// zeros if unknown). File times vouch for a file's content only within
    /// one boot: a power loss may keep data written in place without the
    /// `mtime` that went with it.
    fn boot_id(&self) -> [u8; 16] {
        static BOOT: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
        *BOOT.get_or_init(|| {
            let text = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
            let hex: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
            let mut out = [0u8; 16];
            for (i, pair) in hex.chunks(2).take(16).enumerate() {
                let s = std::str::from_utf8(pair).unwrap_or("0");
                out[i] = u8::from_str_radix(s, 16).unwrap_or(0);
            }
            out
        })
    }
}

/// The real file system, opening every file with [`open_checked`].
#[derive(Debug, Default, Clone, Copy)]
pub struct OsFs {
    /// Whose files may be used.
    pub trust: Trust,
}

impl OsFs {
    /// Files must be this user's (the default).
    pub fn strict() -> OsFs {
        OsFs { trust: Trust::Mine }
    }

    /// Files of any owner, for a project the user trusts explicitly.
    pub fn with_trust(trust: Trust) -> OsFs {
        OsFs { trust }
    }

    fn open(&self, path: &Path, opts: &mut OpenOptions) -> io::Result<File> {
        open_checked(path, opts, self.trust)
    }
}

impl Fs for OsFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut f = self.open(path, OpenOptions::new().read(true))?;
        let mut out = Vec::with_capacity(f.metadata()?.len() as usize);
        f.read_to_end(&mut out)?;
        Ok(out)
    }

    fn read_prefix(&self, path: &Path, max: usize) -> io::Result<Vec<u8>> {
        let f = self.open(path, OpenOptions::new().read(true))?;
        let mut out = Vec::with_capacity(max.min(64 << 10));
        f.take(max as u64).read_to_end(&mut out)?;
        Ok(out)
    }

    fn read_from(&self, path: &Path, offset: u64) -> io::Result<Vec<u8>> {
        let mut f = self.open(path, OpenOptions::new().read(true))?;
        let len = f.metadata()?.len();
        let mut out = Vec::with_capacity(len.saturating_sub(offset) as usize);
        f.seek(SeekFrom::Start(offset))?;
        f.read_to_end(&mut out)?;
        Ok(out)
    }

    fn stat(&self, path: &Path) -> io::Result<FileId> {
        let m = fs::symlink_metadata(path)?;
        Ok(FileId {
            dev_ino: (m.dev(), m.ino()),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        })
    }

    fn write_new(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        // A fresh inode: whatever sat at this name (a stale temp file, or
        // something planted there) is unlinked, never written through.
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut f = self.open(
            path,
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE),
        )?;
        f.write_all(bytes)
    }

    fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut f = self.open(path, OpenOptions::new().append(true))?;
        f.write_all(bytes)
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        self.open(path, OpenOptions::new().write(true))?.sync_data()
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        self.open(path, OpenOptions::new().write(true))?
            .set_len(len)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect()
    }

    fn exchange(&self, a: &Path, b: &Path) -> io::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| {
            std::ffi::CString::new(p.as_os_str().as_bytes())
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
        };
        let (a, b) = (c(a)?, c(b)?);
        // SAFETY: both paths are NUL-terminated and live across the call;
        // renameat2 reads them and touches no other memory of ours.
        let r = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // The file system or kernel cannot swap (EINVAL: not supported
            // by this file system; ENOSYS: an old kernel).
            Some(libc::EINVAL) | Some(libc::ENOSYS) => Err(io::ErrorKind::Unsupported.into()),
            _ => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"keep me").unwrap();
        let link = dir.path().join("containers.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let fs = OsFs::strict();
        let e = fs.append(&link, b"x").unwrap_err();
        assert!(
            Refusal::of(&e).is_some_and(|r| r.why.contains("symbolic link")),
            "{e}"
        );
        assert!(fs.read(&link).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
        // write_new replaces the link itself, never writes through it.
        fs.write_new(&link, b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("containers.log");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo reads a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let fs = OsFs::strict();
        for e in [
            fs.read(&fifo).unwrap_err(),
            fs.append(&fifo, b"x").unwrap_err(),
            fs.sync(&fifo).unwrap_err(),
        ] {
            assert!(Refusal::of(&e).is_some(), "{e}");
        }
    }
}
