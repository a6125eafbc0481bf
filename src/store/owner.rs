//! Who is running a long operation, and whether they are still alive.
//!
//! A long operation (create, clone, reset, ...) runs its LXD steps without
//! the store lock, so its intent record must say who owns it in a way the
//! next command can check without guessing from the clock or trusting a pid
//! that may have been reused. Each owner takes an open-file-description
//! (`F_OFD_SETLK`) write lock on one random byte of `containers.lock`, far
//! past the bytes the holder note uses, and keeps the file open until the
//! operation ends. The kernel drops the lock when the process exits or is
//! killed, so "is the byte locked?" (`F_OFD_GETLK`) answers "is the owner
//! alive?" exactly. On Linux, OFD locks and the whole-file `flock` used by
//! [`super::lock`] do not interact.
//!
//! If `containers.lock` was removed or replaced after the claim, its byte
//! cannot be asked any more (the owner's lock sits on the old inode). The
//! owner records that inode and its own start time, so the answer then
//! comes from the process table: the pid exists and started at that time.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::fs::{open_checked, open_lock_file, Trust};
use crate::model::Owner;

/// First offset used for owner slots; below it is the holder note.
const SLOT_BASE: u64 = 1 << 32;
/// Slots are drawn from `SLOT_BASE .. SLOT_BASE + SLOT_RANGE`.
const SLOT_RANGE: u64 = 1 << 40;

/// A live operation's claim; dropping it releases the slot.
#[derive(Debug)]
pub struct OwnerGuard {
    _file: File,
    owner: Owner,
}

impl OwnerGuard {
    /// The owner to record in the intent.
    pub fn owner(&self) -> Owner {
        self.owner
    }
}

/// Claims a fresh slot in `lock_path` for this process.
pub fn claim(lock_path: &Path, trust: Trust) -> io::Result<OwnerGuard> {
    let file = open_lock_file(lock_path, trust)?;
    let lock_ino = file.metadata()?.ino();
    let pid = std::process::id();
    for _ in 0..8 {
        let slot = SLOT_BASE + random_u64() % SLOT_RANGE;
        if set_lock(&file, slot, libc::F_OFD_SETLK, libc::F_WRLCK)? {
            return Ok(OwnerGuard {
                _file: file,
                owner: Owner {
                    pid,
                    slot,
                    lock_ino: Some(lock_ino),
                    start: start_time(pid),
                },
            });
        }
    }
    Err(io::Error::other("no free owner slot in the lock file"))
}

/// True while the process that claimed `owner` is running its operation.
pub fn is_alive(lock_path: &Path, owner: &Owner, trust: Trust) -> io::Result<bool> {
    // Read-only and without creating: readers never write.
    let file = match open_checked(lock_path, OpenOptions::new().read(true), trust) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(process_alive(owner)),
        Err(e) => return Err(e),
    };
    if owner
        .lock_ino
        .is_some_and(|ino| ino != file.metadata().map_or(0, |m| m.ino()))
    {
        return Ok(process_alive(owner));
    }
    let mut fl = flock_for(owner.slot, libc::F_WRLCK);
    // SAFETY: fcntl with F_OFD_GETLK reads and writes the flock struct we own.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// The fallback when the slot cannot be asked: the pid runs and, when the
/// owner recorded it, started when the owner did. Without either record
/// (an owner from before these fields, with its lock file gone) the answer
/// is "gone", as it was before.
fn process_alive(owner: &Owner) -> bool {
    match (owner.lock_ino, start_time(owner.pid)) {
        (None, _) | (_, None) => false,
        (Some(_), Some(now)) => owner.start.is_none_or(|s| s == now),
    }
}

/// Start time of process `pid` in clock ticks after boot (`/proc/PID/stat`,
/// field 22), `None` if there is no such process.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and ')': skip past the last one.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn flock_for(slot: u64, kind: libc::c_int) -> libc::flock {
    // SAFETY: libc::flock is a plain C struct; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = slot as libc::off_t;
    fl.l_len = 1;
    fl
}

/// Tries to take the lock; `Ok(false)` if another description holds it.
fn set_lock(file: &File, slot: u64, cmd: libc::c_int, kind: libc::c_int) -> io::Result<bool> {
    let fl = flock_for(slot, kind);
    // SAFETY: fcntl with an OFD lock command reads the flock struct we own.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &fl) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(err),
    }
}

fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        // Fall back on time and pid: a collision only costs a retry.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        return t ^ (u64::from(std::process::id()) << 32);
    }
    u64::from_le_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimed_slot_is_alive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("containers.lock");
        let guard = claim(&path, Trust::Mine).unwrap();
        let owner = guard.owner();
        // Checked through a different open file description, as another
        // process would.
        assert!(is_alive(&path, &owner, Trust::Mine).unwrap());
        drop(guard);
        assert!(!is_alive(&path, &owner, Trust::Mine).unwrap());
    }

    #[test]
    fn an_owner_stays_alive_when_the_lock_file_is_replaced_under_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("containers.lock");
        let guard = claim(&path, Trust::Mine).unwrap();
        let owner = guard.owner();
        std::fs::remove_file(&path).unwrap();
        assert!(is_alive(&path, &owner, Trust::Mine).unwrap(), "file gone");
        std::fs::write(&path, b"").unwrap();
        assert!(
            is_alive(&path, &owner, Trust::Mine).unwrap(),
            "file replaced"
        );
        // Another process's pid with our start time is not us.
        let impostor = Owner {
            start: owner.start.map(|s| s + 1),
            ..owner
        };
        assert!(!is_alive(&path, &impostor, Trust::Mine).unwrap());
        drop(guard);
    }
}
