//! Who holds a project lock, for the lock's own note and a timeout's
//! message (DESIGN.md, "Lock protocol"): the note an ldm writes into
//! `containers.lock`, and the process the kernel says holds the `flock`,
//! which is quoted as the holder only when the two agree.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Width of the holder note. Written in place, padded, never truncated:
/// truncating the lock file on every commit made ext4 flush it along with
/// the log's fdatasync, doubling a commit's cost (benches/store.rs).
pub(super) const NOTE_LEN: usize = 256;

pub(super) fn write_holder(file: &File, what: &str) -> io::Result<()> {
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

/// Who holds the `flock` on `path` (a lock file, or the project folder),
/// for a timeout's message. The kernel says which process holds it
/// (`/proc/locks`); the note in `containers.lock` says what it is doing,
/// but only an ldm writes it and it stays after its writer exits. So the
/// note is quoted only when its pid is the holder's (or when the kernel
/// cannot be asked and its pid still runs); otherwise the holder is named
/// by pid and program, and a stale note as what it is (issue 25, item 16).
pub(super) fn holder_of(path: &Path, note: Option<String>) -> String {
    let note_pid = note.as_deref().and_then(note_pid);
    match flock_holders(path) {
        Some(pids) if !pids.is_empty() => {
            if let (Some(note), Some(p)) = (&note, note_pid) {
                if pids.contains(&p) {
                    return note.clone();
                }
            }
            let who: Vec<String> = pids.iter().map(|&p| process_name(p)).collect();
            let stale = match (&note, note_pid) {
                (Some(note), Some(p)) => format!(
                    " (the note in the lock file, \"{note}\", is left from pid {p}, which does not hold it{})",
                    if pid_alive(p) { "" } else { " and has exited" }
                ),
                _ => String::new(),
            };
            format!("{}{stale}", who.join(", "))
        }
        _ => match (note, note_pid) {
            (Some(note), Some(p)) if !pid_alive(p) => format!(
                "another process (the note in the lock file, \"{note}\", is left from pid {p}, which has exited)"
            ),
            (Some(note), _) => note,
            (None, _) => "another process (it did not say which)".to_string(),
        },
    }
}

/// The pid a holder note names: `pid N (...)`.
fn note_pid(note: &str) -> Option<u32> {
    note.strip_prefix("pid ")?.split(' ').next()?.parse().ok()
}

/// Pids holding a `flock` on `path`'s inode, from `/proc/locks`; `None`
/// when that cannot be read.
fn flock_holders(path: &Path) -> Option<Vec<u32>> {
    let meta = std::fs::metadata(path).ok()?;
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    let dev = meta.dev();
    let want = format!(
        "{:02x}:{:02x}:{}",
        libc::major(dev),
        libc::minor(dev),
        meta.ino()
    );
    let mut pids: Vec<u32> = text
        .lines()
        // `N: FLOCK ADVISORY WRITE PID MAJ:MIN:INO 0 EOF`; a waiter's line
        // has `->` after the number.
        .filter_map(|line| {
            let mut f = line.split_whitespace().skip(1);
            match (f.next(), f.next(), f.next(), f.next(), f.next()) {
                (Some("FLOCK"), Some(_), Some(_), Some(pid), Some(id)) if id == want => {
                    pid.parse().ok()
                }
                _ => None,
            }
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    Some(pids)
}

/// `pid N (PROGRAM)`, the program from `/proc/N/comm`.
fn process_name(pid: u32) -> String {
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => {
            let comm: String = comm
                .trim()
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            format!("pid {pid} ({comm})")
        }
        Err(_) => format!("pid {pid}"),
    }
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// What the last holder wrote into the lock file, if anything (control
/// characters shown escaped: the file may come from anyone).
pub(super) fn read_note(path: &Path) -> Option<String> {
    let mut buf = vec![0u8; NOTE_LEN];
    let n = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .and_then(|mut f| {
            if f.metadata()?.is_file() {
                f.read(&mut buf)
            } else {
                Ok(0)
            }
        })
        .unwrap_or(0);
    let s = String::from_utf8_lossy(&buf[..n]);
    match s.trim() {
        "" => None,
        note => Some(
            note.chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect(),
        ),
    }
}
