//! The two locks of a project folder (DESIGN.md, "Lock protocol"):
//!
//! - `containers.lock`, ldm's own: one exclusive `flock`, held by a writer
//!   for milliseconds (recover, read the new tail, append, fdatasync, fold).
//!   Its first 256 bytes say who holds it (command, pid, start time; never
//!   argument values, which may be passwords).
//! - `containers.yaml.lock`, lxc-dev-manager's: the same kind of `flock`,
//!   which the Go tool holds across its whole read-modify-write of
//!   `containers.yaml`. ldm takes it, after its own, around writing
//!   `containers.yaml` and around reading state it then writes back, so the
//!   two tools never overwrite each other.
//!
//! A lock file can be unlinked or replaced while held (by a person, or a
//! cloned repository's checkout). So after `flock` returns, ldm checks that
//! the file it locked is still the one at the path (device and inode) and
//! starts over if not. That alone left a window: a holder that had checked
//! and was appending could meet a newcomer holding a new lock file. So ldm's
//! lock is two `flock`s: `containers.lock` (whose note says who holds it,
//! and which older ldm versions take) and then the project folder itself,
//! which no one can delete or replace under a holder; the folder's is what
//! makes one writer at a time (issue 25, item 3).
//!
//! The waiter sleeps in the kernel's `flock` queue on a helper thread, so
//! it wakes the moment the holder lets go, and gives up after the timeout.
//! Threads of one process (`ldm up` acts on each container in its own
//! thread, each with its own store) first pass an in-process gate, one at a
//! time and without a timeout, so the timeout only ever counts waiting for
//! another process: ldm never fails on its own lock.
//! fs4 is called by path (`FileExt::try_lock(&f)`) on purpose: `std::fs::File`
//! has inherent `lock`/`try_lock` methods of the same names since Rust 1.89.

// Over 400 lines with its tests (about 135): ldm's lock and lxc-dev-manager's
// are taken together, in one order.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Condvar, LazyLock, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use fs4::FileExt;
use fs4::TryLockError;
use thiserror::Error;

use super::fs::{open_lock_file, Refusal, Trust};
use super::holder::{holder_of, read_note, write_holder};

/// Name of lxc-dev-manager's lock file.
pub const GO_LOCK_FILE: &str = "containers.yaml.lock";

/// Failure to take a project lock.
#[derive(Debug, Error)]
pub enum LockError {
    /// Another process held ldm's lock for longer than the timeout.
    #[error("timed out after {waited:.1?} waiting for the project lock {path}: it is held by {holder}; wait for it to finish, or raise --lock-timeout")]
    Timeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
        /// Who holds it, as the holder wrote it.
        holder: String,
    },
    /// lxc-dev-manager (or another program using its lock) held
    /// `containers.yaml.lock` for longer than the timeout.
    #[error("timed out after {waited:.1?} waiting for {path}, which lxc-dev-manager holds while it changes containers.yaml (is `lxc-dev-manager` running in this project?); wait for it to finish, or raise --lock-timeout")]
    GoTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// The lock file is not one ldm may use (a link, a FIFO, another's file).
    #[error("{path}: {why}")]
    Refused {
        /// The lock file.
        path: PathBuf,
        /// What is wrong and what to do.
        why: String,
    },
    /// The lock file was removed or replaced while this command held it.
    #[error("{path} was removed or replaced while this command held it; nothing more was written. Do not delete the lock file while ldm runs; run the command again")]
    Lost {
        /// The lock file.
        path: PathBuf,
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

/// A held lock; dropping it closes the files, which releases the `flock`s
/// (and then lets the next thread of this process through the gate).
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    path: PathBuf,
    /// ldm's lock only: the project folder, locked after the file.
    folder: Option<File>,
    _gate: Option<Ticket>,
}

/// Which thread of this process holds or is taking ldm's lock on each
/// lock file, and how many times (a thread may take it again: the lock
/// tests do, and then wait on `flock` against themselves as two processes
/// would).
struct Gate {
    held: Mutex<HashMap<PathBuf, (ThreadId, usize)>>,
    freed: Condvar,
}

static GATE: LazyLock<Gate> = LazyLock::new(|| Gate {
    held: Mutex::new(HashMap::new()),
    freed: Condvar::new(),
});

/// A thread's pass through the gate; dropping it lets the next one in.
#[derive(Debug)]
struct Ticket {
    path: PathBuf,
}

impl Ticket {
    /// Waits, without a timeout, until no other thread of this process
    /// holds or takes ldm's lock on `path`. They hold it for milliseconds,
    /// or give up at their own timeout.
    fn enter(path: &Path) -> Ticket {
        let me = std::thread::current().id();
        let mut held = GATE.held.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match held.get_mut(path) {
                None => {
                    held.insert(path.to_path_buf(), (me, 1));
                    break;
                }
                Some((t, n)) if *t == me => {
                    *n += 1;
                    break;
                }
                Some(_) => {
                    held = GATE
                        .freed
                        .wait(held)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
        Ticket {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut held = GATE.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, n)) = held.get_mut(&self.path) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.path);
                GATE.freed.notify_all();
            }
        }
    }
}

impl LockGuard {
    /// Fails if this guard no longer excludes other writers: a lock file
    /// replaced under a guard without the folder's lock (lxc-dev-manager's)
    /// may now be held by another process. ldm's own lock holds the folder,
    /// which cannot be replaced, so it stays exclusive whatever happens to
    /// `containers.lock`.
    pub fn check(&self) -> Result<(), LockError> {
        if self.folder.is_some() || same_file(&self.file, &self.path).unwrap_or(false) {
            Ok(())
        } else {
            Err(LockError::Lost {
                path: self.path.clone(),
            })
        }
    }
}

/// Which lock to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Ldm,
    Go,
}

/// Takes ldm's exclusive lock on `path` (created 0600 if missing), waiting
/// at most `timeout`. `what` (the command, no argument values) goes into
/// the file for waiters to read, with this pid and the time.
pub fn acquire(
    path: &Path,
    timeout: Duration,
    what: &str,
    trust: Trust,
) -> Result<LockGuard, LockError> {
    let ticket = Ticket::enter(path);
    let start = Instant::now();
    let mut guard = take(path, Some(timeout), trust, Which::Ldm)?.ok_or_else(|| LockError::Io {
        path: path.to_path_buf(),
        source: io::Error::other("lock not taken"),
    })?;
    // Then the folder, always in this order (no two waits can cycle): a
    // holder whose lock file was deleted still holds it.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let folder = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|source| LockError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    let folder = match FileExt::try_lock(&folder) {
        Ok(()) => folder,
        Err(TryLockError::WouldBlock) => {
            match wait(folder, timeout.saturating_sub(start.elapsed())) {
                Ok(Some(f)) => f,
                Ok(None) => {
                    return Err(LockError::Timeout {
                        path: path.to_path_buf(),
                        waited: start.elapsed(),
                        holder: holder_of(dir, read_note(path)),
                    })
                }
                Err(source) => {
                    return Err(LockError::Io {
                        path: dir.to_path_buf(),
                        source,
                    })
                }
            }
        }
        Err(TryLockError::Error(source)) => {
            return Err(LockError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    guard.folder = Some(folder);
    guard._gate = Some(ticket);
    // Best effort: the note only helps a waiter's error message.
    let _ = write_holder(&guard.file, what);
    Ok(guard)
}

/// Takes lxc-dev-manager's lock `containers.yaml.lock` in `dir`, waiting
/// at most `timeout`.
pub fn acquire_go(dir: &Path, timeout: Duration, trust: Trust) -> Result<LockGuard, LockError> {
    let path = dir.join(GO_LOCK_FILE);
    take(&path, Some(timeout), trust, Which::Go)?.ok_or(LockError::GoTimeout {
        path,
        waited: timeout,
    })
}

/// Takes lxc-dev-manager's lock if it is free now; `None` if it is held.
pub fn try_go(dir: &Path, trust: Trust) -> Result<Option<LockGuard>, LockError> {
    take(&dir.join(GO_LOCK_FILE), None, trust, Which::Go)
}

/// Opens, locks and checks `path`, starting over if the file was replaced
/// meanwhile. `timeout: None` does not wait: `Ok(None)` if it is held.
fn take(
    path: &Path,
    timeout: Option<Duration>,
    trust: Trust,
    which: Which,
) -> Result<Option<LockGuard>, LockError> {
    let start = Instant::now();
    let io_err = |source: io::Error| match Refusal::of(&source) {
        Some(r) => LockError::Refused {
            path: path.to_path_buf(),
            why: r.why.clone(),
        },
        None => LockError::Io {
            path: path.to_path_buf(),
            source,
        },
    };
    loop {
        let file = open_lock_file(path, trust).map_err(io_err)?;
        let file = match FileExt::try_lock(&file) {
            Ok(()) => file,
            Err(TryLockError::WouldBlock) => match timeout {
                None => return Ok(None),
                Some(t) => {
                    let left = t.saturating_sub(start.elapsed());
                    match wait(file, left) {
                        Ok(Some(f)) => f,
                        Ok(None) => {
                            return Err(match which {
                                Which::Ldm => LockError::Timeout {
                                    path: path.to_path_buf(),
                                    waited: start.elapsed(),
                                    holder: holder_of(path, read_note(path)),
                                },
                                Which::Go => LockError::GoTimeout {
                                    path: path.to_path_buf(),
                                    waited: start.elapsed(),
                                },
                            })
                        }
                        Err(e) => return Err(io_err(e)),
                    }
                }
            },
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        };
        // The usual pattern for lock files that can be unlinked: the lock
        // counts only if the file locked is still the one at the path.
        if same_file(&file, path).map_err(io_err)? {
            return Ok(Some(LockGuard {
                file,
                path: path.to_path_buf(),
                folder: None,
                _gate: None,
            }));
        }
        if timeout.is_some_and(|t| start.elapsed() > t) {
            return Err(LockError::Lost {
                path: path.to_path_buf(),
            });
        }
    }
}

fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    let held = file.metadata()?;
    match std::fs::symlink_metadata(path) {
        Ok(now) => Ok(now.dev() == held.dev() && now.ino() == held.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Blocks in `flock` on a helper thread so the wait can be bounded; `None`
/// on timeout. If we give up first, the thread still gets the lock
/// eventually, finds nobody listening, and drops it at once.
fn wait(file: File, timeout: Duration) -> io::Result<Option<File>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = FileExt::lock(&file).map(|()| file);
        let _ = tx.send(result);
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(file)) => Ok(Some(file)),
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::holder::NOTE_LEN;

    const T: Trust = Trust::Mine;

    #[test]
    fn second_holder_times_out_and_names_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("containers.lock");
        let held = acquire(&path, Duration::from_secs(1), "test holder", T).unwrap();
        let err = acquire(&path, Duration::from_millis(100), "second", T).unwrap_err();
        match err {
            LockError::Timeout { holder, .. } => {
                assert!(holder.contains("test holder"), "{holder}")
            }
            other => panic!("unexpected {other:?}"),
        }
        drop(held);
        acquire(&path, Duration::from_millis(100), "third", T).unwrap();
    }

    #[test]
    fn waiter_gets_the_lock_when_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("containers.lock");
        let held = acquire(&path, Duration::from_secs(1), "first", T).unwrap();
        let p2 = path.clone();
        let t =
            std::thread::spawn(move || acquire(&p2, Duration::from_secs(5), "second", T).is_ok());
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
        assert!(t.join().unwrap());
    }

    #[test]
    fn threads_of_one_process_wait_for_each_other_past_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("containers.lock");
        let held = acquire(&path, Duration::from_secs(1), "first", T).unwrap();
        let p2 = path.clone();
        // Its timeout is 10 ms; the other thread holds the lock for 300.
        let t = std::thread::spawn(move || acquire(&p2, Duration::from_millis(10), "second", T));
        std::thread::sleep(Duration::from_millis(300));
        assert!(!t.is_finished(), "still waiting at the gate");
        drop(held);
        t.join().unwrap().unwrap().check().unwrap();
    }

    #[test]
    fn a_lock_file_removed_while_held_still_excludes_a_newcomer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("containers.lock");
        let held = acquire(&path, Duration::from_secs(1), "first", T).unwrap();
        std::fs::remove_file(&path).unwrap();
        // The newcomer locks a new file, then waits for the folder.
        let err = acquire(&path, Duration::from_millis(200), "second", T).unwrap_err();
        match err {
            LockError::Timeout { holder, .. } => {
                assert!(
                    holder.contains(&format!("pid {}", std::process::id())),
                    "{holder}"
                )
            }
            other => panic!("unexpected {other:?}"),
        }
        held.check().unwrap();
        drop(held);
        let newcomer = acquire(&path, Duration::from_secs(1), "second", T).unwrap();
        newcomer.check().unwrap();
    }

    #[test]
    fn a_waiter_whose_file_was_replaced_starts_over_on_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("containers.lock");
        let held = acquire(&path, Duration::from_secs(1), "first", T).unwrap();
        let p2 = path.clone();
        let waiter = std::thread::spawn(move || acquire(&p2, Duration::from_secs(5), "second", T));
        std::thread::sleep(Duration::from_millis(50));
        // Replaced while the waiter is queued on the old inode.
        std::fs::remove_file(&path).unwrap();
        // (Threads of one process stand for processes here: the gate keeps
        // the waiter out of `flock` until this thread is done.)
        drop(held);
        // The waiter got the old inode's lock, saw it replaced, and took
        // the new file and the folder.
        let g = waiter.join().unwrap().unwrap();
        g.check().unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (meta.dev(), meta.ino()),
            (
                g.file.metadata().unwrap().dev(),
                g.file.metadata().unwrap().ino()
            )
        );
    }

    /// Issue 25, item 16: a process that is not ldm holds containers.lock
    /// (`flock containers.lock sleep 100`); the note in the file is an
    /// older ldm's, whose pid has exited. The timeout names the holder the
    /// kernel reports, never the dead pid as if it held the lock.
    #[test]
    fn a_timeout_names_the_process_that_holds_the_lock_not_a_stale_note() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("containers.lock");
        let mut note = b"pid 4194303 (ldm config set) since 2026-01-15T10:30:00Z".to_vec();
        note.resize(NOTE_LEN - 1, b' ');
        note.push(b'\n');
        std::fs::write(&path, &note).unwrap();
        let other = std::fs::File::open(&path).unwrap();
        FileExt::try_lock(&other).unwrap();
        let err = acquire(&path, Duration::from_millis(100), "second", T).unwrap_err();
        let LockError::Timeout { holder, .. } = err else {
            panic!("unexpected {err:?}");
        };
        let me = format!("pid {} (", std::process::id());
        assert!(holder.starts_with(&me), "{holder}");
        assert!(holder.contains("is left from pid 4194303"), "{holder}");
        assert!(holder.contains("has exited"), "{holder}");
        // The note of the process that does hold it is quoted as it is.
        drop(other);
        let held = acquire(&path, Duration::from_secs(1), "ldm first", T).unwrap();
        let err = acquire(&path, Duration::from_millis(100), "second", T).unwrap_err();
        let LockError::Timeout { holder, .. } = err else {
            panic!("unexpected {err:?}");
        };
        assert!(
            holder.starts_with(&format!("pid {} (ldm first)", std::process::id())),
            "{holder}"
        );
        drop(held);
    }
}
