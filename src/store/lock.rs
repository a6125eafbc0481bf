//! The project lock: one exclusive `flock` on `containers.lock`.
//!
//! Writers hold it for milliseconds: recover, read the new tail, append,
//! fdatasync, maybe compact (DESIGN.md, "Lock protocol"). Readers never take
//! it. The waiter sleeps in the kernel's `flock` queue on a helper thread, so
//! it wakes the moment the holder lets go, and gives up after the timeout
//! with the holder's pid and command, which every holder writes into the
//! file after it takes the lock.
//!
//! fs4 is called by path (`FileExt::try_lock(&f)`) on purpose: `std::fs::File`
//! has inherent `lock`/`try_lock` methods of the same names since Rust 1.89.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fs4::FileExt;
use fs4::TryLockError;
use thiserror::Error;

use super::fs::FILE_MODE;

/// Failure to take the project lock.
#[derive(Debug, Error)]
pub enum LockError {
    /// Another process held the lock for longer than the timeout.
    #[error("timed out after {waited:.1?} waiting for the project lock {path}: it is held by {holder}; wait for it to finish, or raise --lock-timeout")]
    Timeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
        /// Who holds it, as the holder wrote it.
        holder: String,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// A held lock; dropping it closes the file, which releases the `flock`.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

/// Takes the exclusive lock on `path` (created 0600 if missing), waiting at
/// most `timeout`. `what` is written into the file for waiters to read.
pub fn acquire(path: &Path, timeout: Duration, what: &str) -> Result<LockGuard, LockError> {
    let io_err = |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = open(path).map_err(io_err)?;
    let file = match FileExt::try_lock(&file) {
        Ok(()) => file,
        Err(TryLockError::WouldBlock) => wait(path, file, timeout)?,
        Err(TryLockError::Error(e)) => return Err(io_err(e)),
    };
    // Best effort: the note only helps a waiter's error message.
    let _ = write_holder(&file, what);
    Ok(LockGuard { _file: file })
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
}

/// Blocks in `flock` on a helper thread so the wait can be bounded. If we
/// give up first, the thread still gets the lock eventually, finds nobody
/// listening, and drops it at once.
fn wait(path: &Path, file: File, timeout: Duration) -> Result<File, LockError> {
    let start = Instant::now();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = FileExt::lock(&file).map(|()| file);
        let _ = tx.send(result);
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(file)) => Ok(file),
        Ok(Err(source)) => Err(LockError::Io {
            path: path.to_path_buf(),
            source,
        }),
        Err(_) => Err(LockError::Timeout {
            path: path.to_path_buf(),
            waited: start.elapsed(),
            holder: read_holder(path),
        }),
    }
}

/// Width of the holder note. Written in place, padded, never truncated:
/// truncating the lock file on every commit made ext4 flush it along with
/// the log's fdatasync, doubling a commit's cost (benches/store.rs).
const NOTE_LEN: usize = 256;

fn write_holder(file: &File, what: &str) -> io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    let mut note = format!(
        "pid {} ({what}) since {}",
        std::process::id(),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    let mut cut = note.len().min(NOTE_LEN - 1);
    while !note.is_char_boundary(cut) {
        cut -= 1;
    }
    note.truncate(cut);
    let mut bytes = note.into_bytes();
    bytes.resize(NOTE_LEN - 1, b' ');
    bytes.push(b'\n');
    file.write_all_at(&bytes, 0)
}

/// What the current holder wrote into the lock file.
pub fn read_holder(path: &Path) -> String {
    let mut buf = vec![0u8; NOTE_LEN];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut buf))
        .unwrap_or(0);
    let s = String::from_utf8_lossy(&buf[..n]);
    match s.trim() {
        "" => "another process (it did not say which)".to_string(),
        note => note.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_times_out_and_names_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("containers.lock");
        let held = acquire(&path, Duration::from_secs(1), "test holder").unwrap();
        let err = acquire(&path, Duration::from_millis(100), "second").unwrap_err();
        match err {
            LockError::Timeout { holder, .. } => {
                assert!(holder.contains("test holder"), "{holder}")
            }
            other => panic!("unexpected {other:?}"),
        }
        drop(held);
        acquire(&path, Duration::from_millis(100), "third").unwrap();
    }

    #[test]
    fn waiter_gets_the_lock_when_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("containers.lock");
        let held = acquire(&path, Duration::from_secs(1), "first").unwrap();
        let p2 = path.clone();
        let t = std::thread::spawn(move || acquire(&p2, Duration::from_secs(5), "second").is_ok());
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
        assert!(t.join().unwrap());
    }
}
