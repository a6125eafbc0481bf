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
//! cannot be asked through the path any more (the owner's lock sits on the
//! old inode). The owner records that inode, and the kernel's table of
//! locks (`/proc/locks`, which lists every OFD lock with its inode and
//! range) still answers: alive while some open file description holds a
//! lock on that inode covering the slot. Nothing written in the project
//! file decides it: a forged `pending` naming pid 1, or any running
//! process, is alive only if a real lock stands behind it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::fs::{open_checked, open_lock_file, Trust};
use ldm_model::Owner;

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

/// The fallback when the slot cannot be asked through the path: whether
/// the kernel's lock table shows an OFD lock on the recorded inode that
/// covers the slot. An owner without a recorded inode (from before the
/// field), with its lock file gone, is "gone", as it was before.
fn process_alive(owner: &Owner) -> bool {
    let Some(ino) = owner.lock_ino else {
        return false;
    };
    std::fs::read_to_string("/proc/locks")
        .is_ok_and(|table| ofd_lock_covers(&table, ino, owner.slot))
}

/// True if `table` (the text of `/proc/locks`) has an OFD lock on inode
/// `ino` whose byte range covers `slot`. Lines look like
/// `3: OFDLCK ADVISORY  WRITE -1 fe:00:10011255 4294967296 4294967296`
/// (the end may be `EOF`).
fn ofd_lock_covers(table: &str, ino: u64, slot: u64) -> bool {
    table.lines().any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // A blocked waiter's line ("N: -> OFDLCK ...") holds nothing, and
        // an owner never waits (it claims with F_OFD_SETLK).
        let [_, kind, _, _, _, dev_ino, start, end, ..] = f.as_slice() else {
            return false;
        };
        let on_ino = dev_ino
            .rsplit(':')
            .next()
            .and_then(|i| i.parse::<u64>().ok())
            == Some(ino);
        let start = start.parse::<u64>().ok();
        let end = if *end == "EOF" {
            Some(u64::MAX)
        } else {
            end.parse::<u64>().ok()
        };
        *kind == "OFDLCK" && on_ino && start.zip(end).is_some_and(|(s, e)| s <= slot && slot <= e)
    })
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
    if ldm_sys::random_bytes(&mut buf).is_err() {
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
        // A record naming a running process (pid 1, with its real start
        // time) but a slot no lock stands behind is not alive.
        let impostor = Owner {
            pid: 1,
            slot: owner.slot + 1,
            start: start_time(1),
            ..owner
        };
        assert!(!is_alive(&path, &impostor, Trust::Mine).unwrap());
        drop(guard);
        assert!(
            !is_alive(&path, &owner, Trust::Mine).unwrap(),
            "dropped while its file was replaced"
        );
    }

    #[test]
    fn the_lock_table_is_read_line_by_line() {
        let table = "1: OFDLCK ADVISORY  WRITE -1 fe:00:10011255 5000000000 5000000000\n\
                     2: POSIX  ADVISORY  WRITE 42 fe:00:777 5000000001 5000000001\n\
                     3: -> OFDLCK ADVISORY  WRITE -1 fe:00:888 7 EOF\n\
                     4: FLOCK  ADVISORY  WRITE 9 fe:00:10011255 0 EOF\n";
        assert!(ofd_lock_covers(table, 10011255, 5000000000));
        assert!(!ofd_lock_covers(table, 10011255, 5000000001), "range");
        assert!(!ofd_lock_covers(table, 777, 5000000001), "POSIX, not OFD");
        assert!(!ofd_lock_covers(table, 888, 7), "a waiter holds nothing");
        let to_eof = "5: OFDLCK ADVISORY  WRITE -1 fe:00:888 7 EOF\n";
        assert!(ofd_lock_covers(to_eof, 888, 1 << 40), "to EOF");
        assert!(!ofd_lock_covers(table, 1, 5000000000), "other inode");
        assert!(!ofd_lock_covers("garbage\n\n1:", 1, 1));
    }
}
