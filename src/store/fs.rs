//! The store's only door to the file system.
//!
//! Every byte the store reads or writes, every fsync and rename, goes through
//! [`Fs`], so that a test implementation can stand in and "lose power" at any
//! point (DESIGN.md, "Crash points"). [`OsFs`] is a thin layer over `std`; the
//! calls are path-based because a store operation touches each file only a
//! few times, and an `open` costs microseconds next to an fdatasync.
//!
//! The lock file is not behind this seam: locking is about processes, not
//! durability, and is tested with real processes.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

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
}

/// The file operations the store needs. Errors are plain `io::Error`s; the
/// store adds the path and what it was doing.
pub trait Fs: Send + Sync {
    /// Reads the whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Reads from `offset` to the end of the file.
    fn read_from(&self, path: &Path, offset: u64) -> io::Result<Vec<u8>>;
    /// Identity and size of the file.
    fn stat(&self, path: &Path) -> io::Result<FileId>;
    /// Creates or truncates `path` (mode 0600) and writes `bytes`; no sync.
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
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsFs;

impl Fs for OsFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn read_from(&self, path: &Path, offset: u64) -> io::Result<Vec<u8>> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        let mut out = Vec::with_capacity(len.saturating_sub(offset) as usize);
        f.seek(SeekFrom::Start(offset))?;
        f.read_to_end(&mut out)?;
        Ok(out)
    }

    fn stat(&self, path: &Path) -> io::Result<FileId> {
        let m = fs::metadata(path)?;
        Ok(FileId {
            dev_ino: (m.dev(), m.ino()),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }

    fn write_new(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(path)?;
        f.write_all(bytes)
    }

    fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut f = OpenOptions::new().append(true).open(path)?;
        f.write_all(bytes)
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        OpenOptions::new().write(true).open(path)?.sync_data()
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        OpenOptions::new().write(true).open(path)?.set_len(len)
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
}
